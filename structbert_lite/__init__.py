"""structbert-lite: gated, lightweight CPU artifacts of the StructBERT Chinese sentiment classifier.

``structbert_lite.load(folder)`` (see `structbert_lite.api`) is imported on first use, so that
``import structbert_lite`` stays light (no onnxruntime, no numpy).
"""

__version__ = "0.1.0"

__all__ = ["__version__", "load"]


def __getattr__(name: str):
    if name == "load":
        from structbert_lite.api import load

        return load
    raise AttributeError(f"module 'structbert_lite' has no attribute {name!r}")

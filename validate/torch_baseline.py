"""The PyTorch FP32 reference, behind the same interface as `runtime.OnnxClassifier`.

It uses the variants' own tokenizer files (`runtime.load_tokenizer`), so baseline and variants see
byte-identical ``input_ids`` and every difference in the report comes from the model, not tokenization.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, Callable

import numpy as np

from structbert_lite.errors import CheckpointError
from structbert_lite.runtime import FolderClassifier, english_label, load_tokenizer

logger = logging.getLogger(__name__)

# `convert/checkpoint.py` (the lead's loader: strict load, key remap) returns an object with `.model`.
DEFAULT_BASELINE_LOADER = "structbert_lite.convert.checkpoint:load_classifier"
TORCH_INPUTS = ("input_ids", "attention_mask", "token_type_ids")


def resolve_loader(spec: str | Callable[[str], Any]) -> Callable[[str], Any]:
    """``"module:attr.attr"`` -> the callable (e.g. ``transformers:BertForSequenceClassification.from_pretrained``)."""
    from structbert_lite.measure.contenders import resolve_callable  # one resolver for loader strings

    return spec if callable(spec) else resolve_callable(spec)


def load_baseline_model(path: str | Path, loader: str | Callable[[str], Any] = DEFAULT_BASELINE_LOADER):
    """Load the checkpoint at ``path`` with ``loader``; accept a bare module or an object with ``.model``."""
    import torch

    loaded = resolve_loader(loader)(str(path))
    model = getattr(loaded, "model", loaded)
    if not isinstance(model, torch.nn.Module):
        raise CheckpointError(f"loader {loader!r} returned {type(loaded).__name__}, not a torch module (or .model)")
    return model.eval()


class TorchClassifier(FolderClassifier):
    """Scores texts with a PyTorch ``BertForSequenceClassification`` (FP32, inference mode, fixed threads); ``logits``
    and ``predict`` are `runtime.FolderClassifier`'s, as for the ONNX and OpenVINO variants."""

    def __init__(
        self, model, tokenizer_folder: Path, max_length: int = 128, threads: int | None = None, truncation: str = "head"
    ):
        import torch

        self.model = model.eval()
        self.max_length = max_length
        self.threads = threads
        if threads:
            # Process-wide; set again before every call because other code in the run may change it.
            torch.set_num_threads(threads)
        self.tokenizer = load_tokenizer(Path(tokenizer_folder), max_length, truncation)
        id2label = getattr(model.config, "id2label", None) or {0: "负面", 1: "正面"}
        self.labels = [english_label(id2label[i]) for i in range(len(id2label))]

    def logits_for_encoding(self, feed: dict[str, np.ndarray]) -> np.ndarray:
        import torch

        if self.threads and torch.get_num_threads() != self.threads:
            torch.set_num_threads(self.threads)
        inputs = {k: torch.from_numpy(np.ascontiguousarray(v)) for k, v in feed.items() if k in TORCH_INPUTS}
        with torch.inference_mode():
            return self.model(**inputs).logits.float().numpy()  # (batch, num_labels)

"""Small helpers over ONNX files that every quantize step uses: load with a clear error, count ops, read dims."""

from __future__ import annotations

import collections
import json
from pathlib import Path

from structbert_lite.errors import ModelFileError


def load_onnx(path: Path):
    """``onnx.load`` with a clear error for a missing, truncated or corrupt file."""
    import onnx
    from google.protobuf.message import DecodeError

    path = Path(path)
    if not path.is_file():
        raise ModelFileError(f"ONNX model {path} does not exist")
    try:
        model = onnx.load(str(path))
        onnx.checker.check_model(model)
    except (DecodeError, onnx.checker.ValidationError, OSError) as exc:  # garbage, a bad graph, external data
        raise ModelFileError(
            f"{path} is not a valid ONNX model "
            f"({type(exc).__name__}: {str(exc).splitlines()[0][:200] if str(exc) else ''}); "
            "the file is truncated or corrupt: re-export it (structbert-lite run)"
        ) from None
    return model


def op_counts(model) -> dict[str, int]:
    return dict(collections.Counter(node.op_type for node in model.graph.node))


def model_dims(folder: Path) -> tuple[int, int, int]:
    """(num_layers, num_heads, hidden_size) from the variant folder's config.json."""
    config = json.loads((Path(folder) / "config.json").read_text(encoding="utf-8"))
    return config["num_hidden_layers"], config["num_attention_heads"], config["hidden_size"]

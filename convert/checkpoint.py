"""Load a ModelScope-layout StructBERT checkpoint into `transformers.BertForSequenceClassification`, strictly.

A ModelScope checkpoint folder holds ``config.json``, ``pytorch_model.bin`` or ``model.safetensors``,
``vocab.txt`` and optionally ``configuration.json``. Real checkpoints name tensors in several ways; we
remap them to the transformers names and then load with ``strict=True``: a silently re-initialised
classifier is the worst bug this toolkit can have, so a missing or unexpected tensor is an error naming it.

    ModelScope / older names                 transformers names
    ───────────────────────────────────────  ───────────────────────────────
    encoder.embeddings.…                  →  bert.embeddings.…
    encoder.encoder.layer.N.…             →  bert.encoder.layer.N.…
    head.classifier.{weight,bias}         →  classifier.{weight,bias}
    ….LayerNorm.gamma / .beta             →  ….LayerNorm.weight / .bias
    bert.embeddings.position_ids          →  (dropped: a buffer, not a weight)
"""

from __future__ import annotations

import dataclasses
import json
import logging
import pickle
import re
import zipfile
from pathlib import Path

from structbert_lite.artifact import sha256_file
from structbert_lite.errors import CheckpointError

logger = logging.getLogger(__name__)

WEIGHT_FILES = ("model.safetensors", "pytorch_model.bin")
DEFAULT_ID2LABEL = {0: "负面", 1: "正面"}
# BertConfig fields we take from a checkpoint's config.json; anything else there is kept verbatim.
_IGNORED_TENSORS = re.compile(r"(^|\.)position_ids$")


@dataclasses.dataclass
class LoadedClassifier:
    """A strictly loaded classifier and what the manifest needs to trace it."""

    model: object  # transformers.BertForSequenceClassification, in eval mode
    id2label: dict[int, str]
    checkpoint_dir: Path
    weights_file: str
    file_hashes: dict[str, str]
    remapped: dict[str, int]  # remap rule -> number of tensors it renamed


def remap_key(key: str) -> tuple[str, str | None]:
    """The transformers name for a checkpoint tensor name, and the rule that changed it (or None)."""
    rule = None
    if key.startswith("head.classifier."):
        key, rule = key[len("head.") :], "head.classifier.* -> classifier.*"
    elif key.startswith("encoder.") and not key.startswith("encoder.layer."):
        key, rule = "bert." + key[len("encoder.") :], "encoder.* -> bert.*"
    elif key.startswith(("embeddings.", "encoder.layer.", "pooler.")):
        key, rule = "bert." + key, "(no prefix) -> bert.*"
    if key.endswith(".gamma"):
        key, rule = key[: -len(".gamma")] + ".weight", rule or "gamma -> weight"
    elif key.endswith(".beta"):
        key, rule = key[: -len(".beta")] + ".bias", rule or "beta -> bias"
    return key, rule


def remap_state_dict(state: dict) -> tuple[dict, dict[str, int]]:
    remapped, counts = {}, {}
    for key, tensor in state.items():
        if _IGNORED_TENSORS.search(key):
            counts["drop position_ids"] = counts.get("drop position_ids", 0) + 1
            continue
        new_key, rule = remap_key(key)
        if rule:
            counts[rule] = counts.get(rule, 0) + 1
        if new_key in remapped:
            raise CheckpointError(f"two checkpoint tensors map to {new_key!r} (one of them is {key!r})")
        remapped[new_key] = tensor
    return remapped, counts


def find_weights(checkpoint_dir: Path) -> Path:
    for name in WEIGHT_FILES:
        if (checkpoint_dir / name).is_file():
            return checkpoint_dir / name
    present = sorted(p.name for p in checkpoint_dir.iterdir()) if checkpoint_dir.is_dir() else []
    raise CheckpointError(
        f"{checkpoint_dir} has no weights: expected one of {list(WEIGHT_FILES)}, found {present or 'nothing'}. "
        "Point --model at a ModelScope-layout folder (config.json, pytorch_model.bin, vocab.txt)."
    )


def read_state_dict(weights: Path) -> dict:
    """Tensors from ``pytorch_model.bin`` (``weights_only=True``) or ``model.safetensors``."""
    import torch

    try:
        if weights.suffix == ".safetensors":
            from safetensors.torch import load_file

            return load_file(str(weights))
        state = torch.load(weights, map_location="cpu", weights_only=True)
    except (RuntimeError, EOFError, OSError, ValueError, zipfile.BadZipFile, pickle.UnpicklingError) as exc:
        raise CheckpointError(
            f"cannot read {weights} ({type(exc).__name__}: {str(exc).splitlines()[0][:200]}). The file is "
            "truncated or corrupt: download it again (delete it from the cache first)."
        ) from None
    if isinstance(state, dict) and "state_dict" in state and isinstance(state["state_dict"], dict):
        state = state["state_dict"]
    if not isinstance(state, dict) or not state:
        raise CheckpointError(f"{weights} does not hold a state dict of tensors")
    return state


def read_id2label(checkpoint_dir: Path, config: dict) -> dict[int, str]:
    id2label = config.get("id2label")
    ms_path = checkpoint_dir / "configuration.json"
    if not id2label and ms_path.is_file():
        ms = json.loads(ms_path.read_text(encoding="utf-8"))
        model = ms.get("model", {})
        id2label = model.get("id2label") or model.get("backbone", {}).get("id2label")
    if not id2label:
        return dict(DEFAULT_ID2LABEL)
    id2label = {int(k): str(v) for k, v in id2label.items()}
    # transformers writes LABEL_0/LABEL_1 when a config had no labels: that is no real label.
    if all(v.upper() == f"LABEL_{k}" for k, v in id2label.items()) and len(id2label) == 2:
        return dict(DEFAULT_ID2LABEL)
    return id2label


def read_bert_config(checkpoint_dir: Path):
    from transformers import BertConfig

    path = checkpoint_dir / "config.json"
    if not path.is_file():
        raise CheckpointError(f"{checkpoint_dir} has no config.json (a ModelScope-layout folder needs one)")
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise CheckpointError(f"{path} is not valid JSON: {exc}") from None
    id2label = read_id2label(checkpoint_dir, raw)
    raw = {k: v for k, v in raw.items() if k not in ("id2label", "label2id", "architectures", "model_type")}
    for key in ("hidden_size", "num_hidden_layers", "num_attention_heads", "vocab_size"):
        if key not in raw:
            raise CheckpointError(f"{path} lacks {key!r}: is this a BERT/StructBERT config?")
    config = BertConfig(
        **raw,
        id2label=id2label,
        label2id={v: k for k, v in id2label.items()},
        architectures=["BertForSequenceClassification"],
    )
    return config, id2label


def load_classifier(checkpoint_dir: str | Path) -> LoadedClassifier:
    """Strictly load a ModelScope-layout folder; every tensor must be used and every weight present."""
    import torch
    from transformers import BertForSequenceClassification

    checkpoint_dir = Path(checkpoint_dir)
    if not checkpoint_dir.is_dir():
        raise CheckpointError(f"checkpoint folder {checkpoint_dir} does not exist")
    config, id2label = read_bert_config(checkpoint_dir)
    weights = find_weights(checkpoint_dir)
    state, counts = remap_state_dict(read_state_dict(weights))

    with torch.device("meta"):  # no random init: every weight must come from the checkpoint
        model = BertForSequenceClassification(config)
    expected = {k for k in model.state_dict() if not _IGNORED_TENSORS.search(k)}
    missing = sorted(expected - set(state))
    unexpected = sorted(set(state) - expected)
    if missing or unexpected:
        parts = []
        if missing:
            parts.append(f"missing tensors: {', '.join(missing[:8])}{' …' if len(missing) > 8 else ''}")
        if unexpected:
            parts.append(f"unexpected tensors: {', '.join(unexpected[:8])}{' …' if len(unexpected) > 8 else ''}")
        raise CheckpointError(
            f"{weights} does not match a BERT classifier with {config.num_hidden_layers} layers, hidden "
            f"{config.hidden_size}, {config.num_labels} labels ({'; '.join(parts)}). Refusing to load it: a "
            "re-initialised tensor would silently change predictions."
        )
    expected_shapes = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    for key, tensor in state.items():
        if tuple(tensor.shape) != expected_shapes[key]:
            raise CheckpointError(
                f"tensor {key} in {weights} has shape {tuple(tensor.shape)}, the config implies {expected_shapes[key]}"
            )
    model.load_state_dict(state, strict=False, assign=True)  # strictness checked above, names and shapes
    # Buffers that are not weights (position_ids, token_type_ids) are rebuilt, never read from the file.
    embeddings = model.bert.embeddings
    max_pos = config.max_position_embeddings
    embeddings.register_buffer("position_ids", torch.arange(max_pos).expand((1, -1)), persistent=False)
    if hasattr(embeddings, "token_type_ids"):
        embeddings.register_buffer("token_type_ids", torch.zeros((1, max_pos), dtype=torch.long), persistent=False)
    model = model.float().eval()
    for rule, n in counts.items():
        logger.info("checkpoint key remap: %s (%d tensors)", rule, n)
    hashes = {p.name: sha256_file(p) for p in sorted(checkpoint_dir.iterdir()) if p.is_file()}
    return LoadedClassifier(model, id2label, checkpoint_dir, weights.name, hashes, counts)


def save_checkpoint(model, vocab: list[str] | Path, out_dir: Path, *, layout: str = "transformers") -> Path:
    """Write ``model`` in ModelScope layout (config.json, pytorch_model.bin, vocab.txt, configuration.json).

    ``layout="modelscope"`` renames tensors the way newer ModelScope checkpoints do (``encoder.``,
    ``head.classifier.``), so the loader's remaps are exercised on real files.
    """
    import torch

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    config = model.config.to_dict()
    config.pop("architectures", None)
    config["id2label"] = {str(k): v for k, v in model.config.id2label.items()}
    config["label2id"] = {v: int(k) for k, v in model.config.id2label.items()}
    (out_dir / "config.json").write_text(json.dumps(config, indent=2, ensure_ascii=False), encoding="utf-8")
    state = {k: v.detach().clone() for k, v in model.state_dict().items()}
    if layout == "modelscope":
        renamed = {}
        for key, value in state.items():
            if key.startswith("classifier."):
                key = "head." + key
            elif key.startswith("bert."):
                key = "encoder." + key[len("bert.") :]
            renamed[key] = value
        state = renamed
    elif layout != "transformers":
        raise ValueError(f"unknown layout {layout!r}")
    torch.save(state, out_dir / "pytorch_model.bin")
    if isinstance(vocab, Path):
        (out_dir / "vocab.txt").write_bytes(Path(vocab).read_bytes())
    else:
        (out_dir / "vocab.txt").write_text("\n".join(vocab) + "\n", encoding="utf-8")
    configuration = {
        "framework": "pytorch",
        "task": "text-classification",
        "model": {"type": "structbert"},
        "pipeline": {"type": "sentiment-classification"},
        "preprocessor": {"type": "sen-cls-tokenizer", "first_sequence": "text"},
    }
    (out_dir / "configuration.json").write_text(json.dumps(configuration, indent=2), encoding="utf-8")
    return out_dir

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
import re
import warnings
from pathlib import Path

from structbert_lite.artifact import sha256_file
from structbert_lite.convert.labels import read_json_object, read_labels
from structbert_lite.convert.tokenizer_files import check_vocab
from structbert_lite.errors import CheckpointError

logger = logging.getLogger(__name__)

# Preferred first: safetensors cannot carry code; a pickle can (we load it with weights_only=True).
WEIGHT_FILES = ("model.safetensors", "pytorch_model.bin")
# config.json keys a BERT classifier needs, and optional ones that must be positive integers too.
REQUIRED_INT_FIELDS = ("hidden_size", "num_hidden_layers", "num_attention_heads", "vocab_size")
OPTIONAL_INT_FIELDS = ("intermediate_size", "max_position_embeddings", "type_vocab_size")
OPTIONAL_FLOAT_FIELDS = ("layer_norm_eps", "hidden_dropout_prob", "attention_probs_dropout_prob", "initializer_range")
# Keys of config.json we set ourselves (labels come from labels.read_labels).
_OWN_KEYS = ("id2label", "label2id", "num_labels", "architectures", "model_type")
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
    labels_from: str = "config.json id2label"  # the file (and key) the label names were read from


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
    """``model.safetensors`` if present, else ``pytorch_model.bin``; says which when both are there."""
    present = [checkpoint_dir / name for name in WEIGHT_FILES if (checkpoint_dir / name).is_file()]
    if len(present) > 1:
        logger.warning(
            "%s has both %s: loading %s (safetensors cannot carry code); %s is ignored",
            checkpoint_dir, " and ".join(WEIGHT_FILES), present[0].name, present[1].name,
        )
    if present:
        return present[0]
    found = sorted(p.name for p in checkpoint_dir.iterdir()) if checkpoint_dir.is_dir() else []
    raise CheckpointError(
        f"{checkpoint_dir} has no weights: expected one of {list(WEIGHT_FILES)}, found {found or 'nothing'}. "
        "Point --model at a ModelScope-layout folder (config.json, pytorch_model.bin, vocab.txt)."
    )


def sniff_format(path: Path) -> str:
    """``empty`` | ``safetensors`` | ``torch-zip`` | ``pickle`` | ``unknown``, from the first bytes."""
    with open(path, "rb") as fh:
        head = fh.read(9)
    if not head:
        return "empty"
    if head.startswith(b"PK\x03\x04"):
        return "torch-zip"
    if head[:1] == b"\x80":
        return "pickle"
    if len(head) == 9 and head[8:9] == b"{" and int.from_bytes(head[:8], "little") < (100 << 20):
        return "safetensors"
    return "unknown"


_FORMAT_NAMES = {
    "torch-zip": "a PyTorch checkpoint", "pickle": "a pickled PyTorch checkpoint", "safetensors": "safetensors data"
}


def check_weights_format(weights: Path) -> None:
    """An empty weights file, or one whose bytes are the other format, is refused before torch is imported."""
    fmt = sniff_format(weights)
    if fmt == "empty":
        raise CheckpointError(f"{weights} is empty (0 bytes): the download or copy did not finish; fetch it again")
    is_safetensors = weights.suffix == ".safetensors"
    if is_safetensors and fmt in ("torch-zip", "pickle"):
        raise CheckpointError(f"{weights} holds {_FORMAT_NAMES[fmt]}, not safetensors: rename it to pytorch_model.bin")
    if not is_safetensors and fmt == "safetensors":
        raise CheckpointError(f"{weights} holds safetensors data, not a PyTorch pickle: rename it to model.safetensors")


def read_state_dict(weights: Path) -> dict:
    """Tensors from ``model.safetensors`` or ``pytorch_model.bin`` (``weights_only=True``), or one clear error."""
    check_weights_format(weights)
    is_safetensors = weights.suffix == ".safetensors"
    try:
        state = _load(weights, is_safetensors)
    except Exception as exc:  # noqa: BLE001 - torch/safetensors raise many types; each becomes one line
        raise _read_error(weights, exc) from None
    if isinstance(state, dict) and isinstance(state.get("state_dict"), dict):
        state = state["state_dict"]
    return _check_tensors(weights, state)


def _load(weights: Path, is_safetensors: bool) -> dict:
    import torch

    if is_safetensors:
        from safetensors.torch import load_file

        return load_file(str(weights))
    with warnings.catch_warnings():  # torch warns about pickle protocols before it refuses or loads: noise
        warnings.simplefilter("ignore", UserWarning)
        return torch.load(weights, map_location="cpu", weights_only=True)


def _read_error(weights: Path, exc: Exception) -> CheckpointError:
    text = " ".join(str(exc).split())
    if "Weights only load failed" in text or "weights_only" in text:
        # Never repeat torch's advice to retry with weights_only=False: that runs whatever the pickle holds.
        return CheckpointError(
            f"{weights} holds Python code or objects that are not tensors; it will not be loaded (only plain "
            "tensors are read, for safety). Get the weights as model.safetensors or as a state dict of tensors"
        )
    first = text.split(". ")[0][:160] or "no details"
    return CheckpointError(
        f"cannot read {weights} ({type(exc).__name__}: {first}): the file is truncated or corrupt; "
        "download it again (delete it from the cache first)"
    )


def _check_tensors(weights: Path, state: object) -> dict:
    import torch

    if not isinstance(state, dict) or not state:
        raise CheckpointError(f"{weights} does not hold a state dict of tensors (found {type(state).__name__})")
    for key, value in state.items():
        if not isinstance(key, str) or not isinstance(value, torch.Tensor):
            raise CheckpointError(
                f"{weights} holds {type(value).__name__} under {key!r}: a state dict must map names to tensors"
            )
    return state


def check_config_values(path: Path, raw: dict) -> None:
    """Positive integers where BERT needs them, numbers where it needs floats, heads dividing hidden."""
    for key in REQUIRED_INT_FIELDS:
        if key not in raw:
            raise CheckpointError(f"{path} lacks {key!r}: is this a BERT/StructBERT config?")
    for key in REQUIRED_INT_FIELDS + OPTIONAL_INT_FIELDS:
        value = raw.get(key)
        if key in raw and (isinstance(value, bool) or not isinstance(value, int) or value <= 0):
            wrong_type = not isinstance(value, int) or isinstance(value, bool)
            kind = f"a {type(value).__name__}" if wrong_type else "not positive"
            raise CheckpointError(f"{path}: {key} is {value!r} ({kind}); it must be a positive integer")
    for key in OPTIONAL_FLOAT_FIELDS:
        value = raw.get(key)
        if key in raw and (isinstance(value, bool) or not isinstance(value, (int, float))):
            raise CheckpointError(f"{path}: {key} is {value!r} (a {type(value).__name__}); it must be a number")
    hidden, heads = raw["hidden_size"], raw["num_attention_heads"]
    if hidden % heads:
        raise CheckpointError(
            f"{path}: hidden_size {hidden} is not divisible by num_attention_heads {heads}; "
            "each attention head gets hidden_size / num_attention_heads dimensions"
        )


def read_checkpoint_config(checkpoint_dir: Path) -> tuple[dict, dict[int, str], str]:
    """(config.json as a dict, id2label, where the labels came from), checked without importing torch."""
    path = checkpoint_dir / "config.json"
    if not path.is_file():
        raise CheckpointError(f"{checkpoint_dir} has no config.json (a ModelScope-layout folder needs one)")
    raw = read_json_object(path)
    check_config_values(path, raw)
    id2label, labels_from = read_labels(checkpoint_dir, raw)
    model_type = raw.get("model_type")
    if model_type not in (None, "bert", "structbert"):
        logger.warning("%s says model_type %r; loading it as BERT (StructBERT is architecturally BERT)",
                       path, model_type)
    return raw, id2label, labels_from


def bert_config(path: Path, raw: dict, id2label: dict[int, str]):
    """A transformers BertConfig from a checked config.json dict and the checkpoint's labels."""
    from transformers import BertConfig

    kept = {k: v for k, v in raw.items() if k not in _OWN_KEYS}
    try:
        return BertConfig(
            **kept,
            id2label=id2label,
            label2id={v: k for k, v in id2label.items()},
            architectures=["BertForSequenceClassification"],
        )
    except Exception as exc:  # noqa: BLE001 - any value BertConfig rejects is the config file's fault
        raise CheckpointError(f"{path} is not a BERT config transformers accepts: "
                              f"{type(exc).__name__}: {exc}") from None


def load_classifier(checkpoint_dir: str | Path) -> LoadedClassifier:
    """Strictly load a ModelScope-layout folder; every tensor must be used and every weight present.

    Cheap checks come first and need no torch (weights present and of the right format, config values,
    labels, vocabulary length): a wrong folder fails in about a second, before torch is even imported.
    """
    checkpoint_dir = Path(checkpoint_dir)
    if not checkpoint_dir.is_dir():
        raise CheckpointError(f"checkpoint folder {checkpoint_dir} does not exist")
    weights = find_weights(checkpoint_dir)  # only whether it is there: reading it comes last
    raw, id2label, labels_from = read_checkpoint_config(checkpoint_dir)
    check_vocab(checkpoint_dir / "vocab.txt", raw["vocab_size"])
    check_weights_format(weights)

    import torch
    from transformers import BertForSequenceClassification

    config = bert_config(checkpoint_dir / "config.json", raw, id2label)
    state, counts = remap_state_dict(read_state_dict(weights))

    try:
        with torch.device("meta"):  # no random init: every weight must come from the checkpoint
            model = BertForSequenceClassification(config)
    except Exception as exc:  # noqa: BLE001 - e.g. an unknown hidden_act
        raise CheckpointError(f"{checkpoint_dir}/config.json does not build a BERT model: "
                              f"{type(exc).__name__}: {exc}") from None
    check_state_matches(model, state, weights, config)
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
    logger.info("labels %s (from %s), weights from %s", id2label, labels_from, weights.name)
    hashes = {p.name: sha256_file(p) for p in sorted(checkpoint_dir.iterdir()) if p.is_file()}
    return LoadedClassifier(model, id2label, checkpoint_dir, weights.name, hashes, counts, labels_from)


def check_state_matches(model, state: dict, weights: Path, config) -> None:
    """Every expected tensor present, none extra, every shape as the config implies."""
    expected = {k: tuple(v.shape) for k, v in model.state_dict().items() if not _IGNORED_TENSORS.search(k)}
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
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
    for key, tensor in state.items():
        if tuple(tensor.shape) != expected[key]:
            raise CheckpointError(
                f"tensor {key} in {weights} has shape {tuple(tensor.shape)}, the config implies {expected[key]}"
            )


def save_checkpoint(
    model, vocab: list[str] | Path, out_dir: Path, *, layout: str = "transformers", configuration: dict | None = None
) -> Path:
    """Write ``model`` in ModelScope layout (config.json, pytorch_model.bin, vocab.txt, configuration.json).

    ``layout="modelscope"`` renames tensors the way newer ModelScope checkpoints do (``encoder.``,
    ``head.classifier.``), so the loader's remaps are exercised on real files. ``configuration`` is written
    as ``configuration.json`` verbatim (e.g. a fine-tuned model keeps its source's real ModelScope blocks);
    without it a minimal sentiment-classification one is written.
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
    configuration = configuration or {
        "framework": "pytorch",
        "task": "text-classification",
        "model": {"type": "structbert"},
        "pipeline": {"type": "sentiment-classification"},
        "preprocessor": {"type": "sen-cls-tokenizer", "first_sequence": "text"},
    }
    text = json.dumps(configuration, indent=2, ensure_ascii=False)
    (out_dir / "configuration.json").write_text(text, encoding="utf-8")
    return out_dir

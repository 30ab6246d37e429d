"""A checkpoint's label names, read where ModelScope reads them, checked for consistency and polarity.

ModelScope (``modelscope.utils.hub.parse_label_mapping``) takes the first of, in order:

    label_mapping.json                      {"负面": 0, "正面": 1}           (name -> id)
    configuration.json  model.label2id / model.id2label / preprocessor.label2id / preprocessor.id2label
    config.json         label2id / id2label

We take the same first one, and unlike ModelScope we also read the others: any two that give an id a
different class (by polarity, so 负面 and Negative agree) are refused, since a model whose files disagree
on what id 0 means would publish confidently wrong answers. transformers' placeholders (``LABEL_0``,
``LABEL_1``) are no labels at all. The labels must name one negative and one positive class
(`structbert_lite.constants.polarity_ids`); anything else is a `CheckpointError` saying what was found.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any, Iterator

from structbert_lite.constants import MODELSCOPE_LABELS, NEGATIVE, POSITIVE, polarity_ids, polarity_of
from structbert_lite.errors import CheckpointError

LABEL_MAPPING_FILE = "label_mapping.json"
CONFIGURATION_FILE = "configuration.json"
_PLACEHOLDER = re.compile(r"^LABEL_(\d+)$", re.IGNORECASE)
FIX_HINT = (
    f'add {LABEL_MAPPING_FILE} with {{"{MODELSCOPE_LABELS[NEGATIVE]}": 0, "{MODELSCOPE_LABELS[POSITIVE]}": 1}} '
    "(the ids the classifier was trained with)"
)


def read_json_object(path: Path) -> dict:
    """A JSON object from ``path``; a file that is not one is a one-line `CheckpointError`."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except UnicodeDecodeError:
        raise CheckpointError(f"{path} is not UTF-8 text") from None
    except json.JSONDecodeError as exc:
        raise CheckpointError(f"{path} is not valid JSON ({exc.msg} at line {exc.lineno} column {exc.colno})") from None
    if not isinstance(data, dict):
        raise CheckpointError(f"{path} holds a JSON {type(data).__name__}, not an object: is it the right file?")
    return data


def label_sources(checkpoint_dir: Path, config: dict) -> Iterator[tuple[str, Any, str]]:
    """(where, mapping, "label2id" | "id2label") for every label mapping present, in ModelScope's order."""
    mapping_path = checkpoint_dir / LABEL_MAPPING_FILE
    if mapping_path.is_file():
        yield LABEL_MAPPING_FILE, read_json_object(mapping_path), "label2id"
    configuration_path = checkpoint_dir / CONFIGURATION_FILE
    configuration = read_json_object(configuration_path) if configuration_path.is_file() else {}
    for block in ("model", "preprocessor"):
        section = configuration.get(block)
        if isinstance(section, dict):
            for key in ("label2id", "id2label"):
                if section.get(key) is not None:
                    yield f"{CONFIGURATION_FILE} {block}.{key}", section[key], key
    for key in ("label2id", "id2label"):
        if config.get(key) is not None:
            yield f"config.json {key}", config[key], key


def as_id2label(where: str, mapping: Any, kind: str) -> dict[int, str]:
    """``{id: name}`` from a label2id or id2label mapping; ids must be 0..n-1 and names unique."""
    if not isinstance(mapping, dict) or not mapping:
        raise CheckpointError(f"{where} is not a non-empty mapping of label names and ids: {mapping!r:.80}")
    pairs = mapping.items() if kind == "id2label" else ((v, k) for k, v in mapping.items())
    id2label: dict[int, str] = {}
    for raw_id, name in pairs:
        label_id = _as_id(raw_id)
        if label_id is None or not isinstance(name, str) or not name.strip():
            raise CheckpointError(f"{where} maps {raw_id!r} and {name!r}: ids must be integers and names text")
        if label_id in id2label:
            raise CheckpointError(f"{where} gives id {label_id} two names ({id2label[label_id]!r}, {name!r})")
        id2label[label_id] = name
    if sorted(id2label) != list(range(len(id2label))):
        raise CheckpointError(f"{where} has ids {sorted(id2label)}: they must be 0..{len(id2label) - 1}")
    if len(set(id2label.values())) != len(id2label):
        raise CheckpointError(f"{where} names two ids alike: {id2label}")
    return dict(sorted(id2label.items()))


def _as_id(value: Any) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, str) and value.strip().lstrip("-").isdigit():
        return int(value)
    return None


def is_placeholder(id2label: dict[int, str]) -> bool:
    """transformers' LABEL_0, LABEL_1 … (written when a config had no labels)."""
    return all((m := _PLACEHOLDER.match(name)) and int(m.group(1)) == i for i, name in id2label.items())


def read_labels(checkpoint_dir: Path, config: dict) -> tuple[dict[int, str], str]:
    """(id2label, where it was read) for a checkpoint; see the module docstring for the rules."""
    found = []
    for where, mapping, kind in label_sources(Path(checkpoint_dir), config):
        id2label = as_id2label(where, mapping, kind)
        if not is_placeholder(id2label):
            found.append((where, id2label))
    if not found:
        raise CheckpointError(
            f"{checkpoint_dir} names no labels ({LABEL_MAPPING_FILE}, {CONFIGURATION_FILE} model.label2id/id2label "
            f"and config.json id2label are absent or LABEL_0/LABEL_1): {FIX_HINT}"
        )
    where, id2label = found[0]
    meaning = _meaning(id2label)
    for other_where, other in found[1:]:
        if _meaning(other) != meaning:
            raise CheckpointError(
                f"{where} says {_show(id2label)} but {other_where} says {_show(other)}: the checkpoint's files "
                "disagree on what each class id means; fix the wrong one"
            )
    try:
        polarity_ids(id2label)
    except ValueError as exc:
        raise CheckpointError(
            f"the labels in {where} ({_show(id2label)}) are not one negative and one positive class ({exc}); "
            "this toolkit converts binary sentiment classifiers"
        ) from None
    if len(id2label) != 2:
        raise CheckpointError(f"{where} has {len(id2label)} labels ({_show(id2label)}); a sentiment classifier has 2")
    return id2label, where


def _meaning(id2label: dict[int, str]) -> dict[int, str]:
    return {i: polarity_of(name) or name for i, name in id2label.items()}


def _show(id2label: dict[int, str]) -> str:
    return ", ".join(f"{i}={name}" for i, name in id2label.items())

"""Evaluation data: a local CSV/TSV/JSONL/Parquet file or a `datasets` id, normalised to texts + 0/1 labels.

Rows with an empty text or a label we cannot read are counted (with a few examples for the report) and
dropped; the load fails only when their share exceeds ``EvalConfig.max_bad_share``. Labels follow the
checkpoint: 0 = 负面 (Negative), 1 = 正面 (Positive).
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
from pathlib import Path
from typing import Any, Optional, Sequence

import numpy as np

from structbert_lite.config import EvalConfig
from structbert_lite.errors import EvalDataError

logger = logging.getLogger(__name__)

LABEL_NAMES = ("Negative", "Positive")
# Accepted label spellings (compared after strip + lower-case) -> label id.
LABEL_WORDS = {
    "0": 0,
    "1": 1,
    "0.0": 0,
    "1.0": 1,
    "负面": 0,
    "正面": 1,
    "negative": 0,
    "positive": 1,
    "neg": 0,
    "pos": 1,
}
FILE_READERS = (".csv", ".tsv", ".jsonl", ".json", ".parquet")
MAX_BAD_EXAMPLES = 5


@dataclasses.dataclass
class EvalSet:
    """Usable rows of an eval source plus an account of what was dropped."""

    texts: list[str]
    labels: np.ndarray  # (rows,) int64, 0 = Negative, 1 = Positive
    source: str
    bad_rows: dict[str, Any]  # {"empty_text": n, "unknown_label": n, "examples": [...]}
    total_rows: int

    def __len__(self) -> int:
        return len(self.texts)

    def summary(self) -> dict[str, Any]:
        """Plain data for report.json."""
        return {
            "source": self.source,
            "total_rows": self.total_rows,
            "used_rows": len(self.texts),
            "bad_rows": self.bad_rows,
            "label_counts": {name: int((self.labels == i).sum()) for i, name in enumerate(LABEL_NAMES)},
        }


def parse_label(value: Any) -> Optional[int]:
    """0/1 for an accepted label spelling, None otherwise.

    Accepts ints 0/1, floats 0.0/1.0, the strings "0"/"1", 负面/正面, negative/positive and neg/pos in
    any case. Booleans are rejected: True/False in a label column usually means a wrong column.
    """
    if value is None or isinstance(value, bool):
        return None
    if isinstance(value, (int, np.integer)):
        return int(value) if value in (0, 1) else None
    if isinstance(value, (float, np.floating)):
        if math.isnan(value):
            return None
        return int(value) if value in (0.0, 1.0) else None
    if isinstance(value, bytes):
        value = value.decode("utf-8", errors="replace")
    if isinstance(value, str):
        return LABEL_WORDS.get(value.strip().lower())
    return None


def _is_empty_text(value: Any) -> bool:
    if value is None:
        return True
    if isinstance(value, float) and math.isnan(value):
        return True
    return not isinstance(value, str) or not value.strip()


def _read_jsonl(path: Path) -> list[dict]:
    rows = []
    with open(path, encoding="utf-8") as fh:
        for number, line in enumerate(fh, start=1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as exc:
                raise EvalDataError(f"{path}:{number} is not valid JSON ({exc.msg})") from None
            if not isinstance(row, dict):
                raise EvalDataError(f"{path}:{number} is a JSON {type(row).__name__}, expected an object per line")
            rows.append(row)
    return rows


def _read_file(path: Path) -> tuple[list[str], Sequence[dict]]:
    """(column names, rows as dicts) of a local file, chosen by extension."""
    import pandas as pd

    suffix = path.suffix.lower()
    try:
        if suffix in (".csv", ".tsv"):
            # Everything as str and no NA guessing: a review reading "NA" is a text, an empty cell is "".
            frame = pd.read_csv(path, sep="\t" if suffix == ".tsv" else ",", dtype=str, keep_default_na=False)
        elif suffix == ".parquet":
            frame = pd.read_parquet(path)
        elif suffix == ".json" and path.read_text(encoding="utf-8").lstrip().startswith("["):
            rows = json.loads(path.read_text(encoding="utf-8"))
            columns = list(dict.fromkeys(k for row in rows if isinstance(row, dict) for k in row))
            return columns, rows
        else:  # .jsonl, or .json holding one object per line
            rows = _read_jsonl(path)
            columns = list(dict.fromkeys(k for row in rows for k in row))
            return columns, rows
    except EvalDataError:
        raise
    except Exception as exc:  # pandas/pyarrow raise many types for an unreadable file
        raise EvalDataError(f"cannot read eval file {path}: {exc}") from None
    frame = frame.astype(object).where(frame.notna(), None)
    return [str(c) for c in frame.columns], frame.to_dict(orient="records")


def _read_dataset(dataset_id: str, split: str) -> tuple[list[str], Sequence[dict]]:
    try:
        import datasets
    except ImportError as exc:  # pragma: no cover - installed with the `convert` extra
        raise EvalDataError(f"loading the dataset id {dataset_id!r} needs `datasets` ({exc})") from None
    try:
        data = datasets.load_dataset(dataset_id, split=split)
    except Exception as exc:  # network, unknown id, unknown split...
        raise EvalDataError(
            f"cannot load dataset {dataset_id!r} (split {split!r}): {exc}. Offline, pass a local "
            "CSV/TSV/JSONL/Parquet file with --eval FILE instead"
        ) from None
    return list(data.column_names), data


def _read_rows(source: str, split: str) -> tuple[list[str], Sequence[dict]]:
    path = Path(source)
    if path.is_file():
        if path.suffix.lower() not in FILE_READERS:
            raise EvalDataError(
                f"eval file {path} has an unsupported extension {path.suffix!r}; use one of {', '.join(FILE_READERS)}"
            )
        return _read_file(path)
    if path.suffix.lower() in FILE_READERS or source.startswith((".", "/", "~")):
        raise EvalDataError(f"eval file {path} does not exist")
    if source == "demo":
        raise EvalDataError(
            "eval source 'demo' means the demo model's held-out split; resolve it to its JSONL file first"
        )
    return _read_dataset(source, split)


def load_eval_set(source: str, cfg: EvalConfig) -> EvalSet:
    """Read ``source`` (file by extension, else a dataset id) with the columns and limits of ``cfg``."""
    columns, rows = _read_rows(source, cfg.split)
    if len(rows) == 0:
        raise EvalDataError(f"eval source {source} has no rows")
    missing = [c for c in (cfg.text_column, cfg.label_column) if c not in columns]
    if missing:
        raise EvalDataError(
            f"eval source {source} has no column(s) {missing}; available columns: {columns}. "
            "Name the right ones with --text-column/--label-column (config: eval.text_column, eval.label_column)"
        )
    texts: list[str] = []
    labels: list[int] = []
    bad = {"empty_text": 0, "unknown_label": 0, "examples": []}
    total = 0
    for index, row in enumerate(rows):
        total += 1
        text, raw_label = row.get(cfg.text_column), row.get(cfg.label_column)
        reason = None
        if _is_empty_text(text):
            reason = "empty_text"
        else:
            label = parse_label(raw_label)
            if label is None:
                reason = "unknown_label"
        if reason:
            bad[reason] += 1
            if len(bad["examples"]) < MAX_BAD_EXAMPLES:
                bad["examples"].append({"row": index, "reason": reason, "text": _short(text), "label": repr(raw_label)})
            continue
        if cfg.limit is None or len(texts) < cfg.limit:
            texts.append(text.strip())
            labels.append(label)
    n_bad = bad["empty_text"] + bad["unknown_label"]
    if n_bad / total > cfg.max_bad_share:
        raise EvalDataError(
            f"eval source {source}: {n_bad} of {total} rows are unusable ({bad['empty_text']} empty text, "
            f"{bad['unknown_label']} unknown label; labels must be 0/1, 负面/正面 or negative/positive), more than "
            f"eval.max_bad_share={cfg.max_bad_share}. First ones: {bad['examples']}"
        )
    if n_bad:
        logger.warning("eval source %s: dropped %d of %d rows (%s)", source, n_bad, total, bad)
    if not texts:
        raise EvalDataError(f"eval source {source} has no usable rows")
    return EvalSet(texts=texts, labels=np.asarray(labels, dtype=np.int64), source=source, bad_rows=bad, total_rows=total)


def _short(value: Any, limit: int = 60) -> Any:
    if isinstance(value, str) and len(value) > limit:
        return value[:limit] + "…"
    return value if isinstance(value, (str, type(None))) else repr(value)

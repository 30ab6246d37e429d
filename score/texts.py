"""Which values are scorable texts, and scoring a batch of values into result columns (both engines).

A value that is not a scorable text is never dropped: its row keeps its place and gets ``error`` (why),
with no label, score or probabilities. What the model sees is the text exactly as given (no strip), as the
REST API's ``/predict`` does, so a row's answer equals the serving stub's for the same text.
"""

from __future__ import annotations

import math
import unicodedata
import zlib
from typing import Any, Optional, Sequence

import numpy as np
import pandas as pd

from structbert_lite.api import clip_for_model
from structbert_lite.runtime import predict_logits, softmax

# Characters that render as nothing: controls, format characters (zero-width space U+200B, joiners,
# BOM U+FEFF, word joiner U+2060), separators, private use and unassigned code points ...
INVISIBLE_CATEGORIES = frozenset({"Cc", "Cf", "Zs", "Zl", "Zp", "Co", "Cn"})
# ... and letters/symbols whose glyph is blank (Hangul fillers, braille blank, halfwidth Hangul filler).
BLANK_CHARACTERS = frozenset("\u115f\u1160\u3164\u2800\uffa0")


def prob_column(label: str) -> str:
    """The output column holding the probability of ``label`` (Negative -> prob_negative)."""
    return f"prob_{label.lower()}"


def result_columns(labels: Sequence[str]) -> list[str]:
    """The columns scoring adds to every row, in output order."""
    return ["label", "score", *(prob_column(label) for label in labels), "error"]


def _is_visible(ch: str) -> bool:
    return ch not in BLANK_CHARACTERS and unicodedata.category(ch) not in INVISIBLE_CATEGORIES


def text_problem(value: Any) -> Optional[str]:
    """Why ``value`` cannot be scored (one short phrase for the ``error`` column), or None when it can."""
    if isinstance(value, np.generic):  # numpy scalars read from Parquet: judge the Python value
        value = value.item()
    if value is None or (isinstance(value, float) and math.isnan(value)) or value is pd.NA:
        return "missing text"
    if not isinstance(value, str):
        return f"text is a {type(value).__name__}, not a string"
    if not value:
        return "empty text"
    if not any(_is_visible(ch) for ch in value):
        return "text has no visible characters"
    try:
        value.encode("utf-8")
    except UnicodeEncodeError as exc:  # JSON may carry "\ud800": a lone surrogate the tokenizer cannot take
        return f"text holds an unpaired surrogate at character {exc.start}"
    return None


def score_values(classifier, values: Sequence[Any], batch_size: int) -> pd.DataFrame:
    """Result columns (`result_columns`) for ``values``, one row each, in order.

    Scorable texts go through `runtime.predict_logits` (length-sorted batches, dynamic padding; a variant
    that is not batch-invariant runs one text at a time), so a row's answer never depends on its neighbours
    beyond float noise. ``score`` is the probability of ``label``, as the REST API reports it.
    """
    labels = list(classifier.labels)
    errors = [text_problem(v) for v in values]
    good = [i for i, e in enumerate(errors) if e is None]
    probs = np.full((len(values), len(labels)), np.nan, dtype=np.float64)  # (rows, num_labels)
    if good:
        texts = clip_for_model(classifier, [values[i] for i in good])  # what the model can see, as serve cuts
        logits = predict_logits(classifier, texts, batch_size)  # (good rows, num_labels)
        probs[good] = softmax(logits)
    best = np.where(np.isnan(probs[:, 0]), -1, np.nan_to_num(probs, nan=-1.0).argmax(axis=-1))  # (rows,)
    columns: dict[str, Any] = {
        "label": [labels[b] if b >= 0 else None for b in best],
        "score": np.where(best >= 0, probs[np.arange(len(values)), np.maximum(best, 0)], np.nan),
    }
    for j, label in enumerate(labels):
        columns[prob_column(label)] = probs[:, j]
    columns["error"] = errors
    return pd.DataFrame(columns)


def row_key(value: Any) -> int:
    """A checksum of one row's text value: lets the driver check that results come back to their own rows."""
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, str):
        return zlib.crc32(value.encode("utf-8", "surrogatepass"))
    return -1 if text_problem(value) == "missing text" else -2

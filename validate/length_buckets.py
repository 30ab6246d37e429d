"""Long reviews: accuracy and agreement by token-length bucket, and how many texts truncation cut.

Buckets are by the *untruncated* token count (``[CLS]`` and ``[SEP]`` included): ≤64, ≤128, ≤256, >256. A
review longer than ``max_length`` loses its end (ModelScope's way) or, with ``model.truncation: head+tail``,
its middle; `compare_truncation` measures both on the texts that are cut, with the same model.
"""

from __future__ import annotations

from typing import Any, Callable, Optional, Sequence

import numpy as np

BUCKETS = ((64, "≤64"), (128, "≤128"), (256, "≤256"), (None, ">256"))


def token_lengths(tokenizer, texts: Sequence[str]) -> np.ndarray:
    """Untruncated token counts of ``texts`` (a copy of the tokenizer with truncation and padding off)."""
    from tokenizers import Tokenizer

    counter = Tokenizer.from_str(tokenizer.to_str())
    counter.no_truncation()
    counter.no_padding()
    return np.asarray([len(e.ids) for e in counter.encode_batch(list(texts))], dtype=np.int64)


def bucket_of(lengths: np.ndarray) -> np.ndarray:
    labels = np.empty(len(lengths), dtype=object)
    lower = 0
    for upper, name in BUCKETS:
        mask = (lengths > lower) if upper is None else ((lengths > lower) & (lengths <= upper))
        labels[mask] = name
        lower = upper or lower
    return labels


def by_bucket(
    lengths: np.ndarray, gold: np.ndarray, baseline: np.ndarray, variants: dict[str, np.ndarray], max_length: int
) -> dict[str, Any]:
    """``{truncated_share, max_length, buckets: [{bucket, rows, baseline_accuracy, variants: {name: {accuracy,
    agreement}}}]}`` from logits arrays (rows, labels)."""
    buckets = bucket_of(lengths)
    base_pred = baseline.argmax(-1)
    rows = []
    for _, name in BUCKETS:
        mask = buckets == name
        if not mask.any():
            rows.append({"bucket": name, "rows": 0})
            continue
        entry = {"bucket": name, "rows": int(mask.sum()),
                 "baseline_accuracy": float((base_pred[mask] == gold[mask]).mean())}
        entry["variants"] = {
            v: {
                "accuracy": float((logits.argmax(-1)[mask] == gold[mask]).mean()),
                "agreement": float((logits.argmax(-1)[mask] == base_pred[mask]).mean()),
            }
            for v, logits in variants.items()
        }
        rows.append(entry)
    return {"max_length": max_length, "truncated_share": float((lengths > max_length).mean()) if len(lengths) else 0.0,
            "truncated_rows": int((lengths > max_length).sum()), "buckets": rows}


def compare_truncation(
    score: Callable[[Sequence[str], str], np.ndarray], texts: Sequence[str], gold: np.ndarray,
    lengths: np.ndarray, max_length: int,
) -> Optional[dict[str, Any]]:
    """Accuracy of ``head`` vs ``head+tail`` truncation on the texts longer than ``max_length``.

    ``score(texts, truncation)`` returns logits with the given truncation. None when no text is cut.
    """
    long_idx = np.flatnonzero(lengths > max_length)
    if len(long_idx) == 0:
        return None
    long_texts = [texts[i] for i in long_idx]
    result = {"rows": int(len(long_idx))}
    for mode in ("head", "head+tail"):
        result[mode] = float((score(long_texts, mode).argmax(-1) == gold[long_idx]).mean())
    return result

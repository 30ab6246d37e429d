"""Does a text's answer depend on the texts it is batched with? Measured, not assumed.

Each text is scored alone (batch 1, no padding) and inside mixed-length batches (padded to the longest,
neighbours of other lengths); the largest probability change and the label flips between the two decide
whether the variant is batch-invariant. Dynamic int8 is not (one activation scale per batch tensor:
DESIGN.md measured |Δscore| 3.3e-3 and a flipped borderline label); FP32 graphs are, up to float noise.
The runtime serves a variant that is not one text at a time, so served answers never depend on neighbours.
"""

from __future__ import annotations

import logging
from typing import Any, Sequence

import numpy as np

from structbert_lite.runtime import encode, softmax

logger = logging.getLogger(__name__)

BATCH_SIZE = 8


def mixed_batches(texts: Sequence[str], batch_size: int = BATCH_SIZE) -> list[list[int]]:
    """Index batches that mix short and long texts (so every batch is padded): longest with shortest, …"""
    order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
    mixed = []
    lo, hi = 0, len(order) - 1
    while lo <= hi:
        mixed.append(order[hi])
        if lo != hi:
            mixed.append(order[lo])
        lo, hi = lo + 1, hi - 1
    return [mixed[i : i + batch_size] for i in range(0, len(mixed), batch_size)]


def measure_batch_invariance(classifier, texts: Sequence[str], max_score_diff: float) -> dict[str, Any]:
    """``{invariant, max_abs_score_diff, label_flips, rows, batch_size}`` for ``classifier`` on ``texts``.

    ``classifier`` is scored directly through ``logits_for_encoding`` (batched, whatever its flag says).
    """
    texts = list(texts)
    alone = np.concatenate([classifier.logits_for_encoding(encode(classifier.tokenizer, [t])) for t in texts])
    batched = np.zeros_like(alone)
    for idx in mixed_batches(texts):
        batched[idx] = classifier.logits_for_encoding(encode(classifier.tokenizer, [texts[i] for i in idx]))
    p_alone, p_batched = softmax(alone.astype(np.float64)), softmax(batched.astype(np.float64))
    diff = float(np.max(np.abs(p_alone - p_batched))) if len(texts) else 0.0
    flips = int(np.sum(p_alone.argmax(-1) != p_batched.argmax(-1)))
    result = {
        "invariant": bool(diff <= max_score_diff and flips == 0),
        "max_abs_score_diff": diff,
        "label_flips": flips,
        "rows": len(texts),
        "batch_size": BATCH_SIZE,
        "limit": max_score_diff,
    }
    logger.info(
        "batch invariance: max |Δscore| %.2e, %d label flip(s) over %d texts → %s",
        diff, flips, len(texts), "invariant" if result["invariant"] else "served one text at a time",
    )
    return result

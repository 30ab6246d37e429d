"""The inputs every contender sees, built the same way for validate and bench.

- `synthetic_feed`: valid ids of exactly ``batch x seq_len`` tokens (``[CLS] … [SEP]``, no padding), seeded by
  the point, so every contender and every round times the same tensor;
- `bucket_feeds`: real texts in length-sorted batches with dynamic padding (what a batching server sends);
- `exact_length_feeds`: real texts grouped by exact token length, unpadded (invariant batching: every row's answer
  equals its answer alone on engines that hold equal-length invariance, e.g. OpenVINO int8);
- `calibration_feeds`: one text per feed, unpadded, tokenized as served (NNCF calibration).

Torch-free: ``tokenizer`` is a `tokenizers.Tokenizer` from `runtime.load_tokenizer`.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from structbert_lite.constants import SPECIAL_TOKENS
from structbert_lite.runtime import encode


def synthetic_feed(tokenizer, batch: int, seq_len: int, seed: int = 0) -> dict[str, np.ndarray]:
    """Inputs of exactly ``seq_len`` tokens: [CLS] + random ordinary token ids + [SEP], attention all ones.

    The ids depend only on (vocabulary, batch, seq_len, seed), never on which contender asks.
    """
    vocab_size = tokenizer.get_vocab_size()
    special = {tokenizer.token_to_id(t) for t in SPECIAL_TOKENS} - {None}
    ordinary = np.setdiff1d(np.arange(vocab_size), np.fromiter(special, dtype=np.int64))
    rng = np.random.default_rng([seed, batch, seq_len])
    ids = rng.choice(ordinary, size=(batch, seq_len)).astype(np.int64)  # (batch, seq)
    cls_id, sep_id = tokenizer.token_to_id("[CLS]"), tokenizer.token_to_id("[SEP]")
    if cls_id is not None and sep_id is not None and seq_len >= 2:
        ids[:, 0], ids[:, -1] = cls_id, sep_id
    return {
        "input_ids": ids,
        "attention_mask": np.ones_like(ids),  # (batch, seq)
        "token_type_ids": np.zeros_like(ids),  # (batch, seq)
    }


def length_order(tokenizer, texts: Sequence[str]) -> list[int]:
    """Indices of ``texts`` sorted by token count (ties by position), truncation included."""
    lengths = [sum(e.attention_mask) for e in tokenizer.encode_batch(list(texts))]  # padding is not length
    return sorted(range(len(texts)), key=lambda i: (lengths[i], i))


def bucket_feeds(tokenizer, texts: Sequence[str], batch_size: int) -> list[dict[str, np.ndarray]]:
    """Length-sorted batches of ``texts`` with dynamic padding (padding grows batch by batch)."""
    order = length_order(tokenizer, texts)
    return [encode(tokenizer, [texts[i] for i in order[s : s + batch_size]]) for s in range(0, len(order), batch_size)]


def exact_length_feeds(tokenizer, texts: Sequence[str], batch_size: int) -> list[dict[str, np.ndarray]]:
    """Batches of at most ``batch_size`` texts of exactly the same token count: no row is ever padded."""
    lengths = [sum(e.attention_mask) for e in tokenizer.encode_batch(list(texts))]
    groups: dict[int, list[int]] = {}
    for i in sorted(range(len(texts)), key=lambda i: (lengths[i], i)):
        groups.setdefault(lengths[i], []).append(i)
    return [encode(tokenizer, [texts[i] for i in idx[s : s + batch_size]])
            for idx in groups.values() for s in range(0, len(idx), batch_size)]


def calibration_feeds(tokenizer, texts: Sequence[str], count: int) -> list[dict[str, np.ndarray]]:
    """The first ``count`` texts, one per feed, unpadded: what a served request looks like."""
    return [encode(tokenizer, [text]) for text in list(texts)[:count]]

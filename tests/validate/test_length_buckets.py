"""validate/length_buckets.py on hand-made lengths and logits: bucket edges, per-bucket accuracy and agreement,
the truncated share, and the head vs head+tail comparison on the cut texts only."""

from __future__ import annotations

import numpy as np

from structbert_lite.validate.length_buckets import bucket_of, by_bucket, compare_truncation, token_lengths


def logits_for(labels) -> np.ndarray:
    """(rows, 2) logits whose argmax is ``labels``."""
    return np.eye(2, dtype=np.float32)[np.asarray(labels)]


def test_bucket_edges_are_inclusive_above():
    lengths = np.array([1, 64, 65, 128, 129, 256, 257, 4000])
    assert list(bucket_of(lengths)) == ["≤64", "≤64", "≤128", "≤128", "≤256", "≤256", ">256", ">256"]


def test_by_bucket_counts_accuracy_and_agreement_per_bucket():
    lengths = np.array([10, 20, 100, 300])
    gold = np.array([0, 1, 1, 0])
    baseline = logits_for([0, 1, 0, 0])  # wrong on the ≤128 text
    variant = logits_for([0, 0, 1, 0])  # wrong on one ≤64 text, right where the baseline is not
    result = by_bucket(lengths, gold, baseline, {"int8": variant}, max_length=128)
    assert result["truncated_rows"] == 1 and result["truncated_share"] == 0.25 and result["max_length"] == 128
    buckets = {b["bucket"]: b for b in result["buckets"]}
    assert buckets["≤64"]["rows"] == 2 and buckets["≤64"]["baseline_accuracy"] == 1.0
    assert buckets["≤64"]["variants"]["int8"] == {"accuracy": 0.5, "agreement": 0.5}
    assert buckets["≤128"]["baseline_accuracy"] == 0.0 and buckets["≤128"]["variants"]["int8"]["accuracy"] == 1.0
    assert buckets["≤256"] == {"bucket": "≤256", "rows": 0}  # an empty bucket is listed, with no figures
    assert buckets[">256"]["variants"]["int8"]["agreement"] == 1.0


def test_compare_truncation_scores_only_the_cut_texts():
    seen = []

    def score(texts, mode):
        seen.append((list(texts), mode))
        return logits_for([1] * len(texts) if mode == "head+tail" else [0] * len(texts))

    texts = ["short", "long one", "longer one"]
    result = compare_truncation(score, texts, np.array([0, 1, 1]), np.array([5, 200, 300]), max_length=128)
    assert result == {"rows": 2, "head": 0.0, "head+tail": 1.0}
    assert seen == [(["long one", "longer one"], "head"), (["long one", "longer one"], "head+tail")]
    assert compare_truncation(score, texts, np.array([0, 1, 1]), np.array([5, 6, 7]), max_length=128) is None


def test_token_lengths_ignore_the_tokenizers_truncation(tmp_path):
    from tokenizers import Tokenizer, models, pre_tokenizers

    tokenizer = Tokenizer(models.WordLevel({"[UNK]": 0, "a": 1}, unk_token="[UNK]"))
    tokenizer.pre_tokenizer = pre_tokenizers.Whitespace()
    tokenizer.enable_truncation(max_length=2)
    assert list(token_lengths(tokenizer, ["a", "a a a a", ""])) == [1, 4, 0]
    assert len(tokenizer.encode("a a a a").ids) == 2  # the tokenizer itself still truncates

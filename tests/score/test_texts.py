"""Which values are scorable, and that a scored row is exactly what the runtime answers for that text alone."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from score_support import make_texts

from structbert_lite.runtime import open_variant, softmax
from structbert_lite.score.texts import result_columns, row_key, score_values, text_problem


@pytest.mark.parametrize(
    "value, problem",
    [
        ("好", None), (" 好 ", None), ("\u200b好", None), ("é", None),
        (None, "missing text"), (math.nan, "missing text"), (np.float64("nan"), "missing text"),
        (pd.NA, "missing text"),
        ("", "empty text"),
        (" \t\n", "text has no visible characters"),
        ("\u3000\u200b\ufeff\u2060\u00ad", "text has no visible characters"),
        ("\u3164\u2800", "text has no visible characters"), ("\x00\x07", "text has no visible characters"),
        (5, "text is a int, not a string"), (np.int64(5), "text is a int, not a string"),
        (1.5, "text is a float, not a string"), (True, "text is a bool, not a string"),
        (["好"], "text is a list, not a string"), (b"x", "text is a bytes, not a string"),
        ("a\ud800", "text holds an unpaired surrogate at character 1"),
    ],
)
def test_text_problem(value, problem):
    assert text_problem(value) == problem


def test_row_key_tells_texts_apart_and_ignores_numpy_wrapping():
    assert row_key("好") == row_key(np.str_("好")) != row_key("差")
    assert row_key(None) == row_key(math.nan) == -1 and row_key(5) == -2
    assert row_key("\ud800") != row_key("\ud801")  # lone surrogates still get a key


@pytest.mark.parametrize("variant", ["fp32_variant", "int8_variant"])
def test_scored_rows_equal_the_runtime_on_each_text_alone(variant, request):
    folder = request.getfixturevalue(variant)
    classifier = open_variant(folder, threads=1)
    texts = make_texts(40, seed=7, longest=60)
    values = texts[:10] + [None, "", 3] + texts[10:]
    results = score_values(classifier, values, batch_size=8)
    columns = ["label", "score", "prob_negative", "prob_positive", "error"]
    assert list(results.columns) == result_columns(classifier.labels) == columns
    good = results[results["error"].isna()]
    assert len(good) == len(texts)
    # (texts, labels)
    alone = np.stack([softmax(classifier.logits_for_encoding(_encode(classifier, t)))[0] for t in texts])
    probs = good[["prob_negative", "prob_positive"]].to_numpy()
    atol = 0.0 if not classifier.batch_invariant else 1e-6  # int8 runs one text at a time: bit for bit
    assert np.allclose(probs, alone, atol=atol, rtol=0), np.abs(probs - alone).max()
    assert good["label"].tolist() == [classifier.labels[i] for i in alone.argmax(axis=1)]
    assert np.array_equal(good["score"].to_numpy(), probs.max(axis=1))
    bad = results.iloc[10:13]
    assert bad["label"].isna().all() and bad["score"].isna().all()
    assert bad["error"].tolist() == ["missing text", "empty text", "text is a int, not a string"]


def _encode(classifier, text):
    from structbert_lite.runtime import encode

    return encode(classifier.tokenizer, [text])

"""score and load() cut a text to what the model can see before tokenizing (`api.clip_text`): same answers."""

from __future__ import annotations

import numpy as np
import pytest

from tests.serve.serve_support import CHARS, build_tiny_variant


@pytest.mark.parametrize("truncation", ["head", "head+tail"])
def test_cut_texts_score_as_the_whole_texts(tmp_path, truncation):
    from structbert_lite.runtime import open_variant, predict_logits, softmax
    from structbert_lite.score.texts import score_values

    folder = build_tiny_variant(tmp_path / "tiny")
    classifier = open_variant(folder, max_length=64, truncation=truncation)
    texts = ["".join(CHARS[(i * k) % len(CHARS)] for i in range(n)) for k, n in ((7, 30), (11, 3000), (13, 60_000))]
    whole = softmax(predict_logits(classifier, texts, 1))
    scored = score_values(classifier, texts, 8)
    np.testing.assert_allclose(scored["score"].to_numpy(), whole.max(axis=1), atol=1e-6)

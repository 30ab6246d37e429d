"""How texts share a model call follows the manifest's two measured properties; equal-length batches are
exactly the texts' own encodings (a recording classifier: no model needed to check what each call gets)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from structbert_lite.runtime import (
    EQUAL_LENGTH,
    PADDED,
    SINGLE,
    batching_mode,
    encode,
    is_batch_invariant,
    is_equal_length_invariant,
    load_tokenizer,
    predict_logits,
)

SPECIAL = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
CHARS = "一二三四五六七八九十好差"
TEXTS = ["一二", "好", "三四", "差差差差", "五六", "七", "八九十好", "十", "一二三四五六七八九十好差" * 3]


@pytest.fixture(scope="module")
def tokenizer(tmp_path_factory):
    from structbert_lite.convert.tokenizer_files import write_tokenizer_files

    folder = tmp_path_factory.mktemp("tok")
    (folder / "vocab.txt").write_text("\n".join(SPECIAL + list(CHARS)) + "\n", encoding="utf-8")
    write_tokenizer_files(folder / "vocab.txt", folder, 128)
    return load_tokenizer(folder, 16)


class Recorder:
    """Answers each row with a function of its own tokens alone and records every call's feed."""

    labels = ["Negative", "Positive"]

    def __init__(self, tokenizer, batch_invariant: bool, equal_length_invariant: bool):
        self.tokenizer, self.batch_invariant = tokenizer, batch_invariant
        self.equal_length_invariant = equal_length_invariant
        self.calls: list[dict] = []

    def logits_for_encoding(self, feed):
        self.calls.append(feed)
        ids = feed["input_ids"] * feed["attention_mask"]
        return np.stack([ids.sum(1), (ids * np.arange(ids.shape[1])).sum(1)], axis=1).astype(np.float32)


@pytest.mark.parametrize(("manifest", "mode"), [
    ({}, PADDED),  # nothing measured, not dynamic int8
    ({"quantization": {"tool": "onnxruntime.quantization.quantize_dynamic"}}, SINGLE),
    ({"batch_invariance": {"invariant": False, "equal_length": {"invariant": True}}}, EQUAL_LENGTH),
    ({"batch_invariance": {"invariant": False, "equal_length": {"invariant": False}}}, SINGLE),
    ({"batch_invariance": {"invariant": False, "equal_length": {"invariant": "yes"}}}, SINGLE),  # not a bool
    ({"batch_invariance": {"invariant": True, "equal_length": {"invariant": True}}}, EQUAL_LENGTH),  # exact wins
    ({"batch_invariance": {"invariant": True, "equal_length": {"invariant": False}}}, PADDED),
])
def test_the_mode_is_the_measurement(manifest, mode, tokenizer):
    manifest = json.loads(json.dumps(manifest))
    classifier = Recorder(tokenizer, is_batch_invariant(manifest), is_equal_length_invariant(manifest))
    assert batching_mode(classifier) == mode


def test_equal_length_calls_hold_one_exact_length_each_unpadded_and_equal_the_texts_alone(tokenizer):
    classifier = Recorder(tokenizer, batch_invariant=False, equal_length_invariant=True)
    got = predict_logits(classifier, TEXTS, batch_size=2)
    lengths = {t: len(encode(tokenizer, [t])["input_ids"][0]) for t in TEXTS}
    # 3 texts of 3 tokens, 3 of 4, 2 of 6, 1 of 16, by 2
    assert sorted(f["input_ids"].shape[0] for f in classifier.calls) == [1, 1, 1, 2, 2, 2]
    for feed in classifier.calls:
        assert feed["attention_mask"].all() and not feed["token_type_ids"].any()  # no padding
        rows = [t for t in TEXTS if lengths[t] == feed["input_ids"].shape[1]]
        alone = {tuple(encode(tokenizer, [t])["input_ids"][0]) for t in rows}
        assert {tuple(r) for r in feed["input_ids"]} <= alone  # each row is a text's own encoding
    reference = np.concatenate([Recorder(tokenizer, False, False).logits_for_encoding(encode(tokenizer, [t]))
                                for t in TEXTS])
    assert np.array_equal(got, reference)


def test_single_runs_one_text_per_call_and_padded_pads(tokenizer):
    single = Recorder(tokenizer, batch_invariant=False, equal_length_invariant=False)
    predict_logits(single, TEXTS, batch_size=8)
    assert [f["input_ids"].shape[0] for f in single.calls] == [1] * len(TEXTS)
    padded = Recorder(tokenizer, batch_invariant=True, equal_length_invariant=False)
    predict_logits(padded, TEXTS, batch_size=8)
    assert [f["input_ids"].shape[0] for f in padded.calls] == [8, 1] and not padded.calls[0]["attention_mask"].all()

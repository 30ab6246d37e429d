"""The torch-free runtime's tokenizer: plain (head) and head+tail truncation, token by token; manifest settings."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from structbert_lite.errors import ArtifactError, ConfigError
from structbert_lite.runtime import (
    HeadTailTokenizer,
    encode,
    head_tail_split,
    load_tokenizer,
    manifest_truncation,
    read_checkpoint_labels,
    read_label_names,
)

SPECIAL = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
CHARS = "一二三四五六七八九十甲乙丙丁戊己庚辛壬癸好差"
PAD, UNK, CLS, SEP = 0, 1, 2, 3


def char_id(ch: str) -> int:
    return len(SPECIAL) + CHARS.index(ch)


@pytest.fixture(scope="module")
def tok_dir(tmp_path_factory) -> Path:
    from structbert_lite.convert.tokenizer_files import write_tokenizer_files

    folder = tmp_path_factory.mktemp("tok")
    (folder / "vocab.txt").write_text("\n".join(SPECIAL + list(CHARS)) + "\n", encoding="utf-8")
    write_tokenizer_files(folder / "vocab.txt", folder, 128)
    (folder / "config.json").write_text(json.dumps({"id2label": {"0": "负面", "1": "正面"}}), encoding="utf-8")
    return folder


@pytest.mark.parametrize(("max_length", "split"), [
    (128, (32, 94)),  # 126 content tokens, a quarter head
    (512, (128, 382)),  # Sun et al. 2019's 128 + 382 exactly
    (16, (4, 10)),
    (3, (0, 1)),
])
def test_head_tail_split_keeps_the_literature_ratio(max_length, split):
    assert head_tail_split(max_length) == split
    assert sum(split) == max_length - 2


def test_head_truncation_keeps_cls_the_first_tokens_and_sep(tok_dir):
    text = CHARS[:20]  # 20 characters, one token each
    enc = encode(load_tokenizer(tok_dir, 10), [text])
    assert enc["input_ids"].tolist() == [[CLS] + [char_id(c) for c in CHARS[:8]] + [SEP]]


def test_head_tail_keeps_cls_first_and_last_tokens_and_sep_exactly(tok_dir):
    text = CHARS[:20]
    tokenizer = load_tokenizer(tok_dir, 10, truncation="head+tail")
    assert isinstance(tokenizer, HeadTailTokenizer) and (tokenizer.head, tokenizer.tail) == (2, 6)
    enc = encode(tokenizer, [text])
    expected = [CLS] + [char_id(c) for c in CHARS[:2]] + [char_id(c) for c in CHARS[14:20]] + [SEP]
    assert enc["input_ids"].tolist() == [expected]
    assert enc["attention_mask"].tolist() == [[1] * 10]
    assert enc["token_type_ids"].tolist() == [[0] * 10]


def test_head_tail_counts_word_pieces_not_characters(tok_dir):
    # Unknown characters and ASCII become [UNK] tokens; whitespace is no token at all.
    text = "一 二 x 三四五六七八九十甲乙 丙丁"
    enc = encode(load_tokenizer(tok_dir, 8, truncation="head+tail"), [text])  # head 2 (round(6/4)=2), tail 4
    content = [char_id("一"), char_id("二"), UNK] + [char_id(c) for c in "三四五六七八九十甲乙丙丁"]
    assert enc["input_ids"].tolist() == [[CLS] + content[:2] + content[-4:] + [SEP]]


def test_texts_within_the_limit_encode_exactly_as_with_plain_truncation(tok_dir):
    texts = ["一二三", "好", CHARS[:8], "差差 差", "x"]
    plain = encode(load_tokenizer(tok_dir, 10), texts)
    head_tail = encode(load_tokenizer(tok_dir, 10, truncation="head+tail"), texts)
    for key in plain:
        assert head_tail[key].tolist() == plain[key].tolist(), key


def test_head_tail_pads_a_mixed_batch_to_its_longest_text(tok_dir):
    enc = encode(load_tokenizer(tok_dir, 10, truncation="head+tail"), ["好", CHARS[:20], "一二"])
    assert enc["input_ids"].shape == (3, 10)
    assert enc["input_ids"][0].tolist() == [CLS, char_id("好"), SEP] + [PAD] * 7
    assert enc["attention_mask"][0].tolist() == [1, 1, 1] + [0] * 7
    assert enc["attention_mask"][2].tolist() == [1] * 4 + [0] * 6
    short_only = encode(load_tokenizer(tok_dir, 10, truncation="head+tail"), ["好", "一二"])
    assert short_only["input_ids"].shape == (2, 4)  # padded to the longest of this batch, not to max_length


def test_head_tail_tokenizer_exposes_the_wrapped_tokenizers_methods(tok_dir):
    tokenizer = load_tokenizer(tok_dir, 10, truncation="head+tail")
    assert tokenizer.token_to_id("[CLS]") == CLS and tokenizer.get_vocab_size() == len(SPECIAL) + len(CHARS)


def test_unknown_truncation_is_a_config_error(tok_dir):
    with pytest.raises(ConfigError, match="truncation must be one of head, head\\+tail; got 'tail'"):
        load_tokenizer(tok_dir, 10, truncation="tail")


@pytest.mark.parametrize(("manifest", "expected"), [
    ({}, "head"),
    ({"config": {"model": {"max_length": 64}}}, "head"),
    ({"config": {"model": {"truncation": "head+tail"}}}, "head+tail"),
    ({"config": None}, "head"),
])
def test_manifest_truncation(manifest, expected):
    assert manifest_truncation(manifest) == expected


def test_manifest_with_an_unknown_truncation_is_refused():
    with pytest.raises(ArtifactError, match="config.model.truncation is 'middle'"):
        manifest_truncation({"config": {"model": {"truncation": "middle"}}})


def test_label_names_from_config(tok_dir):
    assert read_checkpoint_labels(tok_dir) == ["负面", "正面"]
    assert read_label_names(tok_dir) == ["Negative", "Positive"]


def test_open_variant_takes_truncation_from_the_manifest_unless_overridden(tmp_path):
    from structbert_lite.artifact import write_manifest
    from structbert_lite.runtime import open_variant
    from tests.builders import TINY_VOCAB, export_variant, tiny_model

    folder = export_variant(tiny_model(), tmp_path / "fp32", TINY_VOCAB)
    write_manifest(folder, {"name": "t", "variant": "fp32",
                            "config": {"model": {"max_length": 16, "truncation": "head+tail"}}})
    classifier = open_variant(folder)
    assert (classifier.truncation, classifier.max_length) == ("head+tail", 16)
    assert isinstance(classifier.tokenizer, HeadTailTokenizer)
    assert open_variant(folder, truncation="head").truncation == "head"
    long_text = "".join(TINY_VOCAB[5:]) * 3
    cut = encode(classifier.tokenizer, [long_text])["input_ids"][0].tolist()
    full = load_tokenizer(folder, 10_000).encode(long_text).ids
    assert len(cut) == 16 and cut == full[:1 + 4] + full[-(10 + 1):]  # 14 content tokens: 4 head + 10 tail


@pytest.mark.parametrize(("manifest", "invariant"), [
    ({}, True),  # fp32: no quantization block
    ({"quantization": {"tool": "onnxruntime.quantization.quantize_dynamic"}}, False),  # the graph's nature
    ({"quantization": {"tool": "onnxruntime.quantization.quantize_dynamic"},
      "batch_invariance": {"invariant": True, "max_abs_score_diff": 0.0, "label_flips": 0}}, True),  # measured
    ({"batch_invariance": {"invariant": False, "max_abs_score_diff": 3e-3, "label_flips": 1}}, False),  # measured
    ({"quantization": {"tool": "onnxruntime.quantization.quantize_dynamic"},
      "batch_invariance": {"invariant": "yes"}}, False),  # not a bool: the measurement is ignored
])
def test_batch_invariance_is_the_measurement_else_the_graphs_nature(manifest, invariant):
    from structbert_lite.runtime import is_batch_invariant

    assert is_batch_invariant(manifest) is invariant

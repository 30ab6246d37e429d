"""structbert_lite.load(folder): ModelScope's pipeline answer shape, from the same logits, without torch.

ModelScope's reference is `TextClassificationPipeline.postprocess` (modelscope 1.40.2,
modelscope/pipelines/nlp/text_classification_pipeline.py) and its preprocessor's tokenizer call
(`TextClassificationTransformersPreprocessor`: truncation=True, padding="max_length", max_length). Importing
that pipeline needs ModelScope's full library extras (addict, ...), which this toolkit does not install, so the
two are restated below line by line and applied to the PyTorch model itself.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from structbert_lite.api import label_score_answer, modelscope_answer

TEXTS = ["这部电影太好看了", "质量太差了再也不买", "好", "服务一般，价格还可以，总的来说不错" * 3, "失望"]
ID2LABEL = {0: "负面", 1: "正面"}


def modelscope_postprocess(logits: np.ndarray, id2label: dict) -> dict:
    """TextClassificationPipeline.postprocess (modelscope 1.40.2) for one text's logits, as written there."""
    def softmax(logits):
        exp = np.exp(logits - np.max(logits, axis=-1, keepdims=True))
        return exp / exp.sum(axis=-1, keepdims=True)

    probs = softmax(logits)
    topk = probs.shape[-1]
    top_indices = np.argpartition(probs, -topk)[-topk:]
    probs = np.take_along_axis(probs, top_indices, axis=-1).tolist()
    labels = np.vectorize(lambda i: id2label[i])(top_indices).tolist()
    return {"scores": list(reversed(probs)), "labels": list(reversed(labels))}


@pytest.fixture(scope="module")
def variant(tmp_path_factory):
    """A tiny exported classifier and its PyTorch model (max_length 128, as ModelScope's preprocessor default)."""
    from structbert_lite.artifact import write_manifest
    from tests.builders import TINY_VOCAB, export_variant, tiny_model

    model = tiny_model(seed=3)
    folder = export_variant(model, tmp_path_factory.mktemp("api") / "fp32", TINY_VOCAB)
    (folder / "README.md").write_text("# tiny\n", encoding="utf-8")  # load() verifies the folder as serve does
    write_manifest(folder, {"name": "tiny", "variant": "fp32", "config": {"model": {"max_length": 128}}})
    return folder, model


def modelscope_reference(folder: Path, model, texts: list[str], max_length: int = 128) -> list[dict]:
    """What ModelScope's pipeline answers with this checkpoint: its tokenizer call, the torch model, postprocess."""
    import torch
    from transformers import BertTokenizerFast

    tokenizer = BertTokenizerFast(vocab_file=str(folder / "vocab.txt"), do_lower_case=True)
    answers = []
    for text in texts:  # ModelScope's pipeline runs a list one text at a time
        inputs = tokenizer(text, truncation=True, padding="max_length", max_length=max_length, return_tensors="pt")
        with torch.no_grad():
            logits = model(**inputs).logits.numpy()
        answers.append(modelscope_postprocess(logits[0], ID2LABEL))
    return answers


@pytest.mark.parametrize("logits", [[2.0, -1.0], [-3.0, 0.5], [0.0, 0.0], [10.0, -10.0], [1e-3, 0.0]])
def test_modelscope_answer_is_modelscopes_postprocess(logits):
    logits = np.asarray(logits, dtype=np.float32)
    exp = np.exp(logits - logits.max())
    ours = modelscope_answer((exp / exp.sum()).tolist(), ["负面", "正面"])
    theirs = modelscope_postprocess(logits, ID2LABEL)
    assert ours["labels"] == theirs["labels"] or logits[0] == logits[1]  # a tie may come in either order
    assert ours["scores"] == pytest.approx(theirs["scores"], abs=1e-7)
    assert ours["scores"] == sorted(ours["scores"], reverse=True) and sum(ours["scores"]) == pytest.approx(1.0)


def test_label_score_answer_is_the_rest_shape():
    assert label_score_answer([0.2, 0.8], ["负面", "正面"]) == {"label": "Positive", "score": 0.8}
    assert label_score_answer([0.9, 0.1], ["负面", "正面"]) == {"label": "Negative", "score": 0.9}


def test_load_answers_like_modelscopes_pipeline_for_the_same_checkpoint(variant):
    import structbert_lite

    folder, model = variant
    classify = structbert_lite.load(folder)
    expected = modelscope_reference(folder, model, TEXTS)
    got = classify(TEXTS)
    assert [g["labels"] for g in got] == [e["labels"] for e in expected]
    for g, e in zip(got, expected, strict=True):
        assert g["scores"] == pytest.approx(e["scores"], abs=1e-5)
        assert set(g["labels"]) == {"正面", "负面"}
    one = classify(TEXTS[0])
    assert isinstance(one, dict) and one["labels"] == got[0]["labels"]


def test_truncation_matches_modelscopes_preprocessor_at_max_length(variant):
    """A text longer than max_length: the same tokens as transformers' truncation=True, max_length=128."""
    from transformers import BertTokenizerFast

    from structbert_lite.runtime import encode

    folder, model = variant
    long_text = "这部电影太好看了" * 40  # 320 characters, cut to 126 + [CLS] + [SEP]
    classify = structbert_lite_load(folder)
    ours = encode(classify.classifier.tokenizer, [long_text])["input_ids"][0].tolist()
    theirs = BertTokenizerFast(vocab_file=str(folder / "vocab.txt"))(
        long_text, truncation=True, padding="max_length", max_length=128)["input_ids"]
    assert len(ours) == 128 and ours == theirs
    expected = modelscope_reference(folder, model, [long_text])[0]
    assert classify(long_text)["scores"] == pytest.approx(expected["scores"], abs=1e-5)


def structbert_lite_load(folder, **kwargs):
    import structbert_lite

    return structbert_lite.load(folder, **kwargs)


def test_predict_gives_the_rest_shape_with_english_labels(variant):
    folder, _ = variant
    classify = structbert_lite_load(folder)
    rest = classify.predict(TEXTS)
    drop_in = classify(TEXTS)
    for r, d in zip(rest, drop_in, strict=True):
        assert r["label"] == {"正面": "Positive", "负面": "Negative"}[d["labels"][0]]
        assert r["score"] == pytest.approx(d["scores"][0])
    assert classify.predict("好") == rest[2]


def test_answers_do_not_depend_on_the_other_texts_of_the_call(variant):
    folder, _ = variant
    classify = structbert_lite_load(folder)
    alone = [classify(t) for t in TEXTS]
    together = classify(TEXTS)
    for a, t in zip(alone, together, strict=True):
        assert a["labels"] == t["labels"] and a["scores"] == pytest.approx(t["scores"], abs=1e-6)


@pytest.mark.parametrize(("bad", "fragment"), [
    (5, "got int"),
    (b"bytes", "got bytes"),
    (["ok", None], r"texts\[1\] is a NoneType"),
    ({"text": "x"}, "got dict"),
])
def test_wrong_input_types_are_type_errors(variant, bad, fragment):
    with pytest.raises(TypeError, match=fragment):
        structbert_lite_load(variant[0])(bad)


def test_max_length_and_truncation_can_be_overridden(variant):
    folder, _ = variant
    classify = structbert_lite_load(folder, max_length=16, truncation="head+tail")
    assert (classify.classifier.max_length, classify.classifier.truncation) == (16, "head+tail")
    assert classify.labels == ["负面", "正面"]


def test_import_structbert_lite_stays_light_and_load_is_there():
    probe = ("import json, sys, structbert_lite; heavy = [m for m in ('numpy', 'onnxruntime', 'tokenizers', 'torch') "
             "if m in sys.modules]; from structbert_lite import load; print(json.dumps([heavy, load.__module__]))")
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == [[], "structbert_lite.api"]

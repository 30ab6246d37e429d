"""Strict checkpoint loading: both key layouts, the real ModelScope layout in all its forms (labels where
ModelScope looks for them), and every way a checkpoint can be wrong ending in one clear `CheckpointError`."""

from __future__ import annotations

import json
import logging

import pytest
import torch

from structbert_lite.convert.checkpoint import load_classifier, remap_key, save_checkpoint
from structbert_lite.errors import CheckpointError
from tests.builders import LABEL_PLACES, TINY_VOCAB, tiny_model, write_modelscope_checkpoint, write_tiny_checkpoint


def _logits(model, ids):
    with torch.inference_mode():
        return model(input_ids=ids, attention_mask=torch.ones_like(ids)).logits


@pytest.mark.parametrize(
    "key, expected",
    [
        ("head.classifier.weight", "classifier.weight"),
        ("encoder.embeddings.word_embeddings.weight", "bert.embeddings.word_embeddings.weight"),
        ("encoder.encoder.layer.3.output.dense.bias", "bert.encoder.layer.3.output.dense.bias"),
        ("encoder.layer.0.attention.self.query.weight", "bert.encoder.layer.0.attention.self.query.weight"),
        ("bert.embeddings.LayerNorm.gamma", "bert.embeddings.LayerNorm.weight"),
        ("bert.encoder.layer.1.output.LayerNorm.beta", "bert.encoder.layer.1.output.LayerNorm.bias"),
        ("bert.pooler.dense.weight", "bert.pooler.dense.weight"),
        ("classifier.bias", "classifier.bias"),
    ],
)
def test_remap_key(key, expected):
    assert remap_key(key)[0] == expected


@pytest.mark.parametrize("layout", ["transformers", "modelscope"])
def test_both_layouts_load_to_identical_logits(tmp_path, layout):
    model = tiny_model(seed=3)
    save_checkpoint(model, TINY_VOCAB, tmp_path / layout, layout=layout)
    loaded = load_classifier(tmp_path / layout)
    ids = torch.randint(5, len(TINY_VOCAB), (3, 11))
    torch.testing.assert_close(_logits(loaded.model, ids), _logits(model, ids), rtol=0, atol=0)
    assert loaded.id2label == {0: "负面", 1: "正面"}
    assert set(loaded.file_hashes) >= {"config.json", "pytorch_model.bin", "vocab.txt"}
    if layout == "modelscope":
        assert loaded.remapped["head.classifier.* -> classifier.*"] == 2


def test_gamma_beta_and_position_ids(tmp_path):
    model = tiny_model(seed=4)
    folder = save_checkpoint(model, TINY_VOCAB, tmp_path / "old")
    state = torch.load(folder / "pytorch_model.bin", weights_only=True)
    old = {}
    for key, value in state.items():
        key = key.replace("LayerNorm.weight", "LayerNorm.gamma").replace("LayerNorm.bias", "LayerNorm.beta")
        old[key] = value
    old["bert.embeddings.position_ids"] = torch.arange(256).unsqueeze(0)
    torch.save(old, folder / "pytorch_model.bin")
    loaded = load_classifier(folder)
    ids = torch.randint(5, len(TINY_VOCAB), (2, 9))
    torch.testing.assert_close(_logits(loaded.model, ids), _logits(model, ids), rtol=0, atol=0)


# ------------------------------------------------------------------------------ the real ModelScope layout
@pytest.mark.parametrize("place", LABEL_PLACES)
@pytest.mark.parametrize("model_type", ["structbert", "bert"])
def test_real_layout_labels_from_each_place(tmp_path, place, model_type):
    """configuration.json with the real blocks, config.json model_type structbert/bert, labels in one place."""
    folder = write_modelscope_checkpoint(tmp_path / "ckpt", labels=(place,), model_type=model_type)
    configuration = json.loads((folder / "configuration.json").read_text(encoding="utf-8"))
    assert configuration["model"]["backbone"]["type"] == "structbert" and configuration["task"] == "text-classification"
    loaded = load_classifier(folder)
    assert loaded.id2label == {0: "负面", 1: "正面"}
    expected_from = {"label_mapping": "label_mapping.json"}.get(place, place.replace("config.", "config.json ").replace(
        "model.", "configuration.json model.").replace("preprocessor.", "configuration.json preprocessor."))
    assert loaded.labels_from == expected_from


def test_real_layout_safetensors_and_same_logits_as_the_bin(tmp_path):
    bin_folder = write_modelscope_checkpoint(tmp_path / "bin", seed=7)
    st_folder = write_modelscope_checkpoint(tmp_path / "st", seed=7, weights="model.safetensors")
    ids = torch.randint(5, len(TINY_VOCAB), (2, 9))
    a, b = load_classifier(bin_folder), load_classifier(st_folder)
    assert b.weights_file == "model.safetensors"
    torch.testing.assert_close(_logits(a.model, ids), _logits(b.model, ids), rtol=0, atol=0)


def test_labels_follow_modelscope_order(tmp_path):
    """label_mapping.json wins over configuration.json, which wins over config.json (names may differ when
    the classes agree: 负面 and Negative are both the negative class)."""
    folder = write_modelscope_checkpoint(tmp_path / "ckpt", labels=("config.id2label",))
    (folder / "label_mapping.json").write_text(json.dumps({"Negative": 0, "Positive": 1}), encoding="utf-8")
    loaded = load_classifier(folder)
    assert loaded.id2label == {0: "Negative", 1: "Positive"} and loaded.labels_from == "label_mapping.json"


def test_labels_in_the_checkpoints_own_order_are_kept(tmp_path):
    """A checkpoint trained with 0 = 正面 keeps that order: labels are returned faithfully, never re-sorted."""
    folder = write_modelscope_checkpoint(tmp_path / "ckpt", id2label={0: "正面", 1: "负面"}, labels=LABEL_PLACES)
    assert load_classifier(folder).id2label == {0: "正面", 1: "负面"}


@pytest.mark.parametrize(
    "labels, id2label, extra, message",
    [
        (("label_mapping",), None, {"config.json": {"id2label": {"0": "正面", "1": "负面"}}},
         "disagree on what each class id means"),
        (("config.id2label",), None, {"config.json": {"label2id": {"正面": 0, "负面": 1}}}, "disagree"),
        ((), None, {}, "names no labels"),
        ((), None, {"config.json": {"id2label": {"0": "LABEL_0", "1": "LABEL_1"}}}, "names no labels"),
        (("config.id2label",), {0: "neutral", 1: "正面"}, {}, "not one negative and one positive"),
        (("config.id2label",), {0: "负面", 1: "正面", 2: "中性"}, {}, "has 3 labels"),
        ((), None, {"label_mapping.json": {"负面": 0, "正面": 2}}, "they must be 0..1"),
        ((), None, {"label_mapping.json": {"负面": "zero", "正面": 1}}, "ids must be integers"),
        ((), None, {"label_mapping.json": ["负面", "正面"]}, "holds a JSON list"),
    ],
    ids=["swapped-across-files", "id2label-vs-label2id", "none", "placeholders", "not-polarities", "three-labels",
         "gap-in-ids", "non-int-id", "mapping-is-a-list"],
)
def test_bad_labels_are_refused(tmp_path, labels, id2label, extra, message):
    folder = write_modelscope_checkpoint(tmp_path / "ckpt", labels=labels, id2label=id2label)
    for name, content in extra.items():
        path = folder / name
        data = json.loads(path.read_text(encoding="utf-8")) if name == "config.json" else {}
        if isinstance(content, dict) and name == "config.json":
            data.update(content)
        else:
            data = content
        path.write_text(json.dumps(data, ensure_ascii=False), encoding="utf-8")
    with pytest.raises(CheckpointError, match=message) as info:
        load_classifier(folder)
    assert "\n" not in str(info.value)


# ------------------------------------------------------------------------------ broken checkpoints
def _edit_state(folder, edit):
    state = torch.load(folder / "pytorch_model.bin", weights_only=True)
    edit(state)
    torch.save(state, folder / "pytorch_model.bin")


def _edit_config(folder, edit):
    path = folder / "config.json"
    path.write_text(json.dumps(edit(json.loads(path.read_text(encoding="utf-8")))), encoding="utf-8")


def _to_safetensors(folder, keep_bin=False):
    from safetensors.torch import save_file

    state = torch.load(folder / "pytorch_model.bin", weights_only=True)
    save_file({k: v.contiguous() for k, v in state.items()}, folder / "model.safetensors")
    if not keep_bin:
        (folder / "pytorch_model.bin").unlink()


def _truncate(path, keep=0.5):
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * keep)])


def _write_vocab(folder, tokens):
    (folder / "vocab.txt").write_text("\n".join(tokens) + "\n", encoding="utf-8")


BAD_CHECKPOINTS = {
    "missing-classifier": (lambda f: _edit_state(f, lambda s: s.pop("head.classifier.weight")),
                           "missing tensors: classifier.weight"),
    "extra-tensor": (lambda f: _edit_state(f, lambda s: s.update({"head.extra.weight": torch.zeros(2)})),
                     "unexpected tensors: head.extra.weight"),
    "wrong-shape": (lambda f: _edit_state(f, lambda s: s.update({"head.classifier.weight": torch.zeros(3, 32)})),
                    "has shape (3, 32)"),
    "non-tensor-value": (lambda f: _edit_state(f, lambda s: s.update({"step": 3})), "holds int under 'step'"),
    "truncated-bin": (lambda f: _truncate(f / "pytorch_model.bin"), "truncated or corrupt"),
    "empty-bin": (lambda f: (f / "pytorch_model.bin").write_bytes(b""), "is empty (0 bytes)"),
    "truncated-safetensors": (lambda f: (_to_safetensors(f), _truncate(f / "model.safetensors")),
                              "truncated or corrupt"),
    "empty-safetensors": (lambda f: (_to_safetensors(f), (f / "model.safetensors").write_bytes(b"")),
                          "is empty (0 bytes)"),
    "bin-named-safetensors": (lambda f: (f / "pytorch_model.bin").rename(f / "model.safetensors"),
                              "not safetensors: rename it to pytorch_model.bin"),
    "safetensors-named-bin": (lambda f: (_to_safetensors(f), (f / "model.safetensors").rename(f / "pytorch_model.bin")),
                              "rename it to model.safetensors"),
    "garbage-safetensors": (lambda f: ((f / "pytorch_model.bin").unlink(),
                                       (f / "model.safetensors").write_bytes(b"\x07" * 64)), "truncated or corrupt"),
    "no-weights": (lambda f: (f / "pytorch_model.bin").unlink(), "has no weights"),
    "no-config": (lambda f: (f / "config.json").unlink(), "has no config.json"),
    "bad-json": (lambda f: (f / "config.json").write_text("{not json"), "is not valid JSON"),
    "config-is-a-list": (lambda f: (f / "config.json").write_text("[1, 2]"), "holds a JSON list, not an object"),
    "not-bert": (lambda f: (f / "config.json").write_text(json.dumps({"vocab_size": 10})), "lacks 'hidden_size'"),
    "hidden-size-string": (lambda f: _edit_config(f, lambda c: {**c, "hidden_size": "32"}),
                           "hidden_size is '32' (a str); it must be a positive integer"),
    "layers-zero": (lambda f: _edit_config(f, lambda c: {**c, "num_hidden_layers": 0}),
                    "num_hidden_layers is 0 (not positive)"),
    "heads-bool": (lambda f: _edit_config(f, lambda c: {**c, "num_attention_heads": True}),
                   "num_attention_heads is True"),
    "heads-do-not-divide": (lambda f: _edit_config(f, lambda c: {**c, "num_attention_heads": 5}),
                            "hidden_size 32 is not divisible by num_attention_heads 5"),
    "eps-string": (lambda f: _edit_config(f, lambda c: {**c, "layer_norm_eps": "1e-12"}),
                   "layer_norm_eps is '1e-12' (a str)"),
    "unknown-activation": (lambda f: _edit_config(f, lambda c: {**c, "hidden_act": "nope"}),
                           "does not build a BERT model"),
    "vocab-longer": (lambda f: _write_vocab(f, TINY_VOCAB + ["extra1", "extra2"]),
                     f"vocab.txt has {len(TINY_VOCAB) + 2} lines but config.json says vocab_size {len(TINY_VOCAB)}: "
                     "the vocabulary is longer"),
    "vocab-shorter": (lambda f: _write_vocab(f, TINY_VOCAB[:-3]),
                      f"vocab.txt has {len(TINY_VOCAB) - 3} lines but config.json says vocab_size {len(TINY_VOCAB)}: "
                      "the vocabulary is shorter"),
    "vocab-missing": (lambda f: (f / "vocab.txt").unlink(), "has no vocab.txt"),
    "vocab-not-bert": (lambda f: _write_vocab(f, ["a"] * len(TINY_VOCAB)), "lacks the special tokens"),
    "vocab-not-utf8": (lambda f: (f / "vocab.txt").write_bytes(b"\xff\xfe" * 40), "is not UTF-8 text"),
}


@pytest.mark.parametrize("case", list(BAD_CHECKPOINTS))
def test_bad_checkpoints_get_one_clear_line(tmp_path, case):
    break_it, message = BAD_CHECKPOINTS[case]
    folder = write_modelscope_checkpoint(tmp_path / "bad")
    break_it(folder)
    with pytest.raises(CheckpointError) as info:
        load_classifier(folder)
    text = str(info.value)
    assert message in text, text
    assert "\n" not in text and "Traceback" not in text


def test_both_weight_files_prefers_safetensors_and_says_so(tmp_path, caplog):
    folder = write_modelscope_checkpoint(tmp_path / "both")
    _to_safetensors(folder, keep_bin=True)
    _truncate(folder / "pytorch_model.bin")  # would fail if it were read
    with caplog.at_level(logging.WARNING, logger="structbert_lite.convert.checkpoint"):
        loaded = load_classifier(folder)
    assert loaded.weights_file == "model.safetensors"
    assert "loading model.safetensors" in caplog.text and "pytorch_model.bin is ignored" in caplog.text


def test_pickled_code_is_refused_without_suggesting_weights_only_false(tmp_path, capsys):
    """weights_only=True: a checkpoint that needs arbitrary unpickling is refused, and the message never
    repeats torch's advice to load it with weights_only=False (that would run the code)."""
    folder = write_tiny_checkpoint(tmp_path / "evil")

    class Payload:
        def __reduce__(self):
            return (print, ("pwned",))

    torch.save({"x": Payload()}, folder / "pytorch_model.bin")
    with pytest.raises(CheckpointError) as info:
        load_classifier(folder)
    message = str(info.value)
    assert "holds Python code or objects that are not tensors" in message and "will not be loaded" in message
    assert "weights_only=False" not in message and "False" not in message and "\n" not in message
    assert "pwned" not in capsys.readouterr().out


def test_legacy_pickle_with_code_is_refused(tmp_path):
    """The same for a pre-zip (protocol 2) pickle file."""
    folder = write_tiny_checkpoint(tmp_path / "evil")

    class Payload:
        def __reduce__(self):
            return (print, ("pwned",))

    with open(folder / "pytorch_model.bin", "wb") as fh:
        torch.save({"x": Payload()}, fh, _use_new_zipfile_serialization=False, pickle_protocol=2)
    with pytest.raises(CheckpointError, match="will not be loaded"):
        load_classifier(folder)


def test_no_folder(tmp_path):
    with pytest.raises(CheckpointError, match="does not exist"):
        load_classifier(tmp_path / "nope")


@pytest.mark.parametrize("case", ["config-is-a-list", "hidden-size-string", "heads-do-not-divide", "vocab-longer",
                                  "empty-bin", "bin-named-safetensors"])
def test_cli_refuses_a_bad_checkpoint_in_seconds_with_exit_2(tmp_path, case):
    """Issue 11: one line, exit 2, in seconds (these checks run before torch is imported; a vocab.txt longer
    than vocab_size used to fail after 53 s, in the export)."""
    import subprocess
    import sys
    import time
    from pathlib import Path

    break_it, message = BAD_CHECKPOINTS[case]
    folder = write_modelscope_checkpoint(tmp_path / "bad")
    break_it(folder)
    repo = Path(__file__).resolve().parents[2]
    started = time.monotonic()
    run = subprocess.run(
        [sys.executable, "-m", "structbert_lite.cli", "run", "--config", str(repo / "configs/demo.yaml"),
         "--model", str(folder), "--out", str(tmp_path / "out")],
        capture_output=True, text=True, cwd=tmp_path, timeout=120,
    )
    elapsed = time.monotonic() - started
    errors = [line for line in run.stderr.splitlines() if line.startswith("error:")]
    assert run.returncode == 2 and len(errors) == 1 and message in errors[0], run.stderr[-2000:]
    assert "Traceback" not in run.stderr
    assert elapsed < 10

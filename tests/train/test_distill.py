"""The distill step on tiny teachers: layer-copy and checkpoint init, transfer data without the eval set, the
teacher-logit cache, a SIGKILLed run resumed to identical weights, and the student chain through `run`."""

from __future__ import annotations

import dataclasses
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from structbert_lite.artifact import Artifact
from structbert_lite.cli import EXIT_ERROR, EXIT_SPEED_UNVERIFIED, main
from structbert_lite.config import parse_config
from structbert_lite.convert.checkpoint import load_classifier
from structbert_lite.errors import CheckpointError, ConfigError
from structbert_lite.pipeline import build_variants
from structbert_lite.train import compare_student, distill, teacher_logits
from structbert_lite.train import student as student_init
from structbert_lite.train.state import STATE_FILE
from structbert_lite.train.trainer import IGNORE_LABEL
from structbert_lite.train.transfer import build_transfer_set, read_user_rows
from tests.builders import (
    fast_validate,
    self_labels,
    step_context,
    tiny_model,
    wait_for_file,
    write_config,
    write_eval_csv,
)
from tests.train import distill_worker
from tests.train.synthetic import VOCAB, make_reviews, tiny_checkpoint, write_table

ID2LABEL = {0: "负面", 1: "正面"}
PUBLISHED = (0, EXIT_SPEED_UNVERIFIED)  # a busy machine may not verify speed; the set is published either way
ROWS = make_reviews(120, seed=3)  # 240 distinct synthetic reviews
EVAL_ROWS, TRANSFER_ROWS = ROWS[:40], ROWS[40:]


@pytest.fixture(scope="module")
def teacher_dir(tmp_path_factory):
    return tiny_checkpoint(tmp_path_factory.mktemp("teacher") / "teacher")


@pytest.fixture(scope="module")
def transfer_csv(tmp_path_factory):
    """The transfer rows plus 10 eval texts (to be removed); every third row without a label."""
    rows = [(t, "" if i % 3 == 0 else y) for i, (t, y) in enumerate(TRANSFER_ROWS + EVAL_ROWS[:10])]
    return write_table(tmp_path_factory.mktemp("data") / "transfer.csv", rows)


def student_weights(folder: Path) -> dict:
    return torch.load(Path(folder) / "pytorch_model.bin", map_location="cpu", weights_only=True)


# -- initialisation --------------------------------------------------------------------------------------------


def test_teacher_layer_init_copies_the_chosen_teacher_layers():
    teacher = tiny_model(layers=4, hidden=32, seed=1, vocab_size=len(VOCAB))
    options = distill.Options(layers=2)
    model, record = student_init.build_student(teacher, options, seed=0, vocab_path=Path("unused"))
    assert record == {"init": "teacher-layers", "teacher_layers": [1, 3]}
    for student_layer, teacher_layer in enumerate([1, 3]):
        mine = model.bert.encoder.layer[student_layer].state_dict()
        theirs = teacher.bert.encoder.layer[teacher_layer].state_dict()
        assert all(torch.equal(mine[k], theirs[k]) for k in theirs)
    for module in ("bert.embeddings", "bert.pooler", "classifier"):
        mine, theirs = model.get_submodule(module).state_dict(), teacher.get_submodule(module).state_dict()
        assert all(torch.equal(mine[k], theirs[k]) for k in theirs)
    assert not torch.equal(model.bert.encoder.layer[0].output.dense.weight,
                           teacher.bert.encoder.layer[0].output.dense.weight)
    assert student_init.pick_teacher_layers(12, 4) == [2, 5, 8, 11]
    assert student_init.pick_teacher_layers(12, 3) == [3, 7, 11]
    explicit, _ = student_init.build_student(teacher, distill.Options(layers=2, teacher_layers=[0, 2]), 0,
                                             Path("unused"))
    assert torch.equal(explicit.bert.encoder.layer[1].output.dense.weight,
                       teacher.bert.encoder.layer[2].output.dense.weight)


def test_a_narrow_student_starts_random_and_teacher_layers_refuses_it():
    teacher = tiny_model(layers=2, hidden=32, seed=1, vocab_size=len(VOCAB))
    model, record = student_init.build_student(teacher, distill.Options(layers=1, hidden_size=16), 0, Path("unused"))
    assert record == {"init": "random"} and model.config.hidden_size == 16 and model.config.num_hidden_layers == 1
    assert model.config.id2label == teacher.config.id2label and model.config.vocab_size == teacher.config.vocab_size
    with pytest.raises(ConfigError, match="teacher's width"):
        student_init.build_student(teacher, distill.Options(layers=1, hidden_size=16, init="teacher-layers"), 0,
                                   Path("x"))
    with pytest.raises(ConfigError, match="3 layers and the teacher 2"):
        student_init.build_student(teacher, distill.Options(layers=3, init="teacher-layers"), 0, Path("x"))


def test_init_from_a_pretrained_encoder_loads_it_strictly(tmp_path, teacher_dir):
    from transformers import BertConfig, BertForMaskedLM

    torch.manual_seed(3)
    config = BertConfig(vocab_size=len(VOCAB), hidden_size=24, num_hidden_layers=1, num_attention_heads=2,
                        intermediate_size=48, max_position_embeddings=256)
    encoder = BertForMaskedLM(config)  # a pre-trained encoder: MLM head (cls.*), no pooler, no classifier
    folder = tmp_path / "encoder"
    folder.mkdir()
    torch.save(encoder.state_dict(), folder / "pytorch_model.bin")
    (folder / "config.json").write_text(json.dumps(config.to_dict()), encoding="utf-8")
    (folder / "vocab.txt").write_text("\n".join(VOCAB) + "\n", encoding="utf-8")
    teacher = load_classifier(teacher_dir)

    model, record = student_init.build_student(teacher.model, distill.Options(init_from=str(folder)), 0,
                                               teacher_dir / "vocab.txt")
    assert record["init"] == "checkpoint" and record["fresh"] == ["bert.pooler.dense", "classifier"]
    assert record["dropped_pretraining_heads"] > 0 and model.config.hidden_size == 24
    mine, theirs = model.state_dict(), encoder.state_dict()
    assert all(torch.equal(mine[k], theirs[k]) for k in theirs if k.startswith("bert."))

    with pytest.raises(ConfigError, match="decides the student's size"):
        student_init.build_student(teacher.model, distill.Options(init_from=str(folder), layers=2), 0,
                                   teacher_dir / "vocab.txt")
    state = encoder.state_dict()
    state.pop("bert.encoder.layer.0.output.dense.weight")
    torch.save(state, folder / "pytorch_model.bin")
    with pytest.raises(CheckpointError, match="missing: bert.encoder.layer.0.output.dense.weight"):
        student_init.build_student(teacher.model, distill.Options(init_from=str(folder)), 0, teacher_dir / "vocab.txt")
    (folder / "vocab.txt").write_text("\n".join(VOCAB[:-1] + ["另"]) + "\n", encoding="utf-8")
    with pytest.raises(CheckpointError, match="another vocabulary"):
        student_init.build_student(teacher.model, distill.Options(init_from=str(folder)), 0, teacher_dir / "vocab.txt")


# -- transfer data ---------------------------------------------------------------------------------------------


def test_transfer_data_is_deduplicated_and_the_eval_texts_are_removed_and_counted(tmp_path):
    a, b, c, d, e = (t for t, _ in ROWS[:5])
    rows = [(a, "正面"), (b, ""), (a, "正面"), ("  ", "1"), (c, "0"), (f" {d} ", "负面"), (e, "1"), (e, "0"), (b, "1")]
    user, record = read_user_rows(str(write_table(tmp_path / "data.jsonl", rows)), "text", "label", ID2LABEL)
    assert record["rows"] == 9 and record["empty_text"] == 1 and record["label_column"] == "label"
    reviews = ([(d, 0), ("另一条评论", 1)], {"source": "reviews", "rows": 2})
    data = build_transfer_set([(user, record), reviews], eval_texts=[c, f"{a}\n"], max_rows=None, seed=0)
    assert data.texts == [b, d, e, "另一条评论"]
    assert data.labels == [1, 0, IGNORE_LABEL, 1]  # b's label from its second row; e's two labels disagree
    mine, theirs = data.account["sources"]
    assert (mine["removed_in_eval_set"], mine["duplicates"], theirs["duplicates"]) == (3, 2, 1)
    assert data.account["removed_in_eval_set"] == 3 and data.account["conflicting_labels"] == 1
    assert data.labelled == 3 and len(build_transfer_set([(user, record)], [], max_rows=2, seed=0)) == 2

    plain = str(write_table(tmp_path / "plain.csv", rows, label_column="stars"))
    unlabelled, record = read_user_rows(plain, "text", "label", ID2LABEL)
    assert record["label_column"] is None and {y for _, y in unlabelled} == {IGNORE_LABEL}
    with pytest.raises(Exception, match="'neutral'"):
        read_user_rows(str(write_table(tmp_path / "bad.csv", [(a, "neutral")])), "text", "label", ID2LABEL)


# -- teacher logits and their cache ----------------------------------------------------------------------------


def distill_config(data: Path, teacher_variant, **extra) -> object:
    options = {"layers": 1, "data": str(data), "include_reviews": False, "teacher_variant": teacher_variant,
               "epochs": 1, "batch_size": 16, "learning_rate": 2e-3, "max_length": 32, "threads": 1, "device": "cpu",
               **extra}
    return parse_config({"name": "t", "model": {"max_length": 32}, "variants": [
        {"name": "fp32", "step": "export", "options": {"parity_lengths": [8, 32]}},
        {"name": "student", "step": "distill", "publish": False, "options": options},
    ]})


def build(tmp_path, teacher_dir, cfg, cache: Path, run: str):
    loaded = load_classifier(teacher_dir)
    ctx = dataclasses.replace(step_context(tmp_path / run, loaded, max_length=32), work_dir=tmp_path / run,
                              cache_dir=cache, eval_texts=[t for t, _ in EVAL_ROWS], quiet=True)
    built, failures = build_variants(cfg, Artifact(teacher_dir, "source", {}, format="checkpoint"), ctx)
    assert not failures
    return built


def test_teacher_logits_are_cached_by_content_and_read_back(tmp_path, teacher_dir, transfer_csv):
    cfg, cache = distill_config(transfer_csv, "fp32"), tmp_path / "cache"
    first = build(tmp_path, teacher_dir, cfg, cache, "run1")["student"].meta["distill"]
    second = build(tmp_path, teacher_dir, cfg, cache, "run2")["student"].meta["distill"]
    assert first["teacher_logits"]["scored_with"] == "fp32" and first["teacher_logits"]["engine"] == "onnxruntime"
    assert first["cache"]["teacher_logits"] == {"hits": 0, "misses": 1}
    assert second["cache"]["teacher_logits"] == {"hits": 1, "misses": 0}
    assert first["teacher_logits"]["logits_sha256"] == second["teacher_logits"]["logits_sha256"]
    assert second["training"]["reused_finished_state"]  # same teacher, data and options: not trained again
    assert first["data"]["removed_in_eval_set"] == 10 and first["data"]["rows"] == len(TRANSFER_ROWS)
    assert first["data"]["labelled_rows"] == sum(1 for i in range(len(TRANSFER_ROWS)) if i % 3)

    cached = list((cache / teacher_logits.CACHE_FOLDER).glob("*.npy"))
    assert len(cached) == 1
    pytorch = build(tmp_path, teacher_dir, distill_config(transfer_csv, "fp32-optimized"), cache, "run3")["student"]
    record = pytorch.meta["distill"]["teacher_logits"]  # not built before the step: PyTorch scores, and says why
    assert record["scored_with"] == "pytorch" and "fp32-optimized was not built" in record["why"]
    assert record["cache"] == "miss" and len(list((cache / teacher_logits.CACHE_FOLDER).glob("*.npy"))) == 2
    int8 = Artifact(tmp_path, "int8-dynamic", {"quantization": {}}, format="onnx")
    with pytest.raises(ConfigError, match="not the teacher's"):
        teacher_logits.pick_teacher("int8-dynamic", Artifact(teacher_dir, "source"), {"int8-dynamic": int8}, True)


# -- resumable training ----------------------------------------------------------------------------------------


def test_a_killed_distill_run_resumes_to_the_uninterrupted_weights(tmp_path, teacher_dir):
    data = write_table(tmp_path / "transfer.csv", make_reviews(200, seed=4))
    cache = tmp_path / "cache"
    state = cache / distill.STATE_FOLDER / "student" / STATE_FILE
    worker = subprocess.Popen([sys.executable, distill_worker.__file__, str(teacher_dir), str(data), str(cache),
                               str(tmp_path / "killed")], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    wait_for_file(state, worker, "finish an epoch", poll_s=0.005)
    os.kill(worker.pid, signal.SIGSTOP)  # freeze it at once, then look at what it saved
    saved_epoch = torch.load(state, map_location="cpu", weights_only=True)["epoch"]
    os.kill(worker.pid, signal.SIGKILL)
    assert worker.wait(timeout=30) == -signal.SIGKILL
    assert 1 <= saved_epoch < distill_worker.EPOCHS
    assert not (tmp_path / "killed" / "student" / "pytorch_model.bin").exists()

    resumed = distill_worker.run(teacher_dir, data, cache, tmp_path / "resumed")
    fresh = distill_worker.run(teacher_dir, data, tmp_path / "fresh-cache", tmp_path / "fresh")
    training = resumed.meta["distill"]["training"]
    assert training["resumed_after_epoch"] == saved_epoch and training["epochs_run"] == distill_worker.EPOCHS
    assert resumed.meta["distill"]["cache"]["teacher_logits"] == {"hits": 1, "misses": 0}  # the killed run cached them
    assert fresh.meta["distill"]["training"]["resumed_after_epoch"] is None
    a, b = student_weights(resumed.path), student_weights(fresh.path)
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


# -- the student chain through `structbert-lite run` ------------------------------------------------------------


def chain_config(tmp_path, with_student: bool = True) -> str:
    variants = [{"name": "fp32", "step": "export", "options": {"parity_lengths": [8, 32]},
                 "gate": {"max_logit_diff": 0.001}}]
    if with_student:
        variants += [
            {"name": "student", "step": "distill", "gate": {"min_agreement": 0.0}, "options": {
                "layers": 1, "teacher_variant": "fp32", "include_reviews": False, "epochs": 2, "batch_size": 16,
                "learning_rate": 2e-3, "max_length": 32, "threads": 1, "device": "cpu"}},
            {"name": "student-fp32", "step": "export", "parent": "student", "options": {"parity_lengths": [8, 32]},
             "gate": {"max_logit_diff": 100.0}},
        ]
    config = {
        "name": "tiny-distill", "model": {"max_length": 32}, "eval": {"min_accuracy": 0.5}, "variants": variants,
        "validate": fast_validate(throughput_rows=8, batch_invariance_rows=4),
    }
    return write_config(tmp_path / f"tiny-{'distill' if with_student else 'teacher'}.yaml", config)


def test_run_distills_exports_and_gates_the_student_against_the_teacher(tmp_path, teacher_dir, transfer_csv, capsys):
    texts = [t for t, _ in EVAL_ROWS]
    eval_csv = write_eval_csv(tmp_path / "eval.csv", texts, self_labels(teacher_dir, texts, max_length=32))
    out = tmp_path / "out"
    base = ["run", "--config", chain_config(tmp_path), "--model", str(teacher_dir), "--eval", str(eval_csv), "--quiet"]
    code = main(base + ["--distill-data", str(transfer_csv), "--out", str(out)])
    assert code in PUBLISHED, capsys.readouterr().err
    report = json.loads((out / "report.json").read_text(encoding="utf-8"))
    assert [v["name"] for v in report["variants"]] == ["fp32", "student", "student-fp32"]
    student = next(v for v in report["variants"] if v["name"] == "student-fp32")
    assert student["published"] and student["metrics"]["agreement"] is not None
    # The checkpoint itself is published (measured in PyTorch) with its curve and training record, ready to fine-tune.
    published = {p.name for p in (out / "student").iterdir()}
    assert {"config.json", "vocab.txt", "training.json", "training-curve.png"} <= published
    assert list(report["training"]) == ["student"]  # not again under student-fp32, which carries the record
    training = report["training"]["student"]
    assert training["data"]["removed_in_eval_set"] == 10 and training["teacher_logits"]["cache"] == "miss"
    assert "## Distilled students" in (out / "report.md").read_text(encoding="utf-8")
    manifest = json.loads((out / "student-fp32" / "manifest.json").read_text(encoding="utf-8"))
    record = manifest["distill"]
    assert record["data"]["sources"][0]["source"] == str(transfer_csv) and record["data"]["removed_in_eval_set"] == 10
    assert record["teacher_logits"]["scored_with"] == "fp32" and record["student"]["layers"] == 1
    assert manifest["parent"] == "student" and record["init"] == {"init": "teacher-layers", "teacher_layers": [1]}

    capsys.readouterr()  # `make distill`'s comparison with the teacher's variant, read from the same report
    assert compare_student.main([str(out), "--student", "student-fp32", "--teacher", "fp32", "--min-speedup", "1e-3",
                                 "--max-drop", "100", "--min-agreement", "0"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith("student-fp32 (student) vs fp32 (teacher)") and len(lines) == 5
    assert all(line.startswith("  ✓") for line in lines[1:]), lines
    assert compare_student.main([str(out), "--student", "student-int8"]) == 2
    capsys.readouterr()
    assert main(["run", "--config", chain_config(tmp_path, with_student=False), "--model", str(teacher_dir),
                 "--distill-data", str(transfer_csv), "--out", str(tmp_path / "none")]) == EXIT_ERROR
    assert "has no distill step" in capsys.readouterr().err
    assert main(base + ["--distill-data", str(tmp_path / "missing.csv"), "--out", str(tmp_path / "none")]) == EXIT_ERROR
    err = capsys.readouterr().err
    assert "missing.csv does not exist" in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "none").exists()

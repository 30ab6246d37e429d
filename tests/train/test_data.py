"""Training data: formats and label spellings as --eval, labels through id2label, de-duplication, the split."""

from __future__ import annotations

import pytest

from structbert_lite.train.data import (
    LabelledSet,
    TrainDataError,
    check_trainable,
    drop_overlap,
    read_labelled,
    split_heldout,
)
from tests.train.synthetic import make_reviews, write_table

ID2LABEL = {0: "负面", 1: "正面"}


@pytest.mark.parametrize("suffix", [".csv", ".tsv", ".jsonl", ".parquet"])
def test_every_format_and_label_spelling(tmp_path, suffix):
    rows = [("好极了", "正面"), ("太差", "负面"), ("喜欢", "1"), ("讨厌", "0"), ("满意", "Positive"), ("失望", "neg")]
    path = write_table(tmp_path / f"train{suffix}", rows, "review", "sentiment")
    data = read_labelled(str(path), "review", "sentiment", ID2LABEL)
    assert data.texts == [t for t, _ in rows] and data.labels == [1, 0, 1, 0, 1, 0]
    assert len(data.sha256) == 64 and data.account["file_rows"] == 6


def test_labels_follow_the_checkpoint_id2label(tmp_path):
    path = write_table(tmp_path / "t.jsonl", [("好", "正面"), ("差", "0")])
    assert read_labelled(str(path), "text", "label", {0: "正面", 1: "负面"}).labels == [0, 1]


def test_duplicates_collapse_and_conflicting_texts_are_dropped(tmp_path):
    rows = [("好", "正面"), (" 好 ", "1"), ("差", "负面"), ("一般", "正面"), ("一般", "负面"), ("", "正面")]
    data = read_labelled(str(write_table(tmp_path / "t.csv", rows)), "text", "label", ID2LABEL)
    assert data.texts == ["好", "差"] and data.labels == [1, 0]
    assert data.account == {"file_rows": 6, "empty_text": 1, "duplicates": 1, "conflicting": 1}


def test_heldout_split_is_seeded_stratified_and_never_shares_a_text():
    rows = make_reviews(50, seed=3)
    texts = [t for t, _ in rows] + [t for t, _ in rows[:30]]  # duplicates across the file
    labels = [1 if y == "正面" else 0 for _, y in rows] + [1 if y == "正面" else 0 for _, y in rows[:30]]
    data = LabelledSet(texts, labels, "mem", None)
    train, held = split_heldout(data, 0.2, seed=9)
    assert not set(train.texts) & set(held.texts)
    assert len(train) + len(held) == len(data)
    unique_held = dict(zip(held.texts, held.labels, strict=True))
    assert sorted(unique_held.values()) == [0] * 10 + [1] * 10  # 20% of each class's 50 distinct texts
    assert split_heldout(data, 0.2, seed=9)[1].texts == held.texts
    assert split_heldout(data, 0.2, seed=10)[1].texts != held.texts


@pytest.mark.parametrize(
    "rows, call, message",
    [
        ([("好", "正面")] * 3, "check", "has only 正面 rows"),
        (make_reviews(5), "check", "fewer than finetune.min_rows_per_class=20 for 负面, 正面"),
        (
            [("好", "正面"), ("嗯", "neutral"), ("嗯嗯", "neutral"), ("哦", 2)],
            "read",
            "'neutral' (2 rows), 2 (1 row) are outside the model's labels 负面/正面",
        ),
        (make_reviews(30), "overlap", "are also in the eval set"),
    ],
    ids=["single-class", "too-few-rows", "unknown-labels", "overlap"],
)
def test_refusals(tmp_path, rows, call, message):
    with pytest.raises(TrainDataError) as info:
        data = read_labelled(str(write_table(tmp_path / "t.jsonl", rows)), "text", "label", ID2LABEL)
        if call == "check":
            check_trainable(data, ID2LABEL, 20)
        elif call == "overlap":
            drop_overlap(data, data.subset(list(range(10))), 0.05)
    assert message in str(info.value) and "\n" not in str(info.value)


def test_small_overlap_is_dropped_from_training():
    rows = make_reviews(50)
    data = LabelledSet([t for t, _ in rows], [int(y == "正面") for _, y in rows], "mem", None)
    train, dropped = drop_overlap(data, data.subset([0, 1]), 0.05)
    assert dropped == 2 and len(train) == 98 and not set(train.texts) & set(data.texts[:2])

"""Eval and score inputs: oversized files and rows are refused in one line before they are held in memory;
a path that is not a regular file says what it is."""

from __future__ import annotations

import os
import resource

import pytest

from structbert_lite.config import EvalConfig
from structbert_lite.errors import EvalDataError
from structbert_lite.validate import eval_data
from structbert_lite.validate.eval_data import MAX_FILE_BYTES, MAX_ROW_BYTES, load_eval_set

ID2LABEL = {0: "负面", 1: "正面"}


def _peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def test_a_sparse_file_over_the_limit_is_refused_by_its_size(tmp_path):
    path = tmp_path / "huge.csv"
    with open(path, "wb") as fh:
        fh.write(b"text,label\n")
        fh.truncate(MAX_FILE_BYTES + 1)  # sparse: no disk, all NUL bytes
    import pandas  # noqa: F401 - imported by the reader anyway: not part of what the refusal costs

    before = _peak_mb()
    with pytest.raises(EvalDataError, match="MiB, over the 256 MiB") as caught:
        load_eval_set(str(path), EvalConfig(), ID2LABEL)
    assert "\n" not in str(caught.value) and _peak_mb() - before < 20


@pytest.mark.parametrize("suffix", [".jsonl", ".csv"])
def test_one_oversized_line_is_refused_before_it_is_read(tmp_path, suffix):
    path = tmp_path / f"long{suffix}"
    text = "好" * (MAX_ROW_BYTES // 3 * 4)
    row = f'{{"text": "{text}", "label": 1}}' if suffix == ".jsonl" else f"{text},1"
    path.write_text(("" if suffix == ".jsonl" else "text,label\n") + row + "\n",
                    encoding="utf-8")
    with pytest.raises(EvalDataError, match=r"line \d+ is over 1024 KiB"):
        load_eval_set(str(path), EvalConfig(), ID2LABEL)


@pytest.mark.parametrize("kind, words", [("folder", "is a folder"), ("fifo", "is a named pipe"),
                                         ("device", "is a device")])
def test_a_path_that_is_not_a_file_says_what_it_is(tmp_path, kind, words):
    if kind == "folder":
        path = tmp_path / "eval.csv"
        path.mkdir()
    elif kind == "fifo":
        path = tmp_path / "eval.jsonl"
        os.mkfifo(path)
    else:
        path = "/dev/zero"
    with pytest.raises(EvalDataError, match=words):
        eval_data.read_rows(str(path), "test")


def test_score_inputs_share_the_row_limit_and_say_what_a_path_is(tmp_path):
    from structbert_lite.score import ScoreError
    from structbert_lite.score.inputs import read_frame, resolve_paths

    path = tmp_path / "corpus.jsonl"
    path.write_text('{"text": "' + "a" * (MAX_ROW_BYTES + 10) + '"}\n', encoding="utf-8")
    with pytest.raises(ScoreError, match="line 1 is over"):
        read_frame(path)
    os.mkfifo(tmp_path / "pipe.csv")
    with pytest.raises(ScoreError, match="is a named pipe"):
        resolve_paths(str(tmp_path / "pipe.csv"))

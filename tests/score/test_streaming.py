"""score reads and writes in chunks: the chunks hold exactly the eval-data reader's rows and values, the text
reader follows shards (also back, after a worker died) and notices a rewritten file, and the Parquet writer
gathers chunks into bounded row groups with one schema (types of different chunks unified)."""

from __future__ import annotations

import json
import math
import os
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from structbert_lite.score import ScoreError, outputs
from structbert_lite.score.inputs import TextReader, check_corpus, iter_frames
from structbert_lite.validate import eval_data

CSV = 'text,label,n\n好,1,3\nNA,,\n"多\n行",0,x\n"a,b",1\n\u200b,1,7\n'
JSONL = [
    {"text": "好", "n": 1}, {"text": None, "extra": [1, 2]}, {"n": 2.5}, {"text": "\ud800"}, {"text": 5, "n": "s"},
    {"text": "差", "extra": {"k": "v"}}, {"text": "", "n": None}, {"text": "NA"},
]


def _write_inputs(folder: Path) -> dict[str, Path]:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "in.csv").write_text(CSV, encoding="utf-8")
    (folder / "in.tsv").write_text(CSV.replace(",", "\t"), encoding="utf-8")
    lines = "".join(json.dumps(row) + "\n" + ("\n" if i == 2 else "") for i, row in enumerate(JSONL))
    (folder / "in.jsonl").write_text(lines, encoding="utf-8")  # with a blank line, skipped
    (folder / "lines.json").write_text(lines, encoding="utf-8")
    (folder / "array.json").write_text("\n  " + json.dumps(JSONL), encoding="utf-8")
    frame = pd.DataFrame({"text": ["好", None, "差", "x", "y", "z", "w"], "n": [1, 2, None, 4, 5, 6, 7],
                          "tags": [["a"], [], None, ["b", "c"], [], [], ["d"]]}, index=[10, 11, 12, 13, 14, 15, 16])
    frame.to_parquet(folder / "indexed.parquet", row_group_size=3)  # a stored index; row groups of 3
    frame.iloc[:0].to_parquet(folder / "empty.parquet")
    return {p.name: p for p in folder.iterdir()}


def _cells(frame: pd.DataFrame) -> list[dict]:
    """Rows as dicts, a missing value (None or NaN) as None: how the two readers may differ only in form."""
    def plain(value):
        if isinstance(value, float) and math.isnan(value):
            return None
        return value.tolist() if hasattr(value, "tolist") and not isinstance(value, str) else value

    return [{str(k): plain(v) for k, v in row.items()} for row in frame.to_dict(orient="records")]


def _whole(path: Path) -> pd.DataFrame:
    columns, rows = eval_data.read_table(path, max_bytes=None)
    return pd.DataFrame(list(rows), columns=columns, dtype=object)


@pytest.mark.parametrize("name", ["in.csv", "in.tsv", "in.jsonl", "lines.json", "array.json", "indexed.parquet"])
@pytest.mark.parametrize("rows", [1, 2, 3, 512])
def test_chunks_hold_the_eval_readers_rows_and_values(tmp_path, name, rows):
    path = _write_inputs(tmp_path)[name]
    whole = _whole(path)
    chunks = list(iter_frames(path, rows, columns=list(whole.columns)))
    assert [len(c) for c in chunks[:-1]] == [rows] * (len(chunks) - 1) and 0 < len(chunks[-1]) <= rows
    streamed = pd.concat(chunks, ignore_index=True)
    assert list(streamed.columns) == list(whole.columns)
    assert _cells(streamed) == _cells(whole)
    assert all(c.dtypes.eq(object).all() for c in chunks)


def test_files_with_no_rows_still_give_their_columns(tmp_path):
    paths = _write_inputs(tmp_path)
    (tmp_path / "header.csv").write_text("text,label\n", encoding="utf-8")
    for path in (paths["empty.parquet"], tmp_path / "header.csv"):
        chunks = list(iter_frames(path, 4))
        assert len(chunks) == 1 and len(chunks[0]) == 0 and "text" in chunks[0].columns


def test_the_text_reader_follows_shards_forward_and_back(tmp_path):
    paths = _write_inputs(tmp_path)
    corpus = check_corpus(str(paths["in.jsonl"]), "text", ["label"], rows=2)
    texts = [row.get("text") for row in JSONL]
    reader = TextReader(corpus, rows=3)
    try:
        assert reader.values(0, 0, 2) == texts[0:2]
        assert reader.values(0, 4, 6) == texts[4:6]  # rows 2-3 skipped (already scored: a resume)
        assert reader.values(0, 2, 4) == texts[2:4]  # back: a shard re-run after a worker died
        assert reader.values(0, 6, 8) == texts[6:8]
    finally:
        reader.close()


def test_a_file_rewritten_after_the_check_is_refused(tmp_path):
    paths = _write_inputs(tmp_path)
    corpus = check_corpus(str(paths["in.csv"]), "text", ["score"])
    paths["in.csv"].write_text("text\n好\n", encoding="utf-8")
    os.utime(paths["in.csv"], ns=(1, 1))
    with pytest.raises(ScoreError, match="changed while it was being scored"):
        corpus.files[0].ensure_unchanged()
    with pytest.raises(ScoreError, match="changed while it was being scored"):
        TextReader(corpus).values(0, 0, 1)


def test_a_json_array_over_the_limit_is_refused_and_json_lines_are_not(tmp_path, monkeypatch):
    paths = _write_inputs(tmp_path)
    monkeypatch.setattr(eval_data, "MAX_FILE_BYTES", 64)
    with pytest.raises(ScoreError, match="is a JSON array of .* write it as JSON Lines"):
        list(iter_frames(paths["array.json"]))
    assert sum(len(c) for c in iter_frames(paths["lines.json"])) == len(JSONL)


def test_the_parquet_writer_gathers_chunks_into_bounded_row_groups(tmp_path, monkeypatch):
    monkeypatch.setattr(outputs, "ROW_GROUP_ROWS", 25)
    chunks = [pd.DataFrame({"id": range(n * 10, n * 10 + 10), "tags": [[] if n < 3 else ["a"]] * 10,
                            "mixed": [n] * 10 if n % 2 else ["s"] * 10}) for n in range(10)]
    # what check_corpus does: one schema over every chunk's (list<null> before list<string>; int beside string)
    schema = outputs.unify_schemas(outputs.table_schema(c) for c in chunks)
    assert schema.field("tags").type == pa.list_(pa.string()) and schema.field("mixed").type == pa.string()
    path = tmp_path / "out.parquet"
    with outputs.OutputWriter(path, schema) as writer:
        for chunk in chunks:
            writer.append(chunk)
            assert sum(t.num_rows for t in writer._held) < 25  # written out as soon as a row group is full
        writer.commit()
    assert pq.ParquetFile(path).metadata.num_row_groups == 4  # 30 + 30 + 30 + 10 rows
    back = pd.read_parquet(path)
    assert back["id"].tolist() == list(range(100))
    assert [list(t) for t in back["tags"]] == [[]] * 30 + [["a"]] * 70
    assert back["mixed"].tolist() == [str(n) if n % 2 else "s" for n in range(10) for _ in range(10)]


@pytest.mark.parametrize("suffix", [".csv", ".tsv", ".jsonl"])
def test_text_outputs_written_in_chunks_equal_one_write(tmp_path, suffix):
    frame = pd.DataFrame({"id": range(7), "text": ["a", "b,c", 'q"q', "多\n行", None, "", "\r\n"],
                          "score": [0.5, float("nan"), 1.0, 0.25, None, 0.0, 1e-9]})
    schema = outputs.table_schema(frame)
    paths = []
    for size in (7, 2):
        path = tmp_path / f"out-{size}{suffix}"
        with outputs.OutputWriter(path, schema) as writer:
            for start in range(0, len(frame), size):
                writer.append(frame.iloc[start : start + size])
            writer.commit()
        paths.append(path)
    assert paths[0].read_bytes() == paths[1].read_bytes()
    if suffix != ".jsonl":  # as pandas writes the whole frame to a path
        frame.to_csv(tmp_path / "pandas.csv", index=False, sep="\t" if suffix == ".tsv" else ",")
        assert paths[0].read_bytes() == (tmp_path / "pandas.csv").read_bytes()

"""The corpus to score: one file or a glob of shards, read chunk by chunk, checked before any work.

Formats by extension, with the values `validate.eval_data` reads (CSV/TSV all as strings with no NA guessing,
JSONL one object per line, JSON an array or lines, Parquet as stored), but streamed: `iter_frames` yields a
file's rows a fixed number at a time (pandas' chunked CSV reader, JSONL line by line, Parquet batch by batch
through pyarrow), so no pass over the corpus holds more than one chunk of it. Only a ``.json`` array is parsed
whole, file by file (at most `eval_data.MAX_FILE_BYTES`; JSONL is the format for big corpora).

Shards are taken in name order; every file must have the same extension. `check_corpus` reads every file
once up front, so a missing column, an unreadable file or a format mix is a one-line error before a model is
loaded; the engines read each file again when they get to it (reading is seconds, scoring is hours), after
checking that it is still the file that was checked (size and mtime).
"""

from __future__ import annotations

import dataclasses
import glob
import json
import logging
import os
import time
from pathlib import Path
from typing import Iterator, Optional, Sequence

import pandas as pd
import pyarrow as pa

from structbert_lite.errors import EvalDataError
from structbert_lite.score import ScoreError
from structbert_lite.validate import eval_data

logger = logging.getLogger(__name__)

INPUT_SUFFIXES = tuple(eval_data.FILE_READERS)  # .csv .tsv .jsonl .json .parquet
GLOB_CHARACTERS = "*?["
CHUNK_ROWS = 512  # rows per chunk read when no caller asks otherwise (the engines read shards of SHARD_ROWS)


@dataclasses.dataclass(frozen=True)
class InputFile:
    """One input file as checked: where, how many rows, and what it looked like (for resume)."""

    path: Path
    rows: int
    size: int
    mtime_ns: int

    def fingerprint(self) -> dict:
        return {"path": str(self.path), "rows": self.rows, "size": self.size, "mtime_ns": self.mtime_ns}

    def ensure_unchanged(self) -> None:
        """ScoreError when the file is no longer the one `check_corpus` read (size or mtime differ)."""
        try:
            stat = self.path.stat()
        except OSError as exc:
            raise ScoreError(f"--input {self.path} can no longer be read ({exc.strerror}); run the command again") \
                from None
        if stat.st_size != self.size or stat.st_mtime_ns != self.mtime_ns:
            raise ScoreError(f"--input {self.path} changed while it was being scored; run the command again")


@dataclasses.dataclass(frozen=True)
class Corpus:
    """Every input file, the text column, and the union of the files' columns (first-seen order)."""

    files: tuple[InputFile, ...]
    text_column: str
    columns: tuple[str, ...]
    suffix: str
    schema: object  # pyarrow.Schema of the input columns over all files (`outputs.unify_schemas`)

    @property
    def rows(self) -> int:
        return sum(f.rows for f in self.files)


def resolve_paths(pattern: str) -> list[Path]:
    """The files ``pattern`` names: one path, or a glob (``**`` recursive) taken in name order."""
    if any(ch in pattern for ch in GLOB_CHARACTERS):
        paths = sorted(Path(p) for p in glob.glob(os.path.expanduser(pattern), recursive=True) if Path(p).is_file())
        if not paths:
            raise ScoreError(f"--input {pattern} matches no file")
    else:
        path = Path(pattern).expanduser()
        if path.is_dir():
            raise ScoreError(f"--input {path} is a folder; give a file or a glob of shards, e.g. '{path}/*.parquet'")
        if not path.is_file():
            raise ScoreError(f"--input {path} {eval_data.what_is(path)}; give a CSV/TSV/JSONL/JSON/Parquet file")
        paths = [path]
    suffixes = sorted({p.suffix.lower() for p in paths})
    unsupported = [s or "(none)" for s in suffixes if s not in INPUT_SUFFIXES]
    if unsupported:
        raise ScoreError(
            f"--input has unsupported extension(s) {', '.join(unsupported)}; use one of {', '.join(INPUT_SUFFIXES)}"
        )
    if len(suffixes) > 1:
        raise ScoreError(f"--input mixes formats ({', '.join(suffixes)}); score each format separately")
    return [p.resolve() for p in paths]


def _as_python(frame: pd.DataFrame) -> pd.DataFrame:
    """``frame`` with the Python values the eval-data reader gives (object dtype, None for a missing value: an
    empty Parquet cell, a CSV line's missing cells, a JSON key a row does not have)."""
    # dtype=object: values stay the Python values read (pandas 3 would turn a column of str into Arrow strings,
    # which cannot hold a lone surrogate from a JSON "\\ud800" escape).
    frame = frame.astype(object)
    return frame.where(frame.notna(), None)


def _records_frame(records: list) -> pd.DataFrame:
    return pd.DataFrame(records, columns=list(dict.fromkeys(k for row in records for k in row)), dtype=object)


def _jsonl_frames(path: Path, rows: int) -> Iterator[pd.DataFrame]:
    """JSON Lines, one object per line (blank lines skipped), as `eval_data.read_table` parses them."""
    records: list = []
    for row in eval_data.iter_jsonl(path, ScoreError, "--input: "):
        records.append(row)
        if len(records) == rows:
            yield _records_frame(records)
            records = []
    if records:
        yield _records_frame(records)


def _is_json_array(path: Path) -> bool:
    """Whether a .json file holds an array (its first non-blank character is ``[``), else JSON Lines."""
    with open(path, encoding="utf-8") as fh:
        while block := fh.read(1 << 16):
            if block.lstrip():
                return block.lstrip().startswith("[")
    return False


def _json_frames(path: Path, rows: int) -> Iterator[pd.DataFrame]:
    """A .json file: an array, parsed whole (so at most MAX_FILE_BYTES), else JSON Lines (streamed)."""
    if not _is_json_array(path):
        yield from _jsonl_frames(path, rows)
        return
    size = path.stat().st_size
    if size > eval_data.MAX_FILE_BYTES:
        raise ScoreError(
            f"--input {path} is a JSON array of {size / 2**20:.0f} MiB, over the {eval_data.MAX_FILE_BYTES // 2**20} "
            "MiB an array may take (it is parsed whole); write it as JSON Lines (.jsonl), which is read row by row"
        )
    items = json.loads(path.read_text(encoding="utf-8"))
    for number, item in enumerate(items, start=1):
        if not isinstance(item, dict):
            raise ScoreError(f"--input: {path} item {number} is a JSON {type(item).__name__}, expected an object")
    for start in range(0, len(items), rows):
        yield _records_frame(items[start : start + rows])


def _csv_frames(path: Path, rows: int) -> Iterator[pd.DataFrame]:
    # Everything as str and no NA guessing, as `eval_data.read_table`: a review reading "NA" is a text, an empty
    # cell is "" (a short line's missing cells are None). A header-only file gives one frame with no rows.
    sep = "\t" if path.suffix.lower() == ".tsv" else ","
    with pd.read_csv(path, sep=sep, dtype=str, keep_default_na=False, chunksize=rows) as reader:
        yield from reader


def _parquet_frames(path: Path, rows: int, columns: Optional[Sequence[str]]) -> Iterator[pd.DataFrame]:
    """Frames of exactly ``rows`` rows (the last may be shorter), columns read only as asked; a file with no
    rows gives one empty frame (its columns)."""
    import pyarrow.parquet as pq

    # buffer_size: column chunks are read page by page, not whole (a row group can be any size)
    with pq.ParquetFile(path, buffer_size=1 << 20, pre_buffer=False) as parquet:
        schema = parquet.schema_arrow
        stored_index = set()
        if schema.pandas_metadata:  # the index pandas stored as a column is not a row value (pd.read_parquet)
            stored_index = {c for c in schema.pandas_metadata.get("index_columns", []) if isinstance(c, str)}
        names = [n for n in schema.names if n not in stored_index and (columns is None or n in columns)]
        pending: list = []  # record batches not yet yielded: a batch ends at a row group's end
        held, yielded = 0, False
        for batch in parquet.iter_batches(batch_size=rows, columns=names, use_pandas_metadata=False):
            pending.append(batch)
            held += batch.num_rows
            while held >= rows:
                table = pa.Table.from_batches(pending, schema=batch.schema)
                yield table.slice(0, rows).to_pandas()
                rest = table.slice(rows)
                pending, held, yielded = rest.to_batches(), rest.num_rows, True
        if held or not yielded:
            table = pa.Table.from_batches(pending) if pending else schema.empty_table().select(names)
            yield table.to_pandas()


def iter_frames(path: Path, rows: int = CHUNK_ROWS, columns: Optional[Sequence[str]] = None,
                scan_lines: bool = True) -> Iterator[pd.DataFrame]:
    """The rows of one input file in file order, ``rows`` at a time (the last chunk may be shorter), with the
    values the eval-data reader gives (object dtype, None where a value is missing).

    ``columns``: every frame has exactly these columns (None where a row or the file has none); default: the
    file's own columns (for JSON, the keys seen in that chunk). A CSV/TSV/JSONL line over
    `eval_data.MAX_ROW_BYTES` is refused before anything is read, by a block-by-block scan (``scan_lines``:
    False for a file already scanned by `check_corpus` and not changed since).
    """
    path = Path(path)
    suffix = path.suffix.lower()
    try:
        if scan_lines and suffix in eval_data.LINE_FORMATS:
            eval_data.check_line_lengths(path)
        if suffix in (".csv", ".tsv"):
            frames = _csv_frames(path, rows)
        elif suffix == ".parquet":
            frames = _parquet_frames(path, rows, columns)
        elif suffix == ".json":
            frames = _json_frames(path, rows)
        else:
            frames = _jsonl_frames(path, rows)
        for frame in frames:
            frame = frame.reset_index(drop=True)
            frame.columns = [str(c) for c in frame.columns]
            yield _as_python(frame if columns is None else frame.reindex(columns=list(columns)))
    except ScoreError:
        raise
    except EvalDataError as exc:
        raise ScoreError(f"--input: {exc}") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ScoreError(f"--input: cannot read {path}: {exc}") from None
    except Exception as exc:  # noqa: BLE001 - pandas/pyarrow raise many types for an unreadable file
        raise ScoreError(f"--input: cannot read {path}: {exc}") from None


def read_frame(path: Path) -> pd.DataFrame:
    """All rows and columns of one input file, in file order (for small files and tests: the engines stream)."""
    frames = list(iter_frames(path))
    columns = list(dict.fromkeys(c for frame in frames for c in frame.columns))
    return pd.concat([f.reindex(columns=columns) for f in frames], ignore_index=True).astype(object)


def _check_file(path: Path, text_column: str, reserved: Sequence[str], rows: int) -> tuple[InputFile, list, object]:
    """One streamed pass over ``path``: (what it is, its columns in first-seen order, the schema of its values)."""
    from structbert_lite.score import outputs

    stat = path.stat()
    columns: dict[str, None] = {}
    schema, count = None, 0
    for frame in iter_frames(path, rows):
        columns.update(dict.fromkeys(frame.columns))
        chunk_schema = outputs.table_schema(outputs.valid_text_frame(frame))
        schema = chunk_schema if schema is None else outputs.unify_schemas([schema, chunk_schema])
        count += len(frame)
    names = list(columns)
    if text_column not in names:
        raise ScoreError(
            f"--input {path} has no column {text_column!r} (columns: {names}); name the text column with --text-column"
        )
    clashing = [c for c in names if c in reserved]
    if clashing:
        raise ScoreError(
            f"--input {path} already has column(s) {clashing}, which scoring adds ({', '.join(reserved)}); "
            "rename or drop them first (e.g. scoring a scored file again)"
        )
    checked = InputFile(path, count, stat.st_size, stat.st_mtime_ns)
    checked.ensure_unchanged()  # not rewritten while it was being read
    return checked, names, schema


def check_corpus(pattern: str, text_column: str, reserved: Sequence[str], output: Optional[Path] = None,
                 rows: int = CHUNK_ROWS) -> Corpus:
    """Resolve ``pattern`` and read every file once, ``rows`` at a time: all must be readable and hold
    ``text_column``."""
    from structbert_lite.score import outputs

    start = time.perf_counter()
    paths = resolve_paths(pattern)
    if output is not None:
        output = Path(output).resolve()
        parts = outputs.parts_folder(output)
        for path in paths:
            if path == output or parts in path.parents:
                raise ScoreError(f"--output {output} is (or holds) one of the input files; write somewhere else")
    files, columns, schemas = [], {}, []
    for path in paths:
        checked, names, schema = _check_file(path, text_column, reserved, rows)
        files.append(checked)
        columns.update(dict.fromkeys(names))
        schemas.append(schema)
    corpus = Corpus(tuple(files), text_column, tuple(columns), paths[0].suffix.lower(), outputs.unify_schemas(schemas))
    if corpus.rows == 0:
        raise ScoreError(f"--input {pattern} has no rows")
    logger.info("checked %d input file(s), %d rows, in %.1f s", len(files), corpus.rows, time.perf_counter() - start)
    return corpus


class TextReader:
    """The text column of the corpus, row range by row range, read sequentially (one chunk held at a time).

    Ranges are asked in file order; a range behind the reader (a shard re-run after a worker died) reopens
    its file. Each file is checked to be the one `check_corpus` read, and to still hold its rows.
    """

    def __init__(self, corpus: Corpus, rows: int = CHUNK_ROWS):
        self.corpus = corpus
        self.rows = rows
        self._file = -1
        self._frames: Optional[Iterator[pd.DataFrame]] = None
        self._buffer: list = []
        self._position = 0  # row number (in the open file) of self._buffer[0]

    def _open(self, index: int) -> None:
        file = self.corpus.files[index]
        file.ensure_unchanged()
        self.close()
        self._file = index
        self._frames = iter_frames(file.path, self.rows, columns=[self.corpus.text_column], scan_lines=False)
        self._buffer, self._position = [], 0

    def values(self, file_index: int, start: int, stop: int) -> list:
        """The text values of rows ``start:stop`` of input file ``file_index``."""
        if file_index != self._file or start < self._position:
            self._open(file_index)
        while self._position + len(self._buffer) < stop:
            frame = next(self._frames, None)
            if frame is None:
                file = self.corpus.files[file_index]
                raise ScoreError(
                    f"--input {file.path} changed while it was being scored "
                    f"({self._position + len(self._buffer)} rows, was {file.rows})"
                )
            self._buffer.extend(frame[self.corpus.text_column].tolist())
            if self._position + len(self._buffer) <= start:  # rows before the range: not needed
                self._position += len(self._buffer)
                self._buffer = []
        offset = start - self._position
        values = self._buffer[offset : offset + stop - start]
        self._buffer = self._buffer[offset + stop - start :]
        self._position = stop
        return values

    def close(self) -> None:
        if self._frames is not None:
            self._frames.close()  # the generator's file is closed now, not when it is collected
            self._frames = None

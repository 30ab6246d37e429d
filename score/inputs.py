"""The corpus to score: one file or a glob of shards, read with the eval-data readers, checked before any work.

Formats by extension, as `validate.eval_data` reads them (CSV/TSV all as strings with no NA guessing, JSONL one
object per line, JSON an array or lines, Parquet as stored). Shards are taken in name order; every file must
have the same extension. `check_corpus` reads every file once up front, so a missing column, an unreadable
file or a format mix is a one-line error before a model is loaded; the engines read each file again when
they get to it (reading is seconds, scoring is hours).
"""

from __future__ import annotations

import dataclasses
import glob
import logging
import os
import time
from pathlib import Path
from typing import Optional, Sequence

import pandas as pd

from structbert_lite.errors import EvalDataError
from structbert_lite.score import ScoreError
from structbert_lite.validate import eval_data

logger = logging.getLogger(__name__)

INPUT_SUFFIXES = tuple(eval_data.FILE_READERS)  # .csv .tsv .jsonl .json .parquet
GLOB_CHARACTERS = "*?["


@dataclasses.dataclass(frozen=True)
class InputFile:
    """One input file as checked: where, how many rows, and what it looked like (for resume)."""

    path: Path
    rows: int
    size: int
    mtime_ns: int

    def fingerprint(self) -> dict:
        return {"path": str(self.path), "rows": self.rows, "size": self.size, "mtime_ns": self.mtime_ns}


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


def read_frame(path: Path) -> pd.DataFrame:
    """All rows and columns of one input file, in file order (the eval-data reader's semantics)."""
    # No file-size limit (a corpus may be large; it is read file by file), but no line over MAX_ROW_BYTES, and a
    # .json array (parsed whole) no larger than the eval-file limit: JSONL is the format for big corpora.
    limit = eval_data.MAX_FILE_BYTES if Path(path).suffix.lower() == ".json" else None
    try:
        columns, rows = eval_data.read_table(Path(path), max_bytes=limit)
    except EvalDataError as exc:
        raise ScoreError(f"--input: {exc}") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ScoreError(f"--input: cannot read {path}: {exc}") from None
    if isinstance(rows, list):  # JSON/JSONL: records as parsed
        for number, row in enumerate(rows, start=1):
            if not isinstance(row, dict):
                raise ScoreError(f"--input: {path} item {number} is a JSON {type(row).__name__}, expected an object")
    # dtype=object: values stay the Python values read (pandas 3 would turn a column of str into Arrow strings,
    # which cannot hold a lone surrogate from a JSON "\\ud800" escape).
    return pd.DataFrame(list(rows), columns=columns, dtype=object)


def read_text_values(path: Path, text_column: str) -> list:
    """The text column of one file as Python values (None/NaN where a row has none)."""
    if Path(path).suffix.lower() == ".parquet":  # a columnar file: read the one column (as `read_frame` would)
        try:
            column = pd.read_parquet(path, columns=[text_column])[text_column]
        except Exception as exc:  # pyarrow raises many types for an unreadable file
            raise ScoreError(f"--input: cannot read {path}: {exc}") from None
        return column.astype(object).where(column.notna(), None).tolist()
    frame = read_frame(path)
    if text_column not in frame.columns:
        return [None] * len(frame)
    return frame[text_column].tolist()


def _check_file(path: Path, text_column: str, reserved: Sequence[str]) -> tuple[InputFile, pd.DataFrame]:
    frame = read_frame(path)
    columns = [str(c) for c in frame.columns]
    if text_column not in columns:
        raise ScoreError(
            f"--input {path} has no column {text_column!r} (columns: {columns}); "
            "name the text column with --text-column"
        )
    clashing = [c for c in columns if c in reserved]
    if clashing:
        raise ScoreError(
            f"--input {path} already has column(s) {clashing}, which scoring adds ({', '.join(reserved)}); "
            "rename or drop them first (e.g. scoring a scored file again)"
        )
    stat = path.stat()
    return InputFile(path, len(frame), stat.st_size, stat.st_mtime_ns), frame


def check_corpus(pattern: str, text_column: str, reserved: Sequence[str], output: Optional[Path] = None) -> Corpus:
    """Resolve ``pattern`` and read every file once: all must be readable and hold ``text_column``."""
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
        checked, frame = _check_file(path, text_column, reserved)
        files.append(checked)
        columns.update(dict.fromkeys(str(c) for c in frame.columns))
        schemas.append(outputs.table_schema(outputs.valid_text_frame(frame)))
    corpus = Corpus(tuple(files), text_column, tuple(columns), paths[0].suffix.lower(), outputs.unify_schemas(schemas))
    if corpus.rows == 0:
        raise ScoreError(f"--input {pattern} has no rows")
    logger.info("checked %d input file(s), %d rows, in %.1f s", len(files), corpus.rows, time.perf_counter() - start)
    return corpus

"""Output files: the input columns plus the result columns, as Parquet, CSV, TSV or JSONL, written atomically.

Rows are appended chunk by chunk (one shard of an input file at a time) to a temporary file beside the output
(``.<name>.tmp-<pid>``), which is fsynced and renamed over ``--output`` only when every row is in it: a
reader sees the old file or the complete new one, never half, and a killed run leaves no output at all.
What the writer holds is one Parquet row group at most (`ROW_GROUP_BYTES`/`ROW_GROUP_ROWS`); CSV/TSV/JSONL
rows go to the file as they come.

Parquet needs one schema for the whole file, taken from every chunk of every input file (`unify_schemas`):
numbers of different types become float64, nested types are promoted (an empty list's ``list<null>`` and
``list<string>`` give ``list<string>``, struct fields are merged), and a column whose types cannot be unified
(an int beside a string, in one file or across shards) is written as strings (non-string values as JSON).
CSV/TSV/JSONL write values as they are.
"""

from __future__ import annotations

import json
import logging
import math
import os
from pathlib import Path
from typing import Any, Iterable, Optional, Sequence

import numpy as np
import pandas as pd
import pyarrow as pa

from structbert_lite.artifact import fsync_dir
from structbert_lite.score import ScoreError
from structbert_lite.score.texts import prob_column

logger = logging.getLogger(__name__)

OUTPUT_SUFFIXES = (".parquet", ".csv", ".tsv", ".jsonl")
_ARROW_ERRORS = (pa.ArrowInvalid, pa.ArrowTypeError, pa.ArrowNotImplementedError, OverflowError, TypeError, ValueError)
# A Parquet row group is written when the rows held reach either bound: the writer's memory does not grow with the
# output, and readers get row groups of a useful size (not one per 512-row shard).
ROW_GROUP_BYTES = 8 * 1024 * 1024  # Arrow bytes of the rows held
ROW_GROUP_ROWS = 64 * 1024


def output_format(path: Path) -> str:
    """The output's format, from its extension; a clear error for anything else."""
    suffix = Path(path).suffix.lower()
    if suffix not in OUTPUT_SUFFIXES:
        raise ScoreError(
            f"--output {path}: unsupported extension {suffix or '(none)'!r}; use one of {', '.join(OUTPUT_SUFFIXES)}"
        )
    if Path(path).is_dir():
        raise ScoreError(f"--output {path} is a folder; give a file name such as {Path(path) / 'scored.parquet'}")
    return suffix


def parts_folder(output: Path) -> Path:
    """Where a local run keeps its finished shards until the output is complete (resume state)."""
    output = Path(output)
    return output.with_name(output.name + ".parts")


def _as_text(value: Any) -> Optional[str]:
    if value is None or value is pd.NA or (isinstance(value, float) and math.isnan(value)):
        return None
    if isinstance(value, str):
        return value
    if isinstance(value, np.generic):
        value = value.item()
    return json.dumps(value, ensure_ascii=False, default=str)


def _valid_text(value: str) -> str:
    """``value`` with lone surrogates (JSON's "\\ud800") replaced by U+FFFD: UTF-8 files cannot hold them."""
    if value.isascii():
        return value
    try:
        value.encode("utf-8")
        return value
    except UnicodeEncodeError:
        return value.encode("utf-16", "surrogatepass").decode("utf-16", "replace")


def valid_text_frame(frame: pd.DataFrame) -> pd.DataFrame:
    """``frame`` with every string cell encodable as UTF-8 (see `_valid_text`); the error column says which were not."""
    fixed = {}
    for column in frame.columns:
        values = frame[column]
        if values.dtype == object or pd.api.types.is_string_dtype(values.dtype):
            cleaned = [_valid_text(v) if isinstance(v, str) else v for v in values]
            if any(a is not b for a, b in zip(cleaned, values, strict=True)):
                fixed[column] = pd.Series(cleaned, index=frame.index, dtype=object)
    return frame.assign(**fixed) if fixed else frame


def _arrow_array(values: pd.Series) -> pa.Array:
    try:
        return pa.array(values, from_pandas=True)
    except _ARROW_ERRORS:  # mixed Python types in one column (JSONL): keep every value, as text
        return pa.array([_as_text(v) for v in values], pa.string())


def arrow_table(frame: pd.DataFrame) -> pa.Table:
    """``frame`` as an Arrow table, column by column (a column Arrow cannot type becomes strings)."""
    return pa.table({str(c): _arrow_array(frame[c]) for c in frame.columns}) if len(frame.columns) else pa.table({})


def table_schema(frame: pd.DataFrame) -> pa.Schema:
    return arrow_table(frame).schema


def _unify_type(types: Sequence[pa.DataType]) -> pa.DataType:
    known = list(dict.fromkeys(t for t in types if not pa.types.is_null(t)))
    if not known:
        return pa.string()
    if len(known) == 1:
        return known[0]
    if all(pa.types.is_integer(t) or pa.types.is_floating(t) for t in known):
        return pa.float64()
    try:  # nested types that Arrow can widen into one (list<null> + list<string>, struct fields merged)
        return pa.unify_schemas([pa.schema([("v", t)]) for t in known], promote_options="permissive").field("v").type
    except _ARROW_ERRORS:
        return pa.string()


def unify_schemas(schemas: Iterable[pa.Schema]) -> pa.Schema:
    """One schema for columns seen in any of ``schemas`` (first-seen order); conflicting types -> float64/string."""
    types: dict[str, list[pa.DataType]] = {}
    for schema in schemas:
        for field in schema:
            types.setdefault(field.name, []).append(field.type)
    return pa.schema([(name, _unify_type(found)) for name, found in types.items()])


def result_schema(labels: Sequence[str]) -> pa.Schema:
    """Types of the columns scoring adds (see `texts.result_columns`)."""
    probs = [(prob_column(label), pa.float64()) for label in labels]
    return pa.schema([("label", pa.string()), ("score", pa.float64()), *probs, ("error", pa.string())])


def output_schema(input_schema: pa.Schema, labels: Sequence[str]) -> pa.Schema:
    return pa.schema(list(input_schema) + list(result_schema(labels)))


def cast_table(table: pa.Table, schema: pa.Schema) -> pa.Table:
    """``table`` with exactly ``schema``'s columns and types (missing columns are null)."""
    columns = []
    for field in schema:
        if field.name not in table.column_names:
            columns.append(pa.nulls(table.num_rows, field.type))
            continue
        column = table.column(field.name)
        if column.type == field.type:
            columns.append(column)
        elif pa.types.is_string(field.type):
            columns.append(pa.array([_as_text(v) for v in column.to_pylist()], pa.string()))
        else:
            columns.append(column.cast(field.type))
    return pa.Table.from_arrays(columns, schema=schema)


def _json_default(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    return str(value)


def _json_value(value: Any) -> Any:
    if isinstance(value, (float, np.floating)) and math.isnan(value):
        return None
    return None if value is pd.NA else value


def remove_stale_temps(path: Path) -> None:
    """Delete ``.<name>.tmp-<pid>`` files beside ``path`` left by runs that were killed (their pid is gone)."""
    for temp in Path(path).parent.glob(f".{Path(path).name}.tmp-*"):
        pid = temp.name.rsplit("-", 1)[-1]
        if pid.isdigit() and not _pid_alive(int(pid)):
            logger.info("removing %s, left by a run that was killed", temp)
            temp.unlink(missing_ok=True)


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class OutputWriter:
    """Appends chunks of rows to a temporary file; `commit` puts the complete file at ``path``.

    Used as a context manager: leaving it by an exception (or without `commit`) deletes the temporary file.
    """

    def __init__(self, path: Path, schema: pa.Schema):
        self.path = Path(path)
        self.suffix = output_format(self.path)
        self.schema = schema
        self.rows = 0
        self.temp = self.path.with_name(f".{self.path.name}.tmp-{os.getpid()}")
        self._parquet = None
        self._held: list[pa.Table] = []  # Parquet: rows of the row group being gathered
        self._held_bytes = 0
        self._text = None  # CSV/TSV/JSONL: the open temporary file
        self._started = False

    def __enter__(self) -> "OutputWriter":
        remove_stale_temps(self.path)
        self.temp.unlink(missing_ok=True)
        return self

    def __exit__(self, *exc) -> None:
        self._close()
        self.temp.unlink(missing_ok=True)

    def append(self, frame: pd.DataFrame) -> None:
        """Write ``frame`` (columns in ``schema`` order) after the rows written so far."""
        frame = valid_text_frame(frame)
        if self.suffix == ".parquet":
            import pyarrow.parquet as pq

            if self._parquet is None:  # opened with the first rows: the file grows from the first shard on
                self._parquet = pq.ParquetWriter(self.temp, self.schema)
            table = cast_table(arrow_table(frame), self.schema)
            self._held.append(table)
            self._held_bytes += table.nbytes
            if self._held_bytes >= ROW_GROUP_BYTES or sum(t.num_rows for t in self._held) >= ROW_GROUP_ROWS:
                self._write_row_group()
        else:
            if self._text is None:  # newline="": values keep their own line breaks (as pandas writes a path)
                self._text = open(self.temp, "w", encoding="utf-8", newline="")
            if self.suffix in (".csv", ".tsv"):
                sep = "\t" if self.suffix == ".tsv" else ","
                frame.to_csv(self._text, header=not self._started, index=False, sep=sep)
            else:
                for record in frame.to_dict(orient="records"):
                    row = {str(k): _json_value(v) for k, v in record.items()}
                    self._text.write(json.dumps(row, ensure_ascii=False, default=_json_default) + "\n")
        self._started = True
        self.rows += len(frame)

    def _write_row_group(self) -> None:
        if self._held:
            table = pa.concat_tables(self._held)
            self._parquet.write_table(table, row_group_size=max(1, table.num_rows))  # the held rows: one row group
        self._held, self._held_bytes = [], 0

    def _close(self) -> None:
        self._held, self._held_bytes = [], 0
        if self._parquet is not None:
            self._parquet.close()
            self._parquet = None
        if self._text is not None:
            self._text.close()
            self._text = None

    def commit(self) -> Path:
        """fsync the temporary file and rename it over ``path`` (atomic on one filesystem)."""
        if not self._started:
            self.append(pd.DataFrame({field.name: [] for field in self.schema}))
        if self.suffix == ".parquet":
            self._write_row_group()
        self._close()
        fsync_dir(self.temp)
        os.replace(self.temp, self.path)
        fsync_dir(self.path.parent)
        logger.info("wrote %d rows to %s", self.rows, self.path)
        return self.path

"""Resumable bookkeeping of a local run: the shard plan and the parts folder beside the output.

A shard is a row range of one input file (``SHARD_ROWS`` rows). Each finished shard is one Parquet part
holding its result columns only (label, score, prob_*, error; the input columns are re-read when the
output is assembled) plus a JSON sidecar with its row count and the part's sha256, both written as
temp + fsync + rename (`files.atomic_path`), the sidecar last. A re-run with the same plan skips every
shard whose part verifies against its sidecar and redoes the rest::

    scored.parquet.parts/
      plan.json                      artifact digest, input files (path, size, mtime, rows), text column, shard size
      part-00000-000000000000.parquet
      part-00000-000000000000.json   {"rows": 512, "sha256": "...", ...}
      .lock                          lock (files.try_lock) held by the running job: two runs never write one output

The folder is deleted once the output is committed, and on an error when it holds no finished shard.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import shutil
from pathlib import Path
from typing import Sequence

import pandas as pd
import pyarrow as pa

from structbert_lite.artifact import sha256_file
from structbert_lite.files import atomic_path, atomic_write, try_lock
from structbert_lite.score import ScoreError

logger = logging.getLogger(__name__)

SHARD_ROWS = 512  # rows per shard: the unit of work, of progress and of what a kill can cost per worker
PLAN_FILE = "plan.json"
LOCK_FILE = ".lock"
PLAN_VERSION = 1


@dataclasses.dataclass(frozen=True)
class Shard:
    """Rows ``start:stop`` of input file number ``file_index``."""

    file_index: int
    start: int
    stop: int

    @property
    def rows(self) -> int:
        return self.stop - self.start

    @property
    def name(self) -> str:
        return f"part-{self.file_index:05d}-{self.start:012d}"


def plan_shards(file_rows: Sequence[int], shard_rows: int = SHARD_ROWS) -> list[Shard]:
    """Shards covering every row of every file once, in order (a file with no rows has none)."""
    return [
        Shard(index, start, min(start + shard_rows, rows))
        for index, rows in enumerate(file_rows)
        for start in range(0, rows, shard_rows)
    ]


class PartStore:
    """The parts folder of one output; use as a context manager (it holds the folder's lock)."""

    def __init__(self, folder: Path, plan: dict, result_schema: pa.Schema):
        self.folder = Path(folder)
        self.plan = plan
        self.schema = result_schema
        self._held = None
        self._created = False

    def __enter__(self) -> "PartStore":
        if not self.folder.exists():
            self.folder.mkdir(parents=True)
            self._created = True
        self._lock()
        try:
            plan_path = self.folder / PLAN_FILE
            if plan_path.is_file():
                self._check_plan(plan_path)
            else:
                atomic_write(plan_path, json.dumps(self.plan, indent=2))
        except BaseException:
            self._unlock()
            raise
        return self

    def __exit__(self, exc_type, *exc) -> None:
        if exc_type is not None and not any(self.folder.glob("part-*.json")):
            shutil.rmtree(self.folder, ignore_errors=True)  # nothing worth resuming: leave no empty folder
        elif exc_type is not None:
            logger.warning("finished shards are kept in %s: run the same command again to resume", self.folder)
        self._unlock()

    def _lock(self) -> None:
        self._held = try_lock(self.folder / LOCK_FILE)
        if self._held is None:
            raise ScoreError(
                f"another `structbert-lite score` is writing {self.folder}; wait for it or choose another --output"
            )

    def _unlock(self) -> None:
        if self._held is not None:
            self._held.release()
            self._held = None

    def _check_plan(self, plan_path: Path) -> None:
        try:
            found = json.loads(plan_path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            found = None
        if found != self.plan:
            changed = sorted(k for k in self.plan if not isinstance(found, dict) or found.get(k) != self.plan[k])
            raise ScoreError(
                f"{self.folder} holds the unfinished parts of a different run "
                f"(changed: {', '.join(changed) or 'plan'}); "
                "delete that folder to start over, or choose another --output"
            )
        logger.info("resuming from %s", self.folder)

    def _paths(self, shard: Shard) -> tuple[Path, Path]:
        return self.folder / f"{shard.name}.parquet", self.folder / f"{shard.name}.json"

    def is_done(self, shard: Shard) -> bool:
        """Whether ``shard``'s part is complete: its sidecar exists and the part matches its row count and hash."""
        part, sidecar = self._paths(shard)
        try:
            meta = json.loads(sidecar.read_text(encoding="utf-8"))
            return meta["rows"] == shard.rows and meta["stop"] == shard.stop and sha256_file(part) == meta["sha256"]
        except (OSError, ValueError, KeyError, TypeError):
            return False

    def pending(self, shards: Sequence[Shard]) -> list[Shard]:
        """The shards still to score; parts that do not verify are deleted (and redone)."""
        todo = []
        for shard in shards:
            if not self.is_done(shard):
                for path in self._paths(shard):
                    path.unlink(missing_ok=True)
                todo.append(shard)
        return todo

    def write(self, shard: Shard, results: pd.DataFrame) -> None:
        """Store ``shard``'s result columns: the part first, then its sidecar (which marks it complete)."""
        import pyarrow.parquet as pq

        if len(results) != shard.rows:
            raise ScoreError(f"internal error: {shard.name} got {len(results)} results for {shard.rows} rows")
        part, sidecar = self._paths(shard)
        table = pa.Table.from_pandas(results, schema=self.schema, preserve_index=False)
        with atomic_path(part) as tmp:
            pq.write_table(table, tmp)
        meta = {"rows": shard.rows, "file_index": shard.file_index, "start": shard.start, "stop": shard.stop,
                "sha256": sha256_file(part)}
        atomic_write(sidecar, json.dumps(meta))

    def read(self, shard: Shard) -> pd.DataFrame:
        """``shard``'s result columns, checked against its sidecar again."""
        import pyarrow.parquet as pq

        if not self.is_done(shard):
            raise ScoreError(f"{self._paths(shard)[0]} is missing or corrupt; run the same command again to redo it")
        return pq.read_table(self._paths(shard)[0]).to_pandas()

    def remove(self) -> None:
        """Delete the folder (the output is committed: nothing left to resume)."""
        self._unlock()
        shutil.rmtree(self.folder, ignore_errors=True)

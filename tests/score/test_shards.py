"""score/shards.py on tiny frames: the shard plan, parts that verify against their sidecars, a plan that
changed, the folder's lock, and what is left behind on an error."""

from __future__ import annotations

import json

import pandas as pd
import pyarrow as pa
import pytest

from structbert_lite.score import ScoreError
from structbert_lite.score.shards import LOCK_FILE, PLAN_FILE, PartStore, Shard, plan_shards

SCHEMA = pa.schema([("label", pa.string()), ("score", pa.float32())])
PLAN = {"artifact": "sha256:abc", "files": [{"path": "in.csv", "rows": 5}], "shard_rows": 2}


def results(rows: int) -> pd.DataFrame:
    return pd.DataFrame({"label": ["Positive"] * rows, "score": [0.5] * rows}).astype({"score": "float32"})


def test_plan_covers_every_row_once_in_order():
    shards = plan_shards([5, 0, 2], shard_rows=2)
    assert shards == [Shard(0, 0, 2), Shard(0, 2, 4), Shard(0, 4, 5), Shard(2, 0, 2)]
    assert [s.rows for s in shards] == [2, 2, 1, 2] and shards[2].name == "part-00000-000000000004"


def test_written_parts_are_done_and_read_back(tmp_path):
    shards = plan_shards([5], shard_rows=2)
    with PartStore(tmp_path / "parts", PLAN, SCHEMA) as store:
        assert store.pending(shards) == shards
        store.write(shards[0], results(2))
        assert store.is_done(shards[0]) and store.pending(shards) == shards[1:]
        assert store.read(shards[0]).equals(results(2))
        with pytest.raises(ScoreError, match="got 3 results for 2 rows"):
            store.write(shards[1], results(3))
    assert json.loads((tmp_path / "parts" / PLAN_FILE).read_text(encoding="utf-8")) == PLAN
    assert not [p.name for p in (tmp_path / "parts").iterdir() if ".tmp" in p.name]  # no temporary file left


def test_a_corrupt_part_is_redone(tmp_path):
    shards = plan_shards([4], shard_rows=2)
    with PartStore(tmp_path / "parts", PLAN, SCHEMA) as store:
        store.write(shards[0], results(2))
        part = tmp_path / "parts" / f"{shards[0].name}.parquet"
        part.write_bytes(part.read_bytes()[:-8])  # torn: its sha256 no longer matches the sidecar
        assert store.pending(shards) == shards and not part.exists()
        with pytest.raises(ScoreError, match="missing or corrupt"):
            store.read(shards[0])


def test_a_resume_with_another_plan_is_refused(tmp_path):
    shards = plan_shards([4], shard_rows=2)
    with PartStore(tmp_path / "parts", PLAN, SCHEMA) as store:
        store.write(shards[0], results(2))
    with PartStore(tmp_path / "parts", PLAN, SCHEMA) as store:  # the same plan resumes
        assert store.pending(shards) == shards[1:]
    with pytest.raises(ScoreError, match=r"different run \(changed: artifact\)"):
        with PartStore(tmp_path / "parts", {**PLAN, "artifact": "sha256:other"}, SCHEMA):
            pass


def test_the_folder_is_locked_while_a_store_holds_it(tmp_path):
    with PartStore(tmp_path / "parts", PLAN, SCHEMA):
        assert (tmp_path / "parts" / LOCK_FILE).exists()
        with pytest.raises(ScoreError, match="another `structbert-lite score` is writing"):
            with PartStore(tmp_path / "parts", PLAN, SCHEMA):
                pass
    with PartStore(tmp_path / "parts", PLAN, SCHEMA) as store:  # released on exit
        store.remove()
    assert not (tmp_path / "parts").exists()


def test_an_error_keeps_finished_shards_and_drops_an_empty_folder(tmp_path):
    shards = plan_shards([4], shard_rows=2)
    with pytest.raises(RuntimeError):
        with PartStore(tmp_path / "empty", PLAN, SCHEMA):
            raise RuntimeError("killed before any shard")
    assert not (tmp_path / "empty").exists()
    with pytest.raises(RuntimeError):
        with PartStore(tmp_path / "parts", PLAN, SCHEMA) as store:
            store.write(shards[0], results(2))
            raise RuntimeError("killed after one shard")
    assert (tmp_path / "parts" / f"{shards[0].name}.json").is_file()

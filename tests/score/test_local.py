"""The local engine: a killed worker, a killed command and a resume lose and duplicate no row; shards of
different shapes assemble into one output in input order."""

from __future__ import annotations

import fcntl
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import psutil
import pytest
from score_support import BAD_VALUES, assert_same_results, make_texts, read_output, write_jsonl_shards

from structbert_lite.score.job import ScoreOptions, score_corpus

SHARD_ROWS = 64
ROWS = 3000
# score_corpus in a process of its own, with small shards (many units of work to kill in the middle of).
RUNNER = """
import logging, sys
from pathlib import Path
logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
from structbert_lite.score.job import ScoreOptions, score_corpus
s = score_corpus(ScoreOptions(Path(sys.argv[1]), sys.argv[2], Path(sys.argv[3]), workers=int(sys.argv[4]),
                              shard_rows=int(sys.argv[5]), quiet=True))
print("SCORED", s.scored_rows, s.rows)
"""


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> Path:
    texts = make_texts(ROWS, seed=11)
    for n, value in enumerate(BAD_VALUES):
        texts[100 * n + 7] = value
    folder = tmp_path_factory.mktemp("corpus")
    write_jsonl_shards(folder, texts, shards=2)
    return folder


@pytest.fixture(scope="module")
def reference(corpus, int8_variant, tmp_path_factory) -> pd.DataFrame:
    """The uninterrupted answer: one worker, in this process."""
    output = tmp_path_factory.mktemp("reference") / "scored.parquet"
    score_corpus(ScoreOptions(int8_variant, str(corpus / "*.jsonl"), output, workers=1, quiet=True))
    return read_output(output)


def _start(variant, corpus, output, workers=2, shard_rows=SHARD_ROWS) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-c", RUNNER, str(variant), str(corpus / "*.jsonl"), str(output), str(workers),
         str(shard_rows)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True,
    )


def _finished_parts(output: Path) -> int:
    return len(list(output.with_name(output.name + ".parts").glob("part-*.json")))


def _wait_for_parts(process: subprocess.Popen, output: Path, count: int, timeout: float = 180.0) -> int:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        done = _finished_parts(output)
        if done >= count:
            return done
        assert process.poll() is None, process.communicate()
        time.sleep(0.005)
    raise AssertionError(f"no {count} finished parts after {timeout} s")


def _workers(process: subprocess.Popen) -> list[psutil.Process]:
    children = psutil.Process(process.pid).children(recursive=True)
    return [c for c in children if "resource_tracker" not in " ".join(c.cmdline())]


def test_a_killed_worker_loses_and_duplicates_no_row(corpus, int8_variant, reference, tmp_path):
    output = tmp_path / "scored.parquet"
    process = _start(int8_variant, corpus, output)
    total_shards = -(-ROWS // SHARD_ROWS) + 1  # two files: the second starts a shard of its own
    done = _wait_for_parts(process, output, 2)
    victim = _workers(process)[0]
    victim.send_signal(signal.SIGKILL)  # a worker of ours, by pid
    assert done < total_shards and not output.exists(), "the run ended before the kill"
    out, err = process.communicate(timeout=300)
    assert process.returncode == 0, err
    assert "a worker process died" in err
    assert out.split()[-2:] == [str(ROWS), str(ROWS)]
    assert_same_results(read_output(output), reference, atol=0.0)  # int8 scores one text at a time: bit for bit
    assert not output.with_name(output.name + ".parts").exists()


def test_a_killed_command_resumes_from_its_verified_parts(corpus, int8_variant, reference, tmp_path):
    output = tmp_path / "scored.parquet"
    process = _start(int8_variant, corpus, output)
    _wait_for_parts(process, output, 3)
    os.killpg(process.pid, signal.SIGKILL)  # the command and its workers (its own session)
    process.communicate(timeout=60)
    parts = output.with_name(output.name + ".parts")
    assert not output.exists() and not list(tmp_path.glob(".scored.parquet.tmp-*"))
    finished = sorted(parts.glob("part-*.parquet"))
    assert (parts / "plan.json").is_file() and 3 <= len(finished) < ROWS // SHARD_ROWS
    deadline = time.monotonic() + 30
    while any(p.is_running() and p.status() != psutil.STATUS_ZOMBIE for p in _session(process.pid)):
        assert time.monotonic() < deadline, "processes of the killed command outlived it"
        time.sleep(0.2)
    # A part that no longer matches its sidecar is redone, not trusted.
    finished[0].write_bytes(finished[0].read_bytes()[:-10])
    # Resuming with other settings would mix two plans: refused.
    mixed = subprocess.run([sys.executable, "-c", RUNNER, str(int8_variant), str(corpus / "*.jsonl"), str(output),
                            "2", "32"],
                           capture_output=True, text=True, timeout=300)
    assert mixed.returncode != 0
    assert "holds the unfinished parts of a different run (changed: shard_rows)" in mixed.stderr
    resumed = _start(int8_variant, corpus, output)
    out, err = resumed.communicate(timeout=300)
    assert resumed.returncode == 0, err
    scored, rows = map(int, out.split()[-2:])
    assert rows == ROWS and scored == ROWS - (len(finished) - 1) * SHARD_ROWS, (scored, len(finished))
    assert "resuming" in err
    assert_same_results(read_output(output), reference, atol=0.0)
    assert not parts.exists()


def _session(sid: int) -> list[psutil.Process]:
    found = []
    for proc in psutil.process_iter():
        try:
            if os.getsid(proc.pid) == sid:
                found.append(proc)
        except (ProcessLookupError, PermissionError, psutil.Error):
            continue
    return found


def test_shards_with_different_column_types_assemble_in_order(fp32_variant, tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    texts = make_texts(30, seed=5)
    pd.DataFrame({"id": range(0, 10), "text": texts[:10], "extra": 1.5}).to_parquet(data / "b-000.parquet")
    pd.DataFrame({"id": [f"s{i}" for i in range(10, 20)], "text": texts[10:20]}).to_parquet(data / "b-001.parquet")
    pd.DataFrame({"id": range(20, 30), "text": texts[20:], "extra": [None] * 10}).to_parquet(data / "a-000.parquet")
    for suffix in (".parquet", ".csv"):
        output = tmp_path / f"scored{suffix}"
        summary = score_corpus(ScoreOptions(fp32_variant, str(data / "*.parquet"), output, workers=1, quiet=True))
        frame = read_output(output)
        assert summary.rows == 30 and len(frame) == 30
        expected_ids = [str(i) for i in range(20, 30)] + [str(i) for i in range(10)] + [f"s{i}" for i in range(10, 20)]
        assert [str(i) for i in frame["id"]] == expected_ids
        assert frame["text"].tolist() == texts[20:] + texts[:10] + texts[10:20]
        assert list(frame.columns)[:3] == ["id", "text", "extra"] and frame["label"].notna().all()


def test_two_runs_never_write_one_output(fp32_variant, tmp_path):
    source = tmp_path / "in.csv"
    source.write_text("text\n好\n", encoding="utf-8")
    output = tmp_path / "scored.parquet"
    parts = output.with_name(output.name + ".parts")
    parts.mkdir()
    with open(parts / ".lock", "w") as held:
        fcntl.flock(held, fcntl.LOCK_EX)
        from structbert_lite.score import ScoreError

        with pytest.raises(ScoreError, match="another `structbert-lite score` is writing"):
            score_corpus(ScoreOptions(fp32_variant, str(source), output, workers=1, quiet=True))
    assert not output.exists()

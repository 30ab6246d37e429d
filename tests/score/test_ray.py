"""The Ray engine against a real local cluster (`ray start --head` on 127.0.0.1, started and stopped here):
the same rows, labels and errors as the local engine, also when an actor is killed in the middle."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path

import pandas as pd
import psutil
import pytest
from score_support import BAD_VALUES, assert_same_results, make_texts, read_output, score_command, write_jsonl_shards

from structbert_lite.score.job import ScoreOptions, score_corpus

ray = pytest.importorskip("ray")
from ray_cluster import LocalRayCluster  # noqa: E402

RUN_TIMEOUT_S = 300


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    # A short temp dir: Ray's unix socket paths must stay under ~107 characters.
    folder = Path(tempfile.mkdtemp(prefix="sbl-ray-"))
    try:
        with LocalRayCluster(folder, cpus=2) as running:
            yield running
    finally:
        shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> Path:
    """2,000 reviews-to-be over 3 JSONL shards, with every kind of bad row (JSON numbers, lists, lone surrogates)."""
    texts: list = make_texts(2000, seed=21, shortest=40, longest=120)
    bad = [*BAD_VALUES, 7, ["a"], "\ud800x"]
    for n, value in enumerate(bad):
        texts[250 * n + 3] = value
    folder = tmp_path_factory.mktemp("ray-corpus")
    write_jsonl_shards(folder, texts, shards=3)
    return folder


def _local(variant: Path, pattern: str, output: Path) -> pd.DataFrame:
    score_corpus(ScoreOptions(variant, pattern, output, workers=1, quiet=True))
    return read_output(output)


def _score_actors(cluster: LocalRayCluster) -> list[psutil.Process]:
    found = []
    for proc in cluster.descendants():
        try:
            if "ScoreActor" in " ".join(proc.cmdline()) + proc.name():
                found.append(proc)
        except psutil.Error:
            continue
    return found


def test_ray_matches_local_and_survives_a_killed_actor(cluster, corpus, int8_variant, tmp_path):
    expected = _local(int8_variant, str(corpus / "*.jsonl"), tmp_path / "local.parquet")
    output = tmp_path / "ray.parquet"
    command = score_command("--artifact", str(int8_variant), "--input", str(corpus / "*.jsonl"),
                            "--output", str(output), "--engine", "ray", "--ray-address", cluster.address,
                            "--workers", "2")
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=cluster.env)
    deadline = time.monotonic() + RUN_TIMEOUT_S
    temp = tmp_path / f".ray.parquet.tmp-{process.pid}"
    while not (temp.exists() and temp.stat().st_size > 0):  # the driver holds the first shard's results
        assert process.poll() is None, process.communicate()
        assert time.monotonic() < deadline, "no results after the time limit"
        time.sleep(0.01)
    victim = _score_actors(cluster)[0]
    victim.send_signal(signal.SIGKILL)  # an actor of our own cluster, by pid
    assert process.poll() is None and not output.exists(), "the run ended before the kill"
    out, err = process.communicate(timeout=RUN_TIMEOUT_S)
    assert process.returncode == 0, err
    assert not victim.is_running()
    actual = read_output(output)
    assert_same_results(actual, expected, atol=0.0)  # int8 runs one text at a time in both engines: bit for bit
    assert actual["error"].notna().sum() == len(BAD_VALUES) + 3
    assert "Scored 2000 rows" in out and "with the ray engine (2 worker(s) x 1 thread(s))" in out


def test_ray_reads_parquet_shards_and_starts_its_own_cluster(fp32_variant, tmp_path, cluster):
    """No --ray-address: `score` starts a local Ray instance and stops it; Parquet goes through read_parquet."""
    data = tmp_path / "data"
    data.mkdir()
    texts = make_texts(1200, seed=4)
    texts[5] = None
    for n in range(3):
        part = pd.DataFrame({"id": range(400 * n, 400 * (n + 1)), "text": texts[400 * n:400 * (n + 1)]})
        part.to_parquet(data / f"part-{n}.parquet")
    empty = pd.DataFrame({"id": pd.Series([], dtype="int64"), "text": pd.Series([], dtype=object)})
    empty.to_parquet(data / "part-1-empty.parquet")
    expected = _local(fp32_variant, str(data / "*.parquet"), tmp_path / "local.csv")
    output = tmp_path / "ray.csv"
    # The cluster fixture's token settings (a started local instance takes its token from there, not from
    # ~/.ray), and a temp dir of its own (not /tmp/ray). RAY_ADDRESS is unset: no cluster to join.
    env = {**cluster.env, "RAY_TMPDIR": str(cluster.folder / "own")}
    process = subprocess.Popen(
        score_command("--artifact", str(fp32_variant), "--input", str(data / "*.parquet"), "--output", str(output),
                      "--engine", "ray", "--threads", "1"),
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, start_new_session=True,
    )
    try:
        out, err = process.communicate(timeout=RUN_TIMEOUT_S)
    finally:
        _kill_session(process.pid)
    assert process.returncode == 0, err
    assert_same_results(read_output(output), expected)  # fp32 batches differ by neighbours: float noise only
    assert "Scored 1200 rows" in out


def _kill_session(sid: int) -> None:
    """Stop whatever the command started and left behind (its own session), by pid."""
    for proc in psutil.process_iter():
        try:
            if proc.pid != os.getpid() and os.getsid(proc.pid) == sid:
                proc.kill()
        except (ProcessLookupError, PermissionError, psutil.Error):
            continue

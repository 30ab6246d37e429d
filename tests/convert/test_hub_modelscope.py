"""The ModelScope download path, for real: the unchanged modelscope client (in the child process that
`sources.resolve_source` starts) against tests/hub_server.py on 127.0.0.1, serving a tiny checkpoint in the
real repo layout. Every failure mode ends in one line naming what failed; a re-run after it resumes or
re-downloads cleanly; a partial cache is never used."""

from __future__ import annotations

import hashlib
import subprocess
import sys
from pathlib import Path

import pytest
from hub_support import fault_then_clean_rerun, resolve_fails

from structbert_lite.convert.checkpoint import load_classifier
from structbert_lite.convert.sources import resolve_source
from tests.builders import free_port, write_modelscope_checkpoint
from tests.hub_server import HubServer, point_clients_at, same_files

MODEL = "damo/nlp_structbert_sentiment-classification_chinese-tiny"
RENAMED = "iic/nlp_structbert_sentiment-classification_chinese-tiny"


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory):
    root = tmp_path_factory.mktemp("served")
    return {
        "master": write_modelscope_checkpoint(root / "master", seed=1),
        "v1.0.1": write_modelscope_checkpoint(root / "v1.0.1", seed=2, labels=("model.id2label",)),
    }


@pytest.fixture
def hub(tmp_path, monkeypatch, checkpoints):
    with HubServer(stall_seconds=20) as server:
        for model_id in (MODEL, RENAMED):
            server.add_repo(model_id, checkpoints["master"], {"v1.0.1": checkpoints["v1.0.1"]})
        point_clients_at(monkeypatch.setenv, server.url, tmp_path)
        yield server


@pytest.mark.parametrize("model_id", [MODEL, RENAMED])
def test_download_is_byte_identical_and_traceable(hub, checkpoints, model_id):
    source = resolve_source(model_id)
    assert source.kind == "modelscope" and source.id == model_id
    assert source.revision == "master" and source.endpoint == hub.url
    names = same_files(checkpoints["master"], source.path)
    assert {"configuration.json", "config.json", "pytorch_model.bin", "vocab.txt", "label_mapping.json"} <= set(names)
    loaded = load_classifier(source.path)  # the manifest's file hashes come from here
    for name in names:
        assert loaded.file_hashes[name] == hashlib.sha256((checkpoints["master"] / name).read_bytes()).hexdigest()
    assert loaded.id2label == {0: "负面", 1: "正面"} and loaded.labels_from == "label_mapping.json"
    owner_name = model_id
    assert hub.requests_for(f"/api/v1/models/{owner_name}/repo/files")[0]["query"]["Revision"] == "master"
    file_requests = hub.requests_for(f"/api/v1/models/{owner_name}/repo")
    assert {r["query"]["FilePath"] for r in file_requests if "FilePath" in r["query"]} >= set(names)


def test_pinned_revision(hub, checkpoints):
    source = resolve_source(MODEL, revision="v1.0.1")
    assert source.revision == "v1.0.1" and source.path.name == "v1.0.1"
    same_files(checkpoints["v1.0.1"], source.path)
    assert all(r["query"].get("Revision") == "v1.0.1" for r in hub.requests_for("/repo") if "Revision" in r["query"])
    assert load_classifier(source.path).labels_from == "configuration.json model.id2label"


def test_unknown_revision_is_named(hub):
    message, _ = resolve_fails(MODEL, revision="v9")
    assert f"has model '{MODEL}' but no revision 'v9'" in message


def test_404_names_the_id_and_suggests_iic_for_damo(hub):
    message, elapsed = resolve_fails("damo/nlp_structbert_no-such-model")
    assert "has no model 'damo/nlp_structbert_no-such-model' (HTTP 404)" in message
    assert "try --model iic/nlp_structbert_no-such-model" in message and "--model DIR" in message
    assert elapsed < 10
    message, _ = resolve_fails("iic/nlp_structbert_no-such-model")
    assert "has no model 'iic/nlp_structbert_no-such-model'" in message and "moved" not in message


# (fault, target, phrase in the one-line message)
FAILURES = {
    "500-listing": ("500", "listing", "answered HTTP 500 for the file list of"),
    "500-file": ("500", "pytorch_model.bin", "answered HTTP 500 for pytorch_model.bin of"),
    "404-file": ("404", "vocab.txt", "lists vocab.txt for"),
    "short-file": ("short", "pytorch_model.bin", "failed while fetching pytorch_model.bin of"),
    "hash-mismatch": ("corrupt", "pytorch_model.bin", "served pytorch_model.bin of"),
    "stall-listing": ("stall", "listing", "stopped answering while sending the file list of"),
    "stall-file": ("stall", "pytorch_model.bin", "stopped answering while sending pytorch_model.bin of"),
}


@pytest.mark.parametrize("case", list(FAILURES))
def test_failure_is_one_line_then_a_rerun_is_clean(hub, checkpoints, case):
    path = fault_then_clean_rerun(hub, MODEL, FAILURES[case], Path(hub_cache(hub)) / "master", checkpoints["master"])
    load_classifier(path)


def hub_cache(hub) -> Path:
    import os

    return Path(os.environ["MODELSCOPE_CACHE"]) / "models" / MODEL.replace("/", "--") / "snapshots"


def test_a_body_cut_short_once_is_resumed_with_a_range_request(hub, checkpoints):
    hub.inject("short", "pytorch_model.bin", times=1)
    source = resolve_source(MODEL)
    same_files(checkpoints["master"], source.path)
    ranges = [r["range"] for r in hub.requests_for("pytorch_model.bin")]
    assert ranges[0] is None and ranges[-1] and ranges[-1].startswith("bytes=")


def test_a_damaged_cache_is_not_trusted(hub, checkpoints):
    source = resolve_source(MODEL)
    weights = source.path / "pytorch_model.bin"
    data = bytearray(weights.read_bytes())
    data[len(data) // 2] ^= 0xFF
    weights.write_bytes(bytes(data))
    before = len(hub.requests_for("pytorch_model.bin"))
    again = resolve_source(MODEL)
    same_files(checkpoints["master"], again.path)
    assert len(hub.requests_for("pytorch_model.bin")) == before + 1  # fetched again, the others were verified


def test_unchanged_cache_is_reused_without_refetching(hub):
    resolve_source(MODEL)
    fetched = len([r for r in hub.log if "FilePath" in r["query"]])
    resolve_source(MODEL)
    assert len([r for r in hub.log if "FilePath" in r["query"]]) == fetched  # listing only; files verified locally


def test_connection_refused_is_quick_and_says_how_to_work_offline(monkeypatch, tmp_path):
    port = free_port()
    point_clients_at(monkeypatch.setenv, f"http://127.0.0.1:{port}", tmp_path)
    message, elapsed = resolve_fails(MODEL)
    assert "connection refused" in message and "--model DIR" in message and "make demo" in message
    assert elapsed < 15


def test_standalone_server_serves_a_folder(tmp_path, monkeypatch, checkpoints):
    """`python -m tests.hub_server --model-id … --dir … --port …`, as the lead uses it for `make convert`."""
    port = free_port()
    repo_root = Path(__file__).resolve().parents[2]
    command = [sys.executable, "-m", "tests.hub_server", "--model-id", MODEL, "--dir", str(checkpoints["master"]),
               "--port", str(port)]
    server = subprocess.Popen(command, cwd=repo_root, stdout=subprocess.PIPE, text=True)
    try:
        assert server.stdout.readline().startswith(f"serving {MODEL}")
        point_clients_at(monkeypatch.setenv, f"http://127.0.0.1:{port}", tmp_path)
        same_files(checkpoints["master"], resolve_source(MODEL).path)
    finally:
        server.terminate()
        assert server.wait(timeout=10) == 0

"""`hf:` sources for real: the unchanged huggingface_hub client (HF_ENDPOINT) against tests/hub_server.py.

huggingface_hub checks sizes only, and when the hub does not answer it returns whatever snapshot folder the
cache holds. These tests pin what we add: the hub's file list (with hashes) is required, every file's sha256 /
git blob id is checked, a damaged file is fetched again, and a partial cache is never returned."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest
from hub_support import fault_then_clean_rerun, resolve_fails

from structbert_lite.convert.checkpoint import load_classifier
from structbert_lite.convert.sources import resolve_source
from tests.builders import write_modelscope_checkpoint
from tests.hub_server import HubServer, point_clients_at, same_files

REPO = "someone/structbert-tiny"
SPEC = f"hf:{REPO}"


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory):
    root = tmp_path_factory.mktemp("served")
    return {
        "main": write_modelscope_checkpoint(root / "main", seed=3),
        "v2": write_modelscope_checkpoint(root / "v2", seed=4, weights="model.safetensors"),
    }


@pytest.fixture
def hub(tmp_path, monkeypatch, checkpoints):
    with HubServer(stall_seconds=20) as server:
        server.add_repo(REPO, checkpoints["main"], {"v2": checkpoints["v2"]})
        point_clients_at(monkeypatch.setenv, server.url, tmp_path)
        yield server


def test_download_is_byte_identical_at_a_resolved_commit(hub, checkpoints):
    source = resolve_source(SPEC)
    assert source.kind == "huggingface" and source.id == SPEC and source.endpoint == hub.url
    assert source.revision == hub.repos[REPO].commits["main"]  # the commit sha actually downloaded
    names = same_files(checkpoints["main"], source.path)
    loaded = load_classifier(source.path)
    for name in names:
        assert loaded.file_hashes[name] == hashlib.sha256((checkpoints["main"] / name).read_bytes()).hexdigest()


def test_pinned_revision_resolves_to_its_commit(hub, checkpoints):
    source = resolve_source(SPEC, revision="v2")
    assert source.revision == hub.repos[REPO].commits["v2"]
    same_files(checkpoints["v2"], source.path)
    assert load_classifier(source.path).weights_file == "model.safetensors"


def test_unknown_revision_and_repo_are_named(hub):
    message, _ = resolve_fails(SPEC, revision="nope")
    assert f"has {SPEC} but no revision 'nope'" in message
    message, elapsed = resolve_fails("hf:someone/missing")
    assert "has no model hf:someone/missing" in message and elapsed < 10


FAILURES = {
    "500-listing": ("500", "listing", "answered HTTP 500 for the file list of"),
    "500-file": ("500", "pytorch_model.bin", "answered HTTP 500 for pytorch_model.bin of"),
    "short-file": ("short", "pytorch_model.bin", "failed while fetching pytorch_model.bin of"),
    "hash-mismatch-lfs": ("corrupt", "pytorch_model.bin", "served pytorch_model.bin (wrong sha256)"),
    "hash-mismatch-git": ("corrupt", "vocab.txt", "served vocab.txt (wrong git blob id)"),
    "stall-listing": ("stall", "listing", "stopped answering while sending the file list of"),
    "stall-file": ("stall", "pytorch_model.bin", "stopped answering while sending pytorch_model.bin of"),
}


@pytest.mark.parametrize("case", list(FAILURES))
def test_failure_is_one_line_then_a_rerun_is_clean(hub, checkpoints, case):
    fault_then_clean_rerun(hub, SPEC, FAILURES[case], snapshot_dir(hub), checkpoints["main"])


def snapshot_dir(hub) -> Path:
    import os

    name = "models--" + REPO.replace("/", "--")
    return Path(os.environ["HF_HOME"]) / "hub" / name / "snapshots" / hub.repos[REPO].commits["main"]


def test_a_partial_cache_is_not_returned_when_the_hub_is_down(hub):
    """huggingface_hub alone returns the cached (partial) snapshot folder when its file listing fails."""
    hub.inject("500", "pytorch_model.bin")
    resolve_fails(SPEC)  # config.json, vocab.txt … are cached; the weights are not
    hub.clear_faults()
    hub.inject("500", "listing")
    message, _ = resolve_fails(SPEC)
    assert "HTTP 500 for the file list" in message


def test_a_damaged_cached_blob_is_fetched_again(hub, checkpoints):
    source = resolve_source(SPEC)
    blob = (source.path / "pytorch_model.bin").resolve()
    data = bytearray(blob.read_bytes())
    data[len(data) // 3] ^= 0xFF
    blob.write_bytes(bytes(data))
    again = resolve_source(SPEC)
    same_files(checkpoints["main"], again.path)


def test_offline_mode_is_an_error_not_the_cache(hub, monkeypatch):
    resolve_source(SPEC)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    message, _ = resolve_fails(SPEC)
    assert "HF_HUB_OFFLINE is set" in message and "--model DIR" in message

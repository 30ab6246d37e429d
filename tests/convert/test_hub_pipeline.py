"""`structbert-lite run --model damo/<id>` end to end over a real local hub (tests/hub_server.py, the unchanged
modelscope client in the download child): the published set traces its source to the hub, and a wrong id
fails in one line before anything is written."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import pytest

from structbert_lite.cli import EXIT_SPEED_UNVERIFIED, main
from structbert_lite.parity import PARITY_SENTENCES
from structbert_lite.publish.output_set import RUN_MANIFEST, runs_root
from tests.builders import fast_validate, self_labels, write_config, write_eval_csv, write_tiny_checkpoint
from tests.ci.modelscope_repo import write_modelscope_repo
from tests.hub_server import HubServer, point_clients_at

MODEL = "damo/nlp_structbert_sentiment-classification_chinese-tiny"
TEXTS = [s[i % 3:] + s[: i % 5] for i, s in enumerate(PARITY_SENTENCES * 4)]
PUBLISHED = (0, EXIT_SPEED_UNVERIFIED)  # a busy machine may not verify speed; the set is published either way


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    """A tiny self-labelled checkpoint in the real ModelScope repo layout, and its eval file."""
    root = tmp_path_factory.mktemp("hub-repo")
    checkpoint = write_tiny_checkpoint(root / "src", layout="modelscope", center_on=TEXTS)
    repo = write_modelscope_repo(checkpoint, root / "repo")
    eval_csv = write_eval_csv(root / "eval.csv", TEXTS, self_labels(repo, TEXTS, max_length=64))
    return repo, eval_csv


@pytest.fixture
def hub(tmp_path, monkeypatch, served):
    with HubServer(stall_seconds=10) as server:
        server.add_repo(MODEL, served[0])
        point_clients_at(monkeypatch.setenv, server.url, tmp_path)
        yield server


def fp32_config(tmp_path: Path) -> str:
    """One exported variant: every variant's manifest carries the same source block."""
    config = {
        "name": "from-config",
        "model": {"max_length": 64},
        "eval": {"min_accuracy": 0.5},
        "variants": [{"name": "fp32", "step": "export", "gate": {"max_logit_diff": 0.001, "min_agreement": 0.999}}],
        "validate": fast_validate(),
    }
    return write_config(tmp_path / "fp32.yaml", config)


def served_key_remaps(repo: Path) -> dict[str, int]:
    import torch

    keys = torch.load(repo / "pytorch_model.bin", weights_only=True).keys()
    return {"encoder.* -> bert.*": sum(k.startswith("encoder.") for k in keys),
            "head.classifier.* -> classifier.*": sum(k.startswith("head.classifier.") for k in keys)}


def cache_entries(files_only: bool) -> list[str]:
    cache = Path(os.environ["MODELSCOPE_CACHE"])
    if not cache.exists():
        return []
    return sorted(str(p.relative_to(cache)) for p in cache.rglob("*") if p.is_file() or not files_only)


def test_run_over_the_hub_traces_the_source(tmp_path, monkeypatch, hub, served, capsys):
    repo, eval_csv = served
    monkeypatch.chdir(tmp_path)  # the default output folder: artifacts/<the hub id's model name>/
    code = main(["run", "--config", fp32_config(tmp_path), "--model", MODEL, "--eval", str(eval_csv), "--quiet"])
    assert code in PUBLISHED, capsys.readouterr().err
    out = tmp_path / "artifacts" / MODEL.split("/")[1]
    assert out.is_symlink() and (out / RUN_MANIFEST).is_file()
    manifest = json.loads((out / "fp32" / "manifest.json").read_text(encoding="utf-8"))
    assert manifest["name"] == MODEL.split("/")[1]
    source = manifest["source"]
    assert {k: source[k] for k in ("kind", "id", "revision", "endpoint")} == {
        "kind": "modelscope", "id": MODEL, "revision": "master", "endpoint": hub.url}
    served_hashes = {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in repo.iterdir()}
    assert source["file_hashes"] == served_hashes and len(served_hashes) == 5
    assert source["labels_from"] == "label_mapping.json"
    assert source["key_remaps"] == served_key_remaps(repo)  # ModelScope's tensor names, remapped on load
    assert hub.requests_for(f"/api/v1/models/{MODEL}/repo/files")  # it came over HTTP, not from a local folder
    card = (out / "fp32" / "README.md").read_text(encoding="utf-8")
    assert f"- source: `{MODEL} @ master`" in card and f"base_model: {MODEL}" in card
    assert main(["verify", str(out)]) == 0
    capsys.readouterr()


def test_a_renamed_damo_id_exits_2_in_one_line_and_leaves_nothing(tmp_path, hub, served, capsys):
    out = tmp_path / "out"
    missing = "damo/nlp_structbert_sentiment-classification_chinese-missing"
    code = main(["run", "--config", fp32_config(tmp_path), "--model", missing, "--eval", str(served[1]),
                 "--out", str(out), "--quiet"])
    assert code == 2
    err = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert len(err) == 1 and err[0].startswith("error: ") and "Traceback" not in err[0]
    assert f"has no model '{missing}' (HTTP 404)" in err[0]
    assert "try --model iic/nlp_structbert_sentiment-classification_chinese-missing" in err[0]
    assert not os.path.lexists(out) and not runs_root(out).exists()
    assert cache_entries(files_only=True) == []  # nothing that could pass for a (partial) checkpoint


def test_a_404_leaves_no_empty_cache_folders(tmp_path, hub, served, capsys):
    from structbert_lite.convert.sources import resolve_source
    from structbert_lite.errors import SourceError

    with pytest.raises(SourceError):
        resolve_source("damo/nlp_structbert_sentiment-classification_chinese-missing")
    assert cache_entries(files_only=False) == []

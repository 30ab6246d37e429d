"""/health names the run a server loaded and says when its published set has moved on; a folder whose labels
are not a sentiment pair is refused, as `run` refuses such a checkpoint."""

from __future__ import annotations

import json
import os
import shutil

import pytest

from structbert_lite.artifact import write_manifest
from structbert_lite.errors import ArtifactError
from tests.serve.serve_support import build_tiny_variant, started_client


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    return build_tiny_variant(tmp_path_factory.mktemp("tiny") / "fp32")


def test_health_reports_the_loaded_run_and_a_republish(tiny, tmp_path):
    root = tmp_path / ".demo.runs"
    for run in ("20260101-000000-1", "20260102-000000-2"):
        shutil.copytree(tiny, root / run / "fp32")
    out = tmp_path / "demo"
    os.symlink(".demo.runs/20260101-000000-1", out)
    with started_client(out / "fp32") as client:
        artifact = client.get("/health").json()["artifact"]
        assert artifact["run"] == "20260101-000000-1"
        assert artifact["published_set"] == {"path": str(out), "current_run": "20260101-000000-1", "moved_on": False}
        os.symlink(".demo.runs/20260102-000000-2", tmp_path / "next")
        os.replace(tmp_path / "next", out)  # a republish: the set points at the new run
        shutil.rmtree(root / "20260101-000000-1")  # and prunes the loaded one
        artifact = client.get("/health").json()["artifact"]
        assert artifact["run"] == "20260101-000000-1"
        assert artifact["published_set"]["current_run"] == "20260102-000000-2"
        assert artifact["published_set"]["moved_on"] is True


def test_a_copied_folder_has_no_run(tiny):
    with started_client(tiny) as client:
        artifact = client.get("/health").json()["artifact"]
        assert artifact["run"] is None and artifact["published_set"] is None and artifact["path"] == str(tiny)


@pytest.mark.parametrize("id2label", [{"0": "体育", "1": "财经"}, {"0": "负面", "1": "正面", "2": "中性"}])
def test_labels_that_are_not_a_sentiment_pair_are_refused(tiny, tmp_path, id2label):
    from structbert_lite.serve.app import create_app

    folder = shutil.copytree(tiny, tmp_path / "topics")
    (folder / "manifest.json").unlink()
    config = json.loads((folder / "config.json").read_text(encoding="utf-8"))
    config.update(id2label=id2label, label2id={v: int(k) for k, v in id2label.items()})
    (folder / "config.json").write_text(json.dumps(config, ensure_ascii=False), encoding="utf-8")
    write_manifest(folder, {"name": "tiny", "variant": "fp32"})
    with pytest.raises(ArtifactError, match="not one negative and one positive class") as caught:
        create_app(folder)
    assert "\n" not in str(caught.value)

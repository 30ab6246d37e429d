"""The publish workflow's own steps, rehearsed by .ci/rehearse-publish on a tiny self-labelled checkpoint served in
the real ModelScope repo layout by a local hub: `make convert` with MODELSCOPE_ENDPOINT, verify + SHA256SUMS, pack,
then unpack, `sha256sum -c`, `structbert-lite verify`. A failing hub ends the rehearsal with nothing left behind."""

from __future__ import annotations

import hashlib
import json
import os
import re
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest

from structbert_lite.parity import PARITY_SENTENCES
from tests.builders import fast_validate, self_labels, write_config, write_eval_csv, write_tiny_checkpoint

REPO = Path(__file__).resolve().parents[2]
MODEL = "damo/nlp_structbert_sentiment-classification_chinese-tiny"
NAME = "tiny-release"
VARIANTS = ["fp32", "fp32-optimized", "int8-dynamic"]
TEXTS = [s[i % 3:] + s[: i % 5] for i, s in enumerate(PARITY_SENTENCES * 4)]


@pytest.fixture(scope="module")
def release_inputs(tmp_path_factory):
    """(checkpoint, config): the config names the hub id as its source and a self-labelled eval file."""
    root = tmp_path_factory.mktemp("release")
    checkpoint = write_tiny_checkpoint(root / "checkpoint", layout="modelscope", center_on=TEXTS)
    eval_csv = write_eval_csv(root / "eval.csv", TEXTS, self_labels(checkpoint, TEXTS, max_length=64))
    config = {
        "name": NAME,
        "model": {"source": MODEL, "max_length": 64},
        "eval": {"source": str(eval_csv), "min_accuracy": 0.5},
        "variants": [
            {"name": "fp32", "step": "export", "gate": {"max_logit_diff": 0.001, "min_agreement": 0.999}},
            {"name": "fp32-optimized", "step": "fuse", "parent": "fp32"},
            # a random tiny model sits near its decision boundary: int8 is gated on size here (see test_run_cli)
            {"name": "int8-dynamic", "step": "ort-dynamic-int8", "parent": "fp32-optimized",
             "options": {"fallback": {"calibration_rows": 32}}, "gate": {"max_size_mb": 5}},
        ],
        "validate": fast_validate(),
    }
    return checkpoint, Path(write_config(root / "release.yaml", config))


def rehearse(tmp_path: Path, checkpoint: Path, config: Path, *extra: str) -> tuple[int, str, Path]:
    """Run .ci/rehearse-publish with its scratch folders under ``tmp_path/tmp``; (exit code, output, that folder)."""
    scratch_root = tmp_path / "tmp"
    scratch_root.mkdir()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MODELSCOPE_", "HF_"))}
    env["TMPDIR"] = str(scratch_root)
    command = [sys.executable, ".ci/rehearse-publish", "--checkpoint", str(checkpoint), "--model-id", MODEL,
               "--config", str(config), *extra]
    child = subprocess.Popen(command, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        output, _ = child.communicate(timeout=900)
    except subprocess.TimeoutExpired:
        child.terminate()  # SIGTERM: the script stops make, the hub and its scratch folder itself
        output, _ = child.communicate(timeout=120)
        pytest.fail(f"the rehearsal ran over 900 s:\n{output[-4000:]}")
    return child.returncode, output, scratch_root


def scratch_folders(root: Path) -> list[str]:
    """The rehearsal's scratch folders left in TMPDIR (torch may keep a cache of its own there)."""
    return sorted(p.name for p in root.iterdir() if p.name.startswith("rehearse-publish-"))


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.mark.slow
def test_the_workflow_publishes_a_release_that_verifies_after_unpacking(tmp_path, release_inputs):
    from tests.image.image_support import find_engine

    engine, why = find_engine()
    if engine is None:  # the workflow builds and checks the serving images (tests/image/ skips alike)
        pytest.skip(f"the publish rehearsal's image steps need a container engine: {why}")
    checkpoint, config = release_inputs
    kept = tmp_path / "kept"
    code, output, scratch_root = rehearse(tmp_path, checkpoint, config, "--allow-unverified-speed", "--keep", str(kept))
    assert code == 0, output[-4000:]
    assert "PASSED" in output and "Nothing to be done for 'setup'" in output
    assert "Push the serving images: not run: it needs GITHUB_TOKEN" in output
    # both images built, checked and labelled (the rehearsal reads their labels), the baked one naming its variant
    assert re.search(r"images ghcr\.io/structbert-lite-rehearsal/structbert-lite-serve:v0\.0\.0-rehearsal "
                     r"\([\d.]+ MB, [\w-]+ baked in, manifest sha256:", output), output[-3000:]
    assert scratch_folders(scratch_root) == []  # the scratch folder was moved to --keep

    served = kept / "hub-repo"  # the real repo layout the hub served
    configuration = json.loads((served / "configuration.json").read_text(encoding="utf-8"))
    assert configuration["task"] == "text-classification" and configuration["model"]["backbone"]["type"] == "structbert"
    assert configuration["preprocessor"]["type"] == "sen-cls-tokenizer"
    assert json.loads((served / "config.json").read_text(encoding="utf-8"))["model_type"] == "structbert"
    assert json.loads((served / "label_mapping.json").read_text(encoding="utf-8")) == {"负面": 0, "正面": 1}

    workspace = kept / "workspace"
    published = workspace / "artifacts" / NAME
    assert published.is_symlink() and published.resolve().parent.name == f".{NAME}.runs"
    archive = workspace / f"{NAME}-v0.0.0-rehearsal.tar.gz"
    with tarfile.open(archive) as tar:
        members = tar.getmembers()
    assert all(m.name == NAME or m.name.startswith(f"{NAME}/") for m in members)
    assert not [m.name for m in members if any(part.startswith(".") for part in m.name.split("/"))]
    assert all(m.isfile() or m.isdir() for m in members)

    unpacked = kept / "unpacked" / NAME
    assert (unpacked / "SHA256SUMS").read_bytes() == (workspace / "SHA256SUMS").read_bytes()
    run_manifest = json.loads((unpacked / "run-manifest.json").read_text(encoding="utf-8"))
    assert sorted(run_manifest["variants"]) == sorted(VARIANTS)
    served_hashes = {p.name: sha256(p) for p in served.iterdir()}
    for variant in VARIANTS:
        source = json.loads((unpacked / variant / "manifest.json").read_text(encoding="utf-8"))["source"]
        assert source["kind"] == "modelscope" and source["id"] == MODEL and source["revision"] == "master"
        assert source["endpoint"].startswith("http://127.0.0.1:") and source["file_hashes"] == served_hashes
        assert source["labels_from"] == "label_mapping.json"


def test_a_failing_hub_fails_the_rehearsal_and_leaves_nothing(tmp_path, release_inputs):
    checkpoint, config = release_inputs
    before = sorted(os.listdir(REPO / "artifacts"))
    code, output, scratch_root = rehearse(tmp_path, checkpoint, config, "--hub-fault", "404:listing")
    assert code == 1
    assert "FAILED" in output and "step 'Convert, validate, gate and publish' exited 2" in output
    assert f"has no model '{MODEL}' (HTTP 404)" in output and "try --model iic/" in output
    assert scratch_folders(scratch_root) == []  # workspace, hub repo and ModelScope cache all removed
    assert sorted(os.listdir(REPO / "artifacts")) == before

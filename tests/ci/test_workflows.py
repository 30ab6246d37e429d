"""What .github/workflows/publish.yml does with the serving image, read from the YAML and its steps run: the build
step's own script bakes in the variant `variant_choice` picks from the published set (with `make` replaced by a
recorder of its arguments), names the images for ghcr.io and labels them; the check step probes both before the
push; only the push needs the registry token, and only on a tag. The Dockerfile takes those labels as build
arguments of its final stage, and `make image` passes them on (`make -n`). .ci/rehearse-publish runs the same steps
for real (tests/ci/test_publish_rehearsal.py), and tests/image/ checks the built labels."""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
from pathlib import Path

import pytest
import yaml

from structbert_lite.variant_choice import choose_variant

REPO = Path(__file__).resolve().parents[2]
WORKFLOW = REPO / ".github" / "workflows" / "publish.yml"
SHA = "0123456789abcdef0123456789abcdef01234567"
GITHUB = {"GITHUB_REF_NAME": "v1.2.0", "GITHUB_SHA": SHA, "GITHUB_REPOSITORY": "Some-Owner/structbert-lite",
          "GITHUB_REPOSITORY_OWNER": "Some-Owner", "GITHUB_SERVER_URL": "https://github.com"}
OCI_LABELS = {  # label -> the build argument it is set from
    "org.opencontainers.image.source": "SOURCE",
    "org.opencontainers.image.revision": "REVISION",
    "org.opencontainers.image.version": "VERSION",
    "io.github.structbert-lite.variant": "VARIANT",
    "io.github.structbert-lite.variant.manifest-digest": "VARIANT_DIGEST",
}


def workflow() -> dict:
    return yaml.safe_load(WORKFLOW.read_text(encoding="utf-8"))


def steps() -> dict[str, dict]:
    (job,) = workflow()["jobs"].values()
    return {step.get("name") or step["uses"]: step for step in job["steps"]}


def step_index(name: str) -> int:
    return list(steps()).index(name)


def write_set(root: Path, speedups: dict[str, float]) -> Path:
    """A published set as variant_choice reads it: variant folders with a manifest and a model file, and a
    report.json timing each one (nothing here is loaded, only chosen)."""
    for name in speedups:
        (root / name).mkdir(parents=True)
        (root / name / "manifest.json").write_text(json.dumps({"variant": name}), encoding="utf-8")
        (root / name / "model.onnx").write_bytes(b"")
    report = {"settings": {"speedup_point": [1, 32]},
              "variants": [{"name": n, "published": True, "metrics": {"speedup": s}} for n, s in speedups.items()]}
    (root / "report.json").write_text(json.dumps(report), encoding="utf-8")
    return root


def run_build_step(tmp_path: Path, set_dir: str) -> tuple[list[list[str]], dict[str, str]]:
    """The build step's script as GitHub runs it (`bash -e`, `${{ }}` substituted), in a workspace whose .venv is
    this one; `make` records its arguments. Returns (each make call's argv, the step's GITHUB_OUTPUT)."""
    step = steps()["Build the serving images"]
    script = step["run"].replace("${{ steps.out.outputs.dir }}", set_dir)
    assert "${{" not in script, "the build step reads an expression this test does not substitute"
    (tmp_path / ".venv").symlink_to(REPO / ".venv")
    recorder = tmp_path / "bin" / "make"
    recorder.parent.mkdir()
    recorder.write_text('#!/bin/sh\nprintf "%s\\0" "$@" >> "$MAKE_CALLS"; printf "\\n" >> "$MAKE_CALLS"\n')
    recorder.chmod(0o755)
    env = {**os.environ, **GITHUB, "PATH": f"{recorder.parent}:{os.environ['PATH']}",
           "MAKE_CALLS": str(tmp_path / "make-calls"), "GITHUB_OUTPUT": str(tmp_path / "output")}
    done = subprocess.run(["bash", "-e", "-c", script], cwd=tmp_path, env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr
    calls = [line.split("\0")[:-1] for line in (tmp_path / "make-calls").read_text().splitlines()]
    outputs = dict(line.split("=", 1) for line in (tmp_path / "output").read_text().splitlines())
    return calls, outputs


def test_the_build_step_bakes_in_the_variant_the_server_picks_and_builds_a_plain_image(tmp_path):
    # the fastest by report.json is fp32-optimized, not int8-dynamic (the choice's fallback when nothing is timed)
    folder = write_set(tmp_path / "artifacts" / "my-model", {"fp32": 2.0, "fp32-optimized": 3.1, "int8-dynamic": 2.9})
    assert choose_variant(folder).name == "fp32-optimized"
    calls, outputs = run_build_step(tmp_path, "artifacts/my-model")
    repo = "ghcr.io/some-owner/structbert-lite-serve"  # registry names are lower case
    assert outputs == {"variant": "fp32-optimized", "baked": f"{repo}:v1.2.0", "plain": f"{repo}:v1.2.0-plain"}
    labels = ["VERSION=v1.2.0", f"REVISION={SHA}", "SOURCE=https://github.com/Some-Owner/structbert-lite"]
    assert sorted(map(sorted, calls)) == sorted(map(sorted, [
        ["image", f"IMAGE={repo}:v1.2.0", "VARIANT=artifacts/my-model/fp32-optimized", *labels],
        ["image", f"IMAGE={repo}:v1.2.0-plain", *labels],
    ]))


def test_the_build_step_fails_on_a_set_without_a_servable_variant(tmp_path):
    (tmp_path / "artifacts" / "empty").mkdir(parents=True)
    with pytest.raises(AssertionError, match="holds no variant a server can load"):
        run_build_step(tmp_path, "artifacts/empty")


def test_both_images_are_checked_before_the_push_and_only_the_push_reads_a_secret():
    named = steps()
    check = named["Check the serving images"]["run"]
    assert 'make image-check IMAGE="${{ steps.image.outputs.baked }}"' in check
    assert re.search(r'make image-check IMAGE="\$\{\{ steps\.image\.outputs\.plain \}\}" CHECK_ARTIFACT=', check)
    push = named["Push the serving images"]
    assert push["if"] == "startsWith(github.ref, 'refs/tags/v')"
    assert push["env"] == {"REGISTRY_TOKEN": "${{ secrets.GITHUB_TOKEN }}"}
    pushed = [shlex.split(line)[2] for line in push["run"].splitlines() if line.startswith("docker push")]
    assert pushed == ["${{ steps.image.outputs.baked }}", "${{ steps.image.outputs.plain }}"]
    assert "docker login ghcr.io" in push["run"] and "--password-stdin" in push["run"]
    assert step_index("Pack") < step_index("Build the serving images") < step_index("Check the serving images") \
        < step_index("Push the serving images") < step_index("Release")
    with_secrets = [name for name, step in named.items() if "secrets." in json.dumps(step)]
    assert with_secrets == ["Push the serving images"]  # the rehearsal lists such steps and runs all the others
    assert workflow()["permissions"] == {"contents": "write", "packages": "write"}


def final_stage(dockerfile: str) -> list[str]:
    """The instructions after the last FROM, continuation lines joined, comments dropped."""
    text = re.sub(r"\\\n", " ", "\n".join(ln for ln in dockerfile.splitlines() if not ln.lstrip().startswith("#")))
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    last_from = max(i for i, ln in enumerate(lines) if ln.upper().startswith("FROM "))
    return lines[last_from + 1:]


def test_the_dockerfile_labels_the_image_from_build_arguments_of_its_final_stage():
    stage = final_stage((REPO / "Dockerfile").read_text(encoding="utf-8"))
    declared = {ln.split()[1].split("=")[0] for ln in stage if ln.startswith("ARG ")}
    labels = dict(word.split("=", 1) for ln in stage if ln.startswith("LABEL ") for word in shlex.split(ln)[1:])
    for label, arg in OCI_LABELS.items():
        assert labels.get(label) == f"${{{arg}}}", (label, labels.get(label))
        assert arg in declared, f"ARG {arg} is not declared in the final stage: the label would be empty"


def test_make_image_passes_the_labels_on_as_build_arguments():
    env = {k: v for k, v in os.environ.items() if k not in ("MAKEFLAGS", "MFLAGS", "MAKELEVEL")}
    out = subprocess.run(["make", "-n", "-o", ".venv/bin/structbert-lite", "image", "ENGINE=podman", "IMAGE=x:y",
                          f"REVISION={SHA}", "VERSION=v1.2.0", "SOURCE=https://github.com/o/r"],
                         cwd=REPO, env=env, capture_output=True, text=True, check=True).stdout
    build = re.sub(r"\\\n\s*", " ", out).split(" build ", 1)[1]
    for arg in (f"REVISION={SHA}", "VERSION=v1.2.0", "SOURCE=https://github.com/o/r"):
        assert f"--build-arg {arg} " in build, build
        # also as --label: podman 4.3 reuses a cached LABEL step whatever the build arguments' values
        assert f"--label org.opencontainers.image.{arg.lower().split('=')[0]}={arg.split('=', 1)[1]} " in build, build
    assert '--build-arg %s ' in build  # VARIANT= and VARIANT_DIGEST=, as .ci/image-context prints them

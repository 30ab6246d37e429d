"""The Makefile's set-up and variables, read through make itself (`make -n`), and the set-up's torch check run
on real pip reports: the CPU build from PyTorch's index, a CUDA build refused before it is installed."""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from structbert_lite.pipeline import source_name

REPO = Path(__file__).resolve().parents[2]
STAMP = ".venv/bin/structbert-lite"  # `-o STAMP`: never remake the venv while reading recipes
CPU_INDEX = "https://download.pytorch.org/whl/cpu"
MAKE_VARS = ("MODEL", "EVAL", "OUT", "CONFIG", "TEXT_COLUMN", "LABEL_COLUMN", "TORCH_INDEX", "ALLOW_CUDA_TORCH",
             "MAKEFLAGS", "MFLAGS", "MAKELEVEL", "MAKEOVERRIDES", "GNUMAKEFLAGS", "SETUP_CHECK")


def clean_env(**extra) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in MAKE_VARS}
    return {**env, **extra}


def recipe(target: str, *assignments: str) -> list[list[str]]:
    """The commands `make TARGET` would run (not run), each split as the shell would."""
    out = subprocess.run(["make", "-n", "-o", STAMP, target, *assignments], cwd=REPO, env=clean_env(),
                         capture_output=True, text=True, check=True).stdout
    return [shlex.split(line) for line in out.splitlines() if line.strip() and not line.startswith("#")]


def structbert_lite_args(target: str, *assignments: str) -> list[str]:
    (command,) = [c for c in recipe(target, *assignments) if c and c[0].endswith("/structbert-lite")]
    return command[1:]


def test_convert_passes_model_eval_and_column_flags_and_leaves_naming_to_the_cli():
    args = structbert_lite_args("convert", "MODEL=ckpt/dir", "EVAL=my_reviews.csv",
                                "TEXT_COLUMN=review text", "LABEL_COLUMN=stars")
    assert args[:3] == ["run", "--config", "configs/structbert-base.yaml"]
    pairs = dict(zip(args[3::2], args[4::2], strict=True))
    assert pairs == {"--model": "ckpt/dir", "--eval": "my_reviews.csv", "--text-column": "review text",
                     "--label-column": "stars"}
    assert "--out" not in args  # the CLI names the output folder after the source (artifacts/<source name>/)
    assert structbert_lite_args("convert") == ["run", "--config", "configs/structbert-base.yaml"]


def test_demo_takes_columns_only_with_its_eval_and_finetune_always():
    # the held-out split has text/label
    assert "--text-column" not in structbert_lite_args("demo", "TEXT_COLUMN=review")
    demo = structbert_lite_args("demo", "EVAL=e.csv", "TEXT_COLUMN=review")
    assert demo[demo.index("--eval") + 1] == "e.csv" and demo[demo.index("--text-column") + 1] == "review"
    tune = structbert_lite_args("finetune", "MODEL=demo", "TRAIN=t.csv", "LABEL_COLUMN=y")
    assert tune[tune.index("--label-column") + 1] == "y" and "--text-column" not in tune


def test_the_demo_checkpoint_as_model_publishes_under_its_own_name(tmp_path):
    """`make convert MODEL=artifacts/demo/checkpoint` (the issue's case): named after the folder converted, through
    the published layout's symlinks (artifacts/demo -> .demo.runs/<run>/, checkpoint -> ../checkpoint)."""
    runs = tmp_path / "artifacts" / ".demo.runs"
    (runs / "checkpoint").mkdir(parents=True)
    (runs / "20260101-000000-1").mkdir()
    (runs / "20260101-000000-1" / "checkpoint").symlink_to("../checkpoint")
    (tmp_path / "artifacts" / "demo").symlink_to(".demo.runs/20260101-000000-1")
    assert source_name(str(tmp_path / "artifacts" / "demo" / "checkpoint")) == "demo-checkpoint"
    assert source_name(str(tmp_path / "artifacts" / "demo" / "checkpoint") + "/") == "demo-checkpoint"
    hub_id = "damo/nlp_structbert_sentiment-classification_chinese-base"
    assert source_name(hub_id) == "nlp_structbert_sentiment-classification_chinese-base"


def setup_torch_lines(*assignments: str) -> list[str]:
    out = subprocess.run(["make", "-n", "-B", "setup", *assignments], cwd=REPO, env=clean_env(),
                         capture_output=True, text=True, check=True).stdout
    return [line for line in out.splitlines() if "torch==" in line and not line.startswith("#")]


def test_setup_takes_torch_from_the_cpu_index_then_falls_back_to_pips_own_sources():
    (line,) = setup_torch_lines()
    index_try, _, fallback = line.partition("||")
    assert f"--index-url {CPU_INDEX} torch==2.13.0" in index_try and "--retries 1" in index_try
    assert "--dry-run --quiet --report - torch==2.13.0" in fallback
    assert fallback.rstrip("; }").endswith("pip install torch==2.13.0")
    (mirror,) = setup_torch_lines("TORCH_INDEX=http://mirror.example/whl/cpu")
    assert "--index-url http://mirror.example/whl/cpu torch==2.13.0 ||" in mirror
    (own,) = setup_torch_lines("TORCH_INDEX=")
    assert "--index-url" not in own and own.index("--dry-run") < own.index("&& .venv/bin/pip install torch==2.13.0")


def torch_check_snippet(*assignments: str) -> str:
    """TORCH_CPU_CHECK as make exports it to the set-up's recipes."""
    extra = "print-torch-check: ; @printf '%s' \"$$TORCH_CPU_CHECK\"\n"
    return subprocess.run(["make", "-s", "-f", "Makefile", "-f", "-", "print-torch-check", *assignments], cwd=REPO,
                          env=clean_env(), input=extra, capture_output=True, text=True, check=True).stdout


def pip_report(*names: str) -> str:
    return json.dumps({"version": "1", "install": [{"metadata": {"name": n, "version": "1"}} for n in names]})


def run_check(snippet: str, stdin: str | None, plan: bool) -> subprocess.CompletedProcess:
    env = clean_env(**({"SETUP_CHECK": "plan"} if plan else {}))
    return subprocess.run([sys.executable, "-c", snippet], input=stdin or "", env=env, capture_output=True, text=True)


@pytest.mark.parametrize("names, refused", [
    (("torch", "sympy", "filelock"), False),
    (("torch", "nvidia-cublas", "nvidia-cudnn-cu13", "cuda-toolkit", "triton", "sympy"), True),
])
def test_a_cuda_plan_is_refused_before_install(names, refused):
    result = run_check(torch_check_snippet(), pip_report(*names), plan=True)
    assert (result.returncode != 0) == refused, result.stderr
    if refused:
        assert "pip would install the CUDA build of torch (3 CUDA packages" in result.stderr
        assert "TORCH_INDEX=" in result.stderr and "ALLOW_CUDA_TORCH=1" in result.stderr
        assert "\n" not in result.stderr.strip()
    assert run_check(torch_check_snippet("ALLOW_CUDA_TORCH=1"), pip_report(*names), plan=True).returncode == 0


def test_an_unresolvable_plan_says_how_to_fix_it():
    result = run_check(torch_check_snippet(), "", plan=True)
    assert result.returncode != 0
    assert "could not resolve torch==2.13.0" in result.stderr and "TORCH_INDEX=" in result.stderr


def test_the_installed_torch_is_the_cpu_build():
    result = run_check(torch_check_snippet(), None, plan=False)
    assert result.returncode == 0, result.stderr
    assert "CPU build" in result.stdout

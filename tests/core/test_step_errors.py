"""Errors by kind: a step whose model fails a check (parity, structure, a converter's own error) is a failed
variant and the run goes on; a bug in a step (TypeError, KeyError, a broken import of our own code...) stops
the run with exit 1 and its traceback."""

from __future__ import annotations

import json

import pytest

from structbert_lite.artifact import Artifact
from structbert_lite.cli import EXIT_BUG, EXIT_GATE, main
from structbert_lite.config import load_config
from structbert_lite.parity import PARITY_SENTENCES
from structbert_lite.pipeline import build_variants, is_programming_error
from structbert_lite.steps import StepContext
from tests.builders import fast_validate, self_labels, write_config, write_eval_csv, write_tiny_checkpoint

# planted step module -> the body of its run()
PLANTED = {
    "typo": "return Artifact(ctx.work_dir, ctx.name, {}, formt='onnx')",  # TypeError: a bug
    "lookup": "return {}['missing']",  # KeyError: a bug
    "own_import": "from structbert_lite.no_such_module import x",  # our own import broken: a bug
    "parity": "raise ParityError('max |Δlogit| 0.5 > 0.001 on case 3: not exported faithfully')",
    "library": "raise RuntimeError('[ONNXRuntimeError] : 1 : FAIL : Load model failed')",  # a converter's own error
    "missing_library": "import no_such_runtime_library",  # a library not installed: the variant cannot be built
    "copy": "shutil.copytree(parent.path, ctx.work_dir, dirs_exist_ok=True); "
            "return Artifact(ctx.work_dir, ctx.name, {})",
}
HEADER = ("import shutil\nfrom structbert_lite.artifact import Artifact\n"
          "from structbert_lite.errors import ParityError\nfrom structbert_lite.steps import StepOptions\n\n"
          "class Options(StepOptions):\n    pass\n\n"
          "def run(parent, options, ctx):\n    ")
TEXTS = [s[i % 3:] + s[: i % 5] for i, s in enumerate(PARITY_SENTENCES * 5)]


@pytest.fixture()
def planted(tmp_path, monkeypatch):
    package = tmp_path / "plantedsteps"
    package.mkdir()
    (package / "__init__.py").write_text("")
    for name, body in PLANTED.items():
        (package / f"{name}.py").write_text(HEADER + body + "\n", encoding="utf-8")
    monkeypatch.syspath_prepend(str(tmp_path))
    return tmp_path


def build(tmp_path, steps: list[str]):
    """build_variants over a chain of planted steps, each the child of the one before."""
    lines = ["name: x", "variants:"]
    for i, step in enumerate(steps):
        lines.append(f"  - {{name: v{i}, step: plantedsteps.{step}, parent: {'source' if i == 0 else f'v{i - 1}'}}}")
    (tmp_path / "cfg.yaml").write_text("\n".join(lines) + "\n", encoding="utf-8")
    (tmp_path / "src").mkdir(exist_ok=True)
    (tmp_path / "src" / "config.json").write_text("{}")
    ctx = StepContext(name="", work_dir=tmp_path / "work", threads=1, max_length=16, tokenizer_dir=tmp_path,
                      source=None, calibration_texts=[])
    source = Artifact(tmp_path / "src", "source", {}, format="checkpoint")
    return build_variants(load_config(tmp_path / "cfg.yaml"), source, ctx)


@pytest.mark.parametrize("step, error", [("typo", TypeError), ("lookup", KeyError), ("own_import", ImportError)])
def test_a_bug_in_a_step_stops_the_run(planted, step, error):
    with pytest.raises(error):
        build(planted, ["copy", step, "copy"])


@pytest.mark.parametrize("step, reason", [
    ("parity", "not exported faithfully"),
    ("library", "RuntimeError: [ONNXRuntimeError]"),
    ("missing_library", "No module named 'no_such_runtime_library'"),
])
def test_a_model_that_fails_is_a_failed_variant_and_the_others_go_on(planted, step, reason):
    built, failures = build(planted, ["copy", step, "copy"])
    assert set(built) == {"v0"}
    assert reason in failures["v1"] and failures["v2"] == "not built: its parent v1 failed"


def test_the_kinds_are_told_apart_by_type():
    assert is_programming_error(TypeError("x")) and is_programming_error(IndexError(3))
    assert is_programming_error(ModuleNotFoundError("no", name="structbert_lite.quantize.nope"))
    assert not is_programming_error(ModuleNotFoundError("no", name="openvino"))
    assert not is_programming_error(ValueError("nncf: unsupported node")) and not is_programming_error(OSError(5, "x"))
    from structbert_lite.errors import ConfigError, GraphStructureError

    assert not is_programming_error(GraphStructureError("no fused Attention"))
    assert not is_programming_error(ConfigError("x"))


@pytest.fixture(scope="module")
def checkpoint_and_eval(tmp_path_factory):
    folder = tmp_path_factory.mktemp("ckpt")
    checkpoint = write_tiny_checkpoint(folder / "model", layout="modelscope", center_on=TEXTS)
    eval_csv = write_eval_csv(folder / "eval.csv", TEXTS, self_labels(checkpoint, TEXTS, max_length=64))
    return checkpoint, eval_csv


def run_planted(tmp_path, checkpoint_and_eval, step: str) -> int:
    checkpoint, eval_csv = checkpoint_and_eval
    config = {"name": "tiny", "model": {"max_length": 64}, "eval": {"min_accuracy": 0.5}, "validate": fast_validate(),
              "variants": [{"name": "planted", "step": f"plantedsteps.{step}", "parent": "source"}]}
    args = ["run", "--config", write_config(tmp_path / "tiny.yaml", config), "--model", str(checkpoint),
            "--eval", str(eval_csv), "--out", str(tmp_path / "out"), "--quiet"]
    return main(args)


def test_cli_a_planted_type_error_exits_1_with_its_traceback(planted, checkpoint_and_eval, capsys):
    assert run_planted(planted, checkpoint_and_eval, "typo") == EXIT_BUG
    err = capsys.readouterr().err
    assert "Traceback (most recent call last)" in err and "TypeError" in err and "formt" in err
    assert "please report it" in err and "Gate failed" not in err
    assert not (planted / "out").exists()


def test_cli_a_parity_failure_is_a_failed_variant(planted, checkpoint_and_eval, capsys):
    assert run_planted(planted, checkpoint_and_eval, "parity") == EXIT_GATE
    err = capsys.readouterr().err
    assert "Gate failed" in err and "Traceback" not in err
    report = json.loads((planted / "out" / "report.json").read_text(encoding="utf-8"))
    (variant,) = report["variants"]
    assert variant["name"] == "planted" and not variant["published"] and not variant["gate"]["passed"]
    assert "not exported faithfully" in json.dumps(variant["gate"], ensure_ascii=False)

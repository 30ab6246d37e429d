"""Config schema: the shipped configs validate and spell out every key; bad ones name the key and the file."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from structbert_lite.config import PipelineConfig, load_config
from structbert_lite.errors import ConfigError
from structbert_lite.steps import resolve_step

CONFIGS = sorted(Path(__file__).resolve().parents[2].joinpath("configs").glob("*.yaml"))
PIPELINE_CONFIGS = [p for p in CONFIGS if "variants" in yaml.safe_load(p.read_text(encoding="utf-8"))]
MINIMAL = "name: x\nvariants:\n  - {name: fp32, step: export}\n"


@pytest.mark.parametrize("path", PIPELINE_CONFIGS, ids=lambda p: p.name)
def test_shipped_configs_validate(path):
    cfg = load_config(path)
    assert cfg.variant("int8-dynamic").gate.max_accuracy_drop <= 0.5
    assert [v.name for v in cfg.variants][:3] == ["fp32", "fp32-optimized", "int8-dynamic"]


def restated_defaults(given: dict, defaults: dict, where: str) -> list[str]:
    """The keys of ``given`` (nested) set to exactly their default."""
    found = []
    for key, value in given.items():
        if isinstance(value, dict) and isinstance(defaults.get(key), dict):
            found += restated_defaults(value, defaults[key], f"{where}.{key}")
        elif key in defaults and value == defaults[key]:
            found.append(f"{where}.{key}")
    return found


@pytest.mark.parametrize("path", PIPELINE_CONFIGS, ids=lambda p: p.name)
def test_shipped_configs_state_only_what_differs_from_the_defaults(path):
    data = yaml.safe_load(path.read_text(encoding="utf-8"))
    found = []
    for section in ("model", "demo", "eval", "validate", "publish"):
        schema_cls = PipelineConfig.model_fields["validate_" if section == "validate" else section].annotation
        found += restated_defaults(data.get(section) or {}, schema_cls().model_dump(mode="json"), section)
    for variant in data["variants"]:
        options = resolve_step(variant["step"]).Options().model_dump(mode="json")
        found += restated_defaults(variant.get("options") or {}, options, f"{variant['name']}.options")
        found += [f"{variant['name']}.{key}" for key, default in (("parent", "source"), ("publish", True),
                                                                   ("required", True)) if variant.get(key) == default]
    assert not found, f"{path.name} restates defaults (`config show` prints them): {', '.join(found)}"
    assert len(path.read_text(encoding="utf-8").splitlines()) <= 80  # issue 21: a config a reader takes in at once


def bad(extra: str) -> str:
    return MINIMAL + extra


@pytest.mark.parametrize(
    "text, message",
    [
        ("name: x\nmodle: {}\n" + MINIMAL[8:], "modle: unknown key"),
        (MINIMAL.replace("step: export}", "step: export, options: {opset: 17, parity_tolerence: 1}}"),
         "options.parity_tolerence: unknown key"),
        (bad("validate:\n  threads: two\n"), "validate.threads: Input should be a valid integer"),
        (bad("validate:\n  threads: true\n"), "validate.threads: Input should be a valid integer"),
        (bad("validate:\n  threads: 0\n"), "validate.threads: Input should be greater than or equal to 1"),
        (bad("validate:\n  latency:\n    seq_lengths: [0]\n"), "every sequence length must be between 2 and 512"),
        (bad("validate:\n  latency:\n    seq_lengths: [100000]\n"), "every sequence length must be between 2 and 512"),
        (MINIMAL.replace("step: export}", "step: export, options: {parity_lengths: [100000]}}"),
         "every parity length must be between 4 and 512"),
        (MINIMAL + "  - {name: int8, step: ort-dynamic-int8, parent: fp32, options: {preset: avx9000}}\n",
         "options.preset: Input should be 'auto', 'avx2', 'avx512' or 'avx512_vnni'"),
        (bad("demo:\n  hidden_size: 130\n  heads: 4\n"), "must be divisible by heads"),
        (MINIMAL + "  - {name: int4, step: int4-magic, parent: fp32}\n", "unknown step 'int4-magic'"),
        (MINIMAL + "  - {name: int8, step: ort-dynamic-int8, parent: fp16}\n",
         "parent 'fp16' is not 'source' or a variant"),
        (MINIMAL + "  - {name: fp32, step: export}\n", "variant 'fp32' is listed twice"),
        (MINIMAL + "  - {name: Source, step: export}\n", "is not a usable variant name"),
        (bad("eval:\n  limit: 10\n  limit: 20\n"), "duplicate key 'limit'"),
        ("name: x\nquantize:\n  preset: avx2\n" + MINIMAL[8:], "the layout from before variants were steps (quantize"),
        ("name: x\n", "variants: Field required"),
        ("- just\n- a list\n", "the top level must be a mapping"),
        ("name: [unclosed\n", "is not valid YAML"),
    ],
)
def test_bad_configs_name_key_and_file(tmp_path, text, message):
    path = tmp_path / "bad.yaml"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert str(path) in str(info.value)
    assert message in str(info.value)


def test_binary_config_file_is_one_clear_error(tmp_path):
    path = tmp_path / "model.bin.yaml"
    path.write_bytes(bytes(range(256)) * 8)
    with pytest.raises(ConfigError, match="not UTF-8 text"):
        load_config(path)


def test_missing_config_file(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(tmp_path / "nope.yaml")


def test_a_throwaway_step_is_one_module_and_one_config_entry(tmp_path, monkeypatch):
    """Adding a variant: a module with Options and run, named in the config; no other file changes."""
    package = tmp_path / "mysteps"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "copy_step.py").write_text(
        "import shutil\n"
        "from structbert_lite.artifact import Artifact\n"
        "from structbert_lite.steps import StepOptions\n\n"
        "class Options(StepOptions):\n"
        "    suffix: str = 'copy'\n\n"
        "def run(parent, options, ctx):\n"
        "    shutil.copytree(parent.path, ctx.work_dir, dirs_exist_ok=True)\n"
        "    return Artifact(ctx.work_dir, ctx.name, {'copy': {'suffix': options.suffix}})\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    path = tmp_path / "cfg.yaml"
    path.write_text(MINIMAL + "  - {name: fp32-copy, step: mysteps.copy_step, parent: fp32, options: {suffix: x}}\n")
    cfg = load_config(path)
    assert cfg.variant("fp32-copy").options == {"suffix": "x"}

    from structbert_lite.artifact import Artifact
    from structbert_lite.steps import StepContext, run_step, step_options

    (tmp_path / "fp32").mkdir()
    (tmp_path / "fp32" / "model.onnx").write_text("graph")
    ctx = StepContext("fp32-copy", tmp_path / "work" / "fp32-copy", 1, 128, tmp_path, None, [])
    parent = Artifact(tmp_path / "fp32", "fp32", {"export": {"opset": 17}})
    made = run_step("mysteps.copy_step", parent, step_options("mysteps.copy_step", {"suffix": "x"}, "t"), ctx)
    assert (made.path / "model.onnx").read_text() == "graph"
    assert made.meta == {"export": {"opset": 17}, "copy": {"suffix": "x"}, "variant": "fp32-copy",
                         "step": "mysteps.copy_step", "parent": "fp32"}

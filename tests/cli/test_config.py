"""Config schema: the shipped configs validate; bad ones name the key and the file."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from structbert_lite.config import PipelineConfig, load_config
from structbert_lite.errors import ConfigError

# Pipeline configs; finetune*.yaml hold a finetune: section (train/settings.py, tested in tests/train).
CONFIGS = sorted(p for p in Path(__file__).resolve().parents[2].joinpath("configs").glob("*.yaml") if not p.name.startswith("finetune"))


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.name)
def test_shipped_configs_validate(path):
    cfg = load_config(path)
    assert cfg.gate["int8-dynamic"].max_accuracy_drop <= 0.5


def test_demo_yaml_mirrors_the_schema():
    """configs/demo.yaml spells out every section of the schema (so users see every knob)."""
    data = yaml.safe_load((CONFIGS[0].parent / "demo.yaml").read_text(encoding="utf-8"))
    for section in ("model", "demo", "eval", "export", "optimize", "quantize", "validate"):
        schema_cls = PipelineConfig.model_fields["validate_" if section == "validate" else section].annotation
        assert set(data[section]) == set(schema_cls.model_fields), section


@pytest.mark.parametrize(
    "text, message",
    [
        ("name: x\nmodle: {}\n", "modle: unknown key"),
        ("name: x\nquantize:\n  per_chanel: true\n", "quantize.per_chanel: unknown key"),
        ("name: x\nvalidate:\n  threads: two\n", "validate.threads: Input should be a valid integer"),
        ("name: x\nvalidate:\n  threads: 0\n", "validate.threads: Input should be greater than or equal to 1"),
        ("name: x\nquantize:\n  preset: avx9000\n", "quantize.preset: Input should be 'auto', 'avx2', 'avx512' or 'avx512_vnni'"),
        ("name: x\ndemo:\n  hidden_size: 130\n  heads: 4\n", "must be divisible by heads"),
        ("name: x\ngate:\n  int4: {}\n", "unknown variant(s) ['int4']"),
        ("name: x\ngate:\n  int8-dynamic:\n    min_agreement: 1.5\n", "gate.int8-dynamic.min_agreement"),
        ("model: {}\n", "name: Field required"),
        ("name: x\noptimize:\n  enabled: false\n", "quantize.enabled needs optimize.enabled"),
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


def test_missing_config_file(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(tmp_path / "nope.yaml")

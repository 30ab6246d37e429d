"""`structbert-lite config show`: the fully resolved config (every default, every step option), the same that a
run's manifests record."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from structbert_lite.cli import main
from structbert_lite.config import load_config
from structbert_lite.parity import PARITY_SENTENCES
from structbert_lite.steps import resolve_step
from tests.builders import fast_validate, self_labels, write_config, write_eval_csv, write_tiny_checkpoint

CONFIGS = sorted(Path(__file__).resolve().parents[2].joinpath("configs").glob("*.yaml"))
PIPELINE_CONFIGS = [p for p in CONFIGS if "variants" in yaml.safe_load(p.read_text(encoding="utf-8"))]
TEXTS = [s[i % 3:] + s[: i % 5] for i, s in enumerate(PARITY_SENTENCES * 5)]


def show(path, capsys) -> dict:
    capsys.readouterr()
    assert main(["config", "show", "--config", str(path)]) == 0
    return yaml.safe_load(capsys.readouterr().out)


@pytest.mark.parametrize("path", PIPELINE_CONFIGS, ids=lambda p: p.name)
def test_config_show_spells_out_every_default(path, capsys):
    shown = show(path, capsys)
    assert shown == load_config(path).resolved()
    assert shown["validate"]["trust"]["max_steal_share"] == 0.10 and shown["publish"]["keep_runs"] >= 1
    for variant in shown["variants"]:
        assert set(variant["options"]) == set(resolve_step(variant["step"]).Options.model_fields), variant["name"]
        assert variant["parent"] and variant["required"] in (True, False)


def test_config_show_names_a_bad_config(tmp_path, capsys):
    (tmp_path / "bad.yaml").write_text("name: x\nvariants:\n  - {name: fp32, step: export, options: {opset: one}}\n")
    assert main(["config", "show", "--config", str(tmp_path / "bad.yaml")]) == 2
    assert "options.opset" in capsys.readouterr().err


def test_config_show_is_what_the_manifest_records(tmp_path, capsys):
    checkpoint = write_tiny_checkpoint(tmp_path / "model", layout="modelscope", center_on=TEXTS)
    eval_csv = write_eval_csv(tmp_path / "eval.csv", TEXTS, self_labels(checkpoint, TEXTS, max_length=64))
    config = write_config(tmp_path / "tiny.yaml", {
        "name": "tiny", "model": {"source": str(checkpoint), "max_length": 64},
        "eval": {"source": str(eval_csv), "min_accuracy": 0.5}, "validate": fast_validate(),
        "variants": [{"name": "fp32", "step": "export", "gate": {"min_agreement": 0.99}}],
    })
    shown = show(config, capsys)
    assert main(["run", "--config", config, "--out", str(tmp_path / "out"), "--quiet"]) in (0, 4)
    manifest = json.loads((tmp_path / "out" / "fp32" / "manifest.json").read_text(encoding="utf-8"))
    assert manifest["config"] == shown
    assert shown["variants"][0]["options"]["parity_tolerance"] == 1e-4  # a step default nobody wrote down

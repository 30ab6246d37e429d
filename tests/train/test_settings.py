"""The finetune: section: configs/finetune.yaml mirrors the schema; bad keys and values name themselves."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from structbert_lite.errors import ConfigError
from structbert_lite.train.settings import FinetuneSettings, TrainSettings, load_finetune_settings, train_settings

SHIPPED = Path(__file__).resolve().parents[2] / "configs" / "finetune.yaml"
ALL_SHIPPED = sorted(SHIPPED.parent.glob("finetune*.yaml"))


def test_shipped_config_lists_every_key_with_the_defaults():
    data = yaml.safe_load(SHIPPED.read_text(encoding="utf-8"))
    assert set(data) == {"finetune"}
    assert set(data["finetune"]) == set(FinetuneSettings.model_fields)
    assert load_finetune_settings(SHIPPED) == FinetuneSettings()
    lines = [line for line in SHIPPED.read_text(encoding="utf-8").splitlines() if line.startswith("  ")]
    assert all("#" in line for line in lines), "every key has a one-line comment"


@pytest.mark.parametrize("path", ALL_SHIPPED, ids=lambda p: p.name)
def test_every_shipped_finetune_config_validates_and_spells_out_every_key(path):
    data = yaml.safe_load(path.read_text(encoding="utf-8"))
    assert set(data["finetune"]) == set(FinetuneSettings.model_fields)
    load_finetune_settings(path)


@pytest.mark.parametrize(
    "text, message",
    [
        ("finetune:\n  epoch: 3\n", "finetune.epoch: unknown key"),
        ("finetune:\n  batch_size: 0\n", "finetune.batch_size: Input should be greater than or equal to 1"),
        ("finetune:\n  device: tpu\n", "finetune.device: Input should be 'auto', 'cpu' or 'cuda'"),
        ("finetune:\n  heldout_share: 0.7\n", "finetune.heldout_share"),
        ("train:\n  epochs: 3\n", "train: unknown key"),
        ("- 1\n- 2\n", "the top level must be a mapping"),
    ],
)
def test_bad_configs_name_the_key_and_the_file(tmp_path, text, message):
    path = tmp_path / "ft.yaml"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(ConfigError) as info:
        load_finetune_settings(path)
    assert message in str(info.value) and str(path) in str(info.value)


def test_partial_config_takes_defaults_and_the_trainer_part(tmp_path):
    path = tmp_path / "ft.yaml"
    path.write_text("finetune:\n  epochs: 2\n  min_rows_per_class: 3\n", encoding="utf-8")
    settings = load_finetune_settings(path)
    assert settings.epochs == 2 and settings.batch_size == FinetuneSettings().batch_size
    assert train_settings(settings) == TrainSettings(epochs=2)

"""Tiny contenders for the measurement core: one exported variant folder and its PyTorch checkpoint."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

TEXTS = ["这个很好", "太差了不喜欢", "满意", "很好很好的了", "讨厌", "是不是很棒", "失望了", "喜欢这个很好的"] * 4


@pytest.fixture(scope="session")
def tiny_pair(tmp_path_factory) -> tuple[Path, Path]:
    """(variant folder with model.onnx + tokenizer files, save_pretrained checkpoint with the same weights)."""
    from tests.builders import TINY_VOCAB, export_variant, tiny_model

    root = tmp_path_factory.mktemp("measure")
    model = tiny_model()
    folder = export_variant(model, root / "fp32", TINY_VOCAB)
    checkpoint = root / "checkpoint"
    model.save_pretrained(checkpoint)
    for name in ("vocab.txt", "tokenizer.json", "tokenizer_config.json"):
        if (folder / name).is_file():
            shutil.copyfile(folder / name, checkpoint / name)
    return folder, checkpoint


@pytest.fixture(scope="session")
def texts() -> list[str]:
    return list(TEXTS)

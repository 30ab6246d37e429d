"""A tiny exported variant folder (the toolkit's own exporter and tokenizer files), fresh per test."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from tests.builders import TINY_VOCAB, export_variant, tiny_model


@pytest.fixture(scope="session")
def variant_master(tmp_path_factory) -> Path:
    return export_variant(tiny_model(), tmp_path_factory.mktemp("variant") / "fp32", TINY_VOCAB)


@pytest.fixture()
def variant_folder(variant_master, tmp_path) -> Path:
    return Path(shutil.copytree(variant_master, tmp_path / "copy" / "fp32"))

"""Fixtures shared by every room's tests; the builders live in tests/builders.py."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.builders import write_tiny_checkpoint


@pytest.fixture(scope="session")
def tiny_checkpoint(tmp_path_factory) -> Path:
    """A tiny ModelScope-layout checkpoint (head.classifier.*, encoder.* names)."""
    return write_tiny_checkpoint(tmp_path_factory.mktemp("ckpt") / "tiny", layout="modelscope")

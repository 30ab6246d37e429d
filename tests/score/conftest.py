"""Fixtures of the score tests; builders live in score_support.py, the Ray cluster in ray_cluster.py."""

from __future__ import annotations

from pathlib import Path

import pytest
from score_support import build_variant


@pytest.fixture(scope="session")
def fp32_variant(tmp_path_factory) -> Path:
    return build_variant(tmp_path_factory.mktemp("variant") / "fp32")


@pytest.fixture(scope="session")
def int8_variant(tmp_path_factory) -> Path:
    """Dynamic int8: not batch-invariant, so the runtime scores it one text at a time."""
    return build_variant(tmp_path_factory.mktemp("variant") / "int8-dynamic", int8=True)

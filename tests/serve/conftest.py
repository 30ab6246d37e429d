"""Fixtures of the serve tests; the builders and the live-server wrapper are in serve_support.py."""

from __future__ import annotations

import contextlib
import shutil
from pathlib import Path

import pytest
from serve_support import LiveServer, build_tiny_variant, started_client


@pytest.fixture(scope="session")
def tiny_artifact(tmp_path_factory) -> Path:
    return build_tiny_variant(tmp_path_factory.mktemp("artifact") / "fp32")


@pytest.fixture
def artifact_copy(tiny_artifact, tmp_path) -> Path:
    """A private copy of the tiny folder that a test may tamper with."""
    return Path(shutil.copytree(tiny_artifact, tmp_path / "fp32"))


@pytest.fixture
def make_client(tiny_artifact):
    """make_client(**settings) -> a started TestClient whose model answered its warm-up."""
    stack = contextlib.ExitStack()

    def make(folder: Path = tiny_artifact, **settings):
        return stack.enter_context(started_client(folder, **settings))

    with stack:
        yield make


@pytest.fixture(scope="session")
def live_server(tiny_artifact, tmp_path_factory):
    server = LiveServer(tiny_artifact, tmp_path_factory.mktemp("live") / "server.log")
    try:
        server.wait_ready()
        yield server
    finally:
        server.stop()

"""What the ModelScope and Hugging Face download tests share: a resolve that must fail in one line, and the
fault-then-clean-rerun check every injected hub fault goes through."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from structbert_lite.convert.hub_download import INCOMPLETE_MARKER
from structbert_lite.convert.sources import check_local_dir, resolve_source
from structbert_lite.errors import SourceError
from tests.hub_server import same_files


def resolve_fails(spec: str, revision: str | None = None) -> tuple[str, float]:
    """(the one-line SourceError message, seconds it took) for a resolve that must fail."""
    started = time.monotonic()
    with pytest.raises(SourceError) as info:
        resolve_source(spec, revision)
    message = str(info.value)
    assert "\n" not in message and "Traceback" not in message
    return message, time.monotonic() - started


def fault_then_clean_rerun(hub, spec: str, fault: tuple[str, str, str], snapshot: Path, served: Path) -> Path:
    """Inject ``fault`` (kind, target, phrase of the message): one bounded one-line error naming the source and
    the hub, nothing left in ``snapshot`` that could pass for a checkpoint; then a clean rerun gets ``served``."""
    kind, target, phrase = fault
    hub.inject(kind, target)
    message, elapsed = resolve_fails(spec)
    assert phrase in message and spec in message and hub.url in message
    assert elapsed < 30  # bounded: seconds (2 s idle limits in tests), never the clients' minutes
    if snapshot.is_dir() and target != "listing":
        assert (snapshot / INCOMPLETE_MARKER).is_file()  # what is left there is never taken for a checkpoint
        with pytest.raises(SourceError, match="did not finish"):
            check_local_dir(str(snapshot))
    hub.clear_faults()
    source = resolve_source(spec)
    same_files(served, source.path)
    assert not (source.path / INCOMPLETE_MARKER).exists() and not list(source.path.glob("*.incomplete"))
    return source.path

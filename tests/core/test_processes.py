"""A measurement worker dies with the run that started it (no orphan keeps a core busy after a kill)."""

from __future__ import annotations

import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

PARENT = textwrap.dedent(
    """
    import sys
    from pathlib import Path
    from structbert_lite.measure.runner import spawn_call

    # a worker job that blocks (a 60 s child process), started the way every measurement worker is
    spawn_call("subprocess:run", {"args": ["sleep", "60"]}, Path(sys.argv[1]), "blocker", 1, 120)
    """
)


def worker_pids(jobs_dir: Path) -> list[int]:
    pids = []
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit():
            try:
                cmdline = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            except OSError:
                continue
            if "structbert_lite.measure.worker" in cmdline and str(jobs_dir) in cmdline:
                pids.append(int(proc.name))
    return pids


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="PR_SET_PDEATHSIG is Linux-only")
def test_a_killed_run_leaves_no_measurement_worker(tmp_path):
    parent = subprocess.Popen([sys.executable, "-c", PARENT, str(tmp_path)])
    deadline = time.monotonic() + 60
    while not worker_pids(tmp_path) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert worker_pids(tmp_path), "the worker never started"
    parent.send_signal(signal.SIGKILL)
    parent.wait(timeout=10)
    deadline = time.monotonic() + 10
    while worker_pids(tmp_path) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert worker_pids(tmp_path) == []
    subprocess.run(["pkill", "-f", "^sleep 60$"], check=False)

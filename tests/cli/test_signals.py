"""SIGTERM to `run` cleans up exactly as Ctrl-C does: exit 143 (130 for SIGINT), one line, no run folder left."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest

from structbert_lite.publish.output_set import RUN_ID, runs_root
from tests.builders import self_labels, write_eval_csv, write_tiny_checkpoint
from tests.cli.test_run_cli import TEXTS, tiny_config


@pytest.mark.parametrize("signum, code", [(signal.SIGTERM, 143), (signal.SIGINT, 130)])
def test_a_signalled_run_exits_with_its_code_and_leaves_no_run_folder(tmp_path, signum, code):
    checkpoint = write_tiny_checkpoint(tmp_path / "ckpt", layout="modelscope", center_on=TEXTS)
    eval_csv = write_eval_csv(tmp_path / "eval.csv", TEXTS, self_labels(checkpoint, TEXTS, max_length=64))
    out = tmp_path / "out"
    args = ["run", "--config", tiny_config(tmp_path, {"max_size_mb": 5}), "--model", str(checkpoint),
            "--eval", str(eval_csv), "--out", str(out), "--quiet"]
    proc = subprocess.Popen([sys.executable, "-m", "structbert_lite.cli", *args], stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and proc.poll() is None:  # wait until the run folder is being built
        runs = [p for p in runs_root(out).glob("*") if RUN_ID.match(p.name)] if runs_root(out).is_dir() else []
        if runs and any((runs[0] / ".work").glob("*")):
            break
        time.sleep(0.05)
    assert proc.poll() is None, proc.stderr.read()
    time.sleep(0.5)
    os.kill(proc.pid, signum)
    _, err = proc.communicate(timeout=120)
    lines = [line for line in err.splitlines() if line.strip()]
    assert proc.returncode == code, err
    assert lines and "nothing half-written was published" in lines[-1]
    assert not os.path.lexists(out)
    assert not runs_root(out).exists() or not [p for p in runs_root(out).iterdir() if RUN_ID.match(p.name)]

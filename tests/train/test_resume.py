"""Resumable training: a real process SIGKILLed after epoch 1's state is written, resumed, ends bit-identical."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import torch

from structbert_lite.train.state import STATE_FILE
from tests.builders import wait_for_file
from tests.train import resume_worker

WORKER = Path(resume_worker.__file__)


def test_resume_after_sigkill_gives_the_uninterrupted_weights(tmp_path):
    state_dir, marker = tmp_path / "state", tmp_path / "epoch1.saved"
    proc = subprocess.Popen(
        [sys.executable, str(WORKER), str(state_dir), str(tmp_path / "never.pt"), "--hang-after-epoch", "1",
         str(marker)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    wait_for_file(marker, proc, "finish epoch 1", poll_s=0.2)
    os.kill(proc.pid, signal.SIGKILL)
    assert proc.wait(timeout=30) == -signal.SIGKILL
    saved = torch.load(state_dir / STATE_FILE, map_location="cpu", weights_only=True)
    assert saved["epoch"] == 1 and len(saved["history"]) == 1
    assert not list(state_dir.glob(".*tmp*")), "no half-written state file"

    resumed_model, resumed = resume_worker.run(state_dir)
    assert resumed.resumed_from == 1 and [r["epoch"] for r in resumed.history] == [1, 2, 3]
    fresh_model, fresh = resume_worker.run(tmp_path / "fresh-state")
    assert fresh.resumed_from is None
    assert [r["train_loss"] for r in resumed.history] == [r["train_loss"] for r in fresh.history]
    a, b = resumed_model.state_dict(), fresh_model.state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_state_from_other_settings_is_not_resumed(tmp_path):
    state_dir = tmp_path / "state"
    resume_worker.run(state_dir)
    saved = torch.load(state_dir / STATE_FILE, map_location="cpu", weights_only=True)
    saved["fingerprint"] = "something else"
    torch.save(saved, state_dir / STATE_FILE)
    _, result = resume_worker.run(state_dir)
    assert result.resumed_from is None and len(result.history) == resume_worker.EPOCHS

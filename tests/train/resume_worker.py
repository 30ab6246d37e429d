"""A training run in its own process, for the kill-and-resume test.

    python tests/train/resume_worker.py STATE_DIR WEIGHTS_OUT [--hang-after-epoch N MARKER]

Trains a tiny model on synthetic reviews with per-epoch state in STATE_DIR. With ``--hang-after-epoch`` it
touches MARKER once epoch N's state is saved and then sleeps, waiting for the test to SIGKILL it.
"""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

EPOCHS = 3


def settings():
    from structbert_lite.train.settings import TrainSettings

    return TrainSettings(
        epochs=EPOCHS, batch_size=8, learning_rate=2e-3, max_length=32, threads=1, device="cpu", patience=None, seed=5
    )


def datasets():
    from tests.train.synthetic import encoded, make_reviews, write_vocab

    rows = make_reviews(40, seed=2)
    with tempfile.TemporaryDirectory() as tmp:
        vocab = write_vocab(Path(tmp) / "vocab.txt")
        return encoded(rows[:64], vocab), encoded(rows[64:], vocab)


def run(state_dir: Path, hang_after: int | None = None, marker: Path | None = None):
    """Train; returns (model, TrainResult)."""
    from structbert_lite.train.trainer import train
    from tests.builders import tiny_model
    from tests.train.synthetic import VOCAB

    def hang(record):
        if record["epoch"] == hang_after:
            marker.write_text("saved", encoding="utf-8")
            time.sleep(600)

    train_set, heldout = datasets()
    model = tiny_model(seed=0, vocab_size=len(VOCAB))
    hook = hang if hang_after else None
    result = train(model, train_set, settings(), heldout=heldout, state_dir=state_dir, quiet=True, on_epoch=hook)
    return model, result


if __name__ == "__main__":
    import torch

    args = sys.argv[1:]
    hangs = len(args) > 2 and args[2] == "--hang-after-epoch"
    hang_after, marker = (int(args[3]), Path(args[4])) if hangs else (None, None)
    model, result = run(Path(args[0]), hang_after, marker)
    torch.save(model.state_dict(), args[1])
    print(f"resumed_from={result.resumed_from}")

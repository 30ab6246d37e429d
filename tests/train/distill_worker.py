"""The distill step in its own process, for the kill-and-resume test.

    python tests/train/distill_worker.py TEACHER_DIR DATA_FILE CACHE_DIR WORK_DIR

Runs the step exactly as the pipeline does (`steps.run_step`) with its state under CACHE_DIR; the test
SIGKILLs it once the first epoch's state is on disk.
"""

from __future__ import annotations

import dataclasses
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

EPOCHS = 4


def options(data: Path) -> dict:
    return {"layers": 1, "init": "random", "data": str(data), "include_reviews": False, "teacher_variant": None,
            "epochs": EPOCHS, "batch_size": 8, "learning_rate": 2e-3, "max_length": 32, "threads": 1, "device": "cpu",
            "validation_share": 0.1}


def run(teacher: Path, data: Path, cache: Path, work: Path):
    """The student artifact (the distill step's result)."""
    from structbert_lite.artifact import Artifact
    from structbert_lite.convert.checkpoint import load_classifier
    from structbert_lite.steps import run_step, step_options
    from tests.builders import step_context

    loaded = load_classifier(teacher)
    ctx = dataclasses.replace(step_context(work, loaded, name="student"), cache_dir=Path(cache), quiet=True)
    parent = Artifact(Path(teacher), "source", {}, format="checkpoint")
    return run_step("distill", parent, step_options("distill", options(data), "student"), ctx)


if __name__ == "__main__":
    run(*(Path(a) for a in sys.argv[1:5]))

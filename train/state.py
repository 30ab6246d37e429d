"""Per-epoch training state, so a killed run resumes where it stopped and ends with the same weights.

    <state_dir>/state.pt             model + optimizer + scheduler + RNG states + history + early-stopping record
    <state_dir>/best-epoch-<k>.pt    the weights of the best epoch so far (named in state.pt)

Each file is written to a temporary name, fsynced and renamed, so a kill leaves the previous epoch's state
or the new one, never half of one; the best-weights file is written before the state that names it. Only
tensors, numbers, strings, lists, tuples and dicts are stored, so ``torch.load(weights_only=True)`` reads
them. A state whose fingerprint (settings, data, model) differs from the run's is ignored, not resumed.
"""

from __future__ import annotations

import logging
import random
import shutil
from pathlib import Path
from typing import Any, Optional

from structbert_lite.files import atomic_path

logger = logging.getLogger(__name__)

STATE_FILE = "state.pt"
BEST_PREFIX = "best-epoch-"


def save_atomically(obj: Any, path: Path) -> None:
    """``torch.save`` of ``obj`` to ``path`` through a temporary file (`files.atomic_path`)."""
    import torch

    with atomic_path(path) as tmp:
        torch.save(obj, tmp)


def capture_rng() -> dict:
    """Python, numpy and torch (CPU and CUDA) RNG states as weights_only-loadable values."""
    import numpy as np
    import torch

    kind, keys, pos, has_gauss, cached = np.random.get_state()
    state = {
        "python": random.getstate(),
        "numpy": {
            "kind": kind,
            "keys": torch.from_numpy(keys.astype(np.int64)),  # (624,) uint32 words, as int64
            "pos": int(pos),
            "has_gauss": int(has_gauss),
            "cached": float(cached),
        },
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_rng(state: dict) -> None:
    import numpy as np
    import torch

    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    n = state["numpy"]
    np.random.set_state((n["kind"], n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"], n["cached"]))
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def save_state(state_dir: Path, state: dict, best_weights: Optional[dict] = None) -> None:
    """Write ``state`` (and, when the epoch improved, ``best_weights`` first); drop best files no longer named."""
    state_dir = Path(state_dir)
    state_dir.mkdir(parents=True, exist_ok=True)
    if best_weights is not None:
        state["best_file"] = f"{BEST_PREFIX}{state['best_epoch']}.pt"
        save_atomically(best_weights, state_dir / state["best_file"])
    save_atomically(state, state_dir / STATE_FILE)
    for stale in state_dir.glob(f"{BEST_PREFIX}*.pt"):
        if stale.name != state.get("best_file"):
            stale.unlink(missing_ok=True)


def load_state(state_dir: Optional[Path], fingerprint: str) -> Optional[dict]:
    """The saved state if it belongs to this run (same fingerprint), else None."""
    import torch

    if state_dir is None or not (Path(state_dir) / STATE_FILE).is_file():
        return None
    path = Path(state_dir) / STATE_FILE
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - unreadable state is not fatal: train from the start
        logger.warning("ignoring unreadable training state %s (%s); starting over", path, exc)
        return None
    if state.get("fingerprint") != fingerprint:
        logger.warning(
            "ignoring training state in %s: it was made with other settings, data or model; starting over", state_dir
        )
        return None
    return state


def load_best(state_dir: Path, state: dict) -> Optional[dict]:
    import torch

    name = state.get("best_file")
    return torch.load(Path(state_dir) / name, map_location="cpu", weights_only=True) if name else None


def clear_state(state_dir: Optional[Path]) -> None:
    """Remove a state folder once its result is safely published."""
    if state_dir is not None and Path(state_dir).exists():
        shutil.rmtree(state_dir, ignore_errors=True)

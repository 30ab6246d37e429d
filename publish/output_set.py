"""One output folder, published all at once: a run builds a whole set, then one symlink switches to it.

    artifacts/demo ──► .demo.runs/20261125-101500-4242/      (OUT is a symlink to the current run)
                         ├── fp32/ fp32-optimized/ int8-dynamic/ …   (variant folders, each with manifest.json)
                         ├── report.json report.md latency.png
                         ├── run-manifest.json                   (the set: every folder and report, hashed)
                         └── checkpoint ──► ../checkpoint          (the demo checkpoint, shared by runs)
                       .demo.runs/.lock                          (held by the run in progress)

A run writes its set into a fresh run folder nobody points at, then replaces the ``OUT`` symlink with one
``rename``: at any moment a reader (and a kill) sees the complete old set or the complete new set, never a mix.
Earlier runs are kept for rollback (``publish.keep_runs``); run folders of killed runs are removed by the next.
The documented paths (``OUT/fp32/``, ``OUT/report.json``) keep working through the symlink, and copying
``OUT/int8-dynamic`` elsewhere copies a real folder.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import json
import logging
import os
import re
import shutil
from pathlib import Path
from typing import Optional

from structbert_lite.artifact import MANIFEST_NAME
from structbert_lite.errors import ArtifactError, StructbertLiteError
from structbert_lite.files import fsync_dir, try_lock

logger = logging.getLogger(__name__)

RUN_MANIFEST = "run-manifest.json"
WORK_DIR = ".work"  # inside a run folder: steps build here; passing variants are renamed out of it
SHARED_CHECKPOINT = "checkpoint"
CACHE_DIR = "cache"
LOCK_NAME = ".lock"
RUN_ID = re.compile(r"^\d{8}-\d{6}-\d+$")  # run folder names: UTC timestamp and pid
RUNS_ROOT = re.compile(r"^\.(.+)\.runs$")  # ``.demo.runs``: the run folders of the set ``demo`` beside it
LEGACY = "legacy"  # a pre-symlink set moved into the runs root; kept for reference, never a run to prune


class OutputBusyError(StructbertLiteError):
    """Another run holds the output folder."""


def runs_root(out: Path) -> Path:
    """``OUT``'s hidden sibling that holds the run folders (``artifacts/demo`` → ``artifacts/.demo.runs``)."""
    out = Path(out)
    return out.parent / f".{out.name}.runs"


def _set_of_run_folder(folder: Path) -> Path:
    """The published path of the set a run folder belongs to (``.demo.runs/<run>`` → ``demo``), else the folder."""
    match = RUNS_ROOT.match(folder.parent.name)
    return folder.parent.parent / match.group(1) if match else folder


def published_set_holding(folder: Path) -> Optional[str]:
    """What ``folder`` is, when writing into it would damage a published set (its runs root, a run folder, a
    variant folder, or a copied set); None for any other folder."""
    folder = Path(folder)
    match = RUNS_ROOT.match(folder.name)
    if match:
        return f"the run folders of the published set {folder.parent / match.group(1)}"
    if RUNS_ROOT.match(folder.parent.name):
        return f"{folder.name}, kept by the published set {_set_of_run_folder(folder)}"
    if (folder / RUN_MANIFEST).is_file():
        return f"the published set {folder}"
    if (folder / MANIFEST_NAME).is_file():
        holder = folder.parent
        where = f" of the published set {_set_of_run_folder(holder)}" if (holder / RUN_MANIFEST).is_file() else ""
        return f"the variant folder {folder}{where}"
    return None


def run_of_variant(folder: Path) -> Optional[tuple[Path, str]]:
    """(the published set's path, run id) a variant folder was published in, read through its symlinks now; None
    for a folder that is not in a run folder (a copy elsewhere)."""
    run = Path(os.path.realpath(folder)).parent
    if not (RUNS_ROOT.match(run.parent.name) and (RUN_ID.match(run.name) or run.name == LEGACY)):
        return None
    return _set_of_run_folder(run), run.name


def current_run_id(set_path: Path) -> Optional[str]:
    """The run a published set's symlink points at now (None: not a symlink, or gone)."""
    try:
        return Path(os.readlink(set_path)).name
    except OSError:
        return None


def _is_a_copied_set(folder: Path) -> bool:
    """A real folder holding a set that is not one of a runs root's run folders (``cp -rL artifacts/demo x``): it
    is adopted as a legacy run like a pre-symlink set."""
    return (folder / RUN_MANIFEST).is_file() and not RUNS_ROOT.match(folder.parent.name)


def remove_tree(path: Path) -> None:
    """Remove a run folder (or a symlink in its place: the link, never what it points at); failures are raised,
    not ignored, so `keep_runs` keeps bounding the disk or the user is told why not."""
    if path.is_symlink() or not path.is_dir():
        path.unlink(missing_ok=True)
    else:
        shutil.rmtree(path)


class OutputSet:
    """The output folder of one run: locked while in use, built in a fresh run folder, switched in atomically."""

    def __init__(self, out: Path, keep_runs: int = 2):
        self.out = Path(os.path.abspath(out))
        self.root = runs_root(self.out)
        self.keep_runs = keep_runs
        self.run_dir: Optional[Path] = None
        self._lock_fh = None
        self._switched = False

    # -- lifecycle ---------------------------------------------------------------------------------------------

    def __enter__(self) -> "OutputSet":
        self._check_out_path()  # read-only: a refused --out leaves nothing behind, not even the lock file
        created_root = not self.root.exists()
        self.root.mkdir(parents=True, exist_ok=True)
        try:
            self._lock()
            self._adopt_legacy_folder()
            self._remove_incomplete_runs()
            stamp = _dt.datetime.now(_dt.timezone.utc).strftime("%Y%m%d-%H%M%S")
            self.run_dir = self.root / f"{stamp}-{os.getpid()}"
            (self.run_dir / WORK_DIR).mkdir(parents=True)
        except BaseException:
            self._unlock()
            if created_root:  # never the lock file of a run that holds it
                self._remove_root_if_empty()
            raise
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        try:
            if not self._switched and self.run_dir is not None:
                shutil.rmtree(self.run_dir, ignore_errors=True)  # a failed run leaves nothing behind
            elif self.run_dir is not None:
                shutil.rmtree(self.run_dir / WORK_DIR, ignore_errors=True)
                self._prune_old_runs()
        finally:
            self._unlock()
            self._remove_root_if_empty()

    @property
    def work(self) -> Path:
        return self.run_dir / WORK_DIR

    @property
    def cache_dir(self) -> Path:
        """Kept across runs of this output (steps cache teacher logits and resumable training state here)."""
        return self.root / CACHE_DIR

    @property
    def shared_checkpoint(self) -> Path:
        """A folder outside the run folders, kept across runs (the demo checkpoint lives here)."""
        return self.root / SHARED_CHECKPOINT

    # -- publishing --------------------------------------------------------------------------------------------

    def link_shared_checkpoint(self) -> None:
        """``<run>/checkpoint -> ../checkpoint`` so ``OUT/checkpoint/`` keeps its documented place."""
        if self.shared_checkpoint.is_dir():
            os.symlink(os.path.join("..", SHARED_CHECKPOINT), self.run_dir / SHARED_CHECKPOINT)

    def switch(self) -> Path:
        """Point ``OUT`` at this run's folder with one atomic rename; returns ``OUT``."""
        if not (self.run_dir / RUN_MANIFEST).is_file():
            raise ArtifactError(f"{self.run_dir} has no {RUN_MANIFEST}: refusing to publish an incomplete set")
        shutil.rmtree(self.work, ignore_errors=True)
        fsync_dir(self.run_dir)
        fsync_dir(self.root)
        tmp_link = self.out.parent / f".{self.out.name}.link-{os.getpid()}"
        with contextlib.suppress(FileNotFoundError):
            tmp_link.unlink()
        os.symlink(os.path.relpath(self.run_dir, self.out.parent), tmp_link)
        os.replace(tmp_link, self.out)
        fsync_dir(self.out.parent)
        self._switched = True
        logger.info("published the set %s as %s", self.run_dir.name, self.out)
        return self.out

    # -- helpers -----------------------------------------------------------------------------------------------

    def current_run(self) -> Optional[Path]:
        if self.out.is_symlink():
            target = (self.out.parent / os.readlink(self.out)).resolve()
            return target if target.is_dir() else None
        return None

    def _check_out_path(self) -> None:
        """Refuse an ``OUT`` this run must not write (one line naming the set it would damage); changes nothing."""
        if self.out.is_symlink():
            target = os.readlink(self.out)
            resolved = Path(os.path.normpath(os.path.join(self.out.parent, target)))
            if Path(target).is_absolute() or resolved.parent != self.root:
                raise ArtifactError(
                    f"{self.out} is a symlink to {target}, not to one of its runs in {self.root}: "
                    "remove it or choose another --out"
                )
        elif self.out.exists() and not self.out.is_dir():
            raise ArtifactError(f"output path {self.out} exists and is not a folder: choose another --out")
        elif self.out.is_dir():
            itself = Path(os.path.realpath(self.out))
            damaged = None if _is_a_copied_set(itself) else published_set_holding(itself)
            if damaged:
                self._refuse_inside(damaged)
        parent = Path(os.path.realpath(self.out.parent))
        for folder in (parent, *parent.parents):
            damaged = published_set_holding(folder)
            if damaged:
                self._refuse_inside(damaged)
        if not self.out.is_symlink() and self.out.is_dir():
            self._check_legacy_folder()

    def _refuse_inside(self, damaged: str) -> None:
        raise ArtifactError(
            f"--out {self.out} is (or is inside) {damaged}: publishing there would damage it; choose an --out "
            "outside every published set (e.g. artifacts/<name>; nothing was changed)"
        )

    def _check_legacy_folder(self) -> None:
        """A real folder at ``OUT`` must be empty or look like a set published before sets were atomic."""
        entries = list(self.out.iterdir())
        if not entries:
            return
        known = (any((p / MANIFEST_NAME).is_file() for p in entries if p.is_dir())
                 or (self.out / "report.json").is_file())
        if not known:
            raise ArtifactError(
                f"output folder {self.out} exists and holds files that are not a structbert-lite output set: "
                "choose another --out (nothing was changed)"
            )

    def _adopt_legacy_folder(self) -> None:
        """A real folder at ``OUT`` (an empty one, or a set published before sets were atomic) becomes a run.
        `_check_out_path` has refused anything else."""
        if self.out.is_symlink() or not self.out.is_dir():
            return
        if not any(self.out.iterdir()):
            self.out.rmdir()
            return
        legacy = self.root / LEGACY
        if os.path.lexists(legacy):
            raise ArtifactError(
                f"{self.out} is a real folder and {legacy} already holds an earlier one: move one of them away "
                "(nothing was changed)"
            )
        os.rename(self.out, legacy)
        checkpoint = legacy / SHARED_CHECKPOINT
        if checkpoint.is_dir() and not checkpoint.is_symlink() and not self.shared_checkpoint.exists():
            os.rename(checkpoint, self.shared_checkpoint)
        logger.warning("moved the earlier output folder %s to %s (kept for reference)", self.out, legacy)

    def _remove_incomplete_runs(self) -> None:
        """Run folders of killed runs (no run manifest, not current): we hold the lock. Nothing else is touched
        (the demo trainer keeps its resumable state beside the shared checkpoint)."""
        current = self.current_run()
        for entry in self.root.iterdir():
            if not RUN_ID.match(entry.name) or entry == current or not entry.is_dir():
                continue
            if not (entry / RUN_MANIFEST).is_file():
                logger.warning("removing %s, left by an interrupted run", entry)
                remove_tree(entry)
        for stale in self.out.parent.glob(f".{self.out.name}.link-*"):
            with contextlib.suppress(OSError):
                stale.unlink()

    def _prune_old_runs(self) -> None:
        runs = sorted(
            (p for p in self.root.iterdir()
             if RUN_ID.match(p.name) and (p / RUN_MANIFEST).is_file() and p != self.run_dir),
            key=lambda p: p.name,
        )
        for old in runs[: max(0, len(runs) - (self.keep_runs - 1))]:
            remove_tree(old)
            logger.info("removed the old run %s (publish.keep_runs=%d)", old.name, self.keep_runs)

    def _lock(self) -> None:
        path = self.root / LOCK_NAME
        self._lock_fh = try_lock(path)
        if self._lock_fh is None:
            holder = ""
            with contextlib.suppress(OSError, UnicodeDecodeError):
                holder = path.read_text(encoding="utf-8").strip()
            raise OutputBusyError(
                f"output folder {self.out} is in use by another structbert-lite run ({holder or 'unknown'}); "
                "wait for it to finish or pass another --out"
            ) from None
        note = {"pid": os.getpid(), "started": _dt.datetime.now().isoformat(timespec="seconds")}
        path.write_text(json.dumps(note), encoding="utf-8")  # who holds it, for the one that is refused

    def _unlock(self) -> None:
        if self._lock_fh is not None:
            with contextlib.suppress(OSError):
                (self.root / LOCK_NAME).write_text("", encoding="utf-8")
            self._lock_fh.release()
            self._lock_fh = None

    def _remove_root_if_empty(self) -> None:
        """A first run that failed leaves no empty folders behind."""
        if not self.root.is_dir() or self.out.is_symlink():
            return
        leftovers = [p for p in self.root.iterdir() if p.name != LOCK_NAME]  # e.g. a demo checkpoint is kept
        if not leftovers:
            with contextlib.suppress(OSError):
                (self.root / LOCK_NAME).unlink()
                self.root.rmdir()

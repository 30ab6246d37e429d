"""What a person sees of a run: one line per stage and variant, progress bars with ETA, the closing lines.

On a terminal `structbert-lite run` shows a line per stage (``✓ train demo model  46.1 s``) and a progress bar
with an ETA for the long ones (training, teacher logits, evaluation, speed); the full INFO log goes to
``OUT/run.log`` (and to stderr with ``-v``). In a CI log (no terminal) the same stage lines appear, without bars.

`progress` is the one progress helper of the package (trainer, teacher logits, evaluation, speed, score):
rich's bar on a terminal, nothing in a log or a pipe (no carriage returns in log files), and nothing with
``--quiet``.
"""

from __future__ import annotations

import contextlib
import logging
import sys
import time
from pathlib import Path
from typing import Any, Iterable, Iterator, Optional

logger = logging.getLogger(__name__)

LOG_FORMAT = "%(asctime)s %(levelname)-7s %(name)s: %(message)s"
_STATE = {"stages": False}  # set by `enable_stage_lines` (the CLI's `run`, unless --quiet)


def enable_stage_lines(on: bool = True) -> None:
    """Print one line per finished stage to stderr (`stage`); the CLI turns it on for `run`."""
    _STATE["stages"] = on


def is_stderr_handler(handler: logging.Handler) -> bool:
    """basicConfig's handler on stderr (not pytest's capture handlers, not OUT/run.log's file handler)."""
    return type(handler) is logging.StreamHandler and handler.stream is sys.stderr


def stderr_shows_info() -> bool:
    """Whether INFO records reach stderr: not with stage lines (`run`: the full log goes to OUT/run.log), not
    with --quiet (the CLI raises its stderr handler to WARNING)."""
    handlers = [h for h in logging.getLogger().handlers if is_stderr_handler(h)]
    shown = any(h.level <= logging.INFO for h in handlers) and logging.getLogger().isEnabledFor(logging.INFO)
    return not _STATE["stages"] and shown


def _is_terminal() -> bool:
    return bool(getattr(sys.stderr, "isatty", None)) and sys.stderr.isatty()


def stage_line(mark: str, label: str, seconds: float, detail: str = "") -> str:
    """``✓ label ........ 12.3 s  detail``: fixed columns, so a run reads as a table."""
    return f"{mark} {label:<52} {seconds:7.1f} s{'  ' + detail if detail else ''}".rstrip()


@contextlib.contextmanager
def stage(label: str, detail: str = "") -> Iterator[None]:
    """Time one stage: its start and end go to the log; with stage lines on, one ✓/✗ line on stderr at its end."""
    started = time.perf_counter()
    logger.info("stage %s: started", label)
    try:
        yield
    except BaseException as exc:
        seconds = time.perf_counter() - started
        logger.info("stage %s: failed after %.1f s", label, seconds)
        _emit(stage_line("✗", label, seconds, f"failed: {str(exc).splitlines()[0][:80]}" if str(exc) else "failed"))
        raise
    seconds = time.perf_counter() - started
    logger.info("stage %s: done in %.1f s", label, seconds)
    _emit(stage_line("✓", label, seconds, detail))


def _emit(line: str) -> None:
    if _STATE["stages"]:
        print(line, file=sys.stderr, flush=True)


@contextlib.contextmanager
def run_log(path: Path) -> Iterator[Path]:
    """Write the full INFO log of what runs inside to ``path`` (``OUT/run.log``), whatever the terminal shows."""
    root = logging.getLogger()
    handler = logging.FileHandler(path, encoding="utf-8")
    handler.setLevel(logging.INFO)
    handler.setFormatter(logging.Formatter(LOG_FORMAT, datefmt="%H:%M:%S"))
    for existing in root.handlers:  # the same filters as the console (onnxruntime's INFO chatter)
        for log_filter in getattr(existing, "filters", []):
            handler.addFilter(log_filter)
    previous = root.level
    root.addHandler(handler)
    root.setLevel(min(previous or logging.INFO, logging.INFO))
    try:
        yield path
    finally:
        root.removeHandler(handler)
        root.setLevel(previous)
        handler.close()


class _Silent:
    """The bar when nothing should be drawn: passes an iterable through, ignores updates."""

    def __init__(self, iterable: Optional[Iterable] = None):
        self._iterable = iterable

    def __iter__(self):
        return iter(self._iterable if self._iterable is not None else ())

    def update(self, n: int = 1) -> None:
        pass

    def set_postfix(self, refresh: bool = True, **values: Any) -> None:
        pass

    def close(self) -> None:
        pass

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def _plural(unit: str) -> str:
    return unit + ("es" if unit.endswith(("s", "sh", "ch", "x")) else "s")


class _RichBar(_Silent):
    """rich's bar with rate, elapsed time and ETA; transient (it disappears when done, the stage line stays)."""

    def __init__(self, iterable, total, desc: str, unit: str, initial: int):
        from rich.console import Console
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            TextColumn,
            TimeElapsedColumn,
            TimeRemainingColumn,
        )

        super().__init__(iterable)
        if total is None and iterable is not None and hasattr(iterable, "__len__"):
            total = len(iterable)
        self._progress = Progress(
            TextColumn("  {task.description}"), BarColumn(bar_width=30), MofNCompleteColumn(),
            TextColumn(_plural(unit) + " {task.fields[postfix]}"), TimeElapsedColumn(), TextColumn("ETA"),
            TimeRemainingColumn(), console=Console(file=sys.stderr), transient=True, redirect_stdout=False,
            redirect_stderr=False,
        )
        self._task = self._progress.add_task(desc, total=total, completed=initial, postfix="")
        self._progress.start()

    def __iter__(self):
        for item in super().__iter__():
            yield item
            self.update(1)

    def update(self, n: int = 1) -> None:
        self._progress.advance(self._task, n)

    def set_postfix(self, refresh: bool = True, **values: Any) -> None:
        self._progress.update(self._task, postfix=" ".join(f"{k}={v}" for k, v in values.items()))

    def close(self) -> None:
        self._progress.stop()


def progress(iterable: Optional[Iterable] = None, *, total: Optional[int] = None, desc: str = "", unit: str = "it",
             initial: int = 0, quiet: bool = False):
    """A progress bar (a tqdm-like subset: iterate, ``update(n)``, ``set_postfix``, ``close``, ``with``).

    Drawn only on a terminal and without ``quiet``; rich draws it (the convert extra), tqdm where only that is
    installed (a serve-only install with the cluster extra), else nothing."""
    if quiet or not _is_terminal():
        return _Silent(iterable)
    try:
        return _RichBar(iterable, total, desc, unit, initial)
    except ImportError:
        pass
    try:
        from tqdm import tqdm
    except ImportError:
        return _Silent(iterable)
    return tqdm(iterable, total=total, desc=desc, unit=unit, initial=initial, leave=False, dynamic_ncols=True)


def progress_factory(quiet: bool):
    """``progress`` as a factory of keyword arguments (``factory(total=..., desc=..., unit=...)``)."""
    return lambda **kw: progress(quiet=quiet, **kw)


def speed_unverified_line(report: dict[str, Any], accepted: bool, exit_code: int) -> str:
    """One line: the speed figures were not verified, why (the trust verdict's reasons), and what it means."""
    trust = (report.get("settings") or {}).get("speed_trust") or {}
    reasons = "; ".join((trust.get("reasons") or [])[:3]) or "the machine was busy while speed was measured"
    if accepted:
        return (f"Speed figures NOT verified ({reasons}): the set is published and the gate's other checks passed; "
                "re-run on an idle machine to verify the speed checks.")
    return (f"Speed NOT verified ({reasons}): the speed checks did not decide the gate (see report.md). "
            f"Re-run on an idle machine to verify them (exit {exit_code}).")

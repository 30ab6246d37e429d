"""Writing files so that a kill never leaves half of one, and one lock per output folder.

``atomic_write(path, data)`` and ``atomic_path(path)`` write to a temporary name beside ``path`` (same
filesystem, so the rename is atomic), fsync the file, rename it over ``path`` and fsync the folder: after a
crash a reader finds the old file or the new one, never a torn one. ``try_lock(path)`` takes an exclusive,
non-blocking ``filelock.FileLock`` (``flock`` underneath) and leaves the caller to say who holds it.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path
from typing import TYPE_CHECKING, Iterator, Optional, Union

if TYPE_CHECKING:
    from filelock import FileLock


def fsync_dir(folder: Path) -> None:
    """fsync a folder, so a rename inside it survives a crash (a no-op where the filesystem refuses)."""
    with contextlib.suppress(OSError):  # not every filesystem lets a directory be fsynced
        fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def _fsync_file(path: Path) -> None:
    with open(path, "rb") as fh:
        os.fsync(fh.fileno())


@contextlib.contextmanager
def atomic_path(path: Path) -> Iterator[Path]:
    """A temporary path beside ``path`` to write (with any library call that takes a path); on a clean exit it is
    fsynced and renamed over ``path``, on an error it is deleted and ``path`` is left as it was."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        yield tmp
        _fsync_file(tmp)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    fsync_dir(path.parent)


def atomic_write(path: Path, data: Union[bytes, str]) -> Path:
    """Write ``data`` (text is UTF-8) to ``path`` atomically (`atomic_path`); returns ``path``."""
    with atomic_path(path) as tmp:
        if isinstance(data, str):
            tmp.write_text(data, encoding="utf-8")
        else:
            tmp.write_bytes(data)
    return Path(path)


def try_lock(path: Path) -> Optional[FileLock]:
    """The exclusive lock on the file ``path`` (created if missing), held until ``.release()``; ``None`` when
    another process (or another holder in this one) has it. The file is truncated once the lock is won, so a
    holder may write a note into it (who holds it) and a loser may read that note."""
    from filelock import FileLock, Timeout  # here, so a measured worker's cold start does not import it

    lock = FileLock(path, timeout=0, thread_local=False)
    try:
        lock.acquire()
    except Timeout:
        return None
    return lock

"""Child processes that never outlive the run that started them.

A measurement worker, a scoring worker or a probe left running after its parent was killed keeps a core busy
and skews the next measurement (seen: an orphaned memory probe after a kill during probes). On Linux the kernel
can send a child a signal when its parent dies (``prctl(PR_SET_PDEATHSIG)``); elsewhere this is a no-op.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import signal
import sys

PR_SET_PDEATHSIG = 1


def die_with_parent() -> None:
    """Ask the kernel to SIGKILL this process when its parent dies (a ``preexec_fn`` for subprocess)."""
    if not sys.platform.startswith("linux"):
        return
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, int(signal.SIGKILL), 0, 0, 0)
    except (OSError, AttributeError):  # not glibc: best effort
        pass

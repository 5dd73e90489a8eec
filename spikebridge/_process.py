"""Child processes that do not outlive their parent."""

from __future__ import annotations

import os
import signal
import sys

__all__ = ["die_with_parent"]


def die_with_parent(parent: int) -> None:
    """Run in a child process: have the kernel SIGKILL it when process ``parent`` dies.

    On Linux ``PR_SET_PDEATHSIG`` does it (and survives ``exec``, so it also
    serves as a ``subprocess`` ``preexec_fn``); elsewhere the parent's own
    cleanup is all there is.  If the parent is already gone, the child exits.
    """
    if sys.platform.startswith("linux"):
        import ctypes

        try:
            libc = ctypes.CDLL(None, use_errno=True)
            libc.prctl(1, signal.SIGKILL, 0, 0, 0)  # 1 = PR_SET_PDEATHSIG
        except (OSError, AttributeError):  # no prctl
            pass
    if os.getppid() != parent:  # the parent died before the signal was armed
        os._exit(1)

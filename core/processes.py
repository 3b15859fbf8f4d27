"""Child processes that must not outlive their parent (the supervisor's children, a drill's sandbox)."""

from __future__ import annotations

import signal
import sys


def die_with_parent() -> None:
    """Linux: the child gets SIGTERM if its parent is killed (SIGKILL leaves no chance to clean up).
    Passed as a child's preexec_fn."""
    if sys.platform.startswith("linux"):
        import ctypes

        PR_SET_PDEATHSIG = 1
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)

"""Signalling a sandbox's processes by host pid without ever hitting an unrelated one."""

from __future__ import annotations

import os
import signal
from collections.abc import Callable, Iterable


def signal_pinned(pids: Iterable[int], spared: frozenset[int], belongs: Callable[[int], bool], signum: int) -> int:
    """Send ``signum`` to each of ``pids`` but ``spared``; returns how many were signalled.

    A listed pid may exit and be reused by an unrelated process before it is signalled, so each
    one is pinned with a pidfd first and signalled only if ``belongs`` still holds for it.
    """
    sent = 0
    for pid in pids:
        if pid in spared:
            continue
        try:
            pidfd = os.pidfd_open(pid)
        except OSError:  # gone meanwhile
            continue
        try:
            if belongs(pid):
                signal.pidfd_send_signal(pidfd, signum)
                sent += 1
        except OSError:
            pass
        finally:
            os.close(pidfd)
    return sent

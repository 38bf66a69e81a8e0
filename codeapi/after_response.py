"""Work that waits until the response of the request that caused it is sent.

Replacing a kept sandbox's worker forks the large Python zygote: on a small host that competes with
the rest of the request (its lock release, its response) for the CPU, measurably at a chat's pace
(docs/performance.md). The HTTP middleware collects such work per request and runs it once the
response has gone out; outside a request it runs at once.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar

Work = Callable[[], None]

pending: ContextVar[list[Work] | None] = ContextVar("after_response", default=None)


def after_response(work: Work) -> None:
    """Run ``work`` once the current request's response is sent (now, outside a request). It must be
    safe to run earlier as well: whoever needs it done first may do it (ReplSandbox.ready)."""
    collected = pending.get()
    if collected is None:
        work()
    else:
        collected.append(work)


@contextmanager
def collecting() -> Iterator[None]:
    """Collect the work of what runs inside (tasks it creates share the list), and run it on the way out."""
    collected: list[Work] = []
    token = pending.set(collected)
    try:
        yield
    finally:
        pending.reset(token)
        for work in collected:
            work()

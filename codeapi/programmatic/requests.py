"""The requests this replica serves by their ``X-LibreChat-Code-Request-ID``, so a cancel can name one.

LibreChat gives each start and each continuation a fresh id and, when its user aborts, posts that id
to /exec/programmatic/cancel (contract §9.4). An id names its request while the request waits on its
program, and for ``remember_s`` after it answered, so that a late cancel is told it came too late.
"""

from __future__ import annotations

import secrets
import time
from collections import OrderedDict
from dataclasses import dataclass

MAX_REMEMBERED = 4096  # answered requests kept for late cancels; the oldest go first


@dataclass
class ServedRequest:
    request_id: str
    caller: str
    run_id: str  # the program it drives
    answered_at: float | None = None  # monotonic; None: still waiting on its program

    def belongs_to(self, caller: str) -> bool:
        return secrets.compare_digest(self.caller, caller)


class RequestIds:
    def __init__(self, remember_s: float) -> None:
        self.remember_s = remember_s
        self.waiting: dict[int, ServedRequest] = {}  # by id(): one request id may name several
        self.answered: OrderedDict[int, ServedRequest] = OrderedDict()

    def begin(self, request_id: str | None, caller: str, run_id: str) -> ServedRequest | None:
        """A request carrying ``request_id`` now waits on the program ``run_id`` (None: it has no id)."""
        if request_id is None:
            return None
        served = ServedRequest(request_id, caller, run_id)
        self.waiting[id(served)] = served
        return served

    def answer(self, served: ServedRequest | None) -> None:
        if served is None or self.waiting.pop(id(served), None) is None:
            return
        served.answered_at = time.monotonic()
        self.answered[id(served)] = served
        while len(self.answered) > MAX_REMEMBERED:
            self.answered.popitem(last=False)

    def named(self, request_id: str) -> list[ServedRequest]:
        """Every request known by ``request_id``: those waiting, then those answered lately."""
        horizon = time.monotonic() - self.remember_s
        while self.answered:
            oldest = next(iter(self.answered.values()))
            if oldest.answered_at is not None and oldest.answered_at >= horizon:
                break
            self.answered.popitem(last=False)
        candidates = (*self.waiting.values(), *self.answered.values())
        return [served for served in candidates if served.request_id == request_id]

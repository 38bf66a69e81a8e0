"""Session locks for a single process, with the same lease semantics as the Redis lock."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass

import structlog

from codeapi.errors import SessionBusy

logger = structlog.get_logger(__name__)


@dataclass
class _Lease:
    token: object
    deadline: float  # event-loop clock


class LocalSessionLocks:
    """Per-session leases: a holder that overruns ``timeout_s`` loses the lock, as with Redis.

    Expiring leases even in-process keeps both backends interchangeable: a request stuck past its
    deadline must not keep the session locked forever on either of them.
    """

    def __init__(self) -> None:
        self._leases: dict[str, _Lease] = {}
        self._changed = asyncio.Condition()

    @asynccontextmanager
    async def lock(self, session_id: str, timeout_s: float, wait_s: float) -> AsyncIterator[None]:
        token = object()
        await self._acquire(session_id, token, timeout_s, wait_s)
        try:
            yield
        finally:
            await self._release(session_id, token)

    async def _acquire(self, session_id: str, token: object, timeout_s: float, wait_s: float) -> None:
        loop = asyncio.get_running_loop()
        give_up = loop.time() + wait_s
        async with self._changed:
            while True:
                now = loop.time()
                lease = self._leases.get(session_id)
                if lease is None or lease.deadline <= now:
                    self._leases[session_id] = _Lease(token, now + timeout_s)
                    return
                if now >= give_up:
                    raise SessionBusy(f"Session {session_id} is busy")
                # Wake on a release, or when the current lease or our patience runs out.
                try:
                    await asyncio.wait_for(self._changed.wait(), min(give_up, lease.deadline) - now)
                except TimeoutError:
                    pass

    async def _release(self, session_id: str, token: object) -> None:
        async with self._changed:
            lease = self._leases.get(session_id)
            if lease is None or lease.token is not token:
                logger.warning("session_lock_lost", session_id=session_id, backend="local")
                return
            del self._leases[session_id]
            self._changed.notify_all()

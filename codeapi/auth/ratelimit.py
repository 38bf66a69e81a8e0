"""Request limits on the ``limits`` library: per managed key, per JWT user, and a per-IP lockout after
repeated authentication failures. Counts live in Redis when the metadata does (replicas share them),
else in this process's memory (the embedded backend is single-replica).
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, fields
from typing import Any

import redis.asyncio as aioredis
from limits import (
    RateLimitItem,
    RateLimitItemPerDay,
    RateLimitItemPerHour,
    RateLimitItemPerMinute,
    RateLimitItemPerMonth,
    RateLimitItemPerSecond,
)
from limits.aio.storage import MemoryStorage, RedisStorage, Storage
from limits.aio.strategies import FixedWindowRateLimiter
from limits.errors import StorageError

from codeapi.config.groups import RedisSettings
from codeapi.errors import BackendUnavailable, RateLimited
from codeapi.storage.metadata.base import RateLimits
from codeapi.storage.metadata.redis import _connection_pool

WINDOWS: dict[str, type[RateLimitItem]] = {
    "per_second": RateLimitItemPerSecond,
    "per_minute": RateLimitItemPerMinute,
    "hourly": RateLimitItemPerHour,
    "daily": RateLimitItemPerDay,
    "monthly": RateLimitItemPerMonth,
}
# A client that sends this many bad credentials within the window is refused until the window ends.
AUTH_FAILURES = RateLimitItemPerMinute(20, 5)
# LibreChat's users each get this much; a script looping on one user's token is throttled, people are not.
JWT_USER_LIMITS = RateLimits(per_minute=120)
KEY_PREFIX = "codeapi:limits"
RATE_LIMIT_HEADERS = (
    "RateLimit-Limit",
    "RateLimit-Remaining",
    "RateLimit-Reset",
    "X-RateLimit-Limit",
    "X-RateLimit-Remaining",
    "X-RateLimit-Reset",
)


@dataclass(frozen=True)
class RateState:
    """The tightest window after a request was counted, for the RateLimit response headers."""

    limit: int
    remaining: int
    reset_at: float  # epoch seconds

    def headers(self) -> dict[str, str]:
        reset_s = str(max(0, math.ceil(self.reset_at - time.time())))
        reset_at = str(math.ceil(self.reset_at))
        values = (str(self.limit), str(self.remaining), reset_s, str(self.limit), str(self.remaining), reset_at)
        return dict(zip(RATE_LIMIT_HEADERS, values, strict=True))


def windows(limits: RateLimits) -> list[RateLimitItem]:
    """The configured windows, shortest first."""
    return [WINDOWS[item.name](amount) for item in fields(limits) if (amount := getattr(limits, item.name)) is not None]


class RateLimiter:
    def __init__(self, storage: Storage, pool: aioredis.ConnectionPool | None = None) -> None:
        self.storage = storage
        self.limiter = FixedWindowRateLimiter(storage)
        self._pool = pool

    @classmethod
    def for_backend(cls, redis: RedisSettings) -> RateLimiter:
        if not redis.configured:
            return cls(MemoryStorage())
        pool = _connection_pool(redis, decode=False)
        shared: dict[str, Any] = {"connection_pool": pool}  # the metadata store's Redis settings
        storage = RedisStorage(
            "async+redis://", implementation="redispy", wrap_exceptions=True, key_prefix=KEY_PREFIX, **shared
        )
        return cls(storage, pool)

    async def close(self) -> None:
        if self._pool is not None:
            await self._pool.disconnect()

    async def hit(self, identity: str, limits: RateLimits) -> RateState | None:
        """Count one request of ``identity``; RateLimited when any window is used up."""
        items = windows(limits)
        try:
            for item in items:
                if not await self.limiter.hit(item, identity):
                    used_up = await self.limiter.get_window_stats(item, identity)
                    raise self.refusal(item, used_up.reset_time)
            if not items:
                return None
            stats = await self.limiter.get_window_stats(items[0], identity)
        except StorageError as error:
            raise BackendUnavailable(f"rate limit store unavailable: {error.storage_error}") from error
        return RateState(items[0].amount, stats.remaining, stats.reset_time)

    @staticmethod
    def refusal(item: RateLimitItem, reset_at: float) -> RateLimited:
        state = RateState(item.amount, 0, reset_at)
        return RateLimited(max(1, math.ceil(reset_at - time.time())), state.headers())

    async def refuse_locked_out(self, client_ip: str) -> None:
        """RateLimited while ``client_ip`` has used up its authentication failures."""
        try:
            if await self.limiter.test(AUTH_FAILURES, "auth-failures", client_ip):
                return
            stats = await self.limiter.get_window_stats(AUTH_FAILURES, "auth-failures", client_ip)
        except StorageError as error:
            raise BackendUnavailable(f"rate limit store unavailable: {error.storage_error}") from error
        raise self.refusal(AUTH_FAILURES, stats.reset_time)

    async def count_failure(self, client_ip: str) -> None:
        try:
            await self.limiter.hit(AUTH_FAILURES, "auth-failures", client_ip)
        except StorageError as error:
            raise BackendUnavailable(f"rate limit store unavailable: {error.storage_error}") from error

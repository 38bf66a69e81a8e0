"""Request limits on the ``limits`` library: per managed key, per JWT user, and a per-IP lockout after
repeated authentication failures. Counts live in Redis when the metadata does (replicas share them),
else in this process's memory (the embedded backend is single-replica).
"""

from __future__ import annotations

import asyncio
import math
import time
from dataclasses import dataclass, fields
from typing import Any

import redis.asyncio as aioredis
import structlog
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
from codeapi.errors import RateLimited
from codeapi.storage.metadata.base import RateLimits
from codeapi.storage.redis_pool import connection_pool

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
logger = structlog.get_logger(__name__)
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
        pool = connection_pool(redis, decode=False)
        shared: dict[str, Any] = {"connection_pool": pool}  # the metadata store's Redis settings
        storage = RedisStorage(
            "async+redis://", implementation="redispy", wrap_exceptions=True, key_prefix=KEY_PREFIX, **shared
        )
        return cls(storage, pool)

    async def close(self) -> None:
        if self._pool is not None:
            await self._pool.disconnect()

    async def hit(self, identity: str, limits: RateLimits) -> RateState | None:
        """Count one request of ``identity`` in every window at once; RateLimited when any is used up.

        Works on the limiter's storage directly (what FixedWindowRateLimiter.hit does) because the
        counts it returns give the remaining quota without another round trip per window.
        """
        items = windows(limits)
        if not items:
            return None
        keys = [item.key_for(identity) for item in items]
        try:
            counts = await asyncio.gather(
                *(self.storage.incr(key, item.get_expiry()) for key, item in zip(keys, items, strict=True))
            )
            over = next((index for index, count in enumerate(counts) if count > items[index].amount), None)
            reset_at = await self.storage.get_expiry(keys[over if over is not None else 0])
        except StorageError as error:
            store_failed("hit", error)
            return None
        if over is not None:
            raise self.refusal(items[over], reset_at)
        return RateState(items[0].amount, max(0, items[0].amount - counts[0]), reset_at)

    @staticmethod
    def refusal(item: RateLimitItem, reset_at: float) -> RateLimited:
        state = RateState(item.amount, 0, reset_at)
        return RateLimited(max(1, math.ceil(reset_at - time.time())), state.headers())

    async def lockout(self, client_ip: str) -> RateLimited | None:
        """The refusal for ``client_ip`` while it has used up its authentication failures."""
        key = AUTH_FAILURES.key_for("auth-failures", client_ip)
        try:
            if await self.storage.get(key) < AUTH_FAILURES.amount:
                return None
            return self.refusal(AUTH_FAILURES, await self.storage.get_expiry(key))
        except StorageError as error:
            store_failed("lockout", error)
            return None

    async def count_failure(self, client_ip: str) -> None:
        try:
            await self.limiter.hit(AUTH_FAILURES, "auth-failures", client_ip)
        except StorageError as error:
            store_failed("count_failure", error)


def store_failed(operation: str, error: StorageError) -> None:
    """Limits fail open while their store is down: a Redis outage already answers 503 to everything that
    needs the metadata (managed keys included), and environment keys should keep working through it."""
    logger.warning("ratelimit.store_unavailable", operation=operation, error=str(error.storage_error))

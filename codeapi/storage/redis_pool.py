"""Connection pools on the configured Redis, for the metadata store and the rate limiter alike."""

from __future__ import annotations

from typing import Any

import redis.asyncio as aioredis
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialWithJitterBackoff

from codeapi.config.groups import RedisSettings


def connection_pool(settings: RedisSettings, decode: bool = True) -> aioredis.ConnectionPool:
    """A pool on the configured Redis; ``decode`` False for clients of binary values."""
    common: dict[str, Any] = {
        "max_connections": settings.max_connections,
        "socket_timeout": settings.socket_timeout,
        "socket_connect_timeout": settings.socket_connect_timeout,
        "decode_responses": decode,
        # A couple of quick retries ride out a Redis restart or failover without the caller
        # noticing; more would only delay the 503 when Redis is really gone.
        "retry": Retry(ExponentialWithJitterBackoff(base=0.05, cap=0.5), retries=2),
    }
    if settings.url:
        # Parts present in the URL win over REDIS_PASSWORD / REDIS_DB (redis-py's from_url rule).
        return aioredis.ConnectionPool.from_url(settings.url, password=settings.password, db=settings.db, **common)
    return aioredis.ConnectionPool(
        host=settings.host, port=settings.port, password=settings.password, db=settings.db, **common
    )

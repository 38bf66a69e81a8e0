"""The Redis store's error boundary, shared by its record mixins."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import structlog
from redis.exceptions import RedisError

from codeapi.errors import BackendUnavailable

logger = structlog.get_logger("codeapi.storage.metadata.redis")


@contextmanager
def redis_boundary(operation: str) -> Iterator[None]:
    """Connection loss, timeouts and server-side refusals stop here as BackendUnavailable."""
    try:
        yield
    except RedisError as exc:
        logger.error("redis_failed", operation=operation, error=str(exc), error_type=type(exc).__name__)
        raise BackendUnavailable(f"redis unavailable: {exc}") from exc

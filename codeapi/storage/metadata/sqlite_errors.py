"""The SQLite store's error boundary, shared by its record mixins."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager

import structlog

from codeapi.errors import BackendUnavailable

logger = structlog.get_logger("codeapi.storage.metadata.sqlite")


@contextmanager
def sqlite_boundary(operation: str) -> Iterator[None]:
    """sqlite3 errors (locked, disk full, unreadable file) stop here as BackendUnavailable."""
    try:
        yield
    except (sqlite3.Error, OSError) as exc:
        logger.error("sqlite_failed", operation=operation, error=str(exc))
        raise BackendUnavailable(f"sqlite unavailable: {exc}") from exc

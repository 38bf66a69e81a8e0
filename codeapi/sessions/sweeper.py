"""Background expiry of sessions (SESSION_TTL_HOURS, every SESSION_CLEANUP_INTERVAL_MINUTES)."""

from __future__ import annotations

import asyncio

import structlog

from codeapi.errors import CodeapiError
from codeapi.sessions.service import SessionService, utcnow

logger = structlog.get_logger(__name__)


async def sweep_once(sessions: SessionService) -> int:
    removed = await sessions.expire(utcnow())
    if removed:
        logger.info("sessions.expired", count=removed)
    return removed


async def run_sweeper(sessions: SessionService, interval_s: float) -> None:
    while True:
        try:
            await sweep_once(sessions)
        except CodeapiError as error:
            logger.warning("sessions.sweep_failed", error=error.message)
        await asyncio.sleep(interval_s)

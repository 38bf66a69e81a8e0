"""Background expiry of sessions (SESSION_TTL_HOURS, every SESSION_CLEANUP_INTERVAL_MINUTES).

Every replica runs the loop (codeapi.observability.loops); a lock in the metadata store lets only one
of them sweep at a time.
"""

from __future__ import annotations

import structlog

from codeapi.errors import SessionBusy
from codeapi.sessions.service import SessionService, utcnow

logger = structlog.get_logger(__name__)

SWEEPER_LOCK = "sweeper"


async def sweep_once(sessions: SessionService, reap_orphans: bool, lock_s: float) -> tuple[int, int]:
    """Returns (expired sessions removed, orphaned sessions reaped); (0, 0) when another replica sweeps."""
    try:
        async with sessions.metadata.lock(SWEEPER_LOCK, timeout_s=lock_s, wait_s=0):
            expired = await sessions.expire(utcnow())
            orphans = await sessions.reap_orphans() if reap_orphans else 0
    except SessionBusy:
        logger.debug("sessions.sweep_skipped", reason="another replica is sweeping")
        return 0, 0
    if expired or orphans:
        logger.info("sessions.swept", expired=expired, orphans=orphans)
    return expired, orphans

"""Background archival (STATE_ARCHIVE_*): inactive states move to the blob store, expired ones go.
One pass every STATE_ARCHIVE_CHECK_INTERVAL_SECONDS, run as a loop of codeapi.observability.loops.

Each state is handled under its session's lock, taken without waiting: a session that is running
right now is simply looked at again on the next pass.
"""

from __future__ import annotations

from datetime import UTC, datetime

import structlog

from codeapi.errors import SessionBusy
from codeapi.state.store import StateStore
from codeapi.storage.metadata.base import SessionLocks

logger = structlog.get_logger(__name__)

BATCH = 100
LOCK_LEASE_S = 60.0


async def archive_inactive(store: StateStore, locks: SessionLocks, now: datetime) -> int:
    archived = 0
    for candidate in await store.metadata.states_to_archive(now - store.policy.archive_after, BATCH):
        try:
            async with locks.lock(candidate.session_id, timeout_s=LOCK_LEASE_S, wait_s=0):
                current = await store.metadata.get_state(candidate.session_id)
                if current is None or current.archived or current.revision != candidate.revision:
                    continue  # saved again (or gone) since the listing
                await store.archive(current)
                archived += 1
        except SessionBusy:
            continue
    return archived


async def drop_expired(store: StateStore, locks: SessionLocks, now: datetime) -> int:
    dropped = 0
    for session_id in await store.metadata.expired_states(now, BATCH):
        try:
            async with locks.lock(session_id, timeout_s=LOCK_LEASE_S, wait_s=0):
                if await store.metadata.get_state(session_id) is None:  # not saved again meanwhile
                    await store.drop_expired(session_id)
                    dropped += 1
        except SessionBusy:
            continue
    return dropped


async def archive_once(store: StateStore, locks: SessionLocks) -> tuple[int, int]:
    now = datetime.now(UTC)
    archived = await archive_inactive(store, locks, now) if store.policy.archive_enabled else 0
    dropped = await drop_expired(store, locks, now)
    if archived or dropped:
        logger.debug("state.archive_pass", archived=archived, dropped=dropped)
    return archived, dropped

"""Security events (ENABLE_SECURITY_LOGS): one logger, so operators can route or silence them together.

Events carry the client IP and at most a key's visible prefix or fingerprint, never a key or token.
"""

from __future__ import annotations

from typing import Any

import structlog

SECURITY_LOGGER = "codeapi.security"
logger = structlog.get_logger(SECURITY_LOGGER)


def security_event(event: str, **fields: Any) -> None:
    """A refused or contained action (auth failure, rate limit, sandbox kill): WARNING."""
    logger.warning(event, **fields)


def admin_event(event: str, **fields: Any) -> None:
    """An administrator's change (key created, disabled, revoked): INFO."""
    logger.info(event, **fields)

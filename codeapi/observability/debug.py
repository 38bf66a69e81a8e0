"""API_DEBUG: the effective configuration for /config, every secret redacted, and the start-up warning."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import structlog

from codeapi.config import Settings

logger = structlog.get_logger(__name__)

SECRET_WORDS = ("KEY", "SECRET", "PASSWORD", "TOKEN")
REDACTED = "***"
URL_PASSWORD = re.compile(r"(?<=://)([^:/@]*):[^@/]*@")


def redacted_config(settings: Settings) -> dict[str, Any]:
    """Every variable of the guide by its environment name, as this process resolved it."""
    config: dict[str, Any] = {}
    for name in sorted(settings.ENV_NAMES):
        value = getattr(settings, name.lower())
        if isinstance(value, Path):
            value = str(value)
        if value is not None and value != [] and any(word in name for word in SECRET_WORDS):
            value = REDACTED if not name.endswith("_FILE") else value
        elif isinstance(value, str) and "://" in value:
            value = URL_PASSWORD.sub(rf"\1:{REDACTED}@", value)
        config[name] = value
    return config


def warn_debug_mode() -> None:
    logger.warning(
        "codeapi.debug_mode",
        variable="API_DEBUG",
        effect="/config shows the configuration and error responses carry internal detail: never in production",
    )

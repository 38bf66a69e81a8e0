"""Configuration: ``Settings.load()`` reads every variable of the configuration guide.

``from codeapi.config import settings`` gives the process-wide instance (built on first use) for
programmatic access; code inside ``codeapi`` receives settings groups instead.
"""

from __future__ import annotations

from typing import Any

from codeapi.config.root import ENV_NAMES, ConfigError, Settings

__all__ = ["ENV_NAMES", "ConfigError", "Settings"]

_instance: Settings | None = None


def __getattr__(name: str) -> Any:
    global _instance
    if name == "settings":
        if _instance is None:
            _instance = Settings.load()
        return _instance
    raise AttributeError(name)

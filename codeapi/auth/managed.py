"""Managed API keys: made here, shown once, stored only as a SHA-256 with a short visible prefix."""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import asdict
from datetime import UTC, datetime
from typing import Any

from codeapi.config import ConfigError
from codeapi.config.groups import AuthSettings
from codeapi.storage.metadata.base import ApiKeyRecord, RateLimits

KEY_SCHEME = "sk-"
VISIBLE_CHARS = 11  # "sk-" and 8 random characters: enough to tell keys apart, far too few to guess one
ENV_VISIBLE_CHARS = 4  # an operator-chosen key may be short on randomness: show less of it
MIN_KEY_LENGTH = 16
PUBLISHED_DEFAULT_KEY = "test-api-key"


def hash_key(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def new_key() -> str:
    return KEY_SCHEME + secrets.token_urlsafe(32)


def new_record(
    key: str, name: str, rate_limits: RateLimits, metadata: dict[str, Any], now: datetime | None = None
) -> ApiKeyRecord:
    return ApiKeyRecord(
        key_hash=hash_key(key),
        key_prefix=key[:VISIBLE_CHARS],
        name=name,
        created_at=now or datetime.now(UTC),
        rate_limits=rate_limits,
        metadata=metadata,
    )


def environment_records(auth: AuthSettings, started_at: datetime) -> list[ApiKeyRecord]:
    """API_KEY and API_KEYS as read-only records: listed beside the managed keys, changed only in the environment."""
    names = ["API_KEY"] + [f"API_KEYS[{index}]" for index in range(len(auth.api_keys))]
    return [
        ApiKeyRecord(
            key_hash=hash_key(key),
            key_prefix=key[:ENV_VISIBLE_CHARS],
            name=name,
            created_at=started_at,
            source="environment",
        )
        for name, key in zip(names, auth.valid_keys, strict=True)
    ]


def refuse_short_keys(auth: AuthSettings, debug: bool) -> None:
    """Keys under 16 characters are guessable: a configuration error at start-up. The published default
    may stay for local experiments under API_DEBUG (refuse_insecure_defaults refuses it otherwise)."""
    named = [("API_KEY", auth.api_key)] + [("API_KEYS", key) for key in auth.api_keys]
    if auth.master_api_key is not None:
        named.append(("MASTER_API_KEY", auth.master_api_key))
    for variable, key in named:
        if len(key) >= MIN_KEY_LENGTH or (debug and variable == "API_KEY" and key == PUBLISHED_DEFAULT_KEY):
            continue
        raise ConfigError(f"{variable}: keys must be at least {MIN_KEY_LENGTH} characters (got {len(key)})")


def record_json(record: ApiKeyRecord) -> dict[str, Any]:
    """A key record as the admin API and ``codeapi keys list --json`` show it (there is no secret in it)."""
    body = asdict(record)
    body["created_at"] = record.created_at.isoformat()
    body["last_used_at"] = record.last_used_at.isoformat() if record.last_used_at else None
    return body

"""How both metadata backends store managed API keys and usage totals.

A key's fixed fields travel as one JSON document; its use counters are kept beside it (a column or
a hash field) so that counting a request never rewrites, or races with an edit of, the record.
"""

from __future__ import annotations

import json
from dataclasses import asdict, fields
from datetime import datetime, timedelta
from typing import Any

from codeapi.storage.metadata.base import ApiKeyRecord, RateLimits, UsageSample, UsageTotals
from codeapi.storage.metadata.common import from_micros, to_micros

HOUR = timedelta(hours=1)
# Counters of a usage total, in the order both backends store them.
USAGE_COUNTERS = ("executions", "errors", "timeouts", "wall_s", "bytes_in", "bytes_out")


def key_to_json(record: ApiKeyRecord) -> str:
    fixed = {
        "key_hash": record.key_hash,
        "key_prefix": record.key_prefix,
        "name": record.name,
        "created_at": to_micros(record.created_at),
        "enabled": record.enabled,
        "rate_limits": asdict(record.rate_limits),
        "metadata": record.metadata,
    }
    return json.dumps(fixed, separators=(",", ":"))


def key_from_json(raw: str | bytes, usage_count: int, last_used_micros: int | None) -> ApiKeyRecord:
    fixed: dict[str, Any] = json.loads(raw)
    limits = fixed.get("rate_limits") or {}
    return ApiKeyRecord(
        key_hash=fixed["key_hash"],
        key_prefix=fixed["key_prefix"],
        name=fixed["name"],
        created_at=from_micros(fixed["created_at"]),
        enabled=bool(fixed["enabled"]),
        rate_limits=RateLimits(**{item.name: limits.get(item.name) for item in fields(RateLimits)}),
        metadata=fixed.get("metadata") or {},
        last_used_at=from_micros(last_used_micros) if last_used_micros is not None else None,
        usage_count=usage_count,
    )


def hour_of(moment: datetime) -> int:
    """The start of the hour containing ``moment``, in microseconds since the epoch."""
    micros = to_micros(moment)
    return micros - micros % (HOUR // timedelta(microseconds=1))


def sample_counters(sample: UsageSample) -> dict[str, int | float]:
    return {name: getattr(sample, name) for name in USAGE_COUNTERS}


def totals_from(hour_micros: int, caller: str, language: str, values: dict[str, Any]) -> UsageTotals:
    return UsageTotals(
        hour_at=from_micros(hour_micros),
        caller=caller,
        language=language,
        executions=int(values.get("executions", 0)),
        errors=int(values.get("errors", 0)),
        timeouts=int(values.get("timeouts", 0)),
        wall_s=float(values.get("wall_s", 0.0)),
        bytes_in=int(values.get("bytes_in", 0)),
        bytes_out=int(values.get("bytes_out", 0)),
        last_used_at=from_micros(int(values.get("last_used_at", hour_micros))),
    )

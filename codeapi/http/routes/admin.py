"""The admin API under /api/v1/admin (MASTER_API_KEY): managed keys, usage, health; and /config in debug mode."""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field, field_validator

from codeapi.auth.managed import new_key, new_record, record_json
from codeapi.errors import InvalidRequest, NotFound
from codeapi.http.deps import Services, client_ip, require_api_key, require_master_key
from codeapi.http.routes.health import health_detailed
from codeapi.observability.security import admin_event
from codeapi.observability.usage import Counters, grouped, summed
from codeapi.storage.metadata.base import ApiKeyRecord, RateLimits

router = APIRouter(prefix="/api/v1/admin", dependencies=[Depends(require_master_key)], tags=["admin"])

MAX_HOURS = 24 * 90  # usage totals are kept this long
MAX_METADATA_BYTES = 4096
Hours = Annotated[int, Query(ge=1, le=MAX_HOURS, description="how many hours back, up to now")]


class RateLimitsIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    per_second: int | None = Field(None, ge=1)
    per_minute: int | None = Field(None, ge=1)
    hourly: int | None = Field(None, ge=1)
    daily: int | None = Field(None, ge=1)
    monthly: int | None = Field(None, ge=1)

    def to_limits(self) -> RateLimits:
        return RateLimits(**self.model_dump())


class KeyCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, max_length=200)
    rate_limits: RateLimitsIn | None = None
    metadata: dict[str, Any] = Field(default_factory=dict)

    @field_validator("metadata")
    @classmethod
    def small_metadata(cls, value: dict[str, Any]) -> dict[str, Any]:
        """It is read on every request the key makes: a few labels, not a document."""
        if len(json.dumps(value)) > MAX_METADATA_BYTES:
            raise ValueError(f"metadata must stay under {MAX_METADATA_BYTES} bytes of JSON")
        return value


class KeyUpdate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str | None = Field(None, min_length=1, max_length=200)
    enabled: bool | None = None
    rate_limits: RateLimitsIn | None = None


async def managed_key(services: Services, key_hash: str) -> ApiKeyRecord:
    if any(record.key_hash == key_hash for record in services.environment_keys):
        raise InvalidRequest("Keys from API_KEY / API_KEYS are read-only: change them in the environment", "key_hash")
    record = await services.sessions.metadata.get_key(key_hash)
    if record is None:
        raise NotFound("API key not found")
    return record


@router.post("/keys", status_code=201)
async def create_key(body: KeyCreate, request: Request, services: Services) -> dict[str, Any]:
    key = new_key()
    limits = body.rate_limits.to_limits() if body.rate_limits else RateLimits()
    record = new_record(key, body.name, limits, body.metadata)
    await services.sessions.metadata.put_key(record)
    admin_event("admin.key_created", key_prefix=record.key_prefix, name=record.name, client_ip=client_ip(request))
    return {"api_key": key, "record": record_json(record)}


@router.get("/keys")
async def list_keys(services: Services) -> list[dict[str, Any]]:
    managed = await services.sessions.metadata.list_keys()
    return [record_json(record) for record in (*services.environment_keys, *managed)]


@router.patch("/keys/{key_hash}")
async def update_key(key_hash: str, body: KeyUpdate, request: Request, services: Services) -> dict[str, Any]:
    record = await managed_key(services, key_hash)
    changes: dict[str, Any] = body.model_dump(exclude_unset=True, exclude={"rate_limits"})
    if body.name is None:
        changes.pop("name", None)
    if body.enabled is None:
        changes.pop("enabled", None)
    if "rate_limits" in body.model_fields_set:
        changes["rate_limits"] = body.rate_limits.to_limits() if body.rate_limits else RateLimits()
    updated = replace(record, **changes)
    if not await services.sessions.metadata.update_key(updated):  # revoked meanwhile, maybe on another replica
        raise NotFound("API key not found")
    admin_event(
        "admin.key_updated", key_prefix=record.key_prefix, changed=sorted(changes), client_ip=client_ip(request)
    )
    return record_json(updated)


@router.delete("/keys/{key_hash}")
async def revoke_key(key_hash: str, request: Request, services: Services) -> dict[str, Any]:
    record = await managed_key(services, key_hash)
    await services.sessions.metadata.delete_key(key_hash)
    admin_event("admin.key_revoked", key_prefix=record.key_prefix, client_ip=client_ip(request))
    return {"revoked": True, "key_hash": key_hash}


@router.get("/health")
async def admin_health(services: Services) -> JSONResponse:
    """The detailed health check for the dashboard, which holds the master key rather than an API key."""
    return await health_detailed(services)


@router.get("/stats")
async def stats(services: Services, hours: Hours = 24) -> dict[str, Any]:
    totals = await services.usage.since(timedelta(hours=hours))
    managed = await services.sessions.metadata.list_keys()
    return {
        "hours": hours,
        "usage": summed(totals).as_json(),
        "keys": {
            "managed": len(managed),
            "enabled": sum(record.enabled for record in managed),
            "environment": len(services.environment_keys),
        },
        "languages": len({item.language for item in totals}),
    }


@router.get("/metrics/summary")
async def metrics_summary(services: Services, hours: Hours = 24) -> dict[str, Any]:
    totals = await services.usage.since(timedelta(hours=hours))
    return {"hours": hours, **summed(totals).as_json(), "callers": len({item.caller for item in totals})}


@router.get("/metrics/languages")
async def metrics_languages(services: Services, hours: Hours = 24) -> list[dict[str, Any]]:
    by_language = grouped(await services.usage.since(timedelta(hours=hours)), "language")
    return [{"language": name, **counters.as_json()} for name, counters in ranked(by_language)]


@router.get("/metrics/time-series")
async def metrics_time_series(services: Services, hours: Hours = 24) -> list[dict[str, Any]]:
    """One point per hour, oldest first, hours without executions included as zeros."""
    by_hour = grouped(await services.usage.since(timedelta(hours=hours)), "hour_at")
    now = datetime.now(UTC).replace(minute=0, second=0, microsecond=0)
    points = [now - timedelta(hours=back) for back in range(hours - 1, -1, -1)]
    return [{"hour_at": hour.isoformat(), **by_hour.get(str(hour), Counters()).as_json()} for hour in points]


@router.get("/metrics/api-keys")
async def metrics_api_keys(services: Services, hours: Hours = 24) -> list[dict[str, Any]]:
    """Usage by caller: managed and environment keys by name, JWT users each, AUTH_ENABLED=false as anonymous."""
    by_caller = grouped(await services.usage.since(timedelta(hours=hours)), "caller")
    known = {record.key_hash: record for record in await services.sessions.metadata.list_keys()}
    environment = {f"env:{record.key_hash[:12]}": record for record in services.environment_keys}
    rows = []
    for caller, counters in ranked(by_caller):
        record = known.get(caller) or environment.get(caller)
        identity = (
            {"key_hash": record.key_hash, "key_prefix": record.key_prefix, "name": record.name, "source": record.source}
            if record is not None
            else unlisted_caller(caller)
        )
        rows.append({**identity, **counters.as_json()})
    return rows


def ranked(groups: dict[str, Counters]) -> Iterable[tuple[str, Counters]]:
    return sorted(groups.items(), key=lambda item: (-item[1].executions, item[0]))


def unlisted_caller(caller: str) -> dict[str, Any]:
    """A JWT user, anonymous use (AUTH_ENABLED=false), or a key revoked since (only its hash is left)."""
    kind, _, user = caller.partition(":")
    if kind == "user":
        return {"key_hash": None, "key_prefix": None, "name": user, "source": "jwt"}
    if caller == "anonymous":
        return {"key_hash": None, "key_prefix": None, "name": "anonymous", "source": "anonymous"}
    return {"key_hash": caller, "key_prefix": None, "name": "(revoked key)", "source": "revoked"}


def debug_router(config: dict[str, Any]) -> APIRouter:
    """API_DEBUG=true only: the effective configuration, secrets redacted, for any valid API key."""
    debug = APIRouter(dependencies=[Depends(require_api_key)], tags=["debug"])

    @debug.get("/config")
    async def effective_config() -> dict[str, Any]:
        return config

    return debug

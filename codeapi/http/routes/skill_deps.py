"""/api/v1/admin/skill-deps (MASTER_API_KEY): what SKILL_DEPS_PATH holds, and purging it."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from typing import Any

from fastapi import APIRouter, Depends, Request
from pydantic import BaseModel, ConfigDict, Field

from codeapi.http.deps import Services, client_ip, require_master_key
from codeapi.observability.security import admin_event

router = APIRouter(prefix="/api/v1/admin/skill-deps", dependencies=[Depends(require_master_key)], tags=["admin"])


class Purge(BaseModel):
    model_config = ConfigDict(extra="forbid")

    older_than_hours: float = Field(0, ge=0, description="keep the trees a run changed more recently than this")


@router.get("")
async def skill_deps_usage(services: Services) -> dict[str, Any]:
    """Each session's kept tree (by its hashed scope, never the session id): size, files, last change."""
    if services.egress is None:
        return {"enabled": False, "sessions": [], "total_bytes": 0}
    skill_deps = services.egress.skill_deps
    scopes = await asyncio.to_thread(skill_deps.usage)
    return {
        "enabled": True,
        "path": str(skill_deps.root),
        "total_bytes": sum(scope.size_bytes for scope in scopes),
        "sessions": [
            {
                "scope": scope.scope,
                "size_bytes": scope.size_bytes,
                "files": scope.files,
                "modified_at": datetime.fromtimestamp(scope.modified_at, UTC).isoformat(),
            }
            for scope in scopes
        ],
    }


@router.post("/purge")
async def purge_skill_deps(request: Request, services: Services, body: Purge | None = None) -> dict[str, Any]:
    if services.egress is None:
        return {"removed": 0}
    older_than_s = (body or Purge()).older_than_hours * 3600
    removed = await asyncio.to_thread(services.egress.skill_deps.purge, older_than_s)
    admin_event("admin.skill_deps_purged", removed=removed, client_ip=client_ip(request))
    return {"removed": removed}

"""/api/v1/admin/runtime-sessions (MASTER_API_KEY): the stateful profile's workspaces, their usage, ending one."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from fastapi import APIRouter, Depends, Request

from codeapi.errors import NotFound
from codeapi.http.deps import Services, client_ip, require_master_key
from codeapi.observability.security import admin_event
from codeapi.workspaces.store import RuntimeSession, RuntimeSessions

router = APIRouter(prefix="/api/v1/admin/runtime-sessions", dependencies=[Depends(require_master_key)], tags=["admin"])


def described(record: RuntimeSession, runtimes: RuntimeSessions, now: float) -> dict[str, Any]:
    return {
        "runtime_session_id": record.runtime_id,
        "owner": record.owner,
        "session_id": record.session_id,
        "created_at": datetime.fromtimestamp(record.created_at, UTC).isoformat(),
        "last_used_at": datetime.fromtimestamp(record.last_used_at, UTC).isoformat(),
        "expired": record.expired(runtimes.policy, now),
        "workspace_bytes": record.tree_bytes,
        "checkpoint_bytes": sum(layer.size_bytes for layer in record.layers),
        "checkpoint_layers": len(record.layers),
        "usage": {"calls": record.calls, "wall_time_ms": record.busy_ms, "cpu_time_ms": record.cpu_ms},
    }


@router.get("")
async def list_runtime_sessions(services: Services) -> dict[str, Any]:
    """Every runtime session, most recently used first."""
    runtimes = services.runtimes
    if runtimes is None:
        return {"enabled": False, "runtime_sessions": []}
    now = datetime.now(UTC).timestamp()
    records = sorted(await runtimes.all(), key=lambda record: record.last_used_at, reverse=True)
    return {"enabled": True, "runtime_sessions": [described(record, runtimes, now) for record in records]}


@router.delete("/{runtime_id}")
async def end_runtime_session(runtime_id: str, request: Request, services: Services) -> dict[str, Any]:
    """Ends it at once: its checkpoint is deleted and its next call starts a new workspace. A call
    running on it now is waited for (up to the lock's wait; then 409)."""
    runtimes = services.runtimes
    if runtimes is None or not await runtimes.end_when_idle(runtime_id):
        raise NotFound(f"Runtime session {runtime_id} not found")
    admin_event("admin.runtime_session_ended", runtime_session_id=runtime_id, client_ip=client_ip(request))
    return {"ended": True, "runtime_session_id": runtime_id}

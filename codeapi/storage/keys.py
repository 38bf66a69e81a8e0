"""Blob keys are built here and nowhere else."""

from __future__ import annotations

SESSIONS_PREFIX = "sessions/"
WORKSPACES_PREFIX = "workspaces/"


def session_prefix(session_id: str) -> str:
    return f"{SESSIONS_PREFIX}{session_id}/"


def file_key(session_id: str, file_id: str) -> str:
    return f"{session_prefix(session_id)}{file_id}"


def session_of(key: str) -> str | None:
    """The session id a file key belongs to (for orphan sweeps), or None for other keys."""
    if not key.startswith(SESSIONS_PREFIX):
        return None
    rest = key[len(SESSIONS_PREFIX) :]
    session_id, _, file_id = rest.partition("/")
    return session_id if file_id else None


def workspace_prefix(runtime_id: str) -> str:
    """A stateful runtime session's checkpoint layers (codeapi.workspaces); outside every session's prefix."""
    return f"{WORKSPACES_PREFIX}{runtime_id}/"


def workspace_layer_key(runtime_id: str, layer: str) -> str:
    return f"{workspace_prefix(runtime_id)}{layer}"

"""Request-scoped access to the components ``app.py`` built (kept on app.state, never in globals)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated

from fastapi import Depends, Request

from codeapi.auth.keys import KeyChecker, extract_key
from codeapi.auth.tokens import TokenVerifier, extract_bearer
from codeapi.egress.gateway import EgressGateway
from codeapi.execution.service import ExecutionService
from codeapi.sessions.service import SessionService


@dataclass(frozen=True)
class Components:
    executions: ExecutionService
    sessions: SessionService
    keys: KeyChecker
    tokens: TokenVerifier | None  # Bearer JWTs from LibreChat, when its public key is configured
    auth_enabled: bool
    max_filename_length: int
    max_files_per_session: int
    max_file_bytes: int
    spool_dir: Path
    backends: dict[str, str]
    check_sandbox: Callable[[], Awaitable[None]]
    egress: EgressGateway | None = None  # ENABLE_SANDBOX_NETWORK


def components(request: Request) -> Components:
    found: Components = request.app.state.components
    return found


Services = Annotated[Components, Depends(components)]


async def require_api_key(request: Request, services: Services) -> None:
    """An API key (x-api-key wins, then Basic), else a Bearer JWT when those are configured."""
    if not services.auth_enabled:
        return
    token = extract_bearer(request.headers)
    if services.tokens is not None and token is not None and not request.headers.get("x-api-key", "").strip():
        request.state.token_user_id = services.tokens.verify(token)
        return
    services.keys.check(extract_key(request.headers))


def token_user_id(request: Request) -> str | None:
    """The user a verified Bearer token names: it outranks any user id the request body claims."""
    found = getattr(request.state, "token_user_id", None)
    return found if isinstance(found, str) else None

"""Request-scoped access to the components ``app.py`` built (kept on app.state, never in globals)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated

import structlog
from fastapi import Depends, Request

from codeapi.auth.gate import ANONYMOUS, AuthGate, Caller
from codeapi.egress.gateway import EgressGateway
from codeapi.execution.service import ExecutionService
from codeapi.observability.loops import Loops
from codeapi.observability.usage import UsageLedger
from codeapi.sessions.owners import claimed_owner
from codeapi.sessions.service import SessionService
from codeapi.storage.metadata.base import ApiKeyRecord
from codeapi.workspaces.store import RuntimeSessions


@dataclass(frozen=True)
class Components:
    executions: ExecutionService
    sessions: SessionService
    gate: AuthGate  # API keys, Bearer JWTs, the master key and the rate limits
    usage: UsageLedger
    environment_keys: list[ApiKeyRecord]  # API_KEY and API_KEYS, listed read-only by the admin API
    max_filename_length: int
    max_files_per_session: int
    max_file_bytes: int
    spool_dir: Path
    backends: dict[str, str]
    check_sandbox: Callable[[], Awaitable[None]]
    loops: Loops  # the background loops, for /health/detailed
    egress: EgressGateway | None = None  # ENABLE_SANDBOX_NETWORK
    runtimes: RuntimeSessions | None = None  # the stateful profile's runtime sessions, when served


def components(request: Request) -> Components:
    found: Components = request.app.state.components
    return found


Services = Annotated[Components, Depends(components)]


def client_ip(request: Request) -> str:
    return request.client.host if request.client is not None else "unknown"


async def require_api_key(request: Request, services: Services) -> None:
    """An API key (x-api-key wins, then Basic), else a Bearer JWT when those are configured; then its rate limit."""
    caller = await services.gate.admit(request.headers, client_ip(request))
    request.state.caller = caller
    # Every later line of this request names who made it (the sandbox's containment events too).
    structlog.contextvars.bind_contextvars(client_ip=client_ip(request), caller=caller.label)
    if caller.rate is not None:
        request.state.rate_limit_headers = caller.rate.headers()  # added to the response by the middleware


async def require_master_key(request: Request, services: Services) -> None:
    """The admin API: MASTER_API_KEY, also when AUTH_ENABLED=false; 404 when no master key is set."""
    await services.gate.admit_admin(request.headers, client_ip(request))


def caller(request: Request) -> Caller:
    found = getattr(request.state, "caller", ANONYMOUS)
    return found if isinstance(found, Caller) else ANONYMOUS


def token_user_id(request: Request) -> str | None:
    """The owner id of a verified Bearer token's (tenant, user): it outranks any user id a request claims."""
    return caller(request).user_id


def owner_id(request: Request, claimed: str | None) -> str | None:
    """Who owns what the request creates: the token's owner, else the user the key's holder claims."""
    return token_user_id(request) or claimed_owner(claimed)

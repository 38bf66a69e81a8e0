"""Execution profiles (contract §9.2): X-CodeAPI-Expected-Profile in, X-CodeAPI-Execution-Profile out.

LibreChat names the profile it expects of the deployment it calls (``default`` or ``stateful``), so a
request that reached the wrong deployment fails before anything runs: 400 for a value no deployment
serves, 409 for one this deployment does not (the client shows a permanent "capability mismatch").
Every response, errors included, says which profile served it: the one requested when served, else
``default``. No header: served as before. Pure ASGI, so 404s and auth failures carry the header too.
"""

from __future__ import annotations

from collections.abc import Collection
from typing import get_args

from starlette.datastructures import Headers, MutableHeaders
from starlette.requests import Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from codeapi.config.groups import ExecutionProfile
from codeapi.errors import ExecutionProfileError, ExecutionProfileMismatch, InvalidExecutionProfile
from codeapi.http.errors import error_response

EXPECTED_HEADER = "x-codeapi-expected-profile"
SERVED_HEADER = "X-CodeAPI-Execution-Profile"
PROFILES: tuple[str, ...] = get_args(ExecutionProfile)
DEFAULT_PROFILE = "default"
STATEFUL_PROFILE = "stateful"


class ExecutionProfileMiddleware:
    def __init__(self, app: ASGIApp, served: Collection[ExecutionProfile]) -> None:
        self.app = app
        self.served = frozenset(served)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        expected = Headers(scope=scope).get(EXPECTED_HEADER, "").strip() or None
        actual = expected if expected in self.served else DEFAULT_PROFILE

        async def send_with_profile(message: Message) -> None:
            if message["type"] == "http.response.start":
                MutableHeaders(scope=message)[SERVED_HEADER] = actual
            await send(message)

        refusal = self.refusal(expected, actual)
        if refusal is not None:
            await error_response(refusal, Request(scope))(scope, receive, send_with_profile)
            return
        await self.app(scope, receive, send_with_profile)

    def refusal(self, expected: str | None, actual: str) -> ExecutionProfileError | None:
        if expected is None or expected in self.served:
            return None
        if expected not in PROFILES:
            return InvalidExecutionProfile(expected, actual)
        return ExecutionProfileMismatch(expected, actual)

"""Request ids and status-aware request logging (5xx ERROR, 4xx WARNING, the rest DEBUG).

Pure ASGI rather than BaseHTTPMiddleware, so streaming responses and client disconnects pass
through untouched.
"""

from __future__ import annotations

import time

import structlog
from starlette.datastructures import MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from codeapi.after_response import collecting
from codeapi.sessions.ids import new_id

logger = structlog.get_logger("codeapi.http.requests")


class RequestLoggingMiddleware:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request_id = new_id()
        scope.setdefault("state", {})["request_id"] = request_id
        structlog.contextvars.clear_contextvars()
        structlog.contextvars.bind_contextvars(request_id=request_id)
        started = time.monotonic()
        status = 500

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                headers = MutableHeaders(scope=message)
                headers["X-Request-ID"] = request_id
                for name, value in scope["state"].get("rate_limit_headers", {}).items():
                    headers[name] = value
            await send(message)

        try:
            with collecting():  # what waits for the response runs once it is sent
                await self.app(scope, receive, send_with_id)
        finally:
            elapsed_ms = int((time.monotonic() - started) * 1000)
            log = logger.error if status >= 500 else logger.warning if status >= 400 else logger.debug
            log(
                "http.request",
                method=scope["method"],
                path=scope["path"],
                status=status,
                elapsed_ms=elapsed_ms,
            )

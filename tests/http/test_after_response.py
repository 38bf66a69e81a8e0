"""Work that waits for the response (codeapi.after_response): the request middleware runs it once
the response is sent; outside a request it runs at once."""

from __future__ import annotations

import asyncio

import httpx
from fastapi import FastAPI
from starlette.types import Message, Receive, Scope, Send

from codeapi.after_response import after_response
from codeapi.http.middleware import RequestLoggingMiddleware


def test_outside_a_request_work_runs_at_once() -> None:
    done: list[str] = []
    after_response(lambda: done.append("now"))
    assert done == ["now"]


async def test_work_of_a_request_runs_once_its_response_is_sent() -> None:
    events: list[str] = []
    app = FastAPI()

    @app.get("/")
    async def answer() -> dict[str, bool]:
        async def in_a_task() -> None:  # as /exec runs its execution
            after_response(lambda: events.append("work"))

        await asyncio.create_task(in_a_task())
        events.append("handled")
        return {"ok": True}

    async def record_sends(scope: Scope, receive: Receive, send: Send) -> None:
        async def sending(message: Message) -> None:
            if message["type"] == "http.response.body" and not message.get("more_body"):
                events.append("sent")
            await send(message)

        await app(scope, receive, sending)

    transport = httpx.ASGITransport(app=RequestLoggingMiddleware(record_sends))
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
        assert (await client.get("/")).json() == {"ok": True}
    assert events == ["handled", "sent", "work"]

"""Helpers for programmatic tool calling tests: a client's side of the round trip, tools in Python."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import httpx

# test_usage.py's app with a master key (one per module, on each backend) and its admin client.
from tests.admin.conftest import admin, backend, service  # noqa: F401 - fixtures

TOOLS: list[dict[str, Any]] = [
    {"name": "get-weather", "description": "Weather of a city", "parameters": {"type": "object"}},
    {"name": "fail", "description": "Always fails", "parameters": {"type": "object"}},
    {"name": "class", "description": "A Python keyword", "parameters": {"type": "object"}},
]

Respond = Callable[[dict[str, Any]], dict[str, Any]]


def weather(call: dict[str, Any]) -> dict[str, Any]:
    """What the client's tools answer: get-weather echoes the city, fail fails, class names itself."""
    if call["name"] == "fail":
        return {"call_id": call["id"], "result": None, "is_error": True, "error_message": "the tool broke"}
    if call["name"] == "class":
        return {"call_id": call["id"], "result": "a keyword", "is_error": False}
    return {"call_id": call["id"], "result": {"city": call["input"].get("city"), "temp": 20}, "is_error": False}


async def start(
    client: httpx.AsyncClient,
    code: str,
    tools: list[dict[str, Any]] | None = None,
    headers: dict[str, str] | None = None,
    **extra: Any,
) -> Any:
    body = {"code": code, "tools": TOOLS if tools is None else tools, **extra}
    response = await client.post("/exec/programmatic", json=body, headers=headers)
    assert response.status_code == 200, response.text
    return response.json()


async def answer(
    client: httpx.AsyncClient, reply: dict[str, Any], respond: Respond = weather, headers: dict[str, str] | None = None
) -> Any:
    body = {
        "continuation_token": reply["continuation_token"],
        "tool_results": [respond(c) for c in reply["tool_calls"]],
    }
    response = await client.post("/exec/programmatic", json=body, headers=headers)
    assert response.status_code == 200, response.text
    return response.json()


async def complete(
    client: httpx.AsyncClient, reply: dict[str, Any], respond: Respond = weather
) -> tuple[dict[str, Any], list[list[dict[str, Any]]]]:
    """Drive the round trips to the end; returns the final answer and every batch the program made."""
    batches = []
    while reply["status"] == "tool_call_required":
        batches.append(reply["tool_calls"])
        reply = await answer(client, reply, respond)
    return reply, batches

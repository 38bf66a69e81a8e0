"""POST /exec/programmatic and /exec/programmatic/cancel (contract §6)."""

from __future__ import annotations

import hashlib
from typing import Any

from fastapi import APIRouter, Request

from codeapi.auth.keys import extract_key
from codeapi.errors import InvalidRequest
from codeapi.http.deps import token_user_id
from codeapi.http.programmatic_schemas import CancelBody, ProgrammaticBody
from codeapi.http.routes.exec import check_code, file_refs, requester, session_claim
from codeapi.programmatic.service import Answer, Paused, ProgrammaticService, Refused, StartRequest, ToolResult
from codeapi.programmatic.tools import parse_tools

router = APIRouter()

REQUEST_ID_HEADER = "x-librechat-code-request-id"
# Tool results travel in the continuation body; each is capped again by the service.
MAX_PROGRAMMATIC_BODY_BYTES = 8 * 1024 * 1024


def service(request: Request) -> ProgrammaticService:
    found: ProgrammaticService = request.app.state.programmatic
    return found


def caller_of(request: Request) -> str:
    """Whom a token belongs to: the JWT's user, else a fingerprint of the API key (never the key)."""
    user = token_user_id(request)
    if user is not None:
        return f"jwt:{user}"
    key = extract_key(request.headers)
    return f"key:{hashlib.sha256(key.encode()).hexdigest()}" if key else "anonymous"


def to_response(answer: Answer) -> dict[str, Any]:
    if isinstance(answer, Refused):
        return {"status": "error", "error": answer.error}
    if isinstance(answer, Paused):
        return {
            "status": "tool_call_required",
            "session_id": answer.session_id,
            "continuation_token": answer.continuation_token,
            "tool_calls": [{"id": call.call_id, "name": call.name, "input": call.input} for call in answer.tool_calls],
            "stdout": "",
            "stderr": "",
            "files": [],
        }
    outcome = answer.outcome
    if answer.error is not None:
        return {"status": "error", "error": answer.error, "stdout": outcome.stdout, "stderr": outcome.stderr}
    return {
        "status": "completed",
        "session_id": outcome.session_id,
        "stdout": outcome.stdout,
        "stderr": outcome.stderr,
        "files": [ref.model_dump(exclude_none=True) for ref in file_refs(outcome.files)],
    }


@router.post("/exec/programmatic", max_body_size=MAX_PROGRAMMATIC_BODY_BYTES)
async def programmatic(body: ProgrammaticBody, request: Request) -> dict[str, Any]:
    caller = caller_of(request)
    if body.continuation_token is not None:
        results = [
            ToolResult(item.call_id, not item.is_error, item.result, item.error_message) for item in body.tool_results
        ]
        return to_response(await service(request).resume(body.continuation_token, results, caller, requester(request)))
    if body.code is None:
        raise InvalidRequest("Either code or continuation_token is required", field="code")
    check_code(body.code)
    start = StartRequest(
        lang=body.lang,
        code=body.code,
        tools=parse_tools(body.tools, body.lang),
        caller=caller,
        claim=session_claim(body.session_id, body.entity_id, token_user_id(request) or body.user_id, body.files),
        timeout_s=body.timeout / 1000 if body.timeout else None,
        request_id=request.headers.get(REQUEST_ID_HEADER),
    )
    return to_response(await service(request).start(start, requester(request)))


@router.post("/exec/programmatic/cancel")
async def cancel(body: CancelBody, request: Request) -> dict[str, Any]:
    """Unknown, finished or foreign ids are a no-op: the client ignores the answer anyway."""
    cancelled = await service(request).cancel(body.request_id, caller_of(request)) if body.request_id else False
    return {"cancelled": cancelled}

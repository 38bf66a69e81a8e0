"""POST /exec/programmatic and /exec/programmatic/cancel (contract §6, §9.4)."""

from __future__ import annotations

import hashlib
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from codeapi.auth.keys import extract_key
from codeapi.errors import InvalidRequest
from codeapi.http.deps import token_user_id
from codeapi.http.programmatic_schemas import CancelBody, ProgrammaticBody
from codeapi.http.routes.exec import check_code, delivery_out, file_refs, requester, run_out, session_claim
from codeapi.languages import get_tool_calling
from codeapi.programmatic.service import (
    Answer,
    Cancelled,
    Paused,
    ProgrammaticService,
    Refused,
    StartRequest,
    ToolResult,
)
from codeapi.programmatic.tools import parse_tools
from codeapi.units import MB

router = APIRouter()

REQUEST_ID_HEADER = "x-librechat-code-request-id"
# Tool results travel in the continuation body; each is capped again by the service.
MAX_PROGRAMMATIC_BODY_BYTES = 8 * MB


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
            "partial_stdout": answer.partial_stdout,
            "partial_stderr": answer.partial_stderr,
            # The final output comes with the end; these stay empty for clients that read them here.
            "stdout": "",
            "stderr": "",
            "files": [],
        }
    outcome = answer.outcome
    run = run_out(outcome.run).model_dump()
    if answer.error is not None:
        return {
            "status": "error",
            "error": answer.error,
            "stdout": outcome.stdout,
            "stderr": outcome.stderr,
            "run": run,
        }
    delivery = delivery_out(outcome.outputs.delivery)
    return {
        "status": "completed",
        "session_id": outcome.session_id,
        "stdout": outcome.stdout,
        "stderr": outcome.stderr,
        "files": [ref.model_dump(exclude_none=True) for ref in file_refs(outcome.files)],
        "deleted_files": outcome.outputs.deleted,
        **({"artifact_delivery": delivery.model_dump()} if delivery is not None else {}),
        "run": run,
    }


@router.post("/exec/programmatic", max_body_size=MAX_PROGRAMMATIC_BODY_BYTES)
async def programmatic(body: ProgrammaticBody, request: Request) -> dict[str, Any]:
    caller = caller_of(request)
    if body.continuation_token is not None:
        results = [
            ToolResult(item.call_id, not item.is_error, item.result, item.error_message) for item in body.tool_results
        ]
        resumed = service(request).resume(
            body.continuation_token, results, caller, requester(request), request.headers.get(REQUEST_ID_HEADER)
        )
        return to_response(await resumed)
    if body.code is None:
        raise InvalidRequest("Either code or continuation_token is required", field="code")
    check_code(body.code)
    start = StartRequest(
        lang=body.lang,
        code=body.code,
        tools=parse_tools(body.tools, get_tool_calling(body.lang).reserved_words),
        caller=caller,
        claim=session_claim(body.session_id, body.entity_id, token_user_id(request) or body.user_id, body.files),
        timeout_s=body.timeout / 1000 if body.timeout else None,
        request_id=request.headers.get(REQUEST_ID_HEADER),
    )
    return to_response(await service(request).start(start, requester(request)))


@router.post("/exec/programmatic/cancel")
async def cancel(body: CancelBody, request: Request) -> JSONResponse:
    """Stop what the request with this X-LibreChat-Code-Request-ID waits on: 202 cancellation_requested,
    200 already_completed; 404 unknown here, 403 another caller's, 409 an id two requests in flight carry."""
    cancelled = await service(request).cancel(body.request_id, caller_of(request))
    status = 202 if cancelled is Cancelled.REQUESTED else 200
    return JSONResponse({"status": cancelled.value}, status_code=status)

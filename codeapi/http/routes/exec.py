"""POST /exec. Long runs stream whitespace keep-alives before the JSON body, as the reference does."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response, StreamingResponse

from codeapi.errors import CodeapiError, InvalidRequest, RequestTooLarge
from codeapi.execution.accounting import Requester
from codeapi.execution.outcome import Delivery, ExecOutcome, OutputFile, RunStats
from codeapi.execution.pipeline import FileRef, SessionClaim
from codeapi.execution.program import MAX_ARGS_BYTES
from codeapi.execution.service import ExecRequest
from codeapi.execution.stateful import RuntimeClaim
from codeapi.http.deps import Services, caller, client_ip
from codeapi.http.errors import error_body
from codeapi.http.profiles import EXPECTED_HEADER, STATEFUL_PROFILE
from codeapi.http.schemas import ArtifactDeliveryOut, ExecBody, ExecResponse, FileRefIn, FileRefOut, RunOut
from codeapi.units import KB, MB

router = APIRouter()

KEEPALIVE_S = 3.0
# Caps checked before anything is parsed or staged: the body while it streams in (FastAPI answers
# 413 once it is over), then the program text (and the args, check_program_text). The body cap
# leaves room for code at its cap written with JSON's longest escapes (\uXXXX: 6 bytes for one),
# so a program under the code cap is never refused for how its client encoded it.
MAX_CODE_BYTES = MB
MAX_EXEC_BODY_BYTES = 6 * MAX_CODE_BYTES + 6 * MAX_ARGS_BYTES + 64 * KB


def check_code(code: str) -> None:
    if not code.strip():
        raise InvalidRequest("Code must not be empty", field="code")
    if len(code.encode("utf-8", errors="surrogatepass")) > MAX_CODE_BYTES:
        raise RequestTooLarge(f"Code exceeds the maximum size of {MAX_CODE_BYTES // KB} KiB", field="code")


def session_claim(
    session_id: str | None, entity_id: str | None, user_id: str | None, files: list[FileRefIn] | None
) -> SessionClaim:
    refs = tuple(FileRef(ref.id, ref.owner_session_id, ref.name) for ref in files or ())
    return SessionClaim(session_id, entity_id, user_id, refs)


def requester(request: Request) -> Requester:
    """Whom the execution is counted for."""
    who = caller(request)
    return Requester(who.usage_id, who.metric_label, client_ip(request))


def to_request(body: ExecBody, user_id: str | None, runtime: RuntimeClaim | None = None) -> ExecRequest:
    check_code(body.code)
    return ExecRequest(
        lang=body.lang,
        code=body.code,
        claim=session_claim(body.session_id, body.entity_id, user_id, body.files),
        args=tuple(body.args),
        timeout_s=body.timeout / 1000 if body.timeout else None,
        runtime=runtime,
    )


def runtime_claim(body: ExecBody, request: Request) -> RuntimeClaim | None:
    """A hint counts only with the stateful profile (the middleware refused it if not served). The
    workspace is the token's (tenant, user)'s, else the key holder's for the user it claims."""
    if body.runtime_session_hint is None or request.headers.get(EXPECTED_HEADER, "").strip() != STATEFUL_PROFILE:
        return None
    who = caller(request)
    owner = who.user_id or f"{who.usage_id}|{body.user_id or ''}"  # body.user_id is already a claimed owner id
    return RuntimeClaim(body.runtime_session_hint, owner)


def file_refs(files: list[OutputFile]) -> list[FileRefOut]:
    """The files of an outcome as both routes answer them (contract §4.2)."""
    return [
        FileRefOut(
            id=item.file_id,
            name=item.name,
            path=f"/mnt/data/{item.name}",
            storage_session_id=item.session_id,
            session_id=item.session_id,
            modified_from=(
                {"id": item.modified_from.file_id, "storage_session_id": item.modified_from.session_id}
                if item.modified_from
                else None
            ),
            inherited=True if item.inherited else None,
        )
        for item in files
    ]


def delivery_out(delivery: Delivery | None) -> ArtifactDeliveryOut | None:
    if delivery is None:
        return None
    return ArtifactDeliveryOut(
        status=delivery.status, attempted=delivery.attempted, delivered=delivery.delivered, failed=delivery.failed
    )


def run_out(run: RunStats) -> RunOut:
    return RunOut(
        status=run.status,
        code=run.code,
        signal=run.signal,
        message=run.message,
        wall_time=run.wall_ms,
        cpu_time=run.cpu_ms,
        memory=run.memory_bytes,
    )


def to_response(outcome: ExecOutcome) -> dict[str, Any]:
    response = ExecResponse(
        session_id=outcome.session_id,
        stdout=outcome.stdout,
        stderr=outcome.stderr,
        files=file_refs(outcome.files),
        deleted_files=outcome.outputs.deleted,
        artifact_delivery=delivery_out(outcome.outputs.delivery),
        run=run_out(outcome.run),
        language=outcome.language,
        version=outcome.version,
        runtime_session_id=outcome.runtime.runtime_session_id if outcome.runtime else None,
        runtime_status=outcome.runtime.status if outcome.runtime else None,
    )
    # Optional fields left out stay out (the files' extras, artifact_delivery); the nulls of run and
    # version stay: they say "not measured".
    return {**response.model_dump(exclude_none=True), "run": response.run.model_dump(), "version": response.version}


@router.post("/exec", response_model=ExecResponse, response_model_exclude_none=True, max_body_size=MAX_EXEC_BODY_BYTES)
async def execute(body: ExecBody, request: Request, services: Services) -> Response:
    exec_request = to_request(body, caller(request).user_id or body.user_id, runtime_claim(body, request))
    task = asyncio.create_task(services.executions.execute(exec_request, requester(request)))
    try:
        outcome = await asyncio.wait_for(asyncio.shield(task), KEEPALIVE_S)
    except TimeoutError:
        return StreamingResponse(keep_alive(task, request), media_type="application/json")
    except asyncio.CancelledError:
        task.cancel()
        raise
    return JSONResponse(to_response(outcome))


async def keep_alive(task: asyncio.Task[ExecOutcome], request: Request) -> AsyncIterator[bytes]:
    """Once streaming starts the status is 200, so a late failure is an error body with status 200."""
    try:
        while not task.done():
            yield b" "
            await asyncio.wait({task}, timeout=KEEPALIVE_S)
        try:
            payload = to_response(task.result())
        except CodeapiError as error:
            payload = error_body(error, request)
        yield json.dumps(payload).encode()
    finally:
        if not task.done():
            task.cancel()

"""The only place domain errors become HTTP responses (the envelope LibreChat's clients expect)."""

from __future__ import annotations

import time
from typing import Any

import structlog
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from codeapi.errors import CodeapiError, ExecutionProfileError, InvalidRequest, RateLimited

logger = structlog.get_logger(__name__)

STATUS_TYPES = {404: "resource_not_found", 405: "method_not_allowed", 413: "request_too_large"}


def envelope(
    message: str, error_type: str, request: Request, details: list[dict[str, Any]] | None = None
) -> dict[str, Any]:
    return {
        "error": message,
        "error_type": error_type,
        "details": details or [],
        "request_id": getattr(request.state, "request_id", None),
        "timestamp": time.time(),
    }


def error_body(error: CodeapiError, request: Request) -> dict[str, Any]:
    details = []
    if isinstance(error, InvalidRequest):
        details.append({"field": error.field, "message": error.message, "code": error.code})
    body = envelope(error.message, error.error_type, request, details)
    if isinstance(error, RateLimited):
        # The client reads exactly these two to tell the model when to retry (contract §9.3).
        seconds = error.retry_after_s
        body.update(error=error.code, retry_after_seconds=seconds)
        body["message"] = f"Too many requests. Please retry in {seconds} second{'' if seconds == 1 else 's'}."
    if isinstance(error, ExecutionProfileError):
        # The client matches the code in "error" (contract §4.5, §9.2); the sentence moves aside.
        body.update(error=error.code, message=error.message)
        body.update(expected_profile=error.expected, actual_profile=error.actual)
    return body


def error_response(error: CodeapiError, request: Request) -> JSONResponse:
    headers = {"Retry-After": str(error.retry_after_s), **error.headers} if isinstance(error, RateLimited) else None
    if error.status >= 500:
        logger.error("request.failed", error_code=error.code, error=error.message)
    return JSONResponse(error_body(error, request), status_code=error.status, headers=headers)


async def on_codeapi_error(request: Request, error: Exception) -> JSONResponse:
    assert isinstance(error, CodeapiError)
    return error_response(error, request)


async def on_validation_error(request: Request, error: Exception) -> JSONResponse:
    assert isinstance(error, RequestValidationError)
    details = [
        {
            "field": " -> ".join(str(part) for part in item.get("loc", ())),
            "message": item.get("msg", ""),
            "code": item.get("type", "invalid"),
        }
        for item in error.errors()
    ]
    return JSONResponse(envelope("Request validation failed", "validation", request, details), status_code=422)


async def on_http_error(request: Request, error: Exception) -> JSONResponse:
    assert isinstance(error, StarletteHTTPException)
    error_type = STATUS_TYPES.get(error.status_code, "http_error")
    return JSONResponse(
        envelope(str(error.detail), error_type, request), status_code=error.status_code, headers=error.headers
    )


async def on_unexpected(request: Request, error: Exception) -> JSONResponse:
    logger.exception("request.unexpected_error", error_class=type(error).__name__)
    details = None
    if getattr(request.app.state, "debug", False):  # API_DEBUG: what went wrong, for the developer at hand
        details = [{"field": None, "message": f"{type(error).__name__}: {error}", "code": "exception"}]
    return JSONResponse(envelope("Internal server error", "internal_server", request, details), status_code=500)


def install(app: FastAPI) -> None:
    app.add_exception_handler(CodeapiError, on_codeapi_error)
    app.add_exception_handler(RequestValidationError, on_validation_error)
    app.add_exception_handler(StarletteHTTPException, on_http_error)
    app.add_exception_handler(Exception, on_unexpected)

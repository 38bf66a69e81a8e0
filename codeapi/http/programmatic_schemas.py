"""Wire models of POST /exec/programmatic and its cancel (contract §6). Unknown fields are ignored."""

from __future__ import annotations

from typing import Any

from pydantic import Field, field_validator

from codeapi.http.schemas import CLAIMED_USER_ID, ENTITY_ID, FileRefIn, WireModel
from codeapi.languages import DEFAULT_TOOL_CALLING_LANGUAGE, TOOL_CALLING_LANGUAGES


class ToolResultIn(WireModel):
    call_id: str = Field(min_length=1, max_length=64)
    result: Any = None
    is_error: bool = False
    error_message: str | None = None


class ProgrammaticBody(WireModel):
    """A start (``code`` and ``tools``) or a continuation (``continuation_token`` and ``tool_results``)."""

    code: str | None = None
    tools: list[Any] = []
    lang: str = DEFAULT_TOOL_CALLING_LANGUAGE  # the contract's default: run_tools_with_code sends none
    session_id: str | None = None
    files: list[FileRefIn] | None = None
    timeout: int | None = Field(None, ge=1000, le=300000, description="milliseconds per round")
    user_id: CLAIMED_USER_ID = None
    entity_id: ENTITY_ID | None = None
    continuation_token: str | None = Field(None, max_length=200)
    tool_results: list[ToolResultIn] = []

    @field_validator("lang", mode="before")
    @classmethod
    def lower_case(cls, value: Any) -> Any:
        return value.lower() if isinstance(value, str) else value

    @field_validator("lang")
    @classmethod
    def calls_tools(cls, value: str) -> str:
        if value not in TOOL_CALLING_LANGUAGES:
            raise ValueError(f"lang must be one of {', '.join(sorted(TOOL_CALLING_LANGUAGES))}")
        return value

    @field_validator("tools", "tool_results", mode="before")
    @classmethod
    def absent_is_empty(cls, value: Any) -> Any:
        return [] if value is None else value


class CancelBody(WireModel):
    request_id: str = Field(min_length=1, max_length=200)

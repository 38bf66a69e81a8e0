"""The one error tree of codeapi. Services raise these; only ``http/errors.py`` turns them into responses.

CodeapiError(status, code, message)
├── NotFound                404
│   ├── SessionNotFound
│   ├── FileNotFound
│   └── RequestNotFound
├── InvalidRequest          400
│   ├── UnsupportedLanguage
│   ├── BadFilename
│   ├── FileTooLarge        413
│   ├── TooManyFiles        413
│   └── RequestTooLarge     413
├── AuthError               401
├── Forbidden               403
├── SessionBusy             409
├── DuplicateRequestId      409
├── ContinuationInUse       409
├── ExecutionProfileError
│   ├── InvalidExecutionProfile   400
│   └── ExecutionProfileMismatch  409
├── RateLimited             429
├── BackendUnavailable      503
└── SandboxFailure          500
"""

from __future__ import annotations


class CodeapiError(Exception):
    status = 500
    code = "internal_server"
    error_type = "internal_server"

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class NotFound(CodeapiError):
    status = 404
    code = "not_found"
    error_type = "resource_not_found"


class SessionNotFound(NotFound):
    code = "session_not_found"


class FileNotFound(NotFound):
    code = "file_not_found"

    def __init__(self, message: str = "File not found") -> None:
        super().__init__(message)


class RequestNotFound(NotFound):
    """No programmatic request by that id is known here (never seen, forgotten, or served by another replica)."""

    code = "request_not_found"


class InvalidRequest(CodeapiError):
    status = 400
    code = "invalid_request"
    error_type = "validation"

    def __init__(self, message: str, field: str | None = None) -> None:
        super().__init__(message)
        self.field = field


class UnsupportedLanguage(InvalidRequest):
    code = "unsupported_language"

    def __init__(self, lang: str) -> None:
        super().__init__(f"Unsupported programming language: {lang}", field="lang")


class BadFilename(InvalidRequest):
    code = "bad_filename"


class FileTooLarge(InvalidRequest):
    status = 413
    code = "file_too_large"


class TooManyFiles(InvalidRequest):
    status = 413
    code = "too_many_files"


class RequestTooLarge(InvalidRequest):
    status = 413
    code = "request_too_large"


class AuthError(CodeapiError):
    status = 401
    code = "unauthorized"
    error_type = "authentication"


class Forbidden(CodeapiError):
    """The caller is known but the thing it names is another caller's."""

    status = 403
    code = "forbidden"
    error_type = "authorization"


class SessionBusy(CodeapiError):
    status = 409
    code = "session_busy"
    error_type = "conflict"


class DuplicateRequestId(CodeapiError):
    """A cancel names a request id that more than one of the caller's requests in flight carry."""

    status = 409
    code = "duplicate_request_id"
    error_type = "conflict"


class ContinuationInUse(CodeapiError):
    """Another continuation of the same token is being served."""

    status = 409
    code = "continuation_in_use"
    error_type = "conflict"


class ExecutionProfileError(CodeapiError):
    """X-CodeAPI-Expected-Profile names a profile this deployment does not serve (contract §9.2); ``code``
    is what the body's ``error`` says, as the client matches it."""

    def __init__(self, expected: str, actual: str) -> None:
        super().__init__(f"Expected execution profile {expected!r}; this deployment serves {actual!r}")
        self.expected = expected
        self.actual = actual


class InvalidExecutionProfile(ExecutionProfileError):
    status = 400
    code = "invalid_execution_profile"
    error_type = "validation"


class ExecutionProfileMismatch(ExecutionProfileError):
    status = 409
    code = "execution_profile_mismatch"
    error_type = "conflict"


class RateLimited(CodeapiError):
    status = 429
    code = "rate_limited"
    error_type = "rate_limited"

    def __init__(self, retry_after_s: int, headers: dict[str, str] | None = None) -> None:
        super().__init__("rate_limited")
        self.retry_after_s = retry_after_s
        self.headers = headers or {}  # the limit that was hit, as RateLimit-* / X-RateLimit-* headers


class BackendUnavailable(CodeapiError):
    status = 503
    code = "service_unavailable"
    error_type = "service_unavailable"


class SandboxFailure(CodeapiError):
    status = 500
    code = "sandbox_failure"
    error_type = "internal_server"

"""Prometheus instruments, incremented where the events happen; served at /metrics."""

from __future__ import annotations

from prometheus_client import Counter, Histogram

EXECUTIONS = Counter(
    "codeapi_executions_total", "Executions by language and how they ended", ["language", "termination"]
)
EXECUTION_SECONDS = Histogram(
    "codeapi_execution_seconds",
    "Sandbox wall time of an execution",
    ["language"],
    buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120),
)
STORED_FILES = Counter("codeapi_files_stored_total", "Files stored, by origin", ["origin"])
STORED_BYTES = Counter("codeapi_file_bytes_stored_total", "Bytes of files stored, by origin", ["origin"])
# Per caller: a managed key's visible prefix, an environment key's fingerprint, "jwt" or "anonymous"
# (never a JWT user id: one series per LibreChat user would be unbounded).
CALLER_EXECUTIONS = Counter(
    "codeapi_caller_executions_total", "Executions by caller, language and result", ["caller", "language", "result"]
)
CALLER_WALL_SECONDS = Counter(
    "codeapi_caller_wall_seconds_total", "Wall seconds of executions by caller and language", ["caller", "language"]
)
CALLER_BYTES = Counter("codeapi_caller_bytes_total", "Code in and output out, by caller", ["caller", "direction"])

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
LOOP_FAILURES = Counter("codeapi_background_loop_failures_total", "Failed passes of a background loop", ["loop"])

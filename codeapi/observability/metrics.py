"""Prometheus instruments, incremented where the events happen; served at /metrics."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

# Every /exec run and programmatic program, once, when its outcome is reported (codeapi.execution.accounting);
# termination "stopped": a programmatic program the API stopped (a broken tool-channel rule, a cancel).
EXECUTIONS = Counter(
    "codeapi_executions_total", "Executions by language and how they ended", ["language", "termination"]
)
EXECUTION_SECONDS = Histogram(
    "codeapi_execution_seconds",
    "Running time of an execution: its sandbox's wall time; a programmatic program's rounds, not its pauses",
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
# The sandboxes themselves: every nsjail started, the warm Python set, and saved interpreter state.
SANDBOX_STARTS = Counter("codeapi_sandbox_starts_total", "Sandboxes (nsjail processes) started")
WARM_SANDBOXES = Gauge("codeapi_warm_sandboxes", "Python sandboxes warmed and waiting for a session")
KEPT_SANDBOXES = Gauge("codeapi_kept_sandboxes", "Python sandboxes kept for their session's next call")
STATE_BYTES = Histogram(
    "codeapi_state_bytes",
    "Size of saved Python session state (compressed)",
    buckets=(1e3, 1e4, 1e5, 1e6, 1e7, 1e8),
)
LOOP_FAILURES = Counter("codeapi_background_loop_failures_total", "Failed passes of a background loop", ["loop"])

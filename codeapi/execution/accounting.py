"""The last step of every execution, /exec and programmatic alike: the Prometheus metrics, the one
INFO line, the caller's usage and, when the sandbox contained the program, a security event.

An execution is counted once, when its outcome is reported to its caller: a program whose caller
went away (a dropped /exec, a programmatic run never continued) has no outcome and is not counted.
"""

from __future__ import annotations

from dataclasses import dataclass

import structlog

from codeapi.execution.outcome import ExecOutcome
from codeapi.observability.metrics import EXECUTION_SECONDS, EXECUTIONS
from codeapi.observability.security import security_event
from codeapi.observability.usage import UsageLedger
from codeapi.sandbox.policy import Termination

logger = structlog.get_logger(__name__)

# How a run that the sandbox (or the API, for a programmatic round) stopped is named in the security log.
CONTAINMENT_EVENTS = {
    Termination.MEMORY: "sandbox.memory_killed",
    Termination.OUTPUT_LIMIT: "sandbox.output_capped",
    Termination.TIMEOUT: "sandbox.timed_out",
}


@dataclass(frozen=True)
class Requester:
    """Whom an execution is counted for, and where the request came from."""

    usage_id: str  # a managed key's hash, env:<fingerprint>, user:<sub> or anonymous
    label: str  # a bounded name for metrics and logs: a key's prefix, "jwt" or "anonymous"
    client_ip: str


@dataclass(frozen=True)
class Timing:
    wall_s: float  # how long the caller waited for it (a programmatic run: its rounds, not its pauses)
    run_ms: int  # how long its job ran (a one-shot or warm run: the sandbox's wall time)


class Accounting:
    def __init__(self, usage: UsageLedger) -> None:
        self.usage = usage

    def finished(
        self, who: Requester, language: str, code: str, outcome: ExecOutcome, timing: Timing, **log_fields: object
    ) -> None:
        EXECUTIONS.labels(language, outcome.ending).inc()
        EXECUTION_SECONDS.labels(language).observe(timing.run_ms / 1000)
        logger.info(
            "exec.finished",
            termination=outcome.ending,
            exit_code=outcome.exit_code,
            wall_ms=timing.run_ms,
            cpu_ms=outcome.run.cpu_ms,
            memory_bytes=outcome.run.memory_bytes,
            files=len(outcome.files),
            **log_fields,
        )
        bytes_out = len(outcome.stdout.encode()) + len(outcome.stderr.encode())
        timed_out = outcome.termination is Termination.TIMEOUT
        self.usage.record(
            who.usage_id,
            who.label,
            language,
            timing.wall_s,
            code_bytes(code),
            bytes_out,
            error=outcome.failed,
            timeout=timed_out,
        )
        if outcome.termination is not None and outcome.termination in CONTAINMENT_EVENTS:
            security_event(
                CONTAINMENT_EVENTS[outcome.termination],
                client_ip=who.client_ip,
                caller=who.label,
                language=language,
                session_id=outcome.session_id,
            )

    def failed(self, who: Requester, language: str, code: str, wall_s: float) -> None:
        """A run the service could not carry out (a backend down, the sandbox failing); a bad request
        is not an execution and is not counted."""
        self.usage.record(who.usage_id, who.label, language, wall_s, code_bytes(code), 0, error=True)


def code_bytes(code: str) -> int:
    return len(code.encode("utf-8", errors="surrogatepass"))

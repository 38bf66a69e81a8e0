"""The execution result as the API reports it: decoded output plus the notes a user needs to see, the
files, and how the program ran (the official server's ``run`` object, contract §9.3)."""

from __future__ import annotations

import signal
from dataclasses import dataclass, field

from codeapi.sandbox.policy import SandboxResult, Termination

STOPPED = "stopped"  # how metrics and logs name a run the API stopped itself (Stop without a termination)

# The strings LibreChat's client maps to safe text for the model (contract §6.1, §9.3). A programmatic
# error is one of them; the API's notes on stderr and ``run.message`` start with them.
TIME_LIMIT = "Time limit exceeded"
OUT_OF_MEMORY = "Out of memory"
STDOUT_CAPPED = "stdout length exceeded"
STDERR_CAPPED = "stderr length exceeded"
FAILED = "Execution failed or timed out"  # a run the API stopped for another reason (cancel, broken rules)

# ``run.status`` as the official server (and Piston before it) spells it; None: the program ended by itself.
STATUS = {
    Termination.TIMEOUT: "TO",
    Termination.MEMORY: "SG",
    Termination.SIGNALLED: "SG",
}
STOPPED_STATUS = "XX"  # stopped by the API for a reason other than its time
KILLED_BY_API = (Termination.TIMEOUT, Termination.OUTPUT_LIMIT)  # their exit status is the kill's, not the program's


@dataclass(frozen=True)
class StoredRef:
    file_id: str
    session_id: str


@dataclass(frozen=True)
class OutputFile:
    file_id: str
    name: str
    session_id: str
    modified_from: StoredRef | None = None
    inherited: bool = False  # a read-only input echoed as it was: the run's changes to it were dropped


@dataclass(frozen=True)
class Delivery:
    """The run's new and changed files that were to be stored, and how many were (artifact_delivery)."""

    attempted: int
    delivered: int

    @property
    def failed(self) -> int:
        return self.attempted - self.delivered

    @property
    def status(self) -> str:
        return "failed" if self.delivered == 0 else "partial"


@dataclass(frozen=True)
class Outputs:
    """What a run left in /mnt/data, once collected."""

    files: list[OutputFile] = field(default_factory=list)
    deleted: list[str] = field(default_factory=list)  # staged inputs the run removed, by name under /mnt/data
    delivery: Delivery | None = None  # None: every output was stored (or there was none)


@dataclass(frozen=True)
class Stop:
    """A run the API ended itself, so no sandbox result says how: a programmatic round over its time,
    a broken rule of the tool channel, a cancel."""

    error: str  # what the client is told (one of the contract's error strings)
    detail: str = ""  # why, for stderr; empty: the termination's own note, if any
    termination: Termination | None = None  # TIMEOUT: the round's time ran out; None: stopped for a reason above


@dataclass(frozen=True)
class RuntimeInfo:
    """The stateful runtime session a call ran in (contract §9.2)."""

    runtime_session_id: str
    status: str  # "new" | "reused"


@dataclass(frozen=True)
class RunEnd:
    """What one run left: how it ended, what was collected from it, and notes for stderr."""

    ended: SandboxResult | Stop
    outputs: Outputs = field(default_factory=Outputs)
    notes: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class RunStats:
    """How the program ran (``run`` of the response). Times in milliseconds, memory in bytes, the
    units of the official server; None where nothing measured it."""

    status: str | None  # TO, SG, OL, EL, XX (STATUS); None: it ended by itself, ``code`` says how
    code: int | None  # its exit status; None when the API killed it (time, output cap, a stop)
    signal: str | None  # the signal that ended it ("SIGKILL" for every kill of the API or the kernel)
    message: str | None  # one of the contract strings above, when one applies
    wall_ms: int | None
    cpu_ms: int | None
    memory_bytes: int | None  # the job cgroup's peak


@dataclass(frozen=True)
class ExecOutcome:
    session_id: str
    stdout: str
    stderr: str
    outputs: Outputs
    termination: Termination | None  # None: the API stopped the run (Stop)
    exit_code: int | None  # None: stopped before it exited
    run: RunStats
    language: str
    version: str | None = None  # the runtime's version, where the caller looked it up
    runtime: RuntimeInfo | None = None  # a stateful runtime session's call

    @property
    def files(self) -> list[OutputFile]:
        return self.outputs.files

    @property
    def ending(self) -> str:
        """How the run ended, as metrics and logs name it."""
        return self.termination.value if self.termination is not None else STOPPED

    @property
    def failed(self) -> bool:
        return self.termination is not Termination.EXITED or self.exit_code != 0


def contract_message(termination: Termination, stdout_capped: bool) -> str | None:
    """The client's string for how a run was stopped (time, memory, an output cap); None otherwise."""
    match termination:
        case Termination.TIMEOUT:
            return TIME_LIMIT
        case Termination.MEMORY:
            return OUT_OF_MEMORY
        case Termination.OUTPUT_LIMIT:
            return STDOUT_CAPPED if stdout_capped else STDERR_CAPPED
        case _:
            return None


def signal_number(exit_code: int) -> int:
    """The signal in a status of a process killed by one: 128 + n from nsjail and shells, -n from Python."""
    return exit_code - 128 if exit_code > 128 else -exit_code


def signal_name(number: int) -> str:
    try:
        return signal.Signals(number).name
    except ValueError:
        return f"SIG{number}"


def run_stats(ended: SandboxResult | Stop) -> RunStats:
    if isinstance(ended, Stop):
        status = STATUS.get(ended.termination) if ended.termination is not None else STOPPED_STATUS
        return RunStats(status, None, signal_name(signal.SIGKILL), ended.error, None, None, None)
    termination = ended.termination
    match termination:
        case Termination.EXITED:
            status, signal_used = None, None
        case Termination.SIGNALLED:
            status, signal_used = STATUS[termination], signal_name(signal_number(ended.exit_code))
        case Termination.OUTPUT_LIMIT:
            status, signal_used = ("OL" if ended.stdout_truncated else "EL"), signal_name(signal.SIGKILL)
        case _:
            status, signal_used = STATUS[termination], signal_name(signal.SIGKILL)
    code = None if termination in KILLED_BY_API else ended.exit_code
    message = contract_message(termination, ended.stdout_truncated)
    return RunStats(status, code, signal_used, message, ended.wall_ms, ended.cpu_ms, ended.memory_peak_bytes)


def termination_note(
    termination: Termination,
    timeout_s: float,
    memory_mb: int,
    output_kb: int,
    exit_code: int = 0,
    stdout_capped: bool = False,
) -> str | None:
    """The first of stderr's notes: the client's string, then what exactly happened."""
    match termination:
        case Termination.TIMEOUT:
            return f"{TIME_LIMIT} (TimeoutError: Execution exceeded {timeout_s:g} seconds)"
        case Termination.MEMORY:
            return (
                f"{OUT_OF_MEMORY} (MemoryError: Execution exceeded the memory limit of {memory_mb} MB and was stopped)"
            )
        case Termination.OUTPUT_LIMIT:
            capped = STDOUT_CAPPED if stdout_capped else STDERR_CAPPED
            return f"{capped} (OutputLimitExceeded: output is capped at {output_kb} KiB per stream; the program was stopped)"
        case Termination.SIGNALLED:
            return f"Process terminated by signal {signal_number(exit_code)}"
        case _:
            return None


def join_stderr(stderr: str, notes: list[str]) -> str:
    parts = [stderr.rstrip("\n")] if stderr.strip() else []
    parts += notes
    return "\n".join(parts) + ("\n" if parts else "")


def decode(data: bytes, truncated: bool, stream: str, output_kb: int, notes: list[str]) -> str:
    if truncated:
        notes.append(f"[{stream} truncated at {output_kb} KiB]")
    return data.decode("utf-8", errors="replace")

"""The execution result as the API reports it: decoded output plus the notes a user needs to see."""

from __future__ import annotations

from dataclasses import dataclass, field

from codeapi.sandbox.policy import SandboxResult, Termination

STOPPED = "stopped"  # how metrics and logs name a run the API stopped itself (Stop without a termination)


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
class Stop:
    """A run the API ended itself, so no sandbox result says how: a programmatic round over its time,
    a broken rule of the tool channel, a cancel."""

    error: str  # what the client is told (one of the contract's error strings)
    detail: str = ""  # why, for stderr; empty: the termination's own note, if any
    termination: Termination | None = None  # TIMEOUT: the round's time ran out; None: stopped for a reason above


@dataclass(frozen=True)
class RunEnd:
    """What one run left: how it ended, the files stored from it, and notes for stderr."""

    ended: SandboxResult | Stop
    files: list[OutputFile] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class ExecOutcome:
    session_id: str
    stdout: str
    stderr: str
    files: list[OutputFile]
    termination: Termination | None  # None: the API stopped the run (Stop)
    exit_code: int | None  # None: stopped before it exited

    @property
    def ending(self) -> str:
        """How the run ended, as metrics and logs name it."""
        return self.termination.value if self.termination is not None else STOPPED

    @property
    def failed(self) -> bool:
        return self.termination is not Termination.EXITED or self.exit_code != 0


def termination_note(
    termination: Termination, timeout_s: float, memory_mb: int, output_kb: int, exit_code: int = 0
) -> str | None:
    match termination:
        case Termination.TIMEOUT:
            return f"TimeoutError: Execution exceeded {timeout_s:g} seconds"
        case Termination.MEMORY:
            return f"MemoryError: Execution exceeded the memory limit of {memory_mb} MB and was stopped"
        case Termination.OUTPUT_LIMIT:
            return f"OutputLimitExceeded: output is capped at {output_kb} KiB per stream; the program was stopped"
        case Termination.SIGNALLED:
            signal_number = exit_code - 128 if exit_code > 128 else -exit_code
            return f"Process terminated by signal {signal_number}"
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

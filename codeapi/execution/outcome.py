"""The execution result as the API reports it: decoded output plus the notes a user needs to see."""

from __future__ import annotations

from dataclasses import dataclass, field

from codeapi.sandbox.policy import SandboxResult, Termination


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
class ExecOutcome:
    session_id: str
    stdout: str
    stderr: str
    files: list[OutputFile] = field(default_factory=list)
    termination: Termination = Termination.EXITED
    exit_code: int = 0


def termination_note(result: SandboxResult, timeout_s: float, memory_mb: int, output_kb: int) -> str | None:
    match result.termination:
        case Termination.TIMEOUT:
            return f"TimeoutError: Execution exceeded {timeout_s:g} seconds"
        case Termination.MEMORY:
            return f"MemoryError: Execution exceeded the memory limit of {memory_mb} MB and was stopped"
        case Termination.OUTPUT_LIMIT:
            return f"OutputLimitExceeded: output is capped at {output_kb} KiB per stream; the program was stopped"
        case Termination.SIGNALLED:
            signal_number = result.exit_code - 128 if result.exit_code > 128 else -result.exit_code
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

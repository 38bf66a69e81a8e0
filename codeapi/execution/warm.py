"""The Python fast path's decisions: when a kept sandbox's /mnt/data can serve a call as it is, how
its state is saved, and what the user is told. The steps themselves are ExecutionService.run_warm.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path

from codeapi.errors import BackendUnavailable
from codeapi.execution.files import Fingerprint, content_sha256, walk_outputs
from codeapi.repl import protocol
from codeapi.repl.pool import ReplPool
from codeapi.repl.sandbox import CallResult, Lifecycle, ReplSandbox
from codeapi.sandbox.policy import Termination
from codeapi.state.store import StateStore
from codeapi.storage.metadata.base import FileRecord, StateRecord
from codeapi.units import MB

RESTARTED_NOTE = (
    "The Python process of this session stopped; the next execution starts a new one "
    "with the variables saved after the last completed execution."
)


@dataclass(frozen=True)
class WarmPython:
    pool: ReplPool
    states: StateStore | None  # None: STATE_PERSISTENCE_ENABLED=false, every call starts empty
    capture_on_error: bool  # STATE_CAPTURE_ON_ERROR

    @property
    def save_mode(self) -> protocol.Save:
        if self.states is None:
            return protocol.Save.NEVER
        return protocol.Save.ALWAYS if self.capture_on_error else protocol.Save.ON_SUCCESS

    def check_one_shot_allowed(self) -> None:
        """No REPL sandbox within the zygote's start-up time. Without state persistence a one-shot run
        loses nothing (the caller runs one, seeing None); with it, the run's variables would be lost
        without a word, so the client is told to retry instead."""
        if self.states is not None:
            raise BackendUnavailable(
                "The Python sandbox is starting; retry shortly (its variables are kept only on the warm path)"
            )


def unchanged_inputs(
    sandbox: ReplSandbox, chosen: dict[str, FileRecord], max_file_bytes: int
) -> dict[str, Fingerprint] | None:
    """The fingerprints of a kept sandbox's files when /mnt/data holds exactly this call's inputs.

    The API writes inputs only into a directory no user code has run in yet (a kept sandbox may
    still run a user's background process), so anything else means a fresh sandbox.
    """
    if sandbox.lifecycle is Lifecycle.FRESH or set(chosen) != set(sandbox.manifest):
        return None
    if any(sandbox.manifest[name][0] != record.file_id for name, record in chosen.items()):
        return None
    kept = {name: staged for name, (_, staged) in sandbox.manifest.items() if isinstance(staged, Fingerprint)}
    found, rejected = walk_outputs(Path(sandbox.dirs.data), max_file_bytes)
    if rejected or {item.path: item.fingerprint for item in found} != kept:
        return None
    # Times cannot prove a file unchanged: a write in the same clock tick as the staging (coarse
    # timestamps) or through an already-mapped page leaves them as they were. Inputs the session
    # must not change are checked by content.
    for name, staged in kept.items():
        if staged.sha256 is not None and content_sha256(Path(sandbox.dirs.data), name) != staged.sha256:
            return None
    return kept


def state_notes(call: CallResult, limit_bytes: int) -> list[str]:
    notes: list[str] = []
    report = call.report
    if report is not None and report.state_skipped:
        notes.append(f"Not kept for the next execution (cannot be serialised): {', '.join(report.state_skipped)}")
    if report is not None and report.state_too_large is not None:
        notes.append(
            f"Variables not saved: their serialised size ({report.state_too_large / MB:.1f} MB) exceeds "
            f"the limit of {limit_bytes // MB} MB; the next execution starts without them"
        )
    if call.worker_died:
        notes.append(RESTARTED_NOTE)
    return notes


async def settle_state(
    warm: WarmPython, sandbox: ReplSandbox, session_id: str, call: CallResult, previous: StateRecord | None
) -> bool:
    """Save what the call left, if anything; returns whether the sandbox may serve the session again.

    A kept sandbox must hold exactly the saved state, so one whose changes were not saved (an
    error without STATE_CAPTURE_ON_ERROR, a timeout, a crash) is dropped: the next call restores.
    """
    report = call.report
    if warm.states is None or report is None or call.result.termination is not Termination.EXITED:
        return False
    if report.state_too_large is not None:
        await warm.states.forget(session_id)  # an older saved state must not come back later
        sandbox.revision = None
        return True
    if report.state is None:
        return False
    sandbox.revision = await warm.states.save(session_id, report.state, report.state_raw_bytes, previous)
    return True


def with_usage(call: CallResult, sandbox: ReplSandbox) -> CallResult:
    """The call's CPU time and memory peak from the jail's cgroup (counted from the call's start,
    JobCgroup.mark). Read before anything awaits: the worker that replaces the call's (started by
    ``call``) runs in the same cgroup as soon as this task yields."""
    cgroup = sandbox.jail.cgroup
    if cgroup is None:
        return call
    return replace(
        call, result=replace(call.result, cpu_ms=cgroup.cpu_ms(), memory_peak_bytes=cgroup.memory_peak_bytes())
    )

"""One /exec request as named steps: pick the session, stage inputs, run, collect outputs, report."""

from __future__ import annotations

from dataclasses import dataclass

import structlog

from codeapi.errors import FileNotFound, SandboxFailure
from codeapi.execution.files import Fingerprint, Rejected, read_output, walk_outputs, write_input
from codeapi.execution.outcome import (
    ExecOutcome,
    OutputFile,
    StoredRef,
    decode,
    join_stderr,
    termination_note,
)
from codeapi.execution.program import Program, ProgramRunner
from codeapi.languages import get_language
from codeapi.observability.metrics import EXECUTION_SECONDS, EXECUTIONS
from codeapi.sandbox.workspace import JobDirs, Workspaces
from codeapi.sessions.ids import new_id
from codeapi.sessions.names import sanitize_name
from codeapi.sessions.service import SessionService
from codeapi.storage.metadata.base import FileRecord, SessionRecord

logger = structlog.get_logger(__name__)


@dataclass(frozen=True)
class FileRef:
    file_id: str
    session_id: str
    name: str


@dataclass(frozen=True)
class ExecRequest:
    lang: str
    code: str
    args: tuple[str, ...] = ()
    files: tuple[FileRef, ...] = ()
    session_id: str | None = None
    entity_id: str | None = None
    user_id: str | None = None
    timeout_s: float | None = None


@dataclass(frozen=True)
class ExecLimits:
    max_time_s: float
    memory_mb: int
    output_kb: int
    max_output_files: int
    max_file_bytes: int
    max_filename_length: int


@dataclass(frozen=True)
class StagedInput:
    record: FileRecord
    fingerprint: Fingerprint


class ExecutionService:
    def __init__(
        self, sessions: SessionService, workspaces: Workspaces, programs: ProgramRunner, limits: ExecLimits
    ) -> None:
        self.sessions = sessions
        self.workspaces = workspaces
        self.programs = programs
        self.limits = limits

    async def execute(self, request: ExecRequest) -> ExecOutcome:
        spec = get_language(request.lang)
        timeout_s = min(request.timeout_s or self.limits.max_time_s, self.limits.max_time_s)
        session = await self.choose_session(request)
        job_id = new_id()
        structlog.contextvars.bind_contextvars(session_id=session.session_id, language=spec.id, job_id=job_id)
        async with self.sessions.metadata.lock(session.session_id, timeout_s=timeout_s + 60, wait_s=timeout_s + 5):
            async with self.workspaces.job(job_id) as dirs:
                staged = await self.stage_inputs(session, request.files, dirs)
                program = Program(spec, request.code, request.args, timeout_s)
                ran = await self.programs.run(program, dirs, job_id)
                result = ran.result
                notes: list[str] = []
                files = await self.collect_outputs(session.session_id, dirs, staged, notes)
            await self.sessions.touch(session)
        output_kb = self.limits.output_kb
        stdout = decode(result.stdout, result.stdout_truncated, "stdout", output_kb, notes)
        stderr = decode(result.stderr, result.stderr_truncated, "stderr", output_kb, notes)
        note = termination_note(result, timeout_s, self.limits.memory_mb, output_kb)
        if note:
            notes.insert(0, note)
        EXECUTIONS.labels(spec.id, result.termination.value).inc()
        EXECUTION_SECONDS.labels(spec.id).observe(result.wall_ms / 1000)
        logger.info(
            "exec.finished",
            termination=result.termination.value,
            exit_code=result.exit_code,
            wall_ms=result.wall_ms,
            files=len(files),
        )
        return ExecOutcome(
            session.session_id,
            stdout,
            join_stderr(stderr, notes),
            files,
            result.termination,
            result.exit_code,
        )

    async def check_sandbox(self) -> None:
        """Run a trivial program through the real sandbox; raises SandboxFailure when it cannot."""
        probe = get_language("bash")
        job_id = new_id()
        async with self.workspaces.job(job_id) as dirs:
            ran = await self.programs.run(Program(probe, "exit 0", (), 10), dirs, job_id)
        if not ran.result.ok:
            raise SandboxFailure(f"sandbox probe ended with {ran.result.termination.value} ({ran.result.exit_code})")

    async def choose_session(self, request: ExecRequest) -> SessionRecord:
        """Continue an explicit session, then the entity's latest, then a same-user file's; else a new one."""
        candidates: list[SessionRecord | None] = []
        if request.session_id:
            candidates.append(await self.sessions.get(request.session_id))
        if request.entity_id:
            candidates.append(await self.sessions.latest_for_entity(request.entity_id))
        if request.user_id:
            for ref in request.files:
                owner = await self.sessions.get(ref.session_id)
                if owner is not None and owner.user_id == request.user_id:
                    candidates.append(owner)
                    break
        for candidate in candidates:
            if candidate is not None:
                return candidate
        return await self.sessions.create(user_id=request.user_id, entity_id=request.entity_id)

    async def stage_inputs(
        self, session: SessionRecord, refs: tuple[FileRef, ...], dirs: JobDirs
    ) -> dict[str, StagedInput]:
        """The session's own files, then the referenced ones (a reference wins on a name clash)."""
        chosen: dict[str, FileRecord] = {}
        for record in await self.sessions.list_files(session.session_id):
            chosen[record.name] = record
        for ref in refs:
            referenced = await self.sessions.find_file(ref.session_id, ref.file_id)
            if referenced is None:
                logger.debug("exec.input_missing", file_id=ref.file_id, storage_session_id=ref.session_id)
                continue
            chosen[sanitize_name(ref.name or referenced.name, self.limits.max_filename_length)] = referenced
        staged: dict[str, StagedInput] = {}
        for name, record in chosen.items():
            try:
                fingerprint = await write_input(dirs.data, name, self.sessions.read(record), dirs.uid)
            except FileNotFound:
                # Metadata outlived its bytes (e.g. a store restored from an older backup):
                # the run goes ahead without that input, like any missing reference.
                logger.warning("exec.input_bytes_missing", file_id=record.file_id, storage_session_id=record.session_id)
                (dirs.data / name).unlink(missing_ok=True)
                continue
            staged[name] = StagedInput(record, fingerprint)
        return staged

    async def collect_outputs(
        self, session_id: str, dirs: JobDirs, staged: dict[str, StagedInput], notes: list[str]
    ) -> list[OutputFile]:
        found, rejected = walk_outputs(dirs.data, self.limits.max_file_bytes)
        changed = [
            item for item in found if item.path not in staged or staged[item.path].fingerprint != item.fingerprint
        ]
        room = await self.sessions.room_left(session_id)
        allowed = min(self.limits.max_output_files, room)
        if len(changed) > allowed:
            reason = (
                f"more than {self.limits.max_output_files} output files"
                if allowed == self.limits.max_output_files
                else "the session has reached its file limit"
            )
            rejected += [Rejected(item.path, reason) for item in changed[allowed:]]
            changed = changed[:allowed]
        outputs: list[OutputFile] = []
        for item in changed:
            if len(item.path.encode()) > self.limits.max_filename_length:
                rejected.append(Rejected(item.path, "file name too long"))
                continue
            record = await self.sessions.add_file(
                session_id, item.path, read_output(dirs.data, item.path, item.fingerprint), origin="execution"
            )
            origin = staged.get(item.path)
            modified_from = StoredRef(origin.record.file_id, origin.record.session_id) if origin else None
            outputs.append(OutputFile(record.file_id, record.name, session_id, modified_from))
        notes += [f"Output file not saved: {item.path} ({item.reason})" for item in rejected]
        return outputs

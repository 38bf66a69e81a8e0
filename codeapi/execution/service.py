"""One /exec request as named steps: pick the session, stage inputs, run, collect outputs, report."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

import structlog

from codeapi.egress.skilldeps import SkillDeps
from codeapi.errors import FileNotFound, SandboxFailure
from codeapi.execution.files import (
    Fingerprint,
    FoundFile,
    OutputChanged,
    Rejected,
    one_tree,
    read_output,
    walk_outputs,
    write_input,
)
from codeapi.execution.outcome import (
    ExecOutcome,
    OutputFile,
    StoredRef,
    decode,
    join_stderr,
    termination_note,
)
from codeapi.execution.program import Program, ProgramRunner, check_program_text
from codeapi.execution.warm import WarmPython, settle_state, state_notes, unchanged_inputs
from codeapi.languages import get_language
from codeapi.observability.metrics import EXECUTION_SECONDS, EXECUTIONS
from codeapi.repl.sandbox import Lifecycle
from codeapi.sandbox.policy import SandboxResult
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


def may_continue(session: SessionRecord, user_id: str | None) -> bool:
    """A session id is a secret the caller holds, but it does not hand one user's session to another:
    an owned session is continued only by its owner, or by a caller that names no user at all."""
    return session.user_id is None or user_id is None or session.user_id == user_id


# What one run left: the sandbox's result, the files stored from it, and notes for stderr.
Ran = tuple[SandboxResult, list[OutputFile], list[str]]


class ExecutionService:
    def __init__(
        self,
        sessions: SessionService,
        workspaces: Workspaces,
        programs: ProgramRunner,
        limits: ExecLimits,
        warm: WarmPython | None = None,
        skill_deps: SkillDeps | None = None,
    ) -> None:
        self.skill_deps = skill_deps  # None: ENABLE_SANDBOX_NETWORK=false, nothing to install
        self.sessions = sessions
        self.workspaces = workspaces
        self.programs = programs
        self.limits = limits
        self.warm = warm  # None: REPL_ENABLED=false, Python runs one-shot like every language

    async def execute(self, request: ExecRequest) -> ExecOutcome:
        spec = get_language(request.lang)
        check_program_text(request.code, request.args)
        timeout_s = min(request.timeout_s or self.limits.max_time_s, self.limits.max_time_s)
        session = await self.choose_session(request)
        job_id = new_id()
        structlog.contextvars.bind_contextvars(session_id=session.session_id, language=spec.id, job_id=job_id)
        async with self.sessions.metadata.lock(session.session_id, timeout_s=timeout_s + 60, wait_s=timeout_s + 5):
            ran = None
            if spec.repl and self.warm is not None:
                ran = await self.run_warm(self.warm, session, request, timeout_s)
            if ran is None:
                ran = await self.run_cold(
                    session, request, Program(spec, request.code, request.args, timeout_s), job_id
                )
            await self.sessions.touch(session)
        result, files, notes = ran
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

    async def run_cold(self, session: SessionRecord, request: ExecRequest, program: Program, job_id: str) -> Ran:
        """A one-shot run in a fresh job directory (every language; Python when no REPL is at hand)."""
        async with self.workspaces.job(job_id) as dirs:
            chosen = await self.choose_inputs(session, request.files)
            await self.sessions.keep_in_use(session, chosen.values())
            staged = await self.write_inputs(chosen, dirs)
            await self.attach_skill_deps(session.session_id, dirs)
            ran = await self.programs.run(program, dirs, job_id)
            await self.keep_skill_deps(session.session_id, dirs)
            notes: list[str] = []
            files = await self.collect_outputs(session.session_id, dirs, staged, notes)
        return ran.result, files, notes

    async def choose_session(self, request: ExecRequest) -> SessionRecord:
        """Continue an explicit session, then the user's latest of the entity, then a same-user file's;
        else a new one. A session another user owns is never continued (docs/security.md, "Users")."""
        candidates: list[SessionRecord | None] = []
        if request.session_id:
            explicit = await self.sessions.get(request.session_id)
            if explicit is not None and may_continue(explicit, request.user_id):
                candidates.append(explicit)
        if request.entity_id:
            candidates.append(await self.sessions.latest_for_entity(request.entity_id, request.user_id))
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

    async def choose_inputs(self, session: SessionRecord, refs: tuple[FileRef, ...]) -> dict[str, FileRecord]:
        """The referenced files (the last reference of a name wins), then the session's own, newest first.

        A session keeps every version of its files, and a program may have replaced a file by a
        directory of the same name or the reverse: of names that cannot coexist in one tree, the
        one chosen first is staged."""
        preferred: list[tuple[str, FileRecord]] = []
        for ref in reversed(refs):
            referenced = await self.sessions.find_file(ref.session_id, ref.file_id)
            if referenced is None:
                logger.debug("exec.input_missing", file_id=ref.file_id, storage_session_id=ref.session_id)
                continue
            preferred.append((sanitize_name(ref.name or referenced.name, self.limits.max_filename_length), referenced))
        own = await self.sessions.list_files(session.session_id)
        preferred += [(record.name, record) for record in reversed(own)]
        return one_tree(preferred)

    async def write_inputs(self, chosen: dict[str, FileRecord], dirs: JobDirs) -> dict[str, StagedInput]:
        staged: dict[str, StagedInput] = {}
        for name, record in chosen.items():
            try:
                fingerprint = await write_input(
                    dirs.data, name, self.sessions.read(record), dirs.uid, hashed=record.read_only
                )
            except FileNotFound:
                # Metadata outlived its bytes (e.g. a store restored from an older backup):
                # the run goes ahead without that input, like any missing reference.
                logger.warning("exec.input_bytes_missing", file_id=record.file_id, storage_session_id=record.session_id)
                (dirs.data / name).unlink(missing_ok=True)
                continue
            staged[name] = StagedInput(record, fingerprint)
        return staged

    async def run_warm(
        self, warm: WarmPython, session: SessionRecord, request: ExecRequest, timeout_s: float
    ) -> Ran | None:
        """Python in a warm REPL sandbox: the session's kept one, else a fresh one with its state restored.
        None when no REPL sandbox can be had and none is needed (WarmPython.check_one_shot_allowed)."""
        session_id = session.session_id
        # Two independent reads, so a chat turn waits for one round trip to the store, not two.
        saved, chosen = await asyncio.gather(
            warm.states.current(session_id) if warm.states is not None else asyncio.sleep(0),  # no state
            self.choose_inputs(session, request.files),
        )
        sandbox = await warm.pool.checkout(session_id, saved.revision if saved is not None else None)
        if sandbox is None:
            warm.check_one_shot_allowed()
            return None
        await self.sessions.keep_in_use(session, chosen.values())
        kept = await asyncio.to_thread(unchanged_inputs, sandbox, chosen, self.limits.max_file_bytes)
        if kept is None and sandbox.lifecycle is not Lifecycle.FRESH:
            warm.pool.discard(sandbox)
            sandbox = await warm.pool.fresh()
            if sandbox is None:
                warm.check_one_shot_allowed()
                return None
        keep = False
        try:
            restore = None
            if kept is None:
                staged = await self.write_inputs(chosen, sandbox.dirs)
                loaded = await warm.states.load(saved) if warm.states is not None and saved is not None else None
                restore = loaded.data if loaded is not None else None
            else:
                staged = {name: StagedInput(record, kept[name]) for name, record in chosen.items()}
            await self.attach_skill_deps(session_id, sandbox.dirs)
            call = await sandbox.call(request.code, request.args, timeout_s, warm.save_mode, restore)
            await self.keep_skill_deps(session_id, sandbox.dirs)
            notes = state_notes(call, self.limits.max_file_bytes)
            sandbox.manifest = {}
            files = await self.collect_outputs(session_id, sandbox.dirs, staged, notes, sandbox.manifest)
            keep = await settle_state(warm, sandbox, session_id, call, saved)
        finally:
            warm.pool.release(sandbox, session_id, keep)
        return call.result, files, notes

    async def attach_skill_deps(self, session_id: str, dirs: JobDirs) -> None:
        if self.skill_deps is not None:
            await asyncio.to_thread(self.skill_deps.attach, session_id, dirs.home, dirs.uid)

    async def keep_skill_deps(self, session_id: str, dirs: JobDirs) -> None:
        if self.skill_deps is not None:
            await asyncio.to_thread(self.skill_deps.keep, session_id, dirs.home)

    async def collect_outputs(
        self,
        session_id: str,
        dirs: JobDirs,
        staged: dict[str, StagedInput],
        notes: list[str],
        stored: dict[str, tuple[str, object]] | None = None,
    ) -> list[OutputFile]:
        """Store new and changed files; ``stored`` (when given) receives name -> (file id, fingerprint)
        of every file in /mnt/data that now matches a stored file."""
        found, rejected = await asyncio.to_thread(walk_outputs, dirs.data, self.limits.max_file_bytes)
        changed = [
            item for item in found if item.path not in staged or staged[item.path].fingerprint != item.fingerprint
        ]
        if stored is not None:
            changed_paths = {item.path for item in changed}
            unchanged = (item for item in found if item.path in staged and item.path not in changed_paths)
            # the staged fingerprint: equal to the walk's, and it carries a read-only input's hash
            stored.update(
                {item.path: (staged[item.path].record.file_id, staged[item.path].fingerprint) for item in unchanged}
            )
        # Changes to read-only inputs (skill files) are dropped and the input is echoed as inherited;
        # they are not in ``stored`` either, so a kept sandbox holding the changed copy is not reused.
        dropped = {
            item.path: staged[item.path].record
            for item in changed
            if item.path in staged and staged[item.path].record.read_only
        }
        changed = [item for item in changed if item.path not in dropped]
        room = await self.sessions.room_left(session_id) if changed else 0
        allowed = min(self.limits.max_output_files, room)
        if len(changed) > allowed:
            reason = (
                f"more than {self.limits.max_output_files} output files"
                if allowed == self.limits.max_output_files
                else "the session has reached its file limit"
            )
            rejected += [Rejected(item.path, reason) for item in changed[allowed:]]
            changed = changed[:allowed]
        outputs = await self.store_outputs(session_id, dirs, changed, staged, rejected, stored)
        notes += [f"Output file not saved: {item.path} ({item.reason})" for item in rejected]
        inherited = [
            OutputFile(record.file_id, path, record.session_id, inherited=True) for path, record in dropped.items()
        ]
        return outputs + inherited

    async def store_outputs(
        self,
        session_id: str,
        dirs: JobDirs,
        changed: list[FoundFile],
        staged: dict[str, StagedInput],
        rejected: list[Rejected],
        stored: dict[str, tuple[str, object]] | None,
    ) -> list[OutputFile]:
        """Store each changed file as a new file of the session; what cannot be stored goes to ``rejected``."""
        outputs: list[OutputFile] = []
        for item in changed:
            if len(item.path.encode()) > self.limits.max_filename_length:
                rejected.append(Rejected(item.path, "file name too long"))
                continue
            try:
                record = await self.sessions.add_file(
                    session_id, item.path, read_output(dirs.data, item.path, item.fingerprint), origin="execution"
                )
            except OutputChanged:
                rejected.append(Rejected(item.path, "it changed while it was being saved"))
                continue
            origin = staged.get(item.path)
            modified_from = StoredRef(origin.record.file_id, origin.record.session_id) if origin else None
            outputs.append(OutputFile(record.file_id, record.name, session_id, modified_from))
            if stored is not None:
                stored[item.path] = (record.file_id, item.fingerprint)
        return outputs

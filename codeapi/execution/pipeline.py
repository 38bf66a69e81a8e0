"""The steps every kind of run shares: choose the session, stage its inputs, collect its outputs, and
turn how it ended into the outcome the API reports (codeapi.execution.accounting counts it).

/exec runs its job one-shot or warm (ExecutionService), /exec/programmatic pauses its job at tool
calls (ProgrammaticService); the kinds differ only in the job between these steps.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

import structlog

from codeapi.egress.skilldeps import SkillDeps
from codeapi.errors import FileNotFound
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
    Delivery,
    ExecOutcome,
    OutputFile,
    Outputs,
    RunEnd,
    Stop,
    StoredRef,
    decode,
    join_stderr,
    run_stats,
    termination_note,
)
from codeapi.sandbox.policy import SandboxResult
from codeapi.sandbox.workspace import JobDirs
from codeapi.sessions.names import is_hidden, sanitize_name
from codeapi.sessions.owners import owner_tenant
from codeapi.sessions.service import SessionService
from codeapi.storage.metadata.base import FileRecord, SessionRecord

logger = structlog.get_logger(__name__)


@dataclass(frozen=True)
class FileRef:
    file_id: str
    session_id: str
    name: str


@dataclass(frozen=True)
class SessionClaim:
    """What a request says about where it runs: a session to continue, an entity's latest, its inputs."""

    session_id: str | None = None
    entity_id: str | None = None
    user_id: str | None = None
    files: tuple[FileRef, ...] = ()


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


class Pipeline:
    def __init__(self, sessions: SessionService, limits: ExecLimits, skill_deps: SkillDeps | None = None) -> None:
        self.sessions = sessions
        self.limits = limits
        self.skill_deps = skill_deps  # None: ENABLE_SANDBOX_NETWORK=false, nothing to install

    def clamp_timeout(self, requested_s: float | None) -> float:
        """The client's timeout, never over MAX_EXECUTION_TIME (a programmatic run: per round)."""
        return min(requested_s or self.limits.max_time_s, self.limits.max_time_s)

    async def choose_session(self, claim: SessionClaim) -> SessionRecord:
        """Continue an explicit session, then the user's latest of the entity, then a same-user file's;
        else a new one. A session another user owns is never continued (docs/security.md, "Users")."""
        candidates: list[SessionRecord | None] = []
        if claim.session_id:
            explicit = await self.sessions.get(claim.session_id)
            if explicit is not None and may_continue(explicit, claim.user_id):
                candidates.append(explicit)
        if claim.entity_id:
            candidates.append(await self.sessions.latest_for_entity(claim.entity_id, claim.user_id))
        if claim.user_id:
            for ref in claim.files:
                owner = await self.sessions.get(ref.session_id)
                if owner is not None and owner.user_id == claim.user_id:
                    candidates.append(owner)
                    break
        for candidate in candidates:
            if candidate is not None:
                return candidate
        return await self.sessions.create(user_id=claim.user_id, entity_id=claim.entity_id)

    async def stage_inputs(
        self, session: SessionRecord, refs: tuple[FileRef, ...], dirs: JobDirs
    ) -> dict[str, StagedInput]:
        """The run's inputs into a fresh job's /mnt/data; files in use live another full TTL."""
        chosen = await self.choose_inputs(session, refs)
        await self.sessions.keep_in_use(session, chosen.values())
        return await self.write_inputs(chosen, dirs)

    async def choose_inputs(self, session: SessionRecord, refs: tuple[FileRef, ...]) -> dict[str, FileRecord]:
        """The referenced files (the last reference of a name wins), then the session's own, newest first.

        A session keeps every version of its files, and a program may have replaced a file by a
        directory of the same name or the reverse: of names that cannot coexist in one tree, the
        one chosen first is staged."""
        preferred = await self.referenced_inputs(session, refs)
        own = await self.sessions.list_files(session.session_id)
        preferred += [(record.name, record) for record in reversed(own)]
        return one_tree(preferred)

    async def referenced_inputs(
        self, session: SessionRecord, refs: tuple[FileRef, ...]
    ) -> list[tuple[str, FileRecord]]:
        """The files a request references, last first, by the names they get under /mnt/data."""
        preferred: list[tuple[str, FileRecord]] = []
        tenant = owner_tenant(session.user_id)  # a token's session mounts no other tenant's file
        for ref in reversed(refs):
            if not await self.sessions.reachable_from(ref.session_id, tenant):
                logger.warning("exec.input_of_another_tenant", file_id=ref.file_id, storage_session_id=ref.session_id)
                continue
            referenced = await self.sessions.find_file(ref.session_id, ref.file_id)
            if referenced is None:
                logger.debug("exec.input_missing", file_id=ref.file_id, storage_session_id=ref.session_id)
                continue
            preferred.append((sanitize_name(ref.name or referenced.name, self.limits.max_filename_length), referenced))
        return preferred

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
    ) -> Outputs:
        """Store new and changed files; ``stored`` (when given) receives name -> (file id, fingerprint)
        of every file in /mnt/data that now matches a stored file."""
        found, rejected = await asyncio.to_thread(walk_outputs, dirs.data, self.limits.max_file_bytes)
        deleted = removed_inputs(staged, {item.path for item in found} | {item.path for item in rejected})
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
        delivery = Delivery(len(outputs) + len(rejected), len(outputs)) if rejected else None
        return Outputs(outputs + inherited, deleted, delivery)

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

    def outcome(
        self, session_id: str, end: RunEnd, timeout_s: float, language: str, version: str | None = None
    ) -> ExecOutcome:
        """Decoded output, and stderr closed by what the user must know: why the run ended, truncated
        streams, files not saved, variables not kept."""
        limits, ended, notes = self.limits, end.ended, list(end.notes)
        stdout = stderr = ""
        exit_code: int | None = None
        note: str | None = ended.detail if isinstance(ended, Stop) else None
        stdout_capped = False
        if isinstance(ended, SandboxResult):
            stdout = decode(ended.stdout, ended.stdout_truncated, "stdout", limits.output_kb, notes)
            stderr = decode(ended.stderr, ended.stderr_truncated, "stderr", limits.output_kb, notes)
            exit_code, stdout_capped = ended.exit_code, ended.stdout_truncated
        if not note and ended.termination is not None:
            note = termination_note(
                ended.termination, timeout_s, limits.memory_mb, limits.output_kb, exit_code or 0, stdout_capped
            )
        if note:
            notes.insert(0, note)
        return ExecOutcome(
            session_id,
            stdout,
            join_stderr(stderr, notes),
            end.outputs,
            ended.termination,
            exit_code,
            run_stats(ended),
            language,
            version,
        )


def removed_inputs(staged: dict[str, StagedInput], walked: set[str]) -> list[str]:
    """The staged inputs a run removed (or replaced by what is not a file), by their names under
    /mnt/data: the names the client sent, which it drops from its list (``deleted_files``). Read-only
    inputs are not among them: a run's changes to those are dropped, removal included."""
    return [
        name
        for name, staged_input in staged.items()
        if name not in walked and not staged_input.record.read_only and not is_hidden(name)
    ]

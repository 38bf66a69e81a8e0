"""A call in a stateful runtime session (contract §9.2): the pipeline's steps around a workspace.

The workspace is the /mnt/data of a Python sandbox this replica keeps for the runtime session. Every
call is a new process there: Python code runs in the sandbox's fresh worker (no variables: the
stateful profile keeps files, not interpreter state), a language that needs nothing but the system
view (bash) started by that worker as a new process, any other language in a one-shot jail on the
same directory as the same uid. Where no sandbox is kept at the record's revision (first call here,
another replica served the last one, or it was evicted), a fresh one is restored from the checkpoint;
without the warm path (REPL_ENABLED=false, zygote down) every call restores into a one-shot job.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import structlog

from codeapi.egress.gateway import network_env
from codeapi.egress.skilldeps import HOME_LINK
from codeapi.execution.files import FoundFile, Rejected, walk_outputs
from codeapi.execution.outcome import OutputFile, Outputs, RuntimeInfo
from codeapi.execution.pipeline import Pipeline, SessionClaim
from codeapi.execution.program import Program, ProgramRunner
from codeapi.execution.warm import WarmPython, with_usage
from codeapi.languages.spec import LanguageSpec
from codeapi.repl import protocol
from codeapi.repl.sandbox import ReplSandbox
from codeapi.sandbox.policy import BASE_ENV, SandboxResult
from codeapi.sandbox.workspace import JobDirs, Workspaces
from codeapi.sessions.names import is_hidden
from codeapi.storage.metadata.base import SessionRecord
from codeapi.workspaces.store import RuntimeSession, RuntimeSessions, runtime_session_id
from codeapi.workspaces.tree import (
    FILE_CLOCK_TICK_S,
    Tree,
    coarse_now_ns,
    compare,
    make_way,
    remove,
    walk,
    walk_at_most,
)

logger = structlog.get_logger(__name__)

NO_STATE = protocol.Save.NEVER  # the stateful profile keeps files, never interpreter state
LOST_NOTE = "The workspace's saved files could not be found in storage: it started over, empty"
# A workspace of up to this many entries is walked in the event loop (0.1-0.2 ms), a larger one in a
# thread: the thread's round trip costs more than that at a chat's pace, when the CPUs it wakes idle.
INLINE_WALK_ENTRIES = 32


@dataclass(frozen=True)
class RuntimeClaim:
    """A request of the stateful profile with a ``runtime_session_hint``, and whose workspace it is."""

    hint: str
    owner: str  # the token's (tenant, user), or the key's identity and the user its holder claims


@dataclass(frozen=True)
class StatefulRun:
    session_id: str
    result: SandboxResult
    outputs: Outputs
    notes: list[str]
    runtime: RuntimeInfo


@dataclass
class Place:
    """Where a call runs: a workspace directory, and the kept Python sandbox it belongs to, if any."""

    dirs: JobDirs
    sandbox: ReplSandbox | None
    current: bool  # /mnt/data already holds the record's revision
    written: bool = False  # the API wrote files into /mnt/data for this call
    lost: bool = False  # the checkpoint was gone from the blob store: the workspace started over


class StatefulRuns:
    def __init__(
        self,
        pipeline: Pipeline,
        runtimes: RuntimeSessions,
        workspaces: Workspaces,
        programs: ProgramRunner,
        warm: WarmPython | None,
    ) -> None:
        self.pipeline = pipeline
        self.runtimes = runtimes
        self.workspaces = workspaces
        self.programs = programs
        self.warm = warm

    async def run(
        self, spec: LanguageSpec, program: Program, claim: SessionClaim, runtime: RuntimeClaim, job_id: str
    ) -> StatefulRun:
        runtime_id = runtime_session_id(runtime.owner, runtime.hint)
        timeout_s = program.timeout_s
        metadata = self.pipeline.sessions.metadata
        async with metadata.lock(runtime_id, timeout_s=timeout_s + 60, wait_s=timeout_s + 5):
            record, status = await self.runtimes.begin(
                runtime.owner, runtime.hint, lambda: self.new_session(claim.user_id)
            )
            session = await self.files_session(record, claim.user_id)
            structlog.contextvars.bind_contextvars(runtime_session_id=runtime_id, session_id=session.session_id)
            async with self.place(record, job_id) as place:
                session, result, outputs, notes = await self.call(record, session, place, spec, program, claim, job_id)
            await self.pipeline.sessions.touch(session)
        if place.lost:
            status, notes = "new", [LOST_NOTE, *notes]
        return StatefulRun(session.session_id, result, outputs, notes, RuntimeInfo(runtime_id, status))

    async def new_session(self, user_id: str | None) -> str:
        return (await self.pipeline.sessions.create(user_id=user_id)).session_id

    async def files_session(self, record: RuntimeSession, user_id: str | None) -> SessionRecord:
        """The session its output files are stored in; a new one if that expired meanwhile."""
        session = await self.pipeline.sessions.get(record.session_id)
        if session is None:
            session = await self.pipeline.sessions.create(user_id=user_id)
            record.session_id = session.session_id
        return session

    @asynccontextmanager
    async def place(self, record: RuntimeSession, job_id: str) -> AsyncIterator[Place]:
        """The kept sandbox at the record's revision, else a fresh one (or a one-shot job) restored
        from the checkpoint. On the way out a sandbox is kept for the next call only if the
        workspace was checkpointed as it is (``record.revision`` matches it)."""
        sandbox = await self.warm.pool.checkout(record.runtime_id, record.revision) if self.warm else None
        if sandbox is None:
            async with self.workspaces.job(job_id) as dirs:
                yield await self.restored(Place(dirs, None, current=False), record)
            return
        assert self.warm is not None
        try:
            place = await self.restored(Place(sandbox.dirs, sandbox, sandbox.revision == record.revision), record)
            yield place
        finally:
            keep = sandbox.revision == record.revision and sandbox.alive
            self.warm.pool.release(sandbox, record.runtime_id, keep, scrub=partial(scrub_scratch, sandbox))

    async def restored(self, place: Place, record: RuntimeSession) -> Place:
        if not place.current and record.layers:
            place.lost = not await self.runtimes.restore(record, place.dirs.data, place.dirs.uid)
            place.written = True
            logger.debug("workspace.restored", layers=len(record.layers), tree_bytes=record.tree_bytes)
        return place

    async def call(
        self,
        record: RuntimeSession,
        session: SessionRecord,
        place: Place,
        spec: LanguageSpec,
        program: Program,
        claim: SessionClaim,
        job_id: str,
    ) -> tuple[SessionRecord, SandboxResult, Outputs, list[str]]:
        """Run the call; returns the files session its outputs went to, with how it ended."""
        pipeline, dirs = self.pipeline, place.dirs
        place.written |= await self.deliver_inputs(record, session, claim, dirs)
        await pipeline.attach_skill_deps(record.runtime_id, dirs)
        if place.written:  # so that what the API wrote is older than the walk by the file clock
            await asyncio.sleep(FILE_CLOCK_TICK_S)
        walked_at = coarse_now_ns()
        before = await walk_soon(dirs.data)
        result = await self.execute(place, spec, program, job_id)
        await pipeline.keep_skill_deps(record.runtime_id, dirs)
        after = await walk_soon(dirs.data)
        changes = compare(before, after, walked_at)
        notes: list[str] = []
        deleted_files = [path for path in reversed(changes.deleted) if before[path].kind == "file"]
        attached, rejected = await self.changed_outputs(dirs, set(changes.changed))
        if attached:
            session = await self.room_for(record, session, len(attached))
        stored = await self.store(session, dirs, attached, rejected, notes)
        outputs = Outputs(stored, [path for path in deleted_files if not is_hidden(path)])
        record.busy_ms += result.wall_ms
        record.cpu_ms += result.cpu_ms or 0
        checkpointed = await self.runtimes.checkpoint(record, dirs.data, after, changes)
        if checkpointed.note:
            notes.append(checkpointed.note)
        if place.sandbox is not None:
            place.sandbox.revision = record.revision if checkpointed.kept else None
        return session, result, outputs, notes

    async def deliver_inputs(
        self, record: RuntimeSession, session: SessionRecord, claim: SessionClaim, dirs: JobDirs
    ) -> bool:
        """Write each referenced file once: the workspace owns it afterwards, so a reference the client
        repeats on every call does not undo the calls' changes. The workspace's own outputs are there."""
        referenced = await self.pipeline.referenced_inputs(session, claim.files)
        chosen = {
            name: item
            for name, item in reversed(referenced)
            if item.session_id not in (session.session_id, *record.former_sessions)
            and record.staged.get(name) != item.file_id
        }
        if not chosen:
            return False
        await self.pipeline.sessions.keep_in_use(session, chosen.values())
        for name in chosen:  # a delivered input replaces what the workspace had there
            make_way(dirs.data, name)
        staged = await self.pipeline.write_inputs(chosen, dirs)
        record.staged.update({name: item.record.file_id for name, item in staged.items()})
        return True

    async def execute(self, place: Place, spec: LanguageSpec, program: Program, job_id: str) -> SandboxResult:
        """In the kept jail when it can run the language (Python, and what needs nothing but the system
        view: the jail's fresh worker starts it), else in a one-shot jail on the same directory."""
        sandbox = place.sandbox
        if sandbox is not None and spec.repl:
            call = await sandbox.call(program.code, program.args, program.timeout_s, NO_STATE, None)
            return with_usage(call, sandbox).result
        if sandbox is not None and spec.system_only:
            argv = self.programs.argv(program, self.programs.prepare(program, place.dirs))
            environment = {**BASE_ENV, **network_env(self.programs.runner.egress)}
            call = await sandbox.run_program(argv, environment, program.timeout_s)
            return with_usage(call, sandbox).result
        try:
            return (await self.programs.run(program, place.dirs, job_id)).result
        finally:  # a kept workspace serves many runs: their nsjail logs must not pile up beside it
            for step in (job_id, f"{job_id}-build"):
                place.dirs.log_file(step).unlink(missing_ok=True)

    async def changed_outputs(self, dirs: JobDirs, changed: set[str]) -> tuple[list[FoundFile], list[Rejected]]:
        """The call's new and changed visible files to attach (up to MAX_OUTPUT_FILES; every change stays
        in the workspace either way), and those that cannot be."""
        if not changed:  # most calls: no walk needed
            return [], []
        limits = self.pipeline.limits
        found, rejected = await asyncio.to_thread(walk_outputs, dirs.data, limits.max_file_bytes)
        attached = [item for item in found if item.path in changed][: limits.max_output_files]
        return attached, [item for item in rejected if item.path in changed]

    async def room_for(self, record: RuntimeSession, session: SessionRecord, count: int) -> SessionRecord:
        """The files session where ``count`` more outputs fit (MAX_FILES_PER_SESSION): a workspace lives
        for hours, so when its files session is full its outputs go on in a new one. The full one keeps
        its files until it expires, and its outputs are still the workspace's own (never delivered)."""
        sessions = self.pipeline.sessions
        if await sessions.room_left(session.session_id) >= count:
            return session
        unexpired = [former for former in record.former_sessions if await sessions.get(former) is not None]
        record.former_sessions = [*unexpired, session.session_id]
        session = await sessions.create(user_id=session.user_id)
        record.session_id = session.session_id
        return session

    async def store(
        self,
        session: SessionRecord,
        dirs: JobDirs,
        attached: list[FoundFile],
        rejected: list[Rejected],
        notes: list[str],
    ) -> list[OutputFile]:
        """The attached files as the session's output files; a note names each one that is not."""
        outputs = await self.pipeline.store_outputs(session.session_id, dirs, attached, {}, rejected, None)
        notes += [f"Output file not attached (it stays in /mnt/data): {item.path} ({item.reason})" for item in rejected]
        return outputs


async def walk_soon(root: Path) -> Tree:
    """A small workspace's walk at once, a larger one's in a thread."""
    tree = walk_at_most(root, INLINE_WALK_ENTRIES)
    return tree if tree is not None else await asyncio.to_thread(walk, root)


def scrub_scratch(sandbox: ReplSandbox) -> None:
    """/tmp and the home are a call's scratch (LibreChat tells the model so; a new jail has them empty):
    the kept jail's are emptied before its next worker starts (the call's processes are gone) and the
    home is seeded again; the installed packages stay. Nothing there is followed: entries are removed
    by descriptor, links as links."""
    kept = {sandbox.dirs.home / HOME_LINK}  # what the workspace installed (SKILL_DEPS_PATH keeps it)
    for top in (Path(f"/proc/{sandbox.jail.init_pid}/root/tmp"), sandbox.dirs.home):
        with contextlib.suppress(FileNotFoundError):
            for entry in os.scandir(top):
                if Path(entry.path) not in kept:
                    remove(Path(entry.path))
    sandbox.launcher.seed_home(sandbox.dirs)

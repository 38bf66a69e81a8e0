"""One /exec request as the pipeline's steps (codeapi.execution.pipeline) around its job: a one-shot
sandbox for every language, a warm REPL sandbox for Python."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, replace

import structlog

from codeapi.errors import CodeapiError, InvalidRequest, SandboxFailure
from codeapi.execution.accounting import Accounting, Requester, Timing
from codeapi.execution.outcome import ExecOutcome, Outputs, RunEnd
from codeapi.execution.pipeline import Pipeline, SessionClaim, StagedInput
from codeapi.execution.program import Program, ProgramRunner, check_program_text
from codeapi.execution.stateful import RuntimeClaim, StatefulRuns
from codeapi.execution.warm import WarmPython, settle_state, state_notes, unchanged_inputs, with_usage
from codeapi.languages import get_language, sandbox_probe
from codeapi.languages.inventory import RuntimeVersions
from codeapi.repl.sandbox import Lifecycle
from codeapi.sandbox.policy import SandboxResult
from codeapi.sandbox.workspace import Workspaces
from codeapi.sessions.ids import new_id
from codeapi.storage.metadata.base import SessionRecord

logger = structlog.get_logger(__name__)


@dataclass(frozen=True)
class ExecRequest:
    lang: str
    code: str
    claim: SessionClaim
    args: tuple[str, ...] = ()
    timeout_s: float | None = None
    runtime: RuntimeClaim | None = None  # the stateful profile with a runtime_session_hint


# What one run left: the sandbox's result, what was collected from it, and notes for stderr.
Ran = tuple[SandboxResult, Outputs, list[str]]


class ExecutionService:
    def __init__(
        self,
        pipeline: Pipeline,
        accounting: Accounting,
        workspaces: Workspaces,
        programs: ProgramRunner,
        warm: WarmPython | None = None,
        stateful: StatefulRuns | None = None,
    ) -> None:
        self.pipeline = pipeline
        self.accounting = accounting
        self.workspaces = workspaces
        self.programs = programs
        self.warm = warm  # None: REPL_ENABLED=false, Python runs one-shot like every language
        self.stateful = stateful  # None: the deployment does not serve the stateful profile
        self.versions = RuntimeVersions(programs.runtime_dir)

    async def execute(self, request: ExecRequest, who: Requester) -> ExecOutcome:
        """Run the request and count it for ``who``; a bad request is not an execution."""
        began = time.monotonic()
        try:
            outcome, run_ms = await self.run(request)
        except InvalidRequest:
            raise
        except CodeapiError:
            self.accounting.failed(who, request.lang, request.code, time.monotonic() - began)
            raise
        self.accounting.finished(who, request.lang, request.code, outcome, Timing(time.monotonic() - began, run_ms))
        return outcome

    async def run(self, request: ExecRequest) -> tuple[ExecOutcome, int]:
        """The outcome, and the sandbox's wall time in milliseconds."""
        spec = get_language(request.lang)
        check_program_text(request.code, request.args)
        version = asyncio.ensure_future(self.versions.of(spec))  # once per language, beside the run
        timeout_s = self.pipeline.clamp_timeout(request.timeout_s)
        job_id = new_id()
        program = Program(spec, request.code, request.args, timeout_s)
        if request.runtime is not None and self.stateful is not None:
            structlog.contextvars.bind_contextvars(language=spec.id, job_id=job_id)
            call = await self.stateful.run(spec, program, request.claim, request.runtime, job_id)
            end = RunEnd(call.result, call.outputs, call.notes)
            outcome = self.pipeline.outcome(call.session_id, end, timeout_s, spec.id, await version)
            return replace(outcome, runtime=call.runtime), call.result.wall_ms
        session = await self.pipeline.choose_session(request.claim)
        structlog.contextvars.bind_contextvars(session_id=session.session_id, language=spec.id, job_id=job_id)
        sessions = self.pipeline.sessions
        async with sessions.metadata.lock(session.session_id, timeout_s=timeout_s + 60, wait_s=timeout_s + 5):
            ran = None
            if spec.repl and self.warm is not None:
                ran = await self.run_warm(self.warm, session, request, timeout_s)
            if ran is None:
                ran = await self.run_cold(session, request, program, job_id)
            await sessions.touch(session)
        result, outputs, notes = ran
        end = RunEnd(result, outputs, notes)
        return self.pipeline.outcome(session.session_id, end, timeout_s, spec.id, await version), result.wall_ms

    async def check_sandbox(self) -> None:
        """Run a trivial program through the real sandbox; raises SandboxFailure when it cannot."""
        probe, code = sandbox_probe()
        job_id = new_id()
        async with self.workspaces.job(job_id) as dirs:
            ran = await self.programs.run(Program(probe, code, (), 10), dirs, job_id)
        if not ran.result.ok:
            raise SandboxFailure(f"sandbox probe ended with {ran.result.termination.value} ({ran.result.exit_code})")

    async def run_cold(self, session: SessionRecord, request: ExecRequest, program: Program, job_id: str) -> Ran:
        """A one-shot run in a fresh job directory (every language; Python when no REPL is at hand)."""
        pipeline = self.pipeline
        async with self.workspaces.job(job_id) as dirs:
            staged = await pipeline.stage_inputs(session, request.claim.files, dirs)
            await pipeline.attach_skill_deps(session.session_id, dirs)
            ran = await self.programs.run(program, dirs, job_id)
            await pipeline.keep_skill_deps(session.session_id, dirs)
            notes: list[str] = []
            outputs = await pipeline.collect_outputs(session.session_id, dirs, staged, notes)
        return ran.result, outputs, notes

    async def run_warm(
        self, warm: WarmPython, session: SessionRecord, request: ExecRequest, timeout_s: float
    ) -> Ran | None:
        """Python in a warm REPL sandbox: the session's kept one, else a fresh one with its state restored.
        None when no REPL sandbox can be had and none is needed (WarmPython.check_one_shot_allowed)."""
        session_id = session.session_id
        # Two independent reads, so a chat turn waits for one round trip to the store, not two.
        saved, chosen = await asyncio.gather(
            warm.states.current(session_id) if warm.states is not None else asyncio.sleep(0),  # no state
            self.pipeline.choose_inputs(session, request.claim.files),
        )
        sandbox = await warm.pool.checkout(session_id, saved.revision if saved is not None else None)
        if sandbox is None:
            warm.check_one_shot_allowed()
            return None
        await self.pipeline.sessions.keep_in_use(session, chosen.values())
        kept = await asyncio.to_thread(unchanged_inputs, sandbox, chosen, self.pipeline.limits.max_file_bytes)
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
                staged = await self.pipeline.write_inputs(chosen, sandbox.dirs)
                loaded = await warm.states.load(saved) if warm.states is not None and saved is not None else None
                restore = loaded.data if loaded is not None else None
            else:
                staged = {name: StagedInput(record, kept[name]) for name, record in chosen.items()}
            await self.pipeline.attach_skill_deps(session_id, sandbox.dirs)
            call = with_usage(
                await sandbox.call(request.code, request.args, timeout_s, warm.save_mode, restore), sandbox
            )
            await self.pipeline.keep_skill_deps(session_id, sandbox.dirs)
            notes = state_notes(call, self.pipeline.limits.max_file_bytes)
            sandbox.manifest = {}
            outputs = await self.pipeline.collect_outputs(session_id, sandbox.dirs, staged, notes, sandbox.manifest)
            keep = await settle_state(warm, sandbox, session_id, call, saved)
        finally:
            warm.pool.release(sandbox, session_id, keep)
        return call.result, outputs, notes

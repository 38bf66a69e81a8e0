"""Programmatic tool calling: start a program, pause it at each batch of tool calls, continue it.

A paused program waits in its own sandbox on the replica that started it. A continuation that
reaches another replica (or this one after a restart) replays the program from the start with the
recorded results, which the run answers itself, so the client sees only the new batch. A cancel
names a request by its X-LibreChat-Code-Request-ID (codeapi.programmatic.requests).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import secrets
import time
from dataclasses import dataclass, replace
from enum import StrEnum
from pathlib import Path
from typing import Any

import structlog

from codeapi.errors import (
    BackendUnavailable,
    DuplicateRequestId,
    Forbidden,
    InvalidRequest,
    RateLimited,
    RequestNotFound,
    RequestTooLarge,
    SessionNotFound,
)
from codeapi.execution.accounting import Accounting, Requester, Timing
from codeapi.execution.outcome import ExecOutcome, Outputs, RunEnd, Stop, contract_message
from codeapi.execution.pipeline import FileRef, Pipeline, SessionClaim
from codeapi.execution.program import ProgramRunner, check_program_text
from codeapi.languages import get_language, get_tool_calling
from codeapi.programmatic.continuations import Batch, ContinuationStore, RunState, token_key
from codeapi.programmatic.requests import RequestIds
from codeapi.programmatic.run import LiveRun, RunLimits
from codeapi.programmatic.sandbox_driver import INLINE, SCRIPT
from codeapi.programmatic.tools import Tool, bash_script, tools_file
from codeapi.programmatic.variables import SessionVariables
from codeapi.repl import protocol
from codeapi.sandbox.policy import SandboxJob, SandboxResult
from codeapi.sandbox.workspace import JobDirs, Workspaces
from codeapi.sessions.ids import new_id
from codeapi.units import KB, MB

logger = structlog.get_logger(__name__)

DRIVER = Path(__file__).with_name("sandbox_driver.py")
INVALID_TOKEN = "Invalid or expired continuation token"


@dataclass(frozen=True)
class ProgrammaticLimits:
    pause_s: float  # how long a paused program and its token wait for the continuation
    max_rounds: int = 20
    max_calls_per_batch: int = 64
    max_arguments_bytes: int = MB
    max_result_bytes: int = MB
    max_live_runs: int = 16  # paused sandboxes each hold a uid; the rest stay for /exec


@dataclass(frozen=True)
class StartRequest:
    lang: str
    code: str
    tools: tuple[Tool, ...]
    caller: str  # whom the continuation tokens belong to
    claim: SessionClaim
    timeout_s: float | None = None  # per round, clamped like /exec's
    request_id: str | None = None


@dataclass(frozen=True)
class ToolResult:
    call_id: str
    ok: bool
    value: Any
    error: str | None


@dataclass(frozen=True)
class ToolCall:
    call_id: str
    name: str
    input: Any


@dataclass(frozen=True)
class Paused:
    """The program waits for the results of these calls, to be sent with the token."""

    session_id: str
    continuation_token: str
    tool_calls: list[ToolCall]
    partial_stdout: str  # what it printed since its last pause (or its start)
    partial_stderr: str


@dataclass(frozen=True)
class Ended:
    outcome: ExecOutcome
    error: str | None  # one of the contract's error strings; None: completed


@dataclass(frozen=True)
class Refused:
    """No program to continue: the token is unknown, used, expired or another caller's."""

    error: str


Answer = Paused | Ended | Refused


class Cancelled(StrEnum):
    """How a cancel went (contract §9.4); refusals are errors: unknown, another caller's, ambiguous."""

    REQUESTED = "cancellation_requested"  # the request was waiting on its program: the program is stopped
    COMPLETED = "already_completed"  # the request had answered (a paused program it left is stopped)


class ProgrammaticService:
    def __init__(
        self,
        pipeline: Pipeline,
        accounting: Accounting,
        programs: ProgramRunner,
        workspaces: Workspaces,
        continuations: ContinuationStore,
        limits: ProgrammaticLimits,
        variables: SessionVariables,
    ) -> None:
        self.pipeline = pipeline
        self.accounting = accounting
        self.programs = programs
        self.workspaces = workspaces
        self.continuations = continuations
        self.limits = limits
        self.variables = variables
        self.replica = new_id()
        self.runs: dict[str, LiveRun] = {}
        self.requests = RequestIds(remember_s=limits.pause_s)
        self.background: set[asyncio.Task[None]] = set()

    @property
    def run_limits(self) -> RunLimits:
        return RunLimits(
            self.limits.max_calls_per_batch,
            self.limits.max_arguments_bytes,
            self.limits.max_rounds,
            self.programs.limits.output_bytes,
        )

    async def start(self, request: StartRequest, who: Requester) -> Answer:
        began = time.monotonic()
        check_program_text(request.code, ())
        self.check_capacity()
        timeout_s = self.pipeline.clamp_timeout(request.timeout_s)
        session = await self.pipeline.choose_session(request.claim)
        structlog.contextvars.bind_contextvars(session_id=session.session_id, language=request.lang)
        state = RunState(
            run_id=new_id(),
            replica=self.replica,
            caller=request.caller,
            session_id=session.session_id,
            lang=request.lang,
            code=request.code,
            tools=[[tool.name, tool.identifier] for tool in request.tools],
            files=[[ref.file_id, ref.session_id, ref.name] for ref in request.claim.files],
            timeout_s=timeout_s,
            user_id=request.claim.user_id,
        )
        return await self.advance(self.launch(state, []), who, began, request.request_id)

    async def resume(
        self, token: str, results: list[ToolResult], caller: str, who: Requester, request_id: str | None = None
    ) -> Answer:
        """Continue the program behind ``token`` (ContinuationInUse while another continuation of it runs)."""
        began = time.monotonic()
        state = await self.continuations.take(token, caller)
        if state is None:
            return Refused(INVALID_TOKEN)
        try:
            return await self.proceed(state, token, results, who, began, request_id)
        finally:
            with contextlib.suppress(BackendUnavailable):  # the marker expires by itself
                await self.continuations.release(token)

    async def proceed(
        self,
        state: RunState,
        token: str,
        results: list[ToolResult],
        who: Requester,
        began: float,
        request_id: str | None,
    ) -> Answer:
        structlog.contextvars.bind_contextvars(session_id=state.session_id, language=state.lang)
        try:
            answered = self.match_results(state, results)
            if state.run_id not in self.runs:
                self.check_capacity()  # a replay needs a sandbox of its own
        except (InvalidRequest, RateLimited):
            await self.continuations.put(token_key(token), state)  # the continuation may be retried
            raise
        for stale in state.superseded:
            self.discard(stale)  # this replica paused it before another one took the program over
        run = self.runs.get(state.run_id)
        if run is not None and state.replica == self.replica:
            if run.expiry is not None:
                run.expiry.cancel()
            if not run.reported:  # else it ended while paused (memory, a crash): that is its answer
                run.state.history.append(Batch(state.history[-1].calls, answered))
                run.deliver(answered)
            return await self.advance(run, who, began, request_id)
        # Not here (another replica, a restart) or already gone: replay with the recorded results.
        state.history[-1].results = answered
        replayed = replace(
            state,
            run_id=new_id(),
            replica=self.replica,
            history=[],
            call_ids=[],
            superseded=[*state.superseded, state.run_id],
        )
        logger.info("ptc.replay", run_id=replayed.run_id, rounds=len(state.history))
        return await self.advance(self.launch(replayed, list(state.history)), who, began, request_id)

    async def cancel(self, request_id: str, caller: str) -> Cancelled:
        """Stop the program the caller's request ``request_id`` waits on; a request that has answered
        already left its program paused (and the client will not continue it), or ended."""
        named = self.requests.named(request_id)
        if not named:
            raise RequestNotFound("No programmatic request with this id is known on this replica")
        mine = [served for served in named if served.belongs_to(caller)]
        if not mine:
            raise Forbidden("This request is another caller's")
        waiting = [served for served in mine if served.answered_at is None]
        if len(waiting) > 1:
            raise DuplicateRequestId("More than one request in flight carries this id; none was cancelled")
        if waiting:
            await self.stop_run(waiting[0].run_id)
            return Cancelled.REQUESTED
        for served in mine:
            run = self.runs.get(served.run_id)
            if run is not None and run.request_id == request_id:  # its latest request: nobody continues it
                await self.stop_run(served.run_id)
        return Cancelled.COMPLETED

    async def stop_run(self, run_id: str) -> None:
        """Stop a run of this replica now: its sandbox, and the token it left, if any."""
        run = self.runs.pop(run_id, None)
        if run is None:
            return
        if run.token_key is not None:
            await self.continuations.revoke(run.token_key)
        await run.stop()
        logger.info("ptc.cancelled", run_id=run_id)

    async def close(self) -> None:
        await asyncio.gather(*(run.stop() for run in self.runs.values()), return_exceptions=True)
        self.runs.clear()
        await asyncio.gather(*self.background, return_exceptions=True)

    def check_capacity(self) -> None:
        if len(self.runs) >= self.limits.max_live_runs:
            raise RateLimited(retry_after_s=5)

    def launch(self, state: RunState, replay: list[Batch]) -> LiveRun:
        run = LiveRun(state, replay, self.run_limits)
        # Replayed rounds count against the cap like live ones, and stay in the record for the next replay.
        run.state.history.extend(replay)
        self.runs[state.run_id] = run
        run.start(self.run_sandbox)
        return run

    def match_results(self, state: RunState, results: list[ToolResult]) -> list[dict[str, Any]]:
        """The results in the order of the batch's calls; unknown, duplicate or missing ids are refused."""
        by_id: dict[str, ToolResult] = {}
        for result in results:
            if result.call_id not in state.call_ids:
                raise InvalidRequest(f"No tool call with id {result.call_id[:40]!r} is waiting", field="tool_results")
            if result.call_id in by_id:
                raise InvalidRequest(f"Duplicate result for tool call {result.call_id!r}", field="tool_results")
            size = len(json.dumps(result.value if result.ok else result.error).encode())
            if size > self.limits.max_result_bytes:
                raise RequestTooLarge(
                    f"The result of tool call {result.call_id!r} exceeds {self.limits.max_result_bytes // KB} KiB",
                    field="tool_results",
                )
            by_id[result.call_id] = result
        missing = [call_id for call_id in state.call_ids if call_id not in by_id]
        if missing:
            raise InvalidRequest(f"Missing results for tool calls: {', '.join(missing)}", field="tool_results")
        return [
            {"ok": True, "value": by_id[call_id].value}
            if by_id[call_id].ok
            else {"ok": False, "error": by_id[call_id].error or "Tool execution failed"}
            for call_id in state.call_ids
        ]

    async def advance(self, run: LiveRun, who: Requester, began: float, request_id: str | None) -> Answer:
        """Wait for the run's next batch (the program pauses) or its end (the outcome, counted for ``who``)."""
        served = self.requests.begin(request_id, run.state.caller, run.state.run_id)
        run.request_id = request_id
        try:
            return await self.wait_for_event(run, who, began)
        finally:
            self.requests.answer(served)

    async def wait_for_event(self, run: LiveRun, who: Requester, began: float) -> Answer:
        try:
            event = await run.next_event(run.state.timeout_s)
            # The time this request waited on the program; its pauses are the client's, not counted.
            run.state.busy_s += time.monotonic() - began
            if isinstance(event, Batch):
                return await self.pause(run, event)
        except asyncio.CancelledError:
            self.discard(run.state.run_id)  # the caller went away: nobody holds a token for this run
            raise
        self.runs.pop(run.state.run_id, None)
        if run.task is not None and not run.task.done():
            self.keep(run.task)  # removing the sandbox's directories, after the answer
        return self.conclude(run.state, event, who)

    async def pause(self, run: LiveRun, batch: Batch) -> Paused:
        state = run.state
        call_ids = [secrets.token_hex(6) for _ in batch.calls]
        record = replace(state, history=[*state.history, Batch(batch.calls)], call_ids=call_ids)
        token = await self.continuations.issue(record)
        run.token_key = token_key(token)
        run.expiry = asyncio.get_running_loop().call_later(self.limits.pause_s, self.expire, run)
        calls = [
            ToolCall(call_id, call["name"], call["input"]) for call_id, call in zip(call_ids, batch.calls, strict=True)
        ]
        return Paused(state.session_id, token, calls, *run.partial())

    def expire(self, run: LiveRun) -> None:
        """A paused program never continued: its sandbox goes; its token expires in the store."""
        self.discard(run.state.run_id)
        logger.info("ptc.expired", run_id=run.state.run_id)

    def discard(self, run_id: str) -> None:
        """Stop a run of this replica in the background, if it still has one by that id."""
        run = self.runs.pop(run_id, None)
        if run is None:
            return
        self.keep(asyncio.create_task(run.stop()))

    def keep(self, task: asyncio.Task[None]) -> None:
        """Hold a reference to background work until it is done (and for close() to wait on)."""
        self.background.add(task)
        task.add_done_callback(self.background.discard)

    def conclude(self, state: RunState, end: RunEnd, who: Requester) -> Ended:
        """The program's outcome as /exec would report it, with the contract's error string; counted.
        Its wall time is that of its rounds: the pauses were the client's."""
        timing = Timing(wall_s=state.busy_s, run_ms=round(state.busy_s * 1000))
        outcome = self.pipeline.outcome(state.session_id, end, state.timeout_s, state.lang)
        outcome = replace(outcome, run=replace(outcome.run, wall_ms=timing.run_ms))
        error = end.ended.error if isinstance(end.ended, Stop) else self.failure(end.ended)
        rounds = len(state.history)
        self.accounting.finished(
            who, state.lang, state.code, outcome, timing, run_id=state.run_id, rounds=rounds, error=error
        )
        return Ended(outcome, error)

    @staticmethod
    def failure(result: SandboxResult) -> str | None:
        """The contract's error string for a run that did not end well (the client shows only these)."""
        stopped = contract_message(result.termination, result.stdout_truncated)
        if stopped is not None:
            return stopped
        return None if result.exit_code == 0 else f"Sandbox exited with code {result.exit_code}"

    async def run_sandbox(self, run: LiveRun) -> RunEnd:
        """The program in a fresh sandbox with the tool channel passed in; outputs stored when it succeeds."""
        state, sessions = run.state, self.pipeline.sessions
        session = await sessions.get(state.session_id)
        if session is None:
            raise SessionNotFound("The session of this program has expired")
        refs = tuple(FileRef(file_id, session_id, name) for file_id, session_id, name in state.files)
        save = self.variables.save_mode(get_tool_calling(state.lang).keeps_variables)
        job_id = new_id()
        async with self.workspaces.job(job_id) as dirs:
            staged = await self.pipeline.stage_inputs(session, refs, dirs)
            saved = await self.variables.restore(state.session_id, dirs) if save is not protocol.Save.NEVER else None
            result = await self.programs.runner.run(self.sandbox_job(run, dirs, job_id, save), run.output)
            notes: list[str] = []
            if save is not protocol.Save.NEVER:
                await self.variables.save(state.session_id, dirs, saved, notes)
            outputs = Outputs()
            if result.ok:
                outputs = await self.pipeline.collect_outputs(state.session_id, dirs, staged, notes)
            end = RunEnd(result, outputs, notes)
            run.report(end)
            await sessions.touch(session)  # after the answer is on its way, as the directories' removal is
        return end

    def sandbox_job(self, run: LiveRun, dirs: JobDirs, job_id: str, save: protocol.Save) -> SandboxJob:
        """The driver, the tools and the program in /code, in the sandbox of the language whose
        runtime hosts the driver (the program's ToolCalling)."""
        state, spec = run.state, get_language(run.state.lang)
        calling = get_tool_calling(spec.id)
        host = get_language(calling.runtime)
        tools = tuple(Tool(name, identifier) for name, identifier in state.tools)
        code = state.code if calling.inline else bash_script(tools, state.code)
        source = spec.source_name
        for name, text in (("driver.py", DRIVER.read_text()), ("tools.json", tools_file(tools)), (source, code)):
            (dirs.code / name).write_text(text, encoding="utf-8")
            os.chown(dirs.code / name, dirs.uid, dirs.uid)
        self.programs.seed_home(host, dirs)
        fd = run.sandbox_end.fileno()
        mode = INLINE if calling.inline else SCRIPT
        argv = (calling.interpreter, "-I", "/code/driver.py", mode, "/code/tools.json", f"/code/{source}")
        # Each round gets the full timeout; the sandbox itself lives for every round and pause.
        lifetime_s = (state.timeout_s + self.limits.pause_s) * (self.limits.max_rounds + 1)
        job = self.programs.job(host, dirs, job_id, argv, self.programs.limits.memory_mb, lifetime_s)
        return replace(
            job,
            pass_fds=(fd,),
            env={**job.env, "CODEAPI_TOOL_FD": str(fd), "CODEAPI_STATE_SAVE": save.value},
            binds=(*job.binds, *self.variables.binds(save)),
        )

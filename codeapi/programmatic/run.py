"""The host side of one program paused at its tool calls: the channel, the sandbox task, the events.

A run lives on the replica that started it; the HTTP requests of one round trip wait on its
``events``. Calls the record already answered (a replay on another replica) are answered here at
once, matched by tool and arguments (concurrent bash calls need not repeat their order), so only
new calls reach the client. What the program prints streams into ``output`` while it runs: a pause
shows the part printed since the previous one (``partial``).
"""

from __future__ import annotations

import asyncio
import codecs
import contextlib
import json
import socket
import struct
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from typing import Any

from codeapi.errors import CodeapiError
from codeapi.execution.outcome import FAILED, TIME_LIMIT, RunEnd, Stop
from codeapi.programmatic.continuations import Batch, RunState
from codeapi.sandbox.policy import Termination
from codeapi.sandbox.runner import CappedStream, JobOutput
from codeapi.units import KB

HEADER = struct.Struct(">I")


@dataclass(frozen=True)
class RunLimits:
    max_calls_per_batch: int
    max_batch_bytes: int  # one batch of calls as the program sends it
    max_rounds: int
    output_bytes: int  # each of stdout and stderr, over the whole program (as /exec caps a run)


Event = Batch | RunEnd
SandboxBody = Callable[["LiveRun"], Coroutine[Any, Any, RunEnd]]


class Printed:
    """One output stream of the program, read on from where the last pause left it; bytes become
    text only once their character is whole."""

    def __init__(self, stream: CappedStream) -> None:
        self.stream = stream
        self.shown = 0
        self.decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")

    def since_last(self) -> str:
        data = bytes(self.stream.data[self.shown :])
        self.shown += len(data)
        return self.decoder.decode(data)


class Stopped(Exception):
    """The program broke the channel's rules; ``error`` is what the client is told."""

    def __init__(self, error: str, detail: str) -> None:
        super().__init__(detail)
        self.error = error
        self.detail = detail


class LiveRun:
    def __init__(self, state: RunState, replay: list[Batch], limits: RunLimits) -> None:
        self.state = state
        self.recorded: dict[str, list[dict[str, Any]]] = {}  # call (tool and arguments) -> results, in order
        for batch in replay:
            for call, result in zip(batch.calls, batch.results, strict=True):
                self.recorded.setdefault(call_key(call), []).append(result)
        # The frame now waiting: its calls, and the results the record gave some of them already.
        self.waiting: tuple[list[dict[str, Any]], dict[int, dict[str, Any]]] = ([], {})
        self.limits = limits
        self.events: asyncio.Queue[Event] = asyncio.Queue()
        self.host_end, self.sandbox_end = socket.socketpair()
        self.host_end.setblocking(False)
        self.writer: asyncio.StreamWriter | None = None
        # The channel reads no further frame until the last batch was answered: a program that
        # floods it blocks on its own full socket instead of filling the API's memory.
        self.answered = asyncio.Event()
        self.reported = False
        self.task: asyncio.Task[None] | None = None
        self.expiry: asyncio.TimerHandle | None = None
        self.token_key: str | None = None  # the continuation now outstanding, revoked on cancel
        self.request_id: str | None = None  # the X-LibreChat-Code-Request-ID of the request it last served
        self.output = JobOutput.capped(limits.output_bytes)
        self.printed = (Printed(self.output.stdout), Printed(self.output.stderr))

    @property
    def names(self) -> dict[str, str]:
        return {name: identifier for name, identifier in self.state.tools}

    def start(self, body: SandboxBody) -> None:
        self.task = asyncio.create_task(self.lifecycle(body))

    async def next_event(self, timeout_s: float) -> Event:
        """The next batch or the end; a program that neither calls nor ends in time is stopped."""
        try:
            return await asyncio.wait_for(self.events.get(), timeout_s)
        except TimeoutError:
            await self.stop()
            return RunEnd(Stop(TIME_LIMIT, termination=Termination.TIMEOUT))

    def partial(self) -> tuple[str, str]:
        """What the program printed (stdout, stderr) since the last pause, or since it started.

        The program's output is in its pipes before the batch that follows it is on the channel, and
        the runner reads the pipes as they fill: by the time a pause is answered (after a store write)
        its readers have taken what came before the batch."""
        stdout, stderr = self.printed
        return stdout.since_last(), stderr.since_last()

    def report(self, end: RunEnd) -> None:
        """The outcome, as soon as it is known: the sandbox's directories are removed after the answer."""
        if not self.reported:
            self.reported = True
            self.events.put_nowait(end)

    def deliver(self, results: list[dict[str, Any]]) -> None:
        """The client's results for the batch it was given, merged into the frame the program sent."""
        calls, known = self.waiting
        fresh = iter(results)
        self.send([known[index] if index in known else next(fresh) for index in range(len(calls))])
        self.answered.set()

    async def stop(self) -> None:
        """Kill the sandbox and wait until its directories are gone; a request waiting on it is told."""
        if self.expiry is not None:
            self.expiry.cancel()
        if self.task is not None and not self.task.done():
            if not self.reported:  # once reported, the task is only removing the directories: let it
                self.task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self.task
            self.report(RunEnd(Stop(FAILED, "The run was stopped")))

    def send(self, results: list[dict[str, Any]]) -> None:
        assert self.writer is not None
        payload = json.dumps({"results": results}, separators=(",", ":")).encode()
        self.writer.write(HEADER.pack(len(payload)) + payload)

    async def lifecycle(self, body: SandboxBody) -> None:
        channel = asyncio.create_task(self.serve_channel())
        sandbox = asyncio.create_task(body(self))
        try:
            await asyncio.wait({channel, sandbox}, return_when=asyncio.FIRST_COMPLETED)
            stopped = self.violation(channel)
            if stopped is not None:
                sandbox.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await sandbox
                self.report(RunEnd(Stop(stopped.error, stopped.detail)))
                return
            try:
                self.report(await sandbox)
            except CodeapiError as error:
                self.report(RunEnd(Stop(FAILED, error.message)))
        except BaseException:
            for task in (channel, sandbox):
                task.cancel()
            await asyncio.gather(channel, sandbox, return_exceptions=True)
            raise
        finally:
            channel.cancel()
            if self.writer is not None:
                # The channel's transport owns host_end's descriptor: closing the socket too would
                # close that number twice, the second time under whatever reused it meanwhile.
                self.writer.close()
            else:
                self.host_end.close()
            self.sandbox_end.close()

    @staticmethod
    def violation(channel: asyncio.Task[None]) -> Stopped | None:
        if not channel.done() or channel.cancelled():
            return None
        error = channel.exception()
        return error if isinstance(error, Stopped) else None

    async def serve_channel(self) -> None:
        reader, self.writer = await asyncio.open_unix_connection(sock=self.host_end)
        while True:
            try:
                size = HEADER.unpack(await reader.readexactly(HEADER.size))[0]
                if size > self.limits.max_batch_bytes:
                    raise Stopped(
                        FAILED,
                        f"A batch of tool calls exceeds {self.limits.max_batch_bytes // KB} KiB of arguments",
                    )
                calls = self.parse(await reader.readexactly(size))
            except asyncio.IncompleteReadError:
                return  # the program closed its end: it is finishing
            known = self.recall(calls)
            if len(known) == len(calls):
                self.partial()  # a replayed round's output was shown with that round's pause
                self.send([known[index] for index in range(len(calls))])
                continue
            if len(self.state.history) >= self.limits.max_rounds:
                raise Stopped(
                    FAILED,
                    f"The program made more than {self.limits.max_rounds} rounds of tool calls",
                )
            self.waiting = (calls, known)
            self.events.put_nowait(Batch([call for index, call in enumerate(calls) if index not in known]))
            await self.answered.wait()
            self.answered.clear()

    def recall(self, calls: list[dict[str, Any]]) -> dict[int, dict[str, Any]]:
        """The recorded results for these calls (by position), each used once."""
        known: dict[int, dict[str, Any]] = {}
        for index, call in enumerate(calls):
            results = self.recorded.get(call_key(call))
            if results:
                known[index] = results.pop(0)
        return known

    def parse(self, frame: bytes) -> list[dict[str, Any]]:
        """A batch as the driver sends it; anything else on the channel ends the run."""
        try:
            calls = json.loads(frame)["calls"]
        except (ValueError, KeyError, TypeError):
            raise Stopped(FAILED, "The program wrote a malformed frame on the tool channel") from None
        if not isinstance(calls, list) or not calls:
            raise Stopped(FAILED, "The program wrote a malformed frame on the tool channel")
        if len(calls) > self.limits.max_calls_per_batch:
            raise Stopped(
                FAILED,
                f"More than {self.limits.max_calls_per_batch} tool calls at once",
            )
        names = self.names
        parsed: list[dict[str, Any]] = []
        for call in calls:
            if not isinstance(call, dict) or not isinstance(call.get("input"), dict):
                raise Stopped(FAILED, "The program wrote a malformed frame on the tool channel")
            name = call.get("name")
            if not isinstance(name, str) or name not in names:
                raise Stopped(f"Sandbox requested an unregistered tool: {str(name)[:100]}", "")
            parsed.append({"name": name, "input": call["input"]})
        return parsed


def call_key(call: dict[str, Any]) -> str:
    return json.dumps([call["name"], call["input"]], sort_keys=True, separators=(",", ":"))

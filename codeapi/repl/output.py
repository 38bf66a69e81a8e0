"""A REPL sandbox's stdout and stderr: two pipes the worker holds as fds 1 and 2, read by the API.

During a call they are read as data arrives, so its output is capped while it streams (the call
ends as soon as either stream overflows). Between calls nobody reads them: a user thread that
keeps printing then blocks on the full pipe instead of costing the API CPU, and what it printed is
dropped when the next call begins.
"""

from __future__ import annotations

import asyncio
import os

from codeapi.sandbox.runner import READ_CHUNK, CappedStream
from codeapi.units import MB

# Dropping what arrived between calls reads at most this much, so a user thread printing without
# pause cannot hold the API in the loop (it only fills the next call's capped buffers).
BETWEEN_CALLS_DRAIN_BYTES = MB


class SandboxOutput:
    def __init__(self, stdout_fd: int, stderr_fd: int) -> None:
        self.loop = asyncio.get_running_loop()
        self.fds = (stdout_fd, stderr_fd)
        self.open = set(self.fds)
        self.sinks: dict[int, CappedStream] = {}
        self.overflowed = asyncio.Event()
        for fd in self.fds:
            os.set_blocking(fd, False)

    def begin(self, cap: int, carried: tuple[bytes, bytes] = (b"", b"")) -> None:
        """Start capturing for a call, up to ``cap`` bytes per stream, after what ``carried`` holds
        (stdout, stderr: what restoring the call's variables printed)."""
        self.sinks = {}
        for fd in self.fds:
            self.drain(fd, BETWEEN_CALLS_DRAIN_BYTES)
        self.overflowed = asyncio.Event()
        self.sinks = {fd: CappedStream(cap, bytearray()) for fd in self.fds}
        for fd, data in zip(self.fds, carried, strict=True):
            if self.sinks[fd].feed(data):
                self.overflowed.set()
        for fd in self.open:
            self.loop.add_reader(fd, self.read_once, fd)

    def finish(self) -> tuple[CappedStream, CappedStream]:
        """The call's output, including everything already in the pipes (the worker flushed its
        streams before it reported, and the call's other processes are dead)."""
        for fd in self.fds:
            self.drain(fd, None)
        for fd in self.open:
            self.loop.remove_reader(fd)
        stdout, stderr = (self.sinks.get(fd, CappedStream(0, bytearray())) for fd in self.fds)
        self.sinks = {}
        return stdout, stderr

    def read_once(self, fd: int) -> None:
        self.take(fd, self.read(fd))

    def drain(self, fd: int, limit: int | None) -> None:
        """Read until the pipe is empty, this call's stream overflowed, or ``limit`` bytes."""
        taken = 0
        while fd in self.open and (limit is None or taken < limit):
            data = self.read(fd)
            if not data or not self.take(fd, data):
                return
            taken += len(data)

    def read(self, fd: int) -> bytes:
        try:
            data = os.read(fd, READ_CHUNK)
        except BlockingIOError:
            return b""
        except OSError:
            data = b""
        if not data:  # every write end is closed: the worker and its children are gone
            self.close_fd(fd)
        return data

    def take(self, fd: int, data: bytes) -> bool:
        """Keep ``data`` for the current call, if any; False once its stream overflowed."""
        sink = self.sinks.get(fd)
        if sink is None or not data:
            return bool(data)
        if sink.truncated or sink.feed(data):
            self.overflowed.set()
            return False
        return True

    def close_fd(self, fd: int) -> None:
        if fd in self.open:
            self.open.discard(fd)
            self.loop.remove_reader(fd)
            os.close(fd)

    def close(self) -> None:
        for fd in self.fds:
            self.close_fd(fd)

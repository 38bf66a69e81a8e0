"""The REPL sandbox's first process (stdlib only): it alone holds the API's channel.

nsjail starts it as pid 1 of the jail with two inherited sockets: the channel to the API and a link
to the worker (the pre-imported interpreter that the zygote forks into this jail). User code runs
only in the worker, which never sees the channel: this process is not dumpable, so the worker (same
uid) cannot ptrace it or open its descriptors through /proc. What reaches the API is framed here:
stdout and stderr are read from pipes this process made, capped while they stream, and a call ends
when the worker reports it, dies, overruns its time or floods its output. Whatever the worker sends
is its own data (its output, its pickled state): forging it gains nothing.

When a call ends (in any way), every other process in the jail but the worker is killed and reaped:
a kept sandbox carries no background process from one call into the time after it. This process is
the pid namespace's init, so orphans are re-parented (and reaped) here; the worker reaps its own
children. When this process exits, the kernel kills everything else in the jail's pid namespace.
"""

from __future__ import annotations

import ctypes
import os
import select
import socket
import sys
import time

from codeapi.repl import protocol

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

# This process starts with every sandbox, so it imports only cheap modules: no dataclasses,
# typing, selectors or signal (their numbers are spelled out below).
READ_CHUNK = 65536
PR_SET_DUMPABLE = 4
SIGKILL = 9
SIGCHLD = 17
SIG_IGN = 1
JAIL_INIT_PID = 1  # this process, in the jail's pid namespace (the jail's /proc shows only that)
# Killing the others is repeated until a scan of /proc finds none alive (a process forking while
# the scan runs may add one after it), within these bounds.
KILL_ROUNDS = 200
KILL_PAUSE_S = 0.002


class Call:
    def __init__(self, call_id: str, deadline: float, output_bytes: int) -> None:
        self.call_id = call_id
        self.deadline = deadline
        self.output_bytes = output_bytes
        self.started = time.monotonic()
        self.stdout = bytearray()
        self.stderr = bytearray()
        self.truncated = {"stdout": False, "stderr": False}

    def capture(self, stream: str, data: bytes) -> bool:
        """Keep output up to the cap; True once it overflowed."""
        sink = self.stdout if stream == "stdout" else self.stderr
        room = self.output_bytes - len(sink)
        sink += data[: max(room, 0)]
        if len(data) > room:
            self.truncated[stream] = True
        return self.truncated[stream]


class Supervisor:
    def __init__(self, channel: socket.socket, worker: socket.socket, max_frame_bytes: int) -> None:
        self.channel = channel
        self.worker = worker
        self.from_api = protocol.FrameDecoder(max_frame_bytes)
        self.from_worker = protocol.FrameDecoder(max_frame_bytes)
        self.worker_pid = 0
        self.call: Call | None = None
        out_read, out_write = os.pipe()
        err_read, err_write = os.pipe()
        # The worker writes to these as its fds 1 and 2; only this process reads them.
        socket.send_fds(worker, [b"pipes"], [out_write, err_write])
        os.close(out_write)
        os.close(err_write)
        self.pipes = {out_read: "stdout", err_read: "stderr"}
        for fd in self.pipes:
            os.set_blocking(fd, False)

    def send_api(self, header: dict[str, Any], blobs: dict[str, bytes] | None = None) -> None:
        self.channel.sendall(protocol.encode(header, blobs))

    def wait_for_worker(self) -> bool:
        while True:
            data = self.worker.recv(READ_CHUNK)
            if not data:
                return False
            for frame in self.from_worker.feed(data):
                if frame.kind == protocol.READY and isinstance(frame.header.get("pid"), int):
                    self.worker_pid = frame.header["pid"]
                    self.send_api({"type": protocol.READY})
                    return True
                raise protocol.ProtocolError(f"expected ready, got {frame.kind!r}")

    def serve(self) -> None:
        """Until the API hangs up or a call ends abnormally (the jail is then torn down)."""
        poller = select.epoll()
        sources = {self.channel.fileno(): "api", self.worker.fileno(): "worker"}
        sources.update({fd: "pipe" for fd in self.pipes})
        for fd in sources:
            poller.register(fd, select.EPOLLIN)
        while True:
            timeout = -1.0 if self.call is None else max(self.call.deadline - time.monotonic(), 0)
            events = poller.poll(timeout)
            if not events and self.call is not None:
                self.finish_abnormally(protocol.ENDED_BY_TIMEOUT)
                return
            for fd, _ in events:
                if not self.handle(sources[fd], fd):
                    return

    def handle(self, source: str, fd: int) -> bool:
        if source == "pipe":
            return self.read_pipe(fd)
        if source == "api":
            data = self.channel.recv(READ_CHUNK)
            if not data:
                return False
            return all(self.start(frame) for frame in self.from_api.feed(data))
        data = self.worker.recv(READ_CHUNK)
        if not data:
            if self.call is not None:
                self.finish_abnormally(protocol.ENDED_BY_WORKER_DEATH)
            return False
        try:
            frames = self.from_worker.feed(data)
        except protocol.ProtocolError:
            self.finish_abnormally(protocol.ENDED_BY_WORKER_DEATH)
            return False
        return all(self.complete(frame) for frame in frames)

    def read_pipe(self, fd: int) -> bool:
        try:
            data = os.read(fd, READ_CHUNK)
        except BlockingIOError:
            return True
        if data and self.call is not None and self.call.capture(self.pipes[fd], data):
            self.finish_abnormally(protocol.ENDED_BY_OUTPUT_LIMIT)
            return False
        return True  # output between calls (a user thread) belongs to no call and is dropped

    def start(self, frame: protocol.Frame) -> bool:
        if frame.kind != protocol.RUN or self.call is not None:
            return False
        header = frame.header
        self.call = Call(str(header["id"]), time.monotonic() + float(header["timeout_s"]), int(header["output_bytes"]))
        self.worker.sendall(protocol.encode(header, frame.blobs))
        return True

    def complete(self, frame: protocol.Frame) -> bool:
        call = self.call
        if call is None or frame.kind != protocol.DONE or frame.header.get("id") != call.call_id:
            self.finish_abnormally(protocol.ENDED_BY_WORKER_DEATH)
            return False
        # The call's other processes end with it (their output so far is in the pipes); then output
        # written before the worker reported is already in the pipes: take all of it.
        kill_strays(self.worker_pid)
        for fd in self.pipes:
            if not self.drain(fd):
                self.finish_abnormally(protocol.ENDED_BY_OUTPUT_LIMIT)
                return False
        self.report(protocol.ENDED_NORMALLY, frame.header, frame.blobs.get("state"))
        return True

    def drain(self, fd: int) -> bool:
        assert self.call is not None
        while True:
            try:
                data = os.read(fd, READ_CHUNK)
            except BlockingIOError:
                return True
            if not data:
                return True
            if self.call.capture(self.pipes[fd], data):
                return False

    def finish_abnormally(self, ending: str) -> None:
        if self.worker_pid:
            try:
                os.kill(self.worker_pid, SIGKILL)
            except ProcessLookupError:
                pass
        kill_strays(self.worker_pid)
        if self.call is not None:
            for fd in self.pipes:
                if not self.drain(fd):
                    break
            self.report(ending, {}, None)

    def report(self, ending: str, worker_header: dict[str, Any], state: bytes | None) -> None:
        call = self.call
        assert call is not None
        worker_word = {key: value for key, value in worker_header.items() if key not in ("type", "id")}
        header = {
            "type": protocol.RESULT,
            "id": call.call_id,
            "ending": ending,
            "duration_ms": int((time.monotonic() - call.started) * 1000),
            "stdout_truncated": call.truncated["stdout"],
            "stderr_truncated": call.truncated["stderr"],
            "worker": worker_word,
        }
        blobs = {"stdout": bytes(call.stdout), "stderr": bytes(call.stderr)}
        if state is not None:
            blobs["state"] = state
        self.call = None
        self.send_api(header, blobs)


def kill_strays(worker_pid: int) -> None:
    """SIGKILL every process in the jail but this one and the worker, until none is left alive.

    Orphans are this process's children (it is the pid namespace's init) and are reaped here; the
    worker's own children become zombies until the worker reaps them (it does between calls).
    """
    spared = {JAIL_INIT_PID, os.getpid(), worker_pid}
    for _ in range(KILL_ROUNDS):
        alive = [pid for pid in jail_pids() if pid not in spared and not is_zombie(pid)]
        for pid in alive:
            try:
                os.kill(pid, SIGKILL)
            except OSError:  # gone meanwhile
                pass
        reap_orphans()
        if not alive:
            return
        time.sleep(KILL_PAUSE_S)


def jail_pids() -> list[int]:
    return [int(name) for name in os.listdir("/proc") if name.isdigit()]


def is_zombie(pid: int) -> bool:
    """A zombie (or a process already gone) needs no signal; a killed one may not have died yet."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as stat:
            fields = stat.read().rsplit(b")", 1)[1].split()
    except (OSError, IndexError):
        return True
    return fields[:1] in ([b"Z"], [b"X"])


def reap_orphans() -> None:
    """Collect exited children (orphans re-parented here) without blocking."""
    while True:
        try:
            pid, _ = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return


def harden() -> None:
    """The worker runs as the same uid; a non-dumpable process cannot be ptraced, nor its memory or
    descriptors reached through /proc. As pid 1 of the jail, reap whatever gets re-parented here."""
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(PR_SET_DUMPABLE, 0, 0, 0, 0) != 0:
        raise OSError(ctypes.get_errno(), "prctl(PR_SET_DUMPABLE) failed")
    libc.signal(SIGCHLD, ctypes.c_void_p(SIG_IGN))


def flag_value(argv: list[str], flag: str) -> int:
    return int(argv[argv.index(flag) + 1])


def main(argv: list[str]) -> int:
    harden()
    channel = socket.socket(fileno=flag_value(argv, protocol.CHANNEL_FLAG))
    worker = socket.socket(fileno=flag_value(argv, protocol.WORKER_FLAG))
    supervisor = Supervisor(channel, worker, flag_value(argv, "--max-frame-bytes"))
    supervisor.send_api({"type": protocol.HELLO})
    try:
        if supervisor.wait_for_worker():
            supervisor.serve()
    except (protocol.ProtocolError, OSError, KeyError, ValueError, TypeError):
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))

"""The API's handle on the zygote process: start it, ask it for workers, learn how they exited."""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import signal
import socket
from pathlib import Path

import structlog

import codeapi
from codeapi.errors import SandboxFailure
from codeapi.repl import protocol

logger = structlog.get_logger(__name__)

MESSAGE_BYTES = 65536
EXIT_STATUS_WAIT_S = 0.5
SEND_RETRY_S = 0.001
MAX_REMEMBERED_EXITS = 4096
PACKAGE_ROOT = Path(codeapi.__file__).resolve().parent.parent
BOOT = "import sys; sys.path.insert(0, {root!r}); from codeapi.repl.zygote import main; sys.exit(main(sys.argv))"


class ZygoteProcess:
    def __init__(self, python: Path, env: dict[str, str], mpl_seed: Path, work_dir: Path) -> None:
        self.python = python
        self.env = env
        self.mpl_seed = mpl_seed
        self.work_dir = work_dir  # the zygote's matplotlib cache and its log
        self.process: asyncio.subprocess.Process | None = None
        self.control: socket.socket | None = None
        self.ready = asyncio.Event()
        self.replies: dict[str, asyncio.Future[protocol.Spawned | protocol.SpawnFailed]] = {}
        self.exits: dict[int, int] = {}
        self.exit_changed = asyncio.Event()
        self.reader: asyncio.Task[None] | None = None
        self.counter = 0

    @property
    def alive(self) -> bool:
        return self.ready.is_set() and self.process is not None and self.process.returncode is None

    async def start(self, timeout_s: float) -> None:
        self.work_dir.mkdir(exist_ok=True)
        self.work_dir.chmod(0o700)
        mpl_dir = self.work_dir / "matplotlib"
        shutil.rmtree(mpl_dir, ignore_errors=True)
        if self.mpl_seed.is_dir():
            shutil.copytree(self.mpl_seed, mpl_dir)
        else:
            mpl_dir.mkdir()
        mpl_dir.chmod(0o700)
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        boot = BOOT.format(root=str(PACKAGE_ROOT))
        with open(self.work_dir / "zygote.log", "ab") as log:
            os.fchmod(log.fileno(), 0o600)
            self.process = await asyncio.create_subprocess_exec(
                str(self.python), "-I", "-B", "-c", boot, str(theirs.fileno()), str(mpl_dir),
                env=self.env, stdin=asyncio.subprocess.DEVNULL, stdout=log, stderr=log,
                pass_fds=(theirs.fileno(),), start_new_session=True,
            )  # fmt: skip
        theirs.close()
        ours.setblocking(False)
        self.control = ours
        self.reader = asyncio.create_task(self.read_messages())
        try:
            await asyncio.wait_for(self.ready.wait(), timeout_s)
        except TimeoutError:
            await self.stop()
            raise SandboxFailure(f"the Python zygote was not ready within {timeout_s:g} s") from None
        logger.debug("repl.zygote_ready", pid=self.process.pid)

    async def read_messages(self) -> None:
        assert self.control is not None
        loop = asyncio.get_running_loop()
        try:
            while data := await loop.sock_recv(self.control, MESSAGE_BYTES):
                self.dispatch(protocol.decode_control(data))
        except (OSError, protocol.ProtocolError) as error:
            logger.warning("repl.zygote_channel_failed", error=str(error))
        finally:
            self.ready.clear()
            for future in self.replies.values():
                if not future.done():
                    future.set_exception(SandboxFailure("the Python zygote exited"))

    def dispatch(self, message: protocol.Control) -> None:
        if isinstance(message, protocol.ZygoteReady):
            self.ready.set()
        elif isinstance(message, protocol.Exited):
            self.exits[message.pid] = message.status
            while len(self.exits) > MAX_REMEMBERED_EXITS:  # workers torn down on purpose: nobody asks
                del self.exits[next(iter(self.exits))]
            self.exit_changed.set()
            self.exit_changed = asyncio.Event()
        elif isinstance(message, (protocol.Spawned, protocol.SpawnFailed)):
            future = self.replies.pop(message.token, None)
            if future is not None and not future.done():
                future.set_result(message)

    async def spawn(
        self,
        init_pid: int,
        pidfd: int,
        worker_fds: tuple[int, int, int],
        uid: int,
        cgroup_dirs: list[str],
        max_state_bytes: int,
    ) -> int:
        """A worker isolated into the jail whose init is ``init_pid`` (``pidfd``), holding
        ``worker_fds`` (its link, stdout, stderr) and saving states up to ``max_state_bytes``;
        returns its host pid. The fds stay ours to close."""
        if not self.alive or self.control is None:
            raise SandboxFailure("the Python zygote is not running")
        self.counter += 1
        token = str(self.counter)
        request = protocol.Spawn(token, init_pid, uid, tuple(cgroup_dirs), max_state_bytes)
        future: asyncio.Future[protocol.Spawned | protocol.SpawnFailed] = asyncio.get_running_loop().create_future()
        self.replies[token] = future
        await self.send(protocol.encode_control(request), [pidfd, *worker_fds])
        reply = await future
        if isinstance(reply, protocol.SpawnFailed):
            raise SandboxFailure(f"the zygote could not fork a worker: {reply.error}")
        return reply.pid

    async def send(self, data: bytes, fds: list[int]) -> None:
        assert self.control is not None
        while True:
            try:
                socket.send_fds(self.control, [data], fds)
                return
            except BlockingIOError:
                await asyncio.sleep(SEND_RETRY_S)

    async def exit_status(self, pid: int) -> int | None:
        """How a worker ended (negative: the signal), once the zygote has reaped it (None: not within
        EXIT_STATUS_WAIT_S)."""
        loop = asyncio.get_running_loop()
        give_up = loop.time() + EXIT_STATUS_WAIT_S
        while pid not in self.exits:
            remaining = give_up - loop.time()
            if remaining <= 0 or not self.alive:
                return None
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.exit_changed.wait(), remaining)
        return self.exits.pop(pid)

    async def stop(self) -> None:
        if self.process is not None and self.process.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, signal.SIGKILL)
            await self.process.wait()
        if self.reader is not None:
            self.reader.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self.reader
        if self.control is not None:
            self.control.close()
            self.control = None

"""The REPL worker: the pre-imported interpreter that runs user code, inside its jail (stdlib + data stack).

The zygote forks it already isolated; from then on it is an ordinary sandboxed process with fds
0 (/dev/null), 1 and 2 (pipes the API reads) and 3, its link to the API. A call runs the
code in one persistent ``__main__`` namespace, echoes a trailing expression like the Python REPL,
and (when asked) pickles that namespace here, inside the sandbox: the API only ever stores the
compressed bytes and never unpickles user data.
"""

from __future__ import annotations

import ast
import builtins
import contextlib
import dataclasses
import faulthandler
import fcntl
import importlib
import io
import linecache
import os
import signal
import socket
import sys
import traceback
import types
import zlib
from typing import Any

from codeapi.repl import kernel, protocol


def optional_module(name: str) -> Any:
    """The sandbox venv has both; the API's venv, which only type-checks this module, has neither."""
    try:
        return importlib.import_module(name)
    except ImportError:
        return None


cloudpickle = optional_module("cloudpickle")
zstandard = optional_module("zstandard")  # without it, state is compressed with zlib

WORK_DIR = "/mnt/data"
CODE_DIR = "/code"
READ_CHUNK = 65536
FD_PARKING = 64  # above fds 0-3 and whatever the zygote held while receiving
ZSTD_LEVEL = 3
COMMAND_NOT_RUN = 127  # what a shell returns for a command it could not execute
REHEARSAL_PROGRAM = "/bin/true"  # started once by each new worker (Worker.rehearse), in the system view


def read_message(link: socket.socket, decoder: protocol.FrameDecoder) -> protocol.Message | None:
    while True:
        data = link.recv(READ_CHUNK)
        if not data:
            return None
        messages = decoder.feed(data)
        if messages:
            return messages[0]  # the API sends one request and waits for its answer


def compress(raw: bytes) -> bytes:
    if zstandard is not None:
        return protocol.CODEC_ZSTD + bytes(zstandard.ZstdCompressor(level=ZSTD_LEVEL).compress(raw))
    return protocol.CODEC_ZLIB + zlib.compress(raw, 1)


def decompress(blob: bytes) -> bytes:
    codec, body = blob[:1], blob[1:]
    if codec == protocol.CODEC_ZSTD and zstandard is not None:
        return bytes(zstandard.ZstdDecompressor().decompress(body))
    if codec == protocol.CODEC_ZLIB:
        return zlib.decompress(body)
    raise ValueError("unknown state codec")


def user_names(namespace: dict[str, Any]) -> dict[str, Any]:
    return {name: value for name, value in namespace.items() if not (name.startswith("__") and name.endswith("__"))}


def serialise(namespace: dict[str, Any]) -> tuple[bytes, list[str]]:
    """cloudpickle of the user's names; what cannot be pickled (files, sockets, generators) is left out.

    Pickling runs user objects' __reduce__, which may raise anything, hence the broad catches.
    """
    names = user_names(namespace)
    try:
        return bytes(cloudpickle.dumps(names, protocol=5)), []
    except Exception:  # arbitrary user objects: narrowed to the culprits below
        pass
    skipped = []
    for name, value in names.items():
        try:
            cloudpickle.dumps(value, protocol=5)
        except Exception:  # see above
            skipped.append(f"{name} ({type(value).__name__})")
    kept = {name: value for name, value in names.items() if f"{name} ({type(value).__name__})" not in skipped}
    try:
        return bytes(cloudpickle.dumps(kept, protocol=5)), skipped
    except Exception:  # objects that only fail together (shared unpicklable parts)
        return bytes(cloudpickle.dumps({}, protocol=5)), [*skipped, *sorted(kept)]


class Worker:
    def __init__(self, link: socket.socket, max_state_bytes: int) -> None:
        self.link = link
        self.max_state_bytes = max_state_bytes
        self.module = types.ModuleType("__main__")
        self.module.__dict__.update(__builtins__=builtins, __file__=protocol.SCRIPT_PATH)
        sys.modules["__main__"] = self.module

    @property
    def namespace(self) -> dict[str, Any]:
        return self.module.__dict__

    def serve(self) -> None:
        self.rehearse()
        self.link.sendall(protocol.encode(protocol.Ready(os.getpid())))
        user_handler = reap_between_calls()
        while True:
            request = read_message(self.link, protocol.FrameDecoder(protocol.frame_cap(self.max_state_bytes)))
            if isinstance(request, protocol.Exec):
                set_sigchld(signal.SIG_DFL)  # the program's status is for run_program to wait for
                answer = run_program(request)
            elif isinstance(request, protocol.Run):
                set_sigchld(user_handler)  # during a call, its children are the code's own to wait for
                answer = self.handle(request)
            else:
                return
            user_handler = reap_between_calls()
            self.link.sendall(protocol.encode(answer))

    def rehearse(self) -> None:
        """Walk both call paths once before saying ready. A new worker shares its memory with the
        zygote: the first write to each page copies it and the first run of each code page maps it,
        thousands of faults that would otherwise land in the first call. Here they land while the
        worker is prepared, between calls. Nothing of it stays: an empty program leaves the
        namespace as it was, and the throwaway child is reaped."""
        protocol.encode(self.handle(protocol.Run("", b"pass", (), protocol.Save.NEVER, None)))
        with contextlib.suppress(OSError):
            os.waitpid(kernel.spawn_as_new([REHEARSAL_PROGRAM], []), 0)

    def handle(self, request: protocol.Run) -> protocol.Done:
        if request.state is not None:
            self.restore(request.state)
        sys.argv = [protocol.SCRIPT_PATH, *request.args]
        exit_code, failed = self.execute(request.code.decode())
        flush_streams()
        done = protocol.Done(request.call, exit_code, failed)
        if request.save is protocol.Save.ALWAYS or (request.save is protocol.Save.ON_SUCCESS and not failed):
            return self.capture(done)
        return done

    def restore(self, blob: bytes) -> None:
        try:
            self.namespace.update(cloudpickle.loads(decompress(blob)))
        except Exception as error:  # unpickling runs arbitrary __setstate__ code
            sys.stderr.write(f"Could not restore the session's variables: {type(error).__name__}: {error}\n")

    def capture(self, done: protocol.Done) -> protocol.Done:
        raw, skipped = serialise(self.namespace)
        blob = compress(raw)
        done = dataclasses.replace(done, state_raw_bytes=len(raw), state_skipped=tuple(skipped))
        if len(blob) > self.max_state_bytes:
            return dataclasses.replace(done, state_too_large=len(blob))
        return dataclasses.replace(done, state=blob)

    def execute(self, code: str) -> tuple[int, bool]:
        """Run the code; returns (exit code, whether it raised). User code may raise anything."""
        # Directories on sys.path that were missing in the zygote (a session's installed packages,
        # put in place by the API before this call) are cached as "nothing here": look again.
        importlib.invalidate_caches()
        try:
            run_code(code, self.namespace)
        except SystemExit as stop:
            return exit_status(stop), False
        except BaseException as error:  # the boundary between user code and the server
            print_user_traceback(error)
            return 1, True
        return 0, False


def run_program(request: protocol.Exec) -> protocol.Done:
    """Start the program as a new process (kernel.spawn_as_new), wait until it ends and report its
    status; a program that cannot be started ends as a shell's command that is not found."""
    try:
        pid = kernel.spawn_as_new(list(request.argv), list(request.environment))
    except OSError as error:
        os.write(2, f"{request.argv[0]}: {error.strerror}\n".encode())
        return protocol.Done(request.call, COMMAND_NOT_RUN, failed=False)
    _, status = os.waitpid(pid, 0)
    return protocol.Done(request.call, os.waitstatus_to_exitcode(status), failed=False)


def reap_children(signum: int = 0, frame: object = None) -> None:
    """Collect every exited child without blocking (user code's, killed by the API after a call)."""
    while True:
        try:
            pid, _ = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return


def reap_between_calls() -> Any:
    """From now until the next call, children that exit are reaped at once: the API kills the
    call's leftovers after the worker reports, and each unreaped zombie would hold a slot of the pids
    limit. Returns the SIGCHLD handler user code had set, to put back for the next call."""
    previous = set_sigchld(reap_children)
    reap_children()  # those that exited before the handler was in place
    return previous


def set_sigchld(handler: Any) -> Any:
    """Install a SIGCHLD handler and return the one it replaced (SIG_DFL if not Python's)."""
    try:
        previous = signal.signal(signal.SIGCHLD, handler)
    except (OSError, TypeError, ValueError):  # a handler user code left that cannot be put back
        previous = signal.signal(signal.SIGCHLD, signal.SIG_DFL)
    return previous if previous is not None else signal.SIG_DFL


def run_code(code: str, namespace: dict[str, Any]) -> None:
    """Execute like a script, then echo a trailing expression's value as the interactive REPL does."""
    linecache.cache[protocol.SCRIPT_PATH] = (len(code), None, code.splitlines(True), protocol.SCRIPT_PATH)
    tree = ast.parse(code, protocol.SCRIPT_PATH, "exec")
    trailing = tree.body[-1] if tree.body else None
    if isinstance(trailing, ast.Expr):
        tree.body.pop()
    exec(compile(tree, protocol.SCRIPT_PATH, "exec"), namespace)
    if isinstance(trailing, ast.Expr):
        value = eval(compile(ast.Expression(trailing.value), protocol.SCRIPT_PATH, "eval"), namespace)
        sys.displayhook(value)


def exit_status(stop: SystemExit) -> int:
    if stop.code is None or isinstance(stop.code, int):
        return stop.code or 0
    sys.stderr.write(f"{stop.code}\n")  # what the interpreter prints for sys.exit("message")
    return 1


def print_user_traceback(error: BaseException) -> None:
    """The traceback a one-shot run would print: the server's own frames are dropped."""
    tb = error.__traceback__
    while tb is not None and tb.tb_frame.f_code.co_filename != protocol.SCRIPT_PATH:
        tb = tb.tb_next
    traceback.print_exception(type(error), error, tb, file=sys.stderr)


def flush_streams() -> None:
    for stream in (sys.stdout, sys.stderr, sys.__stdout__, sys.__stderr__):
        if stream is None:
            continue
        try:
            stream.flush()
        except (OSError, ValueError):
            pass  # user code closed or replaced the stream; its output is its own business


def text_stream(fd: int) -> io.TextIOWrapper:
    """Like a one-shot run under PYTHONUNBUFFERED: every write reaches the pipe at once."""
    raw = io.FileIO(fd, "w", closefd=False)
    return io.TextIOWrapper(raw, encoding="utf-8", errors="backslashreplace", line_buffering=True, write_through=True)


def place_descriptors(worker_fds: list[int]) -> None:
    """The link, stdout and stderr the zygote received become fds 3, 1 and 2; stdin is /dev/null;
    nothing else stays open. Moved above the targets first, so no fd is overwritten before use."""
    link, stdout, stderr = (fcntl.fcntl(fd, fcntl.F_DUPFD_CLOEXEC, FD_PARKING) for fd in worker_fds)
    null = os.open("/dev/null", os.O_RDONLY)
    for target, fd in ((0, null), (1, stdout), (2, stderr)):
        os.dup2(fd, target)  # inheritable: user subprocesses share the call's stdout and stderr
    os.dup2(link, protocol.WORKER_LINK_FD, inheritable=False)
    os.closerange(protocol.WORKER_LINK_FD + 1, os.sysconf("SC_OPEN_MAX"))
    sys.stdin = io.TextIOWrapper(io.FileIO(0, "r", closefd=False), encoding="utf-8")
    # sys.__stdout__/__stderr__ stay the zygote's objects: they write to the same fds 1 and 2.
    sys.stdout = text_stream(1)
    sys.stderr = text_stream(2)


def point_matplotlib_home() -> None:
    """The zygote imported matplotlib with a host cache dir; from here on it is the job's home."""
    matplotlib = sys.modules.get("matplotlib")
    configdir = os.environ.get("MPLCONFIGDIR")
    if matplotlib is not None and configdir:
        for name in ("get_configdir", "get_cachedir"):
            setattr(matplotlib, name, lambda: configdir)


def become_worker(worker_fds: list[int], filters: list[kernel.Filter], max_state_bytes: int) -> None:
    """In the forked, isolated child: tidy the process up as a fresh interpreter would be, then serve."""
    os.setsid()
    place_descriptors(worker_fds)
    link = socket.socket(fileno=protocol.WORKER_LINK_FD)
    faulthandler.enable(file=sys.stderr)  # a segfault leaves a Python traceback in the call's stderr
    os.chdir(WORK_DIR)
    # The zygote runs isolated (-I); a worker honours PYTHONPATH as `python3 main.py` in the sandbox would.
    extra = [entry for entry in os.environ.get("PYTHONPATH", "").split(os.pathsep) if entry]
    sys.path = [CODE_DIR, *extra, *(entry for entry in sys.path[1:] if entry)]
    point_matplotlib_home()
    kernel.install_seccomp_filters(filters)
    Worker(link, max_state_bytes).serve()

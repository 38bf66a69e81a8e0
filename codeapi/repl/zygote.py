"""The zygote: one interpreter with the data stack imported, forked into each REPL jail.

Importing numpy, pandas, matplotlib, scipy and scikit-learn costs 1.5-2 s of CPU; forking a process
that already did it costs a few milliseconds and shares its pages copy-on-write. The zygote runs on
the host as root (it needs setns) but never runs user code. For each jail the API sends a pidfd of
the jail's init (nsjail's first process), the worker's socket to the API and its stdout and stderr
pipes. The zygote forks the worker straight into the jail's pid namespace (setns(CLONE_NEWPID)
affects only children), and the worker, while still root:

1. joins the jail's cgroups (memory, pids, cpu: the same limits as the init),
2. copies the init's rlimits and nice level (what nsjail set for the jail),
3. enters the init's other namespaces at once (user, mount, net, ipc, uts, cgroup),
4. drops the capability bounding set, becomes the jail's uid and clears every capability,
5. sets no_new_privs, closes every descriptor it does not need and installs the same compiled
   seccomp filters as the init (read from the first jail's init once with ptrace), then serves.

Its environment is the zygote's, which the API set to exactly the sandbox environment. Workers are
the zygote's children; it reaps them and reports each one's exit status to the API.
"""

from __future__ import annotations

import contextlib
import gc
import importlib
import os
import resource
import selectors
import signal
import socket
import sys

from codeapi.repl import kernel, protocol, server

# Imported once here so that no worker pays for them; the list covers what generated analysis code
# reaches for first. Anything else is imported by the worker on demand, as in a one-shot run.
PRELOAD = (
    "numpy",
    "pandas",
    "matplotlib",
    "matplotlib.pyplot",
    "scipy",
    "scipy.stats",
    "scipy.optimize",
    "sklearn",
    "sklearn.linear_model",
    "sklearn.model_selection",
    "sklearn.preprocessing",
    "seaborn",
    "PIL.Image",
    "openpyxl",
    "cloudpickle",
    "zstandard",
)
MESSAGE_BYTES = 65536
JAIL_INIT_PID = 1  # the jail's init, as seen from inside the jail's pid namespace
SPAWN_FDS = 4  # the init's pidfd, then the worker's link, stdout and stderr
RLIMITS = tuple(value for name, value in vars(resource).items() if name.startswith("RLIMIT_"))


def preload(mpl_dir: str) -> None:
    """Import the data stack. matplotlib reads its font cache from a root-only copy here; the
    workers point it at their own home (server.point_matplotlib_home). Imports may set variables
    (scikit-learn sets KMP_*): afterwards the environment is exactly the sandbox's again."""
    sandbox_env = dict(os.environ)
    os.environ["MPLCONFIGDIR"] = mpl_dir
    importlib.import_module("matplotlib").use("Agg")
    for name in PRELOAD:
        importlib.import_module(name)
    os.environ.clear()
    os.environ.update(sandbox_env)
    # Objects that exist now are never collected, so the collector never writes to (and thereby
    # un-shares) the pages the workers inherit.
    gc.collect()
    gc.freeze()
    # Forking copies a page table entry per 4 KiB page of the ~145 MB heap; in 2 MiB pages the same
    # memory needs a 512th of them: the fork costs half the time (docs/performance.md).
    kernel.collapse_into_huge_pages()


def send(control: socket.socket, message: protocol.Control) -> None:
    control.send(protocol.encode_control(message))


def join_cgroups(directories: list[str]) -> None:
    for directory in directories:
        with open(os.path.join(directory, "cgroup.procs"), "w") as procs:
            procs.write("0")  # "the writing process": pids are read in the writer's pid namespace


def copy_limits(pid: int) -> None:
    for limit in RLIMITS:
        resource.setrlimit(limit, resource.prlimit(pid, limit))
    os.setpriority(os.PRIO_PROCESS, 0, os.getpriority(os.PRIO_PROCESS, pid))


def isolate(request: protocol.Spawn, pidfd: int) -> None:
    """Runs in the forked worker, already in the jail's pid namespace, still root on the host."""
    uid = request.uid
    join_cgroups(list(request.cgroups))
    copy_limits(JAIL_INIT_PID)  # rlimit/priority calls take pids of our own (the jail's) pid namespace
    # request.init_pid is a host pid: /proc here is still the host's
    kernel.enter_namespaces(pidfd, kernel.namespace_flags(request.init_pid))
    kernel.drop_capability_bounding_set()
    os.setgroups([])
    os.setresgid(uid, uid, uid)
    os.setresuid(uid, uid, uid)
    kernel.clear_capabilities()
    kernel.prctl(kernel.PR_SET_NO_NEW_PRIVS, 1)


def start_worker(
    request: protocol.Spawn, pidfd: int, worker_fds: list[int], report_fd: int, filters: list[kernel.Filter]
) -> None:
    """The forked child: isolate, report, serve. Never returns."""
    status = 1
    try:
        signal.set_wakeup_fd(-1)
        signal.signal(signal.SIGCHLD, signal.SIG_DFL)
        isolate(request, pidfd)
        os.close(pidfd)
        os.write(report_fd, b"ok")
        os.close(report_fd)
        server.become_worker(worker_fds, filters, request.max_state_bytes)
        status = 0
    except BaseException as error:  # teardown of a forked child: report whatever went wrong, then exit
        with contextlib.suppress(OSError):
            os.write(report_fd, f"error {type(error).__name__}: {error}".encode()[:4000])
    finally:
        os._exit(status)


class Zygote:
    def __init__(self, control: socket.socket) -> None:
        self.control = control
        self.filters: list[kernel.Filter] | None = None
        self.workers: set[int] = set()
        self.own_pid_namespace = os.open("/proc/self/ns/pid", os.O_RDONLY | os.O_CLOEXEC)
        self.selector = selectors.DefaultSelector()

    def spawn(self, request: protocol.Spawn, pidfd: int, worker_fds: list[int]) -> None:
        """Fork the worker; its reply is sent once the worker reports (``report``), so that the
        isolation of several workers overlaps: only the fork itself is serial."""
        if self.filters is None:
            self.filters = kernel.read_seccomp_filters(request.init_pid)
        report_read, report_write = os.pipe()
        # Children are born into the jail's pid namespace (one fork, not two: forking this large
        # process is the expensive part); the zygote itself stays where it is.
        kernel.enter_namespaces(pidfd, kernel.CLONE_NEWPID)
        try:
            child = os.fork()
            if child == 0:
                os.close(report_read)
                self.control.close()
                start_worker(request, pidfd, worker_fds, report_write, self.filters)
        except BaseException:
            os.close(report_read)
            os.close(report_write)
            raise
        finally:
            kernel.enter_namespaces(self.own_pid_namespace, kernel.CLONE_NEWPID)
        os.close(report_write)
        self.workers.add(child)
        self.selector.register(report_read, selectors.EVENT_READ, (request.token, child))

    def report(self, report_read: int, token: str, child: int) -> None:
        self.selector.unregister(report_read)
        with os.fdopen(report_read, "rb") as report:
            outcome = report.read(4096).decode(errors="replace")
        if outcome == "ok":
            send(self.control, protocol.Spawned(token, child))
        else:
            send(self.control, protocol.SpawnFailed(token, outcome or "the worker died while starting"))

    def reap(self) -> None:
        while True:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            if pid in self.workers:
                self.workers.discard(pid)
                send(self.control, protocol.Exited(pid, os.waitstatus_to_exitcode(status)))

    def serve(self) -> None:
        wake_read, wake_write = os.pipe()
        os.set_blocking(wake_write, False)
        signal.signal(signal.SIGCHLD, lambda *_: None)
        signal.set_wakeup_fd(wake_write)
        self.selector.register(self.control, selectors.EVENT_READ)
        self.selector.register(wake_read, selectors.EVENT_READ)
        while True:
            for key, _ in self.selector.select():
                if key.fileobj == wake_read:
                    os.read(wake_read, 4096)
                    self.reap()
                elif key.fileobj == self.control:
                    data, fds, _, _ = socket.recv_fds(self.control, MESSAGE_BYTES, SPAWN_FDS)
                    if not data:
                        return  # the API is gone
                    self.answer(data, fds)
                else:
                    self.report(key.fd, *key.data)

    def answer(self, data: bytes, fds: list[int]) -> None:
        """Fork the requested worker (its reply comes with its report), or reply with the failure."""
        failure: protocol.SpawnFailed | None = None
        try:
            request = protocol.decode_control(data)
            if not isinstance(request, protocol.Spawn) or len(fds) != SPAWN_FDS:
                raise protocol.ProtocolError("bad request")
            try:
                self.spawn(request, fds[0], fds[1:])
            except OSError as error:
                failure = protocol.SpawnFailed(request.token, str(error))
        except protocol.ProtocolError as error:
            failure = protocol.SpawnFailed("", str(error))  # the API learns nothing it waits for
        finally:
            for fd in fds:
                os.close(fd)
        if failure is not None:
            send(self.control, failure)


def main(argv: list[str]) -> int:
    control = socket.socket(fileno=int(argv[1]))
    kernel.prctl(kernel.PR_SET_PDEATHSIG, signal.SIGKILL)  # never outlive the API
    preload(argv[2])
    send(control, protocol.ZygoteReady())
    Zygote(control).serve()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))

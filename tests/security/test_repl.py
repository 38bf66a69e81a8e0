"""The warm Python path: a session's REPL sandbox (a jail whose init is catatonit, plus a worker forked
from the zygote) must be as confined as a one-shot run, and a kept sandbox must not carry one call's
processes into the time after it.

Idle REPL sandboxes legitimately stay up between calls, so this module's containment check allows
them, but only as their two processes (init and worker) each.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from codeapi.sandbox import mounts
from tests.conftest import ClientFactory
from tests.security.conftest import (
    LIMITS,
    SETTLE_S,
    UID_POOL_SIZE,
    Hostile,
    execute,
    host_cgroups,
    job_cgroups,
    job_dirs,
    sandbox_processes,
)

REPL_UID = 46001
REPL_PROCESSES = 3  # nsjail, the jail's init (pid 1) and the worker
ZYGOTE_WAIT_S = 120
# Run in a session's own sandbox to undo what a test left there: kill its other processes, reap them.
REAP = (
    "import os, signal\nfor name in os.listdir('/proc'):\n    if name.isdigit() and int(name) not in (1, os.getpid()):\n"
    "        try:\n            os.kill(int(name), signal.SIGKILL)\n        except OSError:\n            pass\n"
    "while True:\n    try:\n        os.wait()\n    except ChildProcessError:\n        break"
)


@pytest.fixture(scope="module")
async def hostile(make_client: ClientFactory, test_root: Path) -> AsyncIterator[Hostile]:
    root = test_root / "security-repl"
    root.mkdir()
    root.chmod(0o711)
    overrides = {
        **LIMITS,
        "REPL_ENABLED": True,
        "SANDBOX_POOL_PY": 1,
        "SANDBOX_UID": REPL_UID,
        "SANDBOX_BASE_DIR": str(root / "sandboxes"),
        "DATA_DIR": str(root / "data"),
    }
    async with make_client(**overrides) as client:
        hostile = Hostile(client, root / "sandboxes", range(REPL_UID, REPL_UID + UID_POOL_SIZE))
        await wait_for_the_warm_path(hostile)
        yield hostile


async def wait_for_the_warm_path(hostile: Hostile) -> None:
    """Until the zygote is up, Python runs one-shot; a REPL worker is not its jail's pid 1."""
    deadline = asyncio.get_running_loop().time() + ZYGOTE_WAIT_S
    while (await execute(hostile, "py", "import os\nprint(os.getpid())"))["stdout"] == "1\n":
        assert asyncio.get_running_loop().time() < deadline, "the warm Python path never came up"
        await asyncio.sleep(0.5)


def is_repl(job_name: str) -> bool:
    return job_name.partition("/")[2].startswith("repl-")


def repl_leftovers(hostile: Hostile) -> dict[str, list[str]]:
    """Anything but idle REPL sandboxes: other job cgroups, extra processes, other directories."""
    hierarchy = host_cgroups()
    jobs = [hierarchy.job(name) for name in job_cgroups()]
    crowded = [f"{job.name}: {job.members()}" for job in jobs if len(job.members()) > REPL_PROCESSES]
    in_repl = {pid for job in jobs if is_repl(job.name) for pid in job.members()}
    return {
        "not a REPL sandbox": [job.name for job in jobs if not is_repl(job.name)],
        "extra processes in a REPL sandbox": crowded,
        "processes outside REPL sandboxes": [
            entry for entry in sandbox_processes(hostile.uids) if int(entry.split(":")[0]) not in in_repl
        ],
        "job dirs": [name for name in job_dirs(hostile.base_dir) if not name.startswith("repl-")],
        "mounts": [str(point) for point in mounts.mounts_below(hostile.base_dir) if "/repl-" not in str(point)],
    }


@pytest.fixture(autouse=True)
async def contained(hostile: Hostile) -> AsyncIterator[None]:
    yield
    assert (await hostile.client.get("/health")).status_code == 200
    deadline = asyncio.get_running_loop().time() + SETTLE_S
    while any((left := repl_leftovers(hostile)).values()) and asyncio.get_running_loop().time() < deadline:
        await asyncio.sleep(0.1)
    assert not any(left.values()), left


async def test_repl_worker_is_as_confined_as_a_one_shot_run(hostile: Hostile) -> None:
    # Expected: the zygote-forked worker has no capabilities, no_new_privs, seccomp, a pool uid and
    # no way to make new namespaces, like any one-shot program.
    code = (
        "import os, subprocess\nstatus = dict(line.split(':\\t') for line in open('/proc/self/status').read().splitlines()"
        " if ':\\t' in line)\nprint(status['CapEff'], status['CapBnd'], status['NoNewPrivs'], status['Seccomp'], os.getuid())\n"
        "print(subprocess.run(['unshare', '-U', 'true'], capture_output=True).returncode)"
    )
    body = await execute(hostile, "py", code)
    caps, bounding, no_new_privs, seccomp, uid, unshare = body["stdout"].split()
    assert (caps, bounding, no_new_privs, seccomp) == ("0000000000000000", "0000000000000000", "1", "2")
    assert int(uid) in hostile.uids
    assert unshare != "0"


async def test_repl_worker_has_no_network(hostile: Hostile) -> None:
    # Expected: the worker joined the jail's empty network namespace: Redis on the host is refused.
    code = "import socket\ntry:\n    socket.create_connection(('127.0.0.1', 6379), timeout=2)\nexcept OSError as e:\n    print(type(e).__name__)"
    body = await execute(hostile, "py", code)
    assert body["stdout"] == "ConnectionRefusedError\n"


async def test_repl_worker_sees_only_its_own_jail(hostile: Hostile) -> None:
    # Expected: /proc shows the jail's init and worker (and their children), not the zygote,
    # the API or other sessions' workers; the filesystem is the usual minimal view.
    code = "import os\nprint(len([p for p in os.listdir('/proc') if p.isdigit()]), os.path.exists('/etc/shadow'))"
    body = await execute(hostile, "py", code)
    count, shadow = body["stdout"].split()
    assert int(count) <= 3
    assert shadow == "False"


async def test_repl_sessions_do_not_share_variables(hostile: Hostile) -> None:
    # Expected: a variable set in one session's interpreter is not visible in another session.
    first = await execute(hostile, "py", "secret_token = 'session-a-only'\nprint('set')")
    second = await execute(hostile, "py", "print(globals().get('secret_token'))")
    assert first["session_id"] != second["session_id"]
    assert second["stdout"] == "None\n"


async def test_repl_worker_cannot_touch_the_jails_init(hostile: Hostile) -> None:
    # Expected: ptrace is denied and SIGKILL to the jail's init from inside is ignored by the
    # kernel; the next call still works.
    code = (
        "import ctypes, os, signal\nlibc = ctypes.CDLL(None, use_errno=True)\n"
        "print(libc.ptrace(16, 1, 0, 0), ctypes.get_errno())\nos.kill(1, signal.SIGKILL)\nprint('alive')"
    )
    body = await execute(hostile, "py", code)
    assert body["stdout"] == "-1 1\nalive\n"
    again = await execute(hostile, "py", "print('next')", session_id=body["session_id"])
    assert again["stdout"] == "next\n"


async def test_repl_fork_bomb_is_contained_while_another_session_runs(hostile: Hostile) -> None:
    # Expected: the jail's pids limit stops the bomb; another session's call still succeeds. (The
    # bomb reaps its children itself, so the count it prints is its own; the API would kill them
    # anyway once the call ends, see the tests below.)
    bomb = (
        "import os, time\nkids = 0\ntry:\n    while True:\n        if os.fork() == 0:\n            time.sleep(1)\n"
        "            os._exit(0)\n        kids += 1\nexcept OSError:\n    print('stopped', kids)\n" + REAP
    )
    attacked, canary = await asyncio.gather(
        execute(hostile, "py", bomb, timeout=4000), execute(hostile, "py", "print(6 * 7)")
    )
    assert canary["stdout"] == "42\n"
    assert attacked["stdout"].startswith("stopped") or "TimeoutError" in attacked["stderr"]


async def test_repl_memory_bomb_is_stopped_and_the_session_recovers(hostile: Hostile) -> None:
    # Expected: the worker is held to the jail's memory cgroup; the session's next call works.
    body = await execute(hostile, "py", "blocks = []\nwhile True:\n    blocks.append(bytearray(16 << 20))")
    assert "memory" in body["stderr"].lower()
    again = await execute(hostile, "py", "print('recovered')", session_id=body["session_id"])
    assert again["stdout"] == "recovered\n"


async def test_repl_output_flood_is_capped(hostile: Hostile) -> None:
    # Expected: the API caps the worker's output pipes like the one-shot runner.
    body = await execute(hostile, "py", "import os\nwhile True:\n    os.write(1, b'z' * 65536)")
    assert len(body["stdout"]) <= 64 * 1024
    assert "OutputLimitExceeded" in body["stderr"]


async def test_repl_writes_to_inherited_sockets_do_not_forge_results(hostile: Hostile) -> None:
    # Expected: whatever descriptors the worker holds, writing garbage and fake frames to them
    # cannot make the API misbehave: the response is this call's own, and the API stays healthy.
    code = (
        "import os\nfor name in os.listdir('/proc/self/fd'):\n    fd = int(name)\n    if fd > 2:\n        try:\n"
        '            os.write(fd, b\'\\x00\\x00\\x00\\x10\\xff\\xff\\xff\\xff{"type": "result"}\' * 1000)\n'
        "        except OSError:\n            pass\nprint('wrote')"
    )
    body = await execute(hostile, "py", code)
    assert body["stdout"] in ("wrote\n", "")
    after = await execute(hostile, "py", "print('clean')")
    assert after["stdout"] == "clean\n"


def zombies(hostile: Hostile) -> list[str]:
    return [entry for entry in sandbox_processes(hostile.uids) if entry.split(": ", 1)[1].startswith("''")]


async def assert_only_the_kept_sandboxes_remain(hostile: Hostile) -> None:
    """No process of an ended call is left, not even as a zombie (polled: the kills settle)."""
    deadline = asyncio.get_running_loop().time() + SETTLE_S
    while True:
        left = {"extra": repl_leftovers(hostile)["extra processes in a REPL sandbox"], "zombies": zombies(hostile)}
        if not any(left.values()) or asyncio.get_running_loop().time() > deadline:
            break
        await asyncio.sleep(0.1)
    assert not any(left.values()), left


async def test_repl_background_process_does_not_outlive_the_call(hostile: Hostile) -> None:
    # Expected: a process started in the background ends with the call, as in a one-shot run;
    # otherwise a kept sandbox burns CPU (or holds memory) for minutes after the request. The
    # killed child is reaped too: no zombie is left holding a slot of the pids limit.
    code = (
        "import os\nif os.fork() == 0:\n    os.execv('/bin/sh', ['sh', '-c', 'while :; do :; done'])\nprint('started')"
    )
    body = await execute(hostile, "py", code)
    try:
        assert body["stdout"] == "started\n"
        await assert_only_the_kept_sandboxes_remain(hostile)
    finally:
        await execute(hostile, "py", REAP, session_id=body["session_id"])


async def test_repl_daemons_and_popen_children_end_with_the_call_and_the_session_goes_on(hostile: Hostile) -> None:
    # Expected: a Popen child, a daemonised double fork (re-parented to the jail's init) and a
    # setsid'd fork are all killed when the call ends; the session's variables and its next calls
    # are untouched, and a child started in a later call runs for that call's whole length.
    code = (
        "import os, subprocess, time\nsleeper = subprocess.Popen(['sleep', '300'])\n"
        "if os.fork() == 0:\n    os.setsid()\n    if os.fork() == 0:\n        time.sleep(300)\n    os._exit(0)\n"
        "if os.fork() == 0:\n    os.setsid()\n    time.sleep(300)\n    os._exit(0)\n"
        "time.sleep(0.2)\nkept = 'still here'\nprint(len([p for p in os.listdir('/proc') if p.isdigit()]))"
    )
    body = await execute(hostile, "py", code)
    session = body["session_id"]
    try:
        assert int(body["stdout"]) >= 5  # init, worker, sleep, daemon, setsid'd child
        await assert_only_the_kept_sandboxes_remain(hostile)
        again = await execute(
            hostile,
            "py",
            "import os, subprocess\nprint(kept, len([p for p in os.listdir('/proc') if p.isdigit()]))\n"
            "print(subprocess.run(['sh', '-c', 'sleep 0.3; echo child'], capture_output=True, text=True).stdout)",
            session_id=session,
        )
        assert again["session_id"] == session
        assert again["stdout"] == "still here 2\nchild\n\n"
    finally:
        await execute(hostile, "py", REAP, session_id=session)


async def test_repl_exited_children_do_not_pile_up_as_zombies(hostile: Hostile) -> None:
    # Expected: children that exit are reaped by the end of the call; unreaped, each one holds a
    # slot of the session's pids limit for as long as the sandbox is kept.
    body = await execute(hostile, "py", "import os\nfor _ in range(5):\n    if os.fork() == 0:\n        os._exit(0)")
    try:
        await assert_only_the_kept_sandboxes_remain(hostile)
        again = await execute(
            hostile,
            "py",
            "import os\nprint(len([p for p in os.listdir('/proc') if p.isdigit()]))",
            session_id=body["session_id"],
        )
        assert again["stdout"] == "2\n"
    finally:
        await execute(hostile, "py", REAP, session_id=body["session_id"])


# A thread left running by the first call: once the next call starts (the worker sets sys.argv for
# it), it writes a well-formed completion for that call to the worker's link, naming the call as a
# counter would ("2"), in the hope the API takes it for the worker's report.
FORGE_NEXT_COMPLETION = """
import json, os, struct, sys, threading, time
kept = "yes"
def forge():
    seen = sys.argv
    while sys.argv is seen:
        time.sleep(0.005)
    header = json.dumps({"type": "done", "id": "2", "call": "2", "exit_code": 0, "failed": False, "blobs": []})
    os.write(3, struct.pack(">II", len(header), 0) + header.encode())
threading.Thread(target=forge, daemon=True).start()
"""


async def test_repl_a_leftover_thread_cannot_complete_the_next_call(hostile: Hostile) -> None:
    # Expected: the thread dies with its call (the next call runs in a new worker), so the next call
    # runs to its end, is not ended early by a forged completion, and finds the saved variables.
    first = await execute(hostile, "py", FORGE_NEXT_COMPLETION)
    victim = "import time\nprint('started', flush=True)\ntime.sleep(2)\nprint(kept)"
    second = await execute(hostile, "py", victim, session_id=first["session_id"])
    assert (second["stdout"], second["stderr"]) == ("started\nyes\n", "")


PROBE_MEMORY = """
import os, subprocess
def access(pid):
    try:
        first = open(f"/proc/{pid}/maps").readline()
        start = int(first.split("-")[0], 16)
        with open(f"/proc/{pid}/mem", "rb") as memory:
            memory.seek(start)
            memory.read(16)
        return "readable"
    except OSError as error:
        return type(error).__name__
child = subprocess.Popen(["sleep", "30"])
forked = os.fork()
if forked == 0:
    import time
    time.sleep(30)
    os._exit(0)
print(access(1), access(os.getpid()), access(child.pid), access(forked))
child.kill()
os.kill(forked, 9)
"""


async def test_repl_the_jails_init_and_the_worker_memory_cannot_be_read(hostile: Hostile) -> None:
    # Expected: the jail's init (which outlives every call) and the worker (which holds the zygote's
    # memory) cannot be read or written through /proc/<pid>/mem by user code or its children.
    # A child started from a program file (sleep) is the user's own program: readable, as anywhere.
    body = await execute(hostile, "py", PROBE_MEMORY)
    assert body["stdout"].split() == ["PermissionError", "PermissionError", "readable", "PermissionError"]


async def test_repl_worker_sees_itself_at_the_root_of_every_cgroup_hierarchy(hostile: Hostile) -> None:
    # Expected: the worker joined the jail's cgroup namespace, made at the job's cgroup: no API pid,
    # no job id, no host path in /proc/self/cgroup.
    body = await execute(hostile, "py", "print(open('/proc/self/cgroup').read())")
    lines = body["stdout"].strip().splitlines()
    assert lines and all(line.split(":", 2)[2] == "/" for line in lines), lines

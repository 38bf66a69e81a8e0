"""Every warm sandbox is isolated like a one-shot run, and no session sees another's anything."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

import httpx

from codeapi.repl.jail import jailed_child, pid_namespace, pid_namespace_members
from tests.conftest import run
from tests.repl.conftest import WarmClientFactory, pool_of

NAMESPACES = ("user", "mnt", "pid", "net", "ipc", "uts", "cgroup")
STATUS_FIELDS = (
    "Uid",
    "Gid",
    "CapEff",
    "CapPrm",
    "CapInh",
    "CapAmb",
    "CapBnd",
    "NoNewPrivs",
    "Seccomp",
    "Seccomp_filters",
)


def status(pid: int) -> dict[str, str]:
    lines = Path(f"/proc/{pid}/status").read_text().splitlines()
    fields = dict(line.split(":", 1) for line in lines if ":" in line)
    return {name: fields.get(name, "").strip() for name in STATUS_FIELDS}


async def test_the_forked_worker_has_exactly_the_jails_isolation(warm: httpx.AsyncClient) -> None:
    """Same namespaces, uid, seccomp filters and cgroups as the jail's nsjail-made init; no capabilities."""
    body = await run(warm, "py", "kept = 1")
    sandbox = pool_of(warm).hot[body["session_id"]]
    assert await sandbox.ready()  # the worker that will run the next call
    init, worker = jailed_child(sandbox.jail.sandbox.process.pid), sandbox.jail.worker_pid
    for name in NAMESPACES:
        assert os.stat(f"/proc/{worker}/ns/{name}").st_ino == os.stat(f"/proc/{init}/ns/{name}").st_ino, name
        assert os.stat(f"/proc/{worker}/ns/{name}").st_ino != os.stat(f"/proc/self/ns/{name}").st_ino, name
    assert status(worker) == status(init)
    assert status(worker)["CapEff"] == "0000000000000000" and status(worker)["NoNewPrivs"] == "1"
    assert int(status(worker)["Seccomp_filters"] or 0) >= 1
    assert Path(f"/proc/{worker}/cgroup").read_text() == Path(f"/proc/{init}/cgroup").read_text()
    assert Path(f"/proc/{worker}/limits").read_text() == Path(f"/proc/{init}/limits").read_text()
    assert sandbox.dirs.uid == int(status(worker)["Uid"].split()[0])


async def test_a_session_sees_nothing_of_another_sessions_state_files_or_processes(warm: httpx.AsyncClient) -> None:
    code_a = (
        "import subprocess, os\nsecret_a = 'alpha'\nopen('a_only.txt', 'w').write('a')\n"
        "open('/tmp/a_tmp', 'w').write('a')\nsubprocess.Popen(['sleep', '300'])\nprint(os.getuid())"
    )
    first = await run(warm, "py", code_a)
    code_b = (
        "import os\nprint('secret_a' in globals(), os.path.exists('a_only.txt'), os.path.exists('/tmp/a_tmp'))\n"
        "print(sorted(p for p in os.listdir('/proc') if p.isdigit()))\nprint(os.getuid())"
    )
    second = await run(warm, "py", code_b)
    assert second["session_id"] != first["session_id"]
    lines = second["stdout"].splitlines()
    assert lines[0] == "False False False"
    assert lines[1] == "['1', '2']"  # the jail's init and this worker: no sleep, no other session
    assert lines[2] != first["stdout"].strip()  # a uid of its own


async def test_concurrent_sessions_in_warm_sandboxes_keep_their_own_values(warm: httpx.AsyncClient) -> None:
    firsts = await asyncio.gather(*(run(warm, "py", f"mine = {index}") for index in range(4)))
    seconds = await asyncio.gather(*(run(warm, "py", "print(mine)", session_id=body["session_id"]) for body in firsts))
    assert [body["stdout"] for body in seconds] == [f"{index}\n" for index in range(4)]


async def test_nothing_in_the_jail_holds_more_than_its_own_descriptors(warm: httpx.AsyncClient) -> None:
    """The worker has stdin, its two output pipes and its link; the API's ends of them, and its
    other connections, are not in the jail at all (the init holds only /dev/null)."""
    body = await run(warm, "py", "import os\nprint(sorted(os.listdir('/proc/self/fd')))")
    assert body["stdout"] == "['0', '1', '2', '3', '4']\n"  # 4: the directory being listed
    sandbox = pool_of(warm).hot[body["session_id"]]
    init = jailed_child(sandbox.jail.sandbox.process.pid)
    targets = {os.readlink(entry) for entry in Path(f"/proc/{init}/fd").iterdir()}
    assert all(target == "/dev/null" or target.startswith("anon_inode:") for target in targets), targets


async def test_warm_python_has_no_network(warm: httpx.AsyncClient) -> None:
    code = (
        "import socket\ntry:\n    socket.create_connection(('1.1.1.1', 53), timeout=2)\n    print('connected')\n"
        "except OSError as error:\n    print('blocked', error.errno)"
    )
    body = await run(warm, "py", code)
    assert body["stdout"].startswith("blocked")


async def test_without_cgroups_a_calls_leftovers_are_still_killed(warm_client: WarmClientFactory) -> None:
    """On a host without the cgroup controllers the jail's processes are found by pid namespace."""
    async with warm_client(SANDBOX_POOL_ENABLED=False) as client:
        pool = pool_of(client)
        pool.launcher.runner.cgroups = None
        body = await run(
            client, "py", "import subprocess\nchild = subprocess.Popen(['sleep', '300'])\nprint('started')"
        )
        assert body["stdout"] == "started\n"
        sandbox = pool.hot[body["session_id"]]
        assert await sandbox.ready()
        jail = sandbox.jail
        namespace = pid_namespace(jail.init_pid)
        assert jail.cgroup is None and namespace is not None
        assert sorted(pid_namespace_members(namespace)) == sorted([jail.init_pid, jail.worker_pid])
        after = await run(client, "py", "import os\nprint(sorted(os.listdir('/proc')))", session_id=body["session_id"])
        assert len([name for name in eval(after["stdout"]) if name.isdigit()]) == 2  # the init and the worker

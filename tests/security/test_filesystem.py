"""What the sandbox can see and touch: its own files, a read-only system, nothing of the host's."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from tests.security.conftest import Hostile, execute

# Mount points a job legitimately has (system view, devices, tmpfs, its own directories).
SANDBOX_MOUNTS = {
    "/", "/proc", "/tmp", "/dev/shm", "/dev/null", "/dev/zero", "/dev/urandom", "/dev/random",
    "/mnt/data", "/code", "/home/sandbox", "/usr", "/etc/alternatives", "/etc/ld.so.cache", "/etc/fonts",
    "/etc/java-17-openjdk", "/etc/php", "/etc/R", "/etc/ldc2.conf", "/etc/passwd", "/etc/group", "/etc/hosts",
    "/etc/ImageMagick-6", "/etc/ssl/certs",
    "/opt/python",
}  # fmt: skip


async def test_proc_1_root_is_the_sandbox_itself(hostile: Hostile) -> None:
    # Expected: pid 1 is the job's own program (private pid namespace), so /proc/1/root leads
    # back into the sandbox: no /root, /var or /etc/shadow of the host behind it.
    body = await execute(hostile, "bash", "cat /proc/1/cmdline | tr '\\0' ' '; echo; ls /proc/1/root")
    first, *entries = body["stdout"].splitlines()
    assert first.startswith("/bin/bash /code/")
    assert not {"root", "var", "srv", "boot"} & set(entries)


async def test_proc_lists_only_the_jobs_processes(hostile: Hostile) -> None:
    # Expected: no host process is visible; the shell, its ls and nothing else.
    body = await execute(hostile, "bash", "ls /proc | grep -c '^[0-9]'")
    assert int(body["stdout"]) <= 3


async def test_mountinfo_shows_only_the_sandbox_mounts(hostile: Hostile) -> None:
    # Expected: the mount table holds the sandbox's own view only; no host root or other mounts.
    body = await execute(hostile, "py", "for line in open('/proc/self/mountinfo'):\n    print(line.split()[4])")
    points = set(body["stdout"].split())
    assert points <= SANDBOX_MOUNTS, points - SANDBOX_MOUNTS


async def test_etc_shadow_is_absent(hostile: Hostile) -> None:
    # Expected: only the /etc pieces runtimes need are mounted; shadow is not one of them.
    body = await execute(hostile, "bash", "cat /etc/shadow; ls /etc")
    assert "No such file or directory" in body["stderr"]
    assert "shadow" not in body["stdout"]


async def test_root_home_is_absent(hostile: Hostile) -> None:
    # Expected: /root does not exist in the sandbox.
    body = await execute(hostile, "bash", "ls -la /root")
    assert "No such file or directory" in body["stderr"]


async def test_sys_is_absent(hostile: Hostile) -> None:
    # Expected: no sysfs: no cgroup files, no kernel knobs, no device tree.
    body = await execute(hostile, "bash", "ls /sys/fs/cgroup")
    assert "No such file or directory" in body["stderr"]


async def test_sandbox_base_dir_is_invisible(hostile: Hostile) -> None:
    # Expected: the host directory holding every job (other sessions included) is not mounted.
    body = await execute(hostile, "bash", f"ls {hostile.base_dir}")
    assert "No such file or directory" in body["stderr"]


# The victim's side of a test: it signals from its /mnt/data that its files exist, and the test, from
# the host, tells it when it may end; neither waits a fixed time.
VICTIM_READY = "victim-ready"
VICTIM_RELEASED = "victim-may-end"
VICTIM_START_S = 60


@asynccontextmanager
async def victim_session(hostile: Hostile, setup: str) -> AsyncIterator[None]:
    """Another session runs ``setup`` and stays in its sandbox until the block ends, so whatever it
    made is there for the whole block."""
    code = f"{setup}\ntouch {VICTIM_READY}\nwhile [ ! -e {VICTIM_RELEASED} ]; do sleep 0.05; done"
    victim = asyncio.create_task(execute(hostile, "bash", code))
    data_dir = await victim_data_dir(hostile, victim)
    try:
        yield
    finally:
        (data_dir / VICTIM_RELEASED).touch()
        body = await victim
    assert "TimeoutError" not in body["stderr"], "the victim ended before the test did"


async def victim_data_dir(hostile: Hostile, victim: asyncio.Task[object]) -> Path:
    """The victim job's /mnt/data on the host, once its setup has run."""
    deadline = time.monotonic() + VICTIM_START_S
    while not (ready := list(hostile.base_dir.glob(f"instance-*/*/files/data/{VICTIM_READY}"))):
        assert not victim.done(), victim.result()
        assert time.monotonic() < deadline, "the victim session never started"
        await asyncio.sleep(0.05)
    return ready[0].parent


async def test_other_sessions_files_cannot_be_found(hostile: Hostile) -> None:
    # Expected: while a victim session holds a file with a unique name, a search of the whole
    # tree from another session finds nothing.
    async with victim_session(hostile, "echo secret > victim-marker-5521.txt"):
        body = await execute(hostile, "bash", "find / -name 'victim-marker-5521*' 2>/dev/null; echo searched")
    assert body["stdout"] == "searched\n"


async def test_other_sessions_tmp_is_private(hostile: Hostile) -> None:
    # Expected: each run has its own /tmp; a concurrent run's /tmp file is not there.
    async with victim_session(hostile, "echo secret > /tmp/victim-tmp-8812"):
        body = await execute(hostile, "bash", "ls /tmp")
    assert "victim-tmp-8812" not in body["stdout"]


async def test_tmp_does_not_survive_into_the_next_run_of_the_session(hostile: Hostile) -> None:
    # Expected: /tmp is per run: the same session's next execution starts with an empty /tmp.
    first = await execute(hostile, "bash", "echo left > /tmp/leftover; ls /tmp")
    second = await execute(hostile, "bash", "ls -A /tmp", session_id=first["session_id"])
    assert first["stdout"] == "leftover\n"
    assert second["stdout"] == ""


async def test_usr_is_read_only(hostile: Hostile) -> None:
    # Expected: the system tree is a read-only bind; writing a binary fails with EROFS.
    body = await execute(hostile, "bash", "echo x > /usr/bin/planted; touch /usr/lib/planted")
    assert body["stderr"].count("Read-only file system") == 2


async def test_etc_and_root_are_read_only(hostile: Hostile) -> None:
    # Expected: nothing can be added to /etc or the root of the sandbox.
    body = await execute(hostile, "bash", "echo x > /etc/planted; mkdir /planted; echo x >> /etc/passwd; ls / /etc")
    assert body["stderr"].count("Read-only file system") == 2
    assert "/etc/passwd: Permission denied" in body["stderr"]
    assert "planted" not in body["stdout"]


async def test_code_is_read_only_while_the_program_runs(hostile: Hostile) -> None:
    # Expected: the program cannot rewrite its own source (or a compiled binary) under /code.
    body = await execute(hostile, "bash", "echo 'echo replaced' > /code/main.sh")
    assert "Read-only file system" in body["stderr"]


async def test_proc_sys_is_read_only(hostile: Hostile) -> None:
    # Expected: kernel parameters cannot be changed from inside.
    body = await execute(hostile, "bash", "echo x > /proc/sys/kernel/hostname; echo 0 > /proc/sys/vm/overcommit_memory")
    assert body["stderr"].count("Read-only file system") == 2


async def test_only_four_device_nodes_exist(hostile: Hostile) -> None:
    # Expected: /dev holds null, zero, random, urandom, the private shm and the fd link: no disks,
    # no kmsg, no mem, no tty.
    body = await execute(hostile, "bash", "ls /dev")
    assert set(body["stdout"].split()) == {"fd", "null", "random", "shm", "urandom", "zero"}


async def test_device_nodes_cannot_be_created(hostile: Hostile) -> None:
    # Expected: mknod of a block device needs CAP_MKNOD in the host namespace: EPERM.
    body = await execute(hostile, "bash", "mknod disk b 254 0; echo rc=$?")
    assert "Operation not permitted" in body["stderr"]


async def test_environment_is_the_allow_list(hostile: Hostile) -> None:
    # Expected: no host variables (API_KEY, PATH of the service, ...) leak into the sandbox.
    body = await execute(hostile, "py", "import os\nprint(' '.join(sorted(os.environ)))")
    names = set(body["stdout"].split())
    assert "API_KEY" not in names
    allowed = {"PATH", "HOME", "TMPDIR", "LANG", "LC_ALL", "USER", "MPLBACKEND", "MPLCONFIGDIR"}
    allowed |= {"OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "PYTHONDONTWRITEBYTECODE", "PYTHONUNBUFFERED", "LC_CTYPE"}
    allowed |= {"PIP_INDEX_URL", "PIP_RETRIES", "npm_config_registry", "npm_config_fetch_retries"}  # no network
    assert names <= allowed, names - allowed


async def test_kernel_log_is_denied(hostile: Hostile) -> None:
    # Expected: syslog(2) is blocked by seccomp (EPERM) and /dev/kmsg does not exist.
    body = await execute(hostile, "bash", "dmesg; cat /dev/kmsg")
    assert "Operation not permitted" in body["stderr"]
    assert "No such file or directory" in body["stderr"]

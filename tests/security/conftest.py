"""Hostile programs through the real API and sandbox, on tight limits, with a containment check.

Every test in this package runs against ``hostile``: one app per module with small limits and a
uid range of its own (so nothing another test process runs is mistaken for a leftover). After
each test ``contained`` asserts the service still answers and nothing survived the run: no
process with a sandbox uid, no job cgroup of this process, no job directory or tmpfs mount.
test_isolation_switches.py and test_repl.py override ``hostile`` (and the REPL module also the
check, since warm REPL sandboxes legitimately stay up between calls).
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from codeapi.sandbox import mounts
from codeapi.sandbox.cgroups import Cgroups
from codeapi.sandbox.host import detect_cgroups
from codeapi.wiring.limits import UID_POOL_SIZE
from tests.conftest import ClientFactory

HOSTILE_UID = 42001  # a range no other test process uses (they run on the default 1001)
SETTLE_S = 30.0  # a bound on polls, not a wait: kills settle in milliseconds
LIMITS: dict[str, Any] = {
    # One-shot sandboxes for every language here; the warm Python path has test_repl.py.
    "REPL_ENABLED": False,
    # Far above any run here: the slowest (javac, pip, `find /`) reached 5 s on a busy 2-core machine.
    # A test of the deadline gives its own, shorter timeout.
    "MAX_EXECUTION_TIME": 60,
    "MAX_MEMORY_MB": 256,
    "MAX_PROCESSES": 32,
    "MAX_OUTPUT_KB": 64,
    "MAX_FILE_SIZE_MB": 8,
    "MAX_OUTPUT_FILES": 5,
    "SANDBOX_TMPFS_SIZE_MB": 32,
    "SANDBOX_WORKDIR_SIZE_MB": 64,
}


@dataclass
class Hostile:
    client: httpx.AsyncClient
    base_dir: Path
    uids: range


@pytest.fixture(scope="module")
async def hostile(
    make_client: ClientFactory, test_root: Path, request: pytest.FixtureRequest
) -> AsyncIterator[Hostile]:
    root = test_root / f"security-{request.module.__name__.rsplit('.', 1)[-1]}"
    root.mkdir()
    root.chmod(0o711)
    base_dir = root / "sandboxes"
    overrides = {
        **LIMITS,
        "SANDBOX_UID": HOSTILE_UID,
        "SANDBOX_BASE_DIR": str(base_dir),
        "DATA_DIR": str(root / "data"),
    }
    async with make_client(**overrides) as client:
        yield Hostile(client, base_dir, range(HOSTILE_UID, HOSTILE_UID + UID_POOL_SIZE))


@pytest.fixture(autouse=True)
async def contained(hostile: Hostile) -> AsyncIterator[None]:
    yield
    await assert_contained(hostile)


async def assert_contained(hostile: Hostile) -> None:
    """The service answers and every trace of the finished runs is gone (polled: kills settle)."""
    health = await hostile.client.get("/health")
    assert health.status_code == 200, health.text
    deadline = time.monotonic() + SETTLE_S
    while True:
        leftovers = {
            "processes": sandbox_processes(hostile.uids),
            "cgroups": app_job_cgroups(hostile),
            "job dirs": job_dirs(hostile.base_dir),
            "mounts": [str(point) for point in mounts.mounts_below(hostile.base_dir)],
        }
        if not any(leftovers.values()) or time.monotonic() > deadline:
            break
        await asyncio.sleep(0.1)
    assert not any(leftovers.values()), leftovers


def sandbox_processes(uids: range) -> list[str]:
    """Host processes whose real uid is in the sandbox range, read from /proc on the host."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            status = (entry / "status").read_text()
        except OSError:
            continue  # exited meanwhile
        uid_line = next((line for line in status.splitlines() if line.startswith("Uid:")), "")
        if uid_line and int(uid_line.split()[1]) in uids:
            cgroup = next((line for line in read_or_empty(entry / "cgroup").splitlines() if ":pids:" in line), "")
            command = read_or_empty(entry / "cmdline").replace("\0", " ")[:60]
            found.append(f"{entry.name}: {command!r} in {cgroup}")
    return found


def read_or_empty(path: Path) -> str:
    try:
        return path.read_text()
    except OSError:
        return ""


def job_cgroups(pid: int | None = None) -> list[str]:
    """Job cgroups ("<owner>/<job id>") of the apps in process ``pid`` (this one by default)."""
    return sorted(name for name in host_cgroups().job_names() if owned_by(name, pid or os.getpid()))


def app_job_cgroups(hostile: Hostile) -> list[str]:
    """Job cgroups of the hostile app itself: other apps of this test process (a shared client's warm
    Python sandboxes) keep theirs, under owner directories of their own."""
    app = hostile.client._transport.app  # type: ignore[attr-defined]
    owner = app.state.components.executions.programs.runner.cgroups.owner
    return sorted(name for name in host_cgroups().job_names() if name.startswith(f"{owner}/"))


def owned_by(name: str, pid: int) -> bool:
    """Whether a job cgroup belongs to an app in process ``pid`` (owner "<pid>" or "<pid>.<n>")."""
    return name.partition("/")[0].partition(".")[0] == str(pid)


def host_cgroups() -> Cgroups:
    """The hierarchy the app in this process uses (preparing it again changes nothing)."""
    hierarchy = detect_cgroups()
    hierarchy.prepare()
    return hierarchy


def job_dirs(base_dir: Path) -> list[str]:
    """Job directories in every instance slot under ``base_dir``."""
    return sorted(
        entry.name
        for slot in base_dir.glob("instance-*")
        for entry in slot.iterdir()
        if entry.name not in (".system", ".probe")
    )


async def execute(hostile: Hostile, lang: str, code: str, **extra: Any) -> dict[str, Any]:
    """POST /exec and require a 200: a hostile program is the caller's problem, never a 5xx."""
    response = await hostile.client.post("/exec", json={"lang": lang, "code": code, **extra})
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


async def with_canary(hostile: Hostile, attack: Any) -> tuple[dict[str, Any], dict[str, Any]]:
    """Run an attack and, in another session at the same time, a small program that must succeed."""
    canary_code = "import time\ntime.sleep(0.5)\nprint(sum(range(1000)))"
    attacked, canary = await asyncio.gather(attack, execute(hostile, "py", canary_code))
    assert canary["stdout"] == "499500\n", canary
    assert canary["session_id"] != attacked["session_id"]
    return attacked, canary

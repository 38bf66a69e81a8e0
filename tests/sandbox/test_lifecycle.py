"""API restarts: a graceful stop takes its sandboxes down; a crash leaves orphans the next start reaps."""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable
from pathlib import Path

import httpx

from codeapi.sandbox import mounts
from tests.apiserver import Replica
from tests.conftest import API_KEY
from tests.security.conftest import UID_POOL_SIZE, job_cgroups, job_dirs, sandbox_processes

LIFECYCLE_UID = 44001
UIDS = range(LIFECYCLE_UID, LIFECYCLE_UID + UID_POOL_SIZE)


def start_long_run(replica: Replica) -> None:
    """Start `sleep 600` through the API from a thread; the call fails when the server goes away."""

    def call() -> None:
        try:
            httpx.post(
                f"{replica.url}/exec",
                json={"lang": "bash", "code": "sleep 600"},
                headers={"x-api-key": API_KEY},
                timeout=120,
            )
        except httpx.HTTPError:
            pass

    threading.Thread(target=call, daemon=True).start()
    # Warm REPL sandboxes also run under these uids; wait for the `sleep` itself.
    wait_for(lambda: any("'sleep 600" in entry for entry in sandbox_processes(UIDS)), "the sandbox to start")


def wait_for(condition: Callable[[], bool], what: str, timeout_s: float = 20) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.1)


def nothing_left(base_dir: Path, api_pid: int) -> dict[str, list[str]]:
    return {
        "processes": sandbox_processes(UIDS),
        "cgroups": job_cgroups(api_pid),
        "job dirs": job_dirs(base_dir),
        "mounts": [str(point) for point in mounts.mounts_below(base_dir)],
    }


def test_graceful_stop_takes_running_sandboxes_down(test_root: Path) -> None:
    # Expected: SIGTERM to the API during a run ends the run: no sandbox process, job cgroup,
    # job directory or tmpfs mount outlives the server.
    replica = Replica(test_root / "graceful", {"SANDBOX_UID": LIFECYCLE_UID})
    replica.wait_ready()
    start_long_run(replica)
    replica.stop()
    base_dir = test_root / "graceful" / "sandboxes"
    wait_for(lambda: not any(nothing_left(base_dir, replica.process.pid).values()), "a clean host")


def test_start_up_reaps_what_a_crashed_api_left(test_root: Path) -> None:
    # Expected: SIGKILL to the API orphans its running sandboxes (they would live until nsjail's
    # own time limit); the next start kills them and removes their cgroups, directories and
    # mounts. (The new API's own warm sandboxes are not leftovers: only the old items count.)
    root = test_root / "crash"
    backend: dict[str, object] = {"SANDBOX_UID": LIFECYCLE_UID, "MAX_EXECUTION_TIME": 300}
    crashed = Replica(root, backend)
    crashed.wait_ready()
    start_long_run(crashed)
    os.kill(crashed.process.pid, 9)
    crashed.stop()
    base_dir = root / "sandboxes"
    left = nothing_left(base_dir, crashed.process.pid)
    assert left["processes"] and left["cgroups"] and left["job dirs"] and left["mounts"], left
    shared = {**backend, "SANDBOX_BASE_DIR": str(base_dir), "DATA_DIR": str(root / "data")}
    restarted = Replica(test_root / "crash-restart", shared)
    try:
        restarted.wait_ready()

        def still_there() -> dict[str, list[str]]:
            now = nothing_left(base_dir, crashed.process.pid)
            return {kind: sorted(set(items) & set(now[kind])) for kind, items in left.items()}

        wait_for(lambda: not any(still_there().values()), "the orphans to be reaped", 60)
        assert httpx.get(f"{restarted.url}/health").status_code == 200
    finally:
        restarted.stop()


def test_an_api_killed_while_python_sandboxes_sleep_leaves_none_that_cannot_be_killed(test_root: Path) -> None:
    # Expected: kept Python sandboxes sleep between calls; SIGKILL to the API then (as an OOM kill
    # or `docker kill` would) must not leave any of their processes unkillable. A task frozen by
    # the cgroup-v1 freezer ignores SIGKILL, which kept a killed API container "Up" for ever.
    root = test_root / "killed-asleep"
    crashed = Replica(root, {"SANDBOX_UID": LIFECYCLE_UID})
    crashed.wait_ready()
    for session in range(3):
        body = httpx.post(
            f"{crashed.url}/exec",
            json={"lang": "py", "code": f"kept = {session}"},
            headers={"x-api-key": API_KEY},
            timeout=60,
        ).json()
        assert body["stderr"] == "", body
    os.kill(crashed.process.pid, 9)
    crashed.stop()
    asleep = [int(entry.partition(":")[0]) for entry in sandbox_processes(UIDS)]
    assert asleep, "the kept sandboxes should outlive the API until the next start reaps them"
    for pid in asleep:
        try:
            os.kill(pid, 9)
        except ProcessLookupError:
            continue
    wait_for(lambda: not sandbox_processes(UIDS), "every sandbox process to die of SIGKILL", 10)

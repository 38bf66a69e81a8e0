"""A stateful workspace outlives the replica that served it: two `codeapi serve` processes on one Redis and
one S3, driven by @librechat/agents 3.9.2's tools as LibreChat's stateful agents use them (its prewarm
call included). Replica A serves a turn and is killed with SIGKILL; replica B continues the workspace
from its checkpoint; A started again on the same host continues it from B's changes and reaps what the
killed A left."""

from __future__ import annotations

import asyncio
import os
import secrets
import signal
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from bench.backends import SeaweedServer
from codeapi.config.groups import S3Settings
from codeapi.sandbox import mounts
from codeapi.storage import keys
from codeapi.storage.blobs.s3 import S3BlobStore
from tests.apiserver import Replica
from tests.conftest import shared_backend
from tests.librechat.conftest import KID, KeyPair, key_pair, run_client, stateful_hint
from tests.programmatic.test_librechat_client import librechat_agents

__all__ = ["key_pair", "librechat_agents"]

WORKSPACES_REDIS_DB = 11
FIRST_UID = 1001 + 128 * 12  # a range of its own, away from the other suites' replicas
MASTER_KEY = "master-key-workspaces-0123456789"
PROCESS_EXIT_WAIT_S = 20


@pytest.fixture
def settings(test_root: Path, api_seaweed: SeaweedServer, key_pair: KeyPair) -> dict[str, Any]:
    """Two processes on one host, as in test_two_replicas: one SANDBOX_BASE_DIR, a slot each. Tokens as
    LibreChat signs them; the stateful profile and its lifetimes are the defaults."""
    return {
        **shared_backend(api_seaweed, redis_db=WORKSPACES_REDIS_DB),
        "SANDBOX_BASE_DIR": str(test_root / f"workspaces-sandboxes-{secrets.token_hex(3)}"),
        "SANDBOX_UID": FIRST_UID,
        "SANDBOX_POOL_WARMUP_ON_STARTUP": "false",
        "CODEAPI_JWT_PUBLIC_KEY": key_pair.codeapi["CODEAPI_JWT_PUBLIC_KEY"],
        "CODEAPI_JWT_KID": KID,
        "MASTER_API_KEY": MASTER_KEY,
    }


class Replicas:
    """The replicas a test starts: each stopped afterwards, and what a killed one left running killed."""

    def __init__(self, root: Path, settings: dict[str, Any]) -> None:
        self.root = root
        self.settings = settings
        self.started: list[Replica] = []
        self.orphans: set[Process] = set()

    def launch(self, name: str) -> Replica:
        replica = Replica(self.root / f"{name}-{secrets.token_hex(3)}", self.settings)
        self.started.append(replica)
        replica.wait_ready()
        return replica

    def kill(self, replica: Replica) -> set[Process]:
        """SIGKILL, as an OOM kill or a lost node ends it: no shutdown; the processes it leaves behind."""
        left = descendants(replica.process.pid)
        self.orphans |= left
        replica.process.kill()
        replica.process.wait(timeout=PROCESS_EXIT_WAIT_S)
        return left

    def close(self) -> None:
        for replica in self.started:
            replica.stop()
        base_dir = Path(self.settings["SANDBOX_BASE_DIR"])
        if alive(self.orphans) or mounts.mounts_below(base_dir):
            # A killed replica's leftovers that no later start reaped (the test failed before): a start
            # on the same host reaps every dead instance's processes, job cgroups, mounts and directories.
            reaper = Replica(self.root / f"reaper-{secrets.token_hex(3)}", self.settings)
            try:
                reaper.wait_ready()
            finally:
                reaper.stop()
        kill_all(self.orphans)


@pytest.fixture
def replicas(test_root: Path, settings: dict[str, Any]) -> Iterator[Replicas]:
    started = Replicas(test_root, settings)
    try:
        yield started
    finally:
        started.close()


Process = tuple[int, int]  # pid and start time: a pid the kernel gave to another process meanwhile never matches


def stat_fields(pid: int) -> list[str] | None:
    """/proc/<pid>/stat after the command name (state, ppid, ...); None once the process is gone."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    except OSError:
        return None


def descendants(pid: int) -> set[Process]:
    """Every process below ``pid`` now."""
    children: dict[int, list[Process]] = {}
    for entry in Path("/proc").iterdir():
        fields = stat_fields(int(entry.name)) if entry.name.isdigit() else None
        if fields is not None:
            children.setdefault(int(fields[1]), []).append((int(entry.name), int(fields[19])))
    found: set[Process] = set()
    pending = [pid]
    while pending:
        for child in children.get(pending.pop(), []):
            if child not in found:
                found.add(child)
                pending.append(child[0])
    return found


def alive(processes: set[Process]) -> set[Process]:
    """Those still running (not zombies), each the same process as before."""
    living = set()
    for pid, started in processes:
        fields = stat_fields(pid)
        if fields is not None and int(fields[19]) == started and fields[0] != "Z":
            living.add((pid, started))
    return living


def kill_all(processes: set[Process]) -> None:
    for pid, _ in alive(processes):
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            continue
    deadline = time.monotonic() + PROCESS_EXIT_WAIT_S
    while alive(processes) and time.monotonic() < deadline:
        time.sleep(0.1)


def librechat_env(replica: Replica, pair: KeyPair) -> dict[str, str]:
    """LibreChat's .env with per-user tokens, its stateful route at ``replica``."""
    url = f"{replica.url}/v1"
    return {**pair.librechat, "LIBRECHAT_CODE_BASEURL": url, "LIBRECHAT_CODE_BASEURL_STATEFUL": url}


def turn(
    agents: Path, replica: Replica, pair: KeyPair, user: dict[str, str], hint: str, *calls: dict[str, Any]
) -> list[Any]:
    ran = run_client(agents, librechat_env(replica, pair), user, stateful={"hint": hint}, calls=list(calls))
    results: list[Any] = ran["results"]
    for result in results:
        assert "error" not in result, ran
    return results


def bash(command: str) -> dict[str, Any]:
    return {"tool": "bash_tool", "code": command, "continue": True}


def code(lang: str, source: str) -> dict[str, Any]:
    return {"tool": "execute_code", "lang": lang, "code": source, "continue": True}


PREWARM = {"tool": "prewarm"}


def prewarmed(result: dict[str, Any]) -> tuple[str, str]:
    assert result["prewarm"]["status"] == 200, result
    body = result["prewarm"]["body"]
    return body["runtime_session_id"], body["runtime_status"]


def runtime(result: dict[str, Any]) -> tuple[str, str]:
    return result["artifact"]["runtime_session_id"], result["artifact"]["runtime_status"]


def admin_entry(replica: Replica, runtime_id: str) -> dict[str, Any] | None:
    listing = httpx.get(f"{replica.url}/api/v1/admin/runtime-sessions", headers={"x-api-key": MASTER_KEY}).json()
    entries = [item for item in listing["runtime_sessions"] if item["runtime_session_id"] == runtime_id]
    return entries[0] if entries else None


def checkpoint_keys(seaweed: SeaweedServer, settings: dict[str, Any], runtime_id: str) -> list[str]:
    """The workspace's checkpoint layers in the S3 bucket both replicas use."""
    s3 = S3Settings(
        _env_file=None,  # type: ignore[call-arg]
        endpoint=seaweed.endpoint,
        access_key=settings["S3_ACCESS_KEY"],
        secret_key=settings["S3_SECRET_KEY"],
        bucket=settings["S3_BUCKET"],
        region=settings["S3_REGION"],
    )

    async def listed() -> list[str]:
        blobs = S3BlobStore(s3)
        try:
            return sorted([key async for key in blobs.list_keys(keys.workspace_prefix(runtime_id))])
        finally:
            await blobs.close()

    return asyncio.run(listed())


def test_a_workspace_continues_on_another_replica_after_its_replica_was_killed(
    librechat_agents: Path,
    key_pair: KeyPair,
    replicas: Replicas,
    settings: dict[str, Any],
    api_seaweed: SeaweedServer,
) -> None:
    a, b = replicas.launch("workspace-a"), replicas.launch("workspace-b")
    user = {"id": f"alice-{secrets.token_hex(4)}", "tenantId": "acme"}
    hint = stateful_hint(user["id"])

    # A serves a turn: the prewarm starts the workspace, bash and Python write to it.
    warm, wrote, appended = turn(
        librechat_agents,
        a,
        key_pair,
        user,
        hint,
        PREWARM,
        bash("mkdir -p notes && printf 'from A\\n' > notes/a.txt && printf 'gone' > drop.txt"),
        code("py", "open('notes/a.txt', 'a').write('python on A\\n')"),
    )
    runtime_id, status = prewarmed(warm)
    assert (runtime_id[:3], status) == ("rt_", "new")
    assert runtime(wrote) == runtime(appended) == (runtime_id, "reused")

    # A dies: its kept sandboxes are orphaned.
    left_by_a = replicas.kill(a)

    # The next turn reaches B: the prewarm finds the workspace, Python reads what A's calls wrote,
    # bash changes it, and JavaScript sees bash's change.
    warm_b, read, changed, js = turn(
        librechat_agents,
        b,
        key_pair,
        user,
        hint,
        PREWARM,
        code("py", "print(open('notes/a.txt').read(), end='')"),
        bash("rm drop.txt && printf 'from B\\n' >> notes/a.txt && ls"),
        code("js", "const fs = require('fs'); console.log(fs.readdirSync('.').join(','), fs.existsSync('drop.txt'))"),
    )
    assert prewarmed(warm_b) == (runtime_id, "reused")
    assert read["content"].startswith("stdout:\nfrom A\npython on A"), read
    assert runtime(read) == (runtime_id, "reused")
    assert changed["content"].startswith("stdout:\nnotes"), changed
    assert changed["artifact"]["deleted_files"] == ["drop.txt"]
    assert js["content"].startswith("stdout:\nnotes false"), js
    assert runtime(js) == (runtime_id, "reused")

    # B's checkpoint is all the store holds for it: every layer in S3 is one the record lists.
    entry = admin_entry(b, runtime_id)
    assert entry is not None
    assert entry["usage"]["calls"] == 7
    assert entry["workspace_bytes"] == len("from A\npython on A\nfrom B\n")
    assert len(checkpoint_keys(api_seaweed, settings, runtime_id)) == entry["checkpoint_layers"] > 0

    # A comes back on the same host: it reaps what the killed A left and continues from B's changes.
    assert alive(left_by_a), "the killed replica's sandboxes should outlive it until a start reaps them"
    a_again = replicas.launch("workspace-a-again")
    [back] = turn(
        librechat_agents, a_again, key_pair, user, hint, bash("cat notes/a.txt; test -e drop.txt || echo no-drop")
    )
    assert back["content"].startswith("stdout:\nfrom A\npython on A\nfrom B\nno-drop"), back
    assert runtime(back) == (runtime_id, "reused")
    deadline = time.monotonic() + PROCESS_EXIT_WAIT_S
    while alive(left_by_a) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not alive(left_by_a), "the restarted replica should have reaped the killed one's sandboxes"

    # Ended by an admin on B: no checkpoint is left in S3, and the next call starts afresh.
    ended = httpx.delete(f"{b.url}/api/v1/admin/runtime-sessions/{runtime_id}", headers={"x-api-key": MASTER_KEY})
    assert ended.json() == {"ended": True, "runtime_session_id": runtime_id}
    assert checkpoint_keys(api_seaweed, settings, runtime_id) == []
    assert admin_entry(a_again, runtime_id) is None
    [fresh] = turn(librechat_agents, a_again, key_pair, user, hint, bash("ls | wc -l"))
    assert fresh["content"].startswith("stdout:\n0"), fresh
    assert runtime(fresh) == (runtime_id, "new")

"""Two API processes on one host and one SANDBOX_BASE_DIR: each finds its own slot, uids and cgroups,
and neither's start-up touches the other's live sandboxes; a dead instance's leftovers are reaped; and
two on different base directories still never sandbox under the same uids."""

from __future__ import annotations

import os
import uuid
from pathlib import Path

from codeapi.sandbox.instances import try_lock
from tests.conftest import ClientFactory
from tests.repl.conftest import wait_until_warm
from tests.security.conftest import host_cgroups, job_cgroups

INSTANCES_UID = 46001


async def test_two_apps_on_one_base_dir_keep_to_their_own_slots(make_client: ClientFactory, test_root: Path) -> None:
    root = test_root / f"instances-{uuid.uuid4().hex[:6]}"
    root.mkdir(mode=0o711)
    base_dir = root / "sandboxes"
    shared = {"SANDBOX_UID": INSTANCES_UID, "SANDBOX_BASE_DIR": str(base_dir), "SANDBOX_POOL_PY": 1}
    async with make_client(DATA_DIR=str(root / "data-1"), **shared) as first:
        await wait_until_warm(first)
        kept = (await first.post("/exec", json={"lang": "py", "code": "value = 1"})).json()
        first_jobs = set(job_cgroups())
        first_dirs = {entry.name for entry in (base_dir / "instance-0").iterdir()}
        assert any(name.startswith("repl-") for name in first_dirs), first_dirs
        async with make_client(DATA_DIR=str(root / "data-2"), **shared) as second:
            # The second start swept nothing of the first: its job directories and cgroups are there.
            assert first_dirs <= {entry.name for entry in (base_dir / "instance-0").iterdir()}
            assert first_jobs <= set(job_cgroups())
            second_id = (await second.post("/exec", json={"lang": "bash", "code": "id -u"})).json()
            assert int(second_id["stdout"]) in range(INSTANCES_UID + 64, INSTANCES_UID + 128)
            assert (base_dir / "instance-1" / ".system" / "passwd").is_file()
            again = (
                await first.post(
                    "/exec", json={"lang": "py", "code": "print(value + 1)", "session_id": kept["session_id"]}
                )
            ).json()
            assert again["stdout"] == "2\n"
            first_id = (await first.post("/exec", json={"lang": "bash", "code": "id -u"})).json()
            assert int(first_id["stdout"]) in range(INSTANCES_UID, INSTANCES_UID + 64)
            assert {str(os.getpid()), f"{os.getpid()}.1"} <= host_cgroups().owners()


async def test_a_dead_instances_slot_is_cleaned_by_the_next_start(make_client: ClientFactory, test_root: Path) -> None:
    root = test_root / f"instances-{uuid.uuid4().hex[:6]}"
    root.mkdir(mode=0o711)
    base_dir = root / "sandboxes"
    leftover = base_dir / "instance-3" / "job-of-a-dead-instance"
    leftover.mkdir(parents=True)
    (leftover / "file").write_text("left behind")
    lock = try_lock(leftover.parent)
    assert lock is not None  # nobody holds it: provably dead
    lock.release()
    async with make_client(SANDBOX_UID=INSTANCES_UID, SANDBOX_BASE_DIR=str(base_dir), REPL_ENABLED=False) as client:
        assert not leftover.exists()
        assert (await client.get("/health")).status_code == 200


async def test_two_apps_on_different_base_dirs_never_share_uids(make_client: ClientFactory, test_root: Path) -> None:
    root = test_root / f"instances-{uuid.uuid4().hex[:6]}"
    root.mkdir(mode=0o711)
    shared = {"SANDBOX_UID": INSTANCES_UID, "REPL_ENABLED": False}
    async with make_client(SANDBOX_BASE_DIR=str(root / "first"), DATA_DIR=str(root / "data-1"), **shared) as first:
        async with make_client(
            SANDBOX_BASE_DIR=str(root / "second"), DATA_DIR=str(root / "data-2"), **shared
        ) as second:
            first_id = (await first.post("/exec", json={"lang": "bash", "code": "id -u"})).json()
            second_id = (await second.post("/exec", json={"lang": "bash", "code": "id -u"})).json()
    assert int(first_id["stdout"]) in range(INSTANCES_UID, INSTANCES_UID + 64)
    assert int(second_id["stdout"]) in range(INSTANCES_UID + 64, INSTANCES_UID + 128)

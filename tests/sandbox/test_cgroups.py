"""Job cgroups on this host's hierarchy: limits, killing, and start-up sweeps that spare live owners."""

from __future__ import annotations

import signal
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from codeapi.sandbox.cgroup_v1 import CgroupsV1
from codeapi.sandbox.cgroup_v2 import CgroupsV2, base_of, event_count
from codeapi.sandbox.cgroups import Cgroups, JobLimits
from codeapi.sandbox.host import detect_cgroups

LIMITS = JobLimits(memory_bytes=64 << 20, processes=8)


# Makes the owner directory and holds its lock, as a live instance does; prints once it holds it.
HOLD_LOCK = (
    "import fcntl, os, sys, time\nos.mkdir(sys.argv[1])\nfcntl.flock(os.open(sys.argv[1], os.O_RDONLY), fcntl.LOCK_EX)\n"
    "print(flush=True)\ntime.sleep(60)"
)


@pytest.fixture
def hierarchy() -> Iterator[Cgroups]:
    """This host's hierarchy with an owner directory of this test's own."""
    found = detect_cgroups()
    found.prepare()
    found.claim()
    yield found
    found.release()


def test_a_job_cgroup_carries_the_memory_limit_without_swap_and_its_process_cap(hierarchy: Cgroups) -> None:
    cgroup = hierarchy.create(f"test-{uuid.uuid4().hex[:8]}", LIMITS)
    assert cgroup.name == f"{hierarchy.owner}/{cgroup.name.split('/')[1]}"
    try:
        dirs = cgroup.worker_dirs()
        if isinstance(hierarchy, CgroupsV1):
            memory, pids, cpu = dirs[:3]
            assert int((memory / "memory.limit_in_bytes").read_text()) == 64 << 20
            assert int((memory / "memory.swappiness").read_text()) == 0
            assert int((cpu / "cpu.cfs_quota_us").read_text()) == int((cpu / "cpu.cfs_period_us").read_text())
        else:
            [memory] = [pids] = dirs
            assert int((memory / "memory.max").read_text()) == 64 << 20
            swap = memory / "memory.swap.max"
            assert not swap.exists() or swap.read_text().strip() == "0"
            assert (memory / "cpu.max").read_text().split() == ["100000", "100000"]
        assert int((pids / "pids.max").read_text()) == 8 + 1  # and nsjail
    finally:
        cgroup.remove()
    assert cgroup.name not in hierarchy.job_names()


def test_removing_a_job_kills_its_stopped_processes(hierarchy: Cgroups) -> None:
    # Kept sandboxes sleep stopped (SIGSTOP) between calls; removing the job must still end them.
    cgroup = hierarchy.create(f"test-{uuid.uuid4().hex[:8]}", LIMITS)
    place = " ".join(f"echo 0 > {path}/cgroup.procs;" for path in cgroup.worker_dirs())
    with subprocess.Popen(["sh", "-c", f"{place} exec sh -c 'while :; do :; done'"]) as spinner:
        try:
            deadline = time.monotonic() + 5
            while spinner.pid not in cgroup.members():
                assert time.monotonic() < deadline
                time.sleep(0.01)
            spinner.send_signal(signal.SIGSTOP)
            cgroup.remove()
            assert spinner.wait(timeout=5) == -9
        finally:
            spinner.kill()
    assert cgroup.name not in hierarchy.job_names()


def test_sweep_removes_only_owner_directories_nobody_holds(hierarchy: Cgroups) -> None:
    # A live instance in another pid namespace cannot be seen by pid: its lock is what spares it.
    # (Both names carry a pid that is not running here.)
    live_owner, dead_owner = f"999999998.{uuid.uuid4().hex[:6]}", f"999999999.{uuid.uuid4().hex[:6]}"
    lock_path = str(hierarchy.parents()[0] / live_owner)
    with (
        subprocess.Popen(["python3", "-c", HOLD_LOCK, lock_path], stdout=subprocess.PIPE) as other_api,
        subprocess.Popen(["sleep", "30"]) as stray,
    ):
        try:
            assert other_api.stdout is not None and other_api.stdout.readline() == b"\n"  # it holds the lock
            for owner in (live_owner, dead_owner):
                for parent in hierarchy.parents():
                    (parent / owner).mkdir(exist_ok=True)
                    hierarchy.enable_children(parent / owner)
            spared = hierarchy.create_job(f"{live_owner}/job", LIMITS)
            orphan = hierarchy.create_job(f"{dead_owner}/job", LIMITS)
            for path in orphan.worker_dirs():
                (path / "cgroup.procs").write_text(str(stray.pid))
            hierarchy.sweep()
            assert stray.wait(timeout=5) == -9
            assert orphan.name not in hierarchy.job_names()
            assert spared.name in hierarchy.job_names()
            assert hierarchy.owner in hierarchy.owners()  # our own, held by us
        finally:
            other_api.kill()
    hierarchy.job(live_owner).remove()


def test_sweep_removes_a_dead_owner_whose_pid_another_process_now_has(hierarchy: Cgroups) -> None:
    """Pids are reused: an unlocked owner directory named after a live pid is still a dead instance's."""
    with subprocess.Popen(["sleep", "30"]) as reused, subprocess.Popen(["sleep", "30"]) as stray:
        try:
            dead_owner = str(reused.pid)
            for parent in hierarchy.parents():
                (parent / dead_owner).mkdir(exist_ok=True)
                hierarchy.enable_children(parent / dead_owner)
            orphan = hierarchy.create_job(f"{dead_owner}/job", LIMITS)
            for path in orphan.worker_dirs():
                (path / "cgroup.procs").write_text(str(stray.pid))
            hierarchy.sweep()
            assert stray.wait(timeout=5) == -9
            assert dead_owner not in hierarchy.owners()
            assert reused.poll() is None  # the process that has the pid now is none of its business
        finally:
            reused.kill()
            stray.kill()


def test_v2_uses_the_parent_of_its_own_leaf_after_a_restart() -> None:
    assert base_of("/") == "/"
    assert base_of("/system.slice/codeapi.service") == "/system.slice/codeapi.service"
    assert base_of("/system.slice/codeapi.service/api") == "/system.slice/codeapi.service"


def test_the_host_hierarchy_is_told_apart_by_the_root(tmp_path: Path) -> None:
    (tmp_path / "unified").mkdir()
    (tmp_path / "unified" / "cgroup.controllers").write_text("")
    assert isinstance(detect_cgroups(tmp_path), CgroupsV1)  # hybrid: the controllers are v1
    (tmp_path / "cgroup.controllers").write_text("cpu memory pids\n")
    assert isinstance(detect_cgroups(tmp_path), CgroupsV2)


def test_v2_reads_one_counter_of_memory_events(tmp_path: Path) -> None:
    events = tmp_path / "memory.events"
    events.write_text("low 0\nhigh 0\nmax 12\noom 2\noom_kill 1\noom_group_kill 0\n")
    assert event_count(events, "oom_kill") == 1
    assert event_count(events, "max") == 12
    assert event_count(tmp_path / "absent", "oom_kill") == 0

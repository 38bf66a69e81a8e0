"""Job cgroups: limits written on the parent, and start-up sweeps that spare live API processes."""

from __future__ import annotations

import os
import subprocess
import uuid

from codeapi.sandbox import cgroups


def test_job_cgroup_carries_the_memory_limit_and_no_swap() -> None:
    cgroups.prepare_parents()
    cgroup = cgroups.create_job_cgroup(f"test-{uuid.uuid4().hex[:8]}", 64 << 20)
    try:
        memory = cgroup.path("memory")
        assert cgroup.name.startswith(f"codeapi/{os.getpid()}.")
        assert int((memory / "memory.limit_in_bytes").read_text()) == 64 << 20
        assert int((memory / "memory.swappiness").read_text()) == 0
        memsw = memory / "memory.memsw.limit_in_bytes"
        assert not memsw.exists() or int(memsw.read_text()) == 64 << 20
    finally:
        cgroups.remove_job_cgroup(cgroup)
    assert not cgroup.path("memory").exists()


def test_owner_alive_tells_live_api_processes_from_dead_ones() -> None:
    with subprocess.Popen(["sleep", "30"]) as live:
        assert cgroups.owner_alive(f"{live.pid}.job")
        live.kill()
        live.wait()
    assert not cgroups.owner_alive(f"{live.pid}.job")
    assert not cgroups.owner_alive(f"{os.getpid()}.job")  # only a dead API's leftovers carry our pid
    assert not cgroups.owner_alive("legacy-name")


def test_sweep_kills_and_removes_a_dead_owners_job_but_spares_a_live_one() -> None:
    cgroups.prepare_parents()
    with subprocess.Popen(["sleep", "30"]) as other_api:
        spared = cgroups.JobCgroup(f"codeapi/{other_api.pid}.{uuid.uuid4().hex[:8]}")
        orphan = cgroups.JobCgroup(f"codeapi/999999999.{uuid.uuid4().hex[:8]}")
        for cgroup in (spared, orphan):
            for controller in cgroups.CONTROLLERS:
                cgroup.path(controller).mkdir()
        with subprocess.Popen(["sleep", "30"]) as stray:
            (orphan.path("pids") / "cgroup.procs").write_text(str(stray.pid))
            cgroups.sweep_orphans()
            assert stray.wait(timeout=5) == -9
        assert not orphan.path("pids").exists()
        assert spared.path("pids").exists()
        cgroups.remove_job_cgroup(spared)
        other_api.kill()

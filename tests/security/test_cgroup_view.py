"""A job's view of the cgroup tree is its own: /proc/self/cgroup names no host layout (API pid, job id)."""

from __future__ import annotations

import os

from tests.security.conftest import Hostile, execute


def host_layout_named(cgroup_lines: str) -> list[str]:
    """Lines that place the process anywhere but at the root of its own cgroup namespace."""
    return [line for line in cgroup_lines.splitlines() if line.split(":", 2)[2] != "/"]


async def test_a_job_sees_itself_at_the_root_of_every_cgroup_hierarchy(hostile: Hostile) -> None:
    body = await execute(hostile, "bash", "cat /proc/self/cgroup; cat /proc/1/cgroup")
    assert body["stdout"].strip()
    assert host_layout_named(body["stdout"]) == []
    assert str(os.getpid()) not in body["stdout"] and "codeapi" not in body["stdout"]

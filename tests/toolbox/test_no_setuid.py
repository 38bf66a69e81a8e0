"""The toolbox adds no privileged program: no file of its Debian packages is set-uid or set-gid
in the sandbox's view (those already in /usr are inert: tests/security/test_privilege.py)."""

from __future__ import annotations

import subprocess
from pathlib import Path

import httpx

from tests.toolbox.conftest import run_ok

APT_LIST = Path(__file__).parents[2] / "scripts" / "toolbox" / "apt.txt"


def toolbox_files() -> set[str]:
    packages = [line.split("#")[0].strip() for line in APT_LIST.read_text().splitlines()]
    listed = subprocess.run(
        ["dpkg-query", "-L", *filter(None, packages)], capture_output=True, text=True, check=True
    ).stdout
    return {line for line in listed.splitlines() if line.startswith("/usr/")}


async def test_no_file_of_the_toolbox_packages_is_setuid_or_setgid_in_the_sandbox(toolbox: httpx.AsyncClient) -> None:
    body = await run_ok(
        toolbox, "bash", "find /usr -xdev -type f \\( -perm -4000 -o -perm -2000 \\) 2>/dev/null\necho DONE"
    )
    privileged = set(body["stdout"].splitlines()[:-1])
    assert privileged, "expected the base system's inert set-uid programs (su, mount) to be found"
    assert not privileged & toolbox_files()

"""SKILL_DEPS_PATH: each session's tree is kept for its later runs, never shared, inspectable and purgeable."""

from __future__ import annotations

import os
import uuid
from pathlib import Path

from codeapi.egress.skilldeps import SkillDeps
from tests.admin.conftest import ADMIN, USER, running_service

# Written where pip and npm put what they install and download (the env the sandbox gets).
LEAVE_MARK = (
    'echo "$1" > "$PIP_TARGET/mark.txt"\n'
    'ln -s /etc/passwd "$PIP_TARGET/link"\n'
    'mkfifo "$PIP_CACHE_DIR/fifo"\n'
    'cat "$PIP_TARGET/mark.txt"\n'
)


async def test_a_sessions_installs_are_kept_listed_and_purged(test_root: Path) -> None:
    skill_deps = test_root / f"skill-deps-{uuid.uuid4().hex[:6]}"
    overrides = {"ENABLE_SANDBOX_NETWORK": True, "SKILL_DEPS_PATH": str(skill_deps)}
    async with running_service(test_root / f"skills-{uuid.uuid4().hex[:6]}", **overrides) as service:
        async with service.client(headers=USER) as user, service.client(headers=ADMIN) as admin:
            first = (await user.post("/exec", json={"lang": "bash", "code": LEAVE_MARK, "args": ["one"]})).json()
            assert first["stdout"] == "one\n", first
            again = await user.post(
                "/exec", json={"lang": "bash", "code": 'cat "$PIP_TARGET/mark.txt"', "session_id": first["session_id"]}
            )
            assert again.json()["stdout"] == "one\n"
            other = await user.post("/exec", json={"lang": "bash", "code": 'ls -A "$PIP_TARGET"'})
            assert other.json()["stdout"] == "", "another session sees this one's tree"

            assert (await user.get("/api/v1/admin/skill-deps")).status_code in (401, 403)
            listing = (await admin.get("/api/v1/admin/skill-deps")).json()
            assert listing["enabled"] is True and len(listing["sessions"]) == 1
            assert first["session_id"] not in str(listing)
            kept = skill_deps / "sessions" / listing["sessions"][0]["scope"]
            assert (kept / "python" / "link").is_symlink() and not (kept / "pip-cache" / "fifo").exists()

            recent = await admin.post("/api/v1/admin/skill-deps/purge", json={"older_than_hours": 1})
            assert recent.json() == {"removed": 0}
            assert (await admin.post("/api/v1/admin/skill-deps/purge")).json() == {"removed": 1}
            assert (await admin.get("/api/v1/admin/skill-deps")).json()["sessions"] == []


async def test_without_sandbox_network_there_is_nothing_to_list(test_root: Path) -> None:
    async with running_service(test_root / f"skills-off-{uuid.uuid4().hex[:6]}") as service:
        async with service.client(headers=ADMIN) as admin:
            assert (await admin.get("/api/v1/admin/skill-deps")).json() == {
                "enabled": False,
                "sessions": [],
                "total_bytes": 0,
            }


def test_a_tree_over_the_cap_is_not_kept(tmp_path: Path) -> None:
    skill_deps = SkillDeps(tmp_path / "deps", max_bytes=1000)
    skill_deps.prepare()
    home = tmp_path / "home"
    home.mkdir()
    skill_deps.attach("session-a", home, os.getuid())
    (home / ".skill-deps" / "python" / "big.bin").write_bytes(b"x" * 2000)
    skill_deps.keep("session-a", home)
    assert skill_deps.usage() == []
    (home / ".skill-deps" / "python" / "big.bin").write_bytes(b"x" * 10)
    skill_deps.keep("session-a", home)
    assert [scope.size_bytes for scope in skill_deps.usage()] == [10]

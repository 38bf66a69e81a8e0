"""ENABLE_NETWORK_ISOLATION=false and ENABLE_FILESYSTEM_ISOLATION=false: what each switch opens up.

These tests prove the switches do what docs/security.md says (and that the network and
filesystem tests elsewhere would notice a leak): the host's loopback becomes reachable and the
host's directories become visible, read-only, with the service's own state still hidden.
"""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import uuid
from collections.abc import AsyncIterator, MutableMapping
from pathlib import Path
from typing import Any

import pytest
from structlog.testing import capture_logs

from codeapi.languages import get_language
from tests.conftest import ClientFactory
from tests.security.conftest import LIMITS, UID_POOL_SIZE, Hostile, execute

OPEN_UID = 43001  # its own range, apart from the isolated apps'
# Outside /tmp, which the host view leaves out, so the masks over the service's state are exercised.
OPEN_ROOT = Path("/var/tmp/codeapi-security-tests")


@pytest.fixture(scope="module")
def startup_logs() -> list[MutableMapping[str, Any]]:
    return []


@pytest.fixture(scope="module")
async def hostile(make_client: ClientFactory, startup_logs: list[MutableMapping[str, Any]]) -> AsyncIterator[Hostile]:
    root = OPEN_ROOT / uuid.uuid4().hex[:8]
    root.mkdir(parents=True)
    for path in (OPEN_ROOT, root):
        path.chmod(0o711)
    overrides = {
        **LIMITS,
        "SANDBOX_UID": OPEN_UID,
        "SANDBOX_BASE_DIR": str(root / "sandboxes"),
        "DATA_DIR": str(root / "data"),
        "ENABLE_NETWORK_ISOLATION": False,
        "ENABLE_FILESYSTEM_ISOLATION": False,
    }
    try:
        with capture_logs() as logs:
            client_context = make_client(**overrides)
            client = await client_context.__aenter__()
        startup_logs.extend(logs)
        try:
            yield Hostile(client, root / "sandboxes", range(OPEN_UID, OPEN_UID + UID_POOL_SIZE))
        finally:
            await client_context.__aexit__(None, None, None)
    finally:
        shutil.rmtree(root, ignore_errors=True)
        with contextlib.suppress(OSError):
            OPEN_ROOT.rmdir()  # only once no other run uses it


async def test_each_disabled_isolation_is_logged_as_a_security_warning(
    hostile: Hostile, startup_logs: list[MutableMapping[str, Any]]
) -> None:
    # Expected: one security.isolation_disabled warning per switch, at start-up.
    disabled = [log["variable"] for log in startup_logs if log["event"] == "security.isolation_disabled"]
    assert sorted(disabled) == ["ENABLE_FILESYSTEM_ISOLATION", "ENABLE_NETWORK_ISOLATION"]
    assert all(log["log_level"] == "warning" for log in startup_logs if log["event"] == "security.isolation_disabled")


async def test_without_network_isolation_the_host_loopback_is_reachable(hostile: Hostile) -> None:
    # Expected: the sandbox shares the host's network namespace, so a host-only listener answers.
    async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(b"hello from the host")
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(answer, "127.0.0.1", 0)
    async with server:
        port = server.sockets[0].getsockname()[1]
        code = f"import socket\nprint(socket.create_connection(('127.0.0.1', {port}), timeout=2).recv(64).decode())"
        body = await execute(hostile, "py", code)
    assert body["stdout"] == "hello from the host\n"


async def test_without_filesystem_isolation_host_directories_are_visible_read_only(hostile: Hostile) -> None:
    # Expected: the host's /etc, /var and /opt are there, but nothing can be written to them.
    code = "head -1 /etc/os-release; ls -d /var/lib /opt/codeapi; touch /var/planted /etc/planted /opt/planted"
    body = await execute(hostile, "bash", code)
    assert body["stdout"].splitlines()[1:] == ["/opt/codeapi", "/var/lib"]
    assert body["stderr"].count("Read-only file system") == 3


async def test_without_filesystem_isolation_the_service_state_is_hidden(hostile: Hostile) -> None:
    # Expected: DATA_DIR (every session's stored files) and SANDBOX_BASE_DIR (every running
    # job) are covered by an empty, inaccessible tmpfs.
    data_dir = hostile.base_dir.parent / "data"
    body = await execute(hostile, "bash", f"ls -A {data_dir} {hostile.base_dir}; echo listed")
    assert body["stdout"].strip().splitlines()[-1] == "listed"
    assert "codeapi.db" not in body["stdout"]
    assert ".system" not in body["stdout"] and "instance-0" not in body["stdout"]


async def test_without_filesystem_isolation_uids_still_protect_root_files(hostile: Hostile) -> None:
    # Expected: the program is still an unprivileged uid: /etc/shadow and /root are unreadable.
    body = await execute(hostile, "bash", "cat /etc/shadow; ls /root; id -u")
    assert body["stderr"].count("Permission denied") == 2
    assert int(body["stdout"]) in hostile.uids


@pytest.mark.parametrize("lang", ["py", "js", "java", "c"])
async def test_without_filesystem_isolation_runtimes_still_work(hostile: Hostile, lang: str) -> None:
    # Expected: runtime mounts under /opt and the /etc pieces still resolve inside the host view.
    code, expected = get_language(lang).hello
    body = await execute(hostile, lang, code)
    assert body["stdout"] == expected, body["stderr"]

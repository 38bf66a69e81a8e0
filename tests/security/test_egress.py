"""ENABLE_SANDBOX_NETWORK=true: the package registries through the proxy, and nothing else.

Traffic in these tests goes only to loopback, to a fake "private" host inside a network namespace
this module creates itself, and to the package registries. The fake host listens on 443 and
records every connection: each SSRF attempt must leave it untouched.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.conftest import ClientFactory
from tests.security.conftest import LIMITS, UID_POOL_SIZE, Hostile, execute

EGRESS_UID = 44001
PRIVATE_NAME = "private.egress-test.example"  # allowlisted, and resolved by the proxy to the fake host
HOST_SIDE, FAKE_HOST = "10.213.57.1", "10.213.57.2"

FAKE_HOST_SERVER = """
import socket, sys
server = socket.socket()
server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
server.bind((sys.argv[1], 443))
server.listen()
print("listening", flush=True)
while True:
    connection, peer = server.accept()
    with open(sys.argv[2], "a") as log:
        log.write(f"{peer}\\n")
    connection.close()
"""

# Speaks CONNECT to the proxy on the sandbox's loopback and prints the status line it answers.
ASK_PROXY = """
import os, socket
def ask(request):
    with socket.create_connection(("127.0.0.1", int(os.environ["HTTPS_PROXY"].rsplit(":", 1)[1])), timeout=20) as s:
        s.sendall(request.encode())
        answer = s.recv(4096).decode(errors="replace")
    status, _, rest = answer.partition("\\r\\n")
    print(status, "|", rest.rpartition("\\r\\n\\r\\n")[2].strip())
"""


@dataclass
class FakeHost:
    connections_log: Path

    def connections(self) -> str:
        return self.connections_log.read_text() if self.connections_log.exists() else ""


@pytest.fixture(scope="module")
def fake_private_host(test_root: Path) -> Iterator[FakeHost]:
    """A host at 10.213.57.2 in a namespace of this test's own, reachable from the host's network."""
    namespace = f"codeapi-egress-{os.getpid()}"
    log = test_root / f"{namespace}.log"
    host_if, fake_if = f"ce{os.getpid() % 100000}h", f"ce{os.getpid() % 100000}f"
    commands = [
        ["ip", "netns", "add", namespace],
        ["ip", "link", "add", host_if, "type", "veth", "peer", "name", fake_if, "netns", namespace],
        ["ip", "addr", "add", f"{HOST_SIDE}/30", "dev", host_if],
        ["ip", "link", "set", host_if, "up"],
        ["ip", "-n", namespace, "addr", "add", f"{FAKE_HOST}/30", "dev", fake_if],
        ["ip", "-n", namespace, "link", "set", fake_if, "up"],
        ["ip", "-n", namespace, "link", "set", "lo", "up"],
    ]
    server = None
    try:
        for command in commands:
            subprocess.run(command, check=True)
        server = subprocess.Popen(
            ["ip", "netns", "exec", namespace, sys.executable, "-c", FAKE_HOST_SERVER, FAKE_HOST, str(log)],
            stdout=subprocess.PIPE,
        )
        assert server.stdout is not None and server.stdout.readline() == b"listening\n"
        yield FakeHost(log)
    finally:
        if server is not None:
            server.kill()
            server.wait()
        subprocess.run(["ip", "link", "del", host_if], check=False, stderr=subprocess.DEVNULL)
        subprocess.run(["ip", "netns", "del", namespace], check=False)


@pytest.fixture(scope="module")
async def hostile(make_client: ClientFactory, test_root: Path, fake_private_host: FakeHost) -> AsyncIterator[Hostile]:
    root = test_root / f"egress-{uuid.uuid4().hex[:6]}"
    root.mkdir()
    root.chmod(0o711)
    base_dir = root / "sandboxes"
    overrides = {
        **LIMITS,
        "MAX_EXECUTION_TIME": 90,  # real installs from the registries
        "MAX_MEMORY_MB": 512,
        "SANDBOX_WORKDIR_SIZE_MB": 256,
        "SANDBOX_TMPFS_SIZE_MB": 256,
        "SANDBOX_UID": EGRESS_UID,
        "SANDBOX_BASE_DIR": str(base_dir),
        "DATA_DIR": str(root / "data"),
        "SKILL_DEPS_PATH": str(root / "skill-deps"),
        "ENABLE_SANDBOX_NETWORK": True,
        "SANDBOX_EGRESS_ALLOWLIST": PRIVATE_NAME,
        "SANDBOX_EGRESS_HOSTS": {PRIVATE_NAME: [FAKE_HOST]},
        "SANDBOX_EGRESS_MAX_CONNECTIONS": 8,
    }
    async with make_client(**overrides) as client:
        yield Hostile(client, base_dir, range(EGRESS_UID, EGRESS_UID + UID_POOL_SIZE))


PIP_INSTALL = (
    "import subprocess, sys\n"
    "done = subprocess.run([sys.executable, '-m', 'pip', 'install', '-q', {package!r}], capture_output=True, text=True)\n"
    "print(done.returncode, done.stderr[-500:])\n"
)


async def test_pip_install_from_pypi_then_import_in_this_run_and_the_next(hostile: Hostile) -> None:
    # Expected: pip reaches PyPI and its file host through the proxy (HTTPS_PROXY, the host's CAs),
    # installs into the session's own tree, and a later run of the session imports it again.
    use = "import inflection\nprint(inflection.underscore('SkillInstall'))\n"
    body = await execute(hostile, "py", PIP_INSTALL.format(package="inflection") + use)
    assert body["stdout"].splitlines()[-1] == "skill_install", body
    again = await execute(hostile, "py", use, session_id=body["session_id"])
    assert again["stdout"] == "skill_install\n", again
    elsewhere = await execute(hostile, "py", "import importlib.util\nprint(importlib.util.find_spec('inflection'))")
    assert elsewhere["stdout"] == "None\n", "another session sees what this one installed"


async def test_npm_install_from_the_registry_then_require_in_the_same_run(hostile: Hostile) -> None:
    code = (
        "const { execFileSync } = require('child_process');\n"
        "const path = require('path');\n"
        "const npm = path.join(path.dirname(process.execPath), '..', 'lib', 'node_modules', 'npm', 'bin', 'npm-cli.js');\n"
        # A project of its own: without a package.json, npm would take the toolbox's read-only
        # /node_modules for the project's and install there.
        "require('fs').writeFileSync('/tmp/package.json', '{}');\n"
        "execFileSync(process.execPath, [npm, 'install', '--silent', '--no-audit', '--no-fund', 'is-number@7'],"
        " { cwd: '/tmp' });\n"
        "const isNumber = require('/tmp/node_modules/is-number');\n"
        "console.log(isNumber(42), isNumber('x'));\n"
    )
    body = await execute(hostile, "js", code)
    assert body["stdout"] == "true false\n", body


@pytest.mark.parametrize(
    "target",
    ["127.0.0.1:443", "localhost:443", "[::1]:443", "[::ffff:127.0.0.1]:443", "127.0.0.1:6379", "0.0.0.0:443"],
)
async def test_connect_to_the_local_host_is_refused(hostile: Hostile, target: str) -> None:
    body = await execute(hostile, "py", ASK_PROXY + f"ask('CONNECT {target} HTTP/1.1\\r\\nHost: {target}\\r\\n\\r\\n')")
    assert body["stdout"].startswith("HTTP/1.1 403 "), body
    assert "not on the egress allowlist" in body["stdout"] or "port 6379 is not allowed" in body["stdout"]


async def test_connect_to_a_name_off_the_allowlist_is_refused_before_any_lookup(hostile: Hostile) -> None:
    # A name that does not exist anywhere: refused for the list, not for failing to resolve.
    body = await execute(hostile, "py", ASK_PROXY + "ask('CONNECT nowhere.invalid:443 HTTP/1.1\\r\\n\\r\\n')")
    assert body["stdout"] == "HTTP/1.1 403 Refused | nowhere.invalid is not on the egress allowlist\n", body


async def test_allowlisted_name_that_resolves_to_a_private_host_is_refused(
    hostile: Hostile, fake_private_host: FakeHost
) -> None:
    body = await execute(hostile, "py", ASK_PROXY + f"ask('CONNECT {PRIVATE_NAME}:443 HTTP/1.1\\r\\n\\r\\n')")
    assert body["stdout"].startswith("HTTP/1.1 403 "), body
    assert "addresses sandboxes may not reach" in body["stdout"]
    assert fake_private_host.connections() == ""


async def test_connect_to_the_private_host_by_address_is_refused(hostile: Hostile, fake_private_host: FakeHost) -> None:
    body = await execute(hostile, "py", ASK_PROXY + f"ask('CONNECT {FAKE_HOST}:443 HTTP/1.1\\r\\n\\r\\n')")
    assert body["stdout"].startswith("HTTP/1.1 403 "), body
    assert fake_private_host.connections() == ""


@pytest.mark.parametrize(
    "request_text",
    [
        "GET http://pypi.org/simple/ HTTP/1.1\\r\\nHost: pypi.org\\r\\n\\r\\n",
        f"GET http://{FAKE_HOST}/ HTTP/1.1\\r\\n\\r\\n",
        "CONNECT pypi.org:22 HTTP/1.1\\r\\n\\r\\n",
    ],
)
async def test_plain_http_and_other_ports_are_refused(hostile: Hostile, request_text: str) -> None:
    body = await execute(hostile, "py", ASK_PROXY + f"ask('{request_text}')")
    assert body["stdout"].startswith("HTTP/1.1 403 "), body


DIRECT = """
import socket
for target in {targets!r}:
    try:
        socket.create_connection(target, timeout=3).close()
        print(target, "connected")
    except OSError as error:
        print(target, type(error).__name__)
"""


async def test_direct_connections_around_the_proxy_fail(hostile: Hostile, fake_private_host: FakeHost) -> None:
    # Redis and any host loopback service are in another namespace; the private host has no route.
    targets = [("127.0.0.1", 6379), (FAKE_HOST, 443), (HOST_SIDE, 443)]
    body = await execute(hostile, "py", DIRECT.format(targets=targets))
    lines = body["stdout"].splitlines()
    assert lines[0] == "('127.0.0.1', 6379) ConnectionRefusedError", body
    assert all("connected" not in line for line in lines), body
    assert fake_private_host.connections() == ""


async def test_raw_sockets_and_udp_get_nowhere(hostile: Hostile, fake_private_host: FakeHost) -> None:
    code = (
        "import socket\n"
        "try:\n    socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP)\n    print('raw opened')\n"
        "except OSError as error:\n    print('raw', type(error).__name__)\n"
        "udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)\n"
        f"try:\n    udp.sendto(b'x', ('{FAKE_HOST}', 53))\n    print('udp sent')\n"
        "except OSError as error:\n    print('udp', error.errno)\n"
    )
    body = await execute(hostile, "py", code)
    assert body["stdout"] == "raw PermissionError\nudp 101\n", body  # 101: ENETUNREACH


async def test_each_run_has_a_connection_budget(hostile: Hostile) -> None:
    asks = "\n".join("ask('CONNECT nowhere.invalid:443 HTTP/1.1\\r\\n\\r\\n')" for _ in range(2))
    allowed = "\n".join("ask('CONNECT pypi.org:443 HTTP/1.1\\r\\n\\r\\n')" for _ in range(9))
    body = await execute(hostile, "py", ASK_PROXY + asks + "\n" + allowed)
    statuses = [line.split(" |")[0] for line in body["stdout"].splitlines()]
    assert statuses[:2] == ["HTTP/1.1 403 Refused"] * 2
    assert statuses[2:10] == ["HTTP/1.1 200 Connection established"] * 8
    assert statuses[10] == "HTTP/1.1 429 Refused", body


async def test_the_proxy_is_started_again_when_it_dies(hostile: Hostile) -> None:
    proxies = [pid for pid in os.listdir("/proc") if pid.isdigit() and is_proxy_of_this_process(pid)]
    assert len(proxies) == 1
    os.kill(int(proxies[0]), 9)
    deadline = time.monotonic() + 60  # a bound: it restarts within 0.1 s and starts in about 1 s
    while time.monotonic() < deadline:
        body = await execute(hostile, "py", ASK_PROXY + "ask('CONNECT nowhere.invalid:443 HTTP/1.1\\r\\n\\r\\n')")
        if body["stdout"].startswith("HTTP/1.1 403"):
            break
        await asyncio.sleep(0.5)
    assert body["stdout"].startswith("HTTP/1.1 403"), body
    detailed = (await hostile.client.get("/health/detailed")).json()
    assert detailed["checks"]["egress_proxy"] == {"status": "healthy", "restarts": 1}


def is_proxy_of_this_process(pid: str) -> bool:
    try:
        command = Path(f"/proc/{pid}/cmdline").read_bytes()
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return False
    parent = next(line.split()[1] for line in status.splitlines() if line.startswith("PPid:"))
    return b"codeapi.egress.proxy" in command and int(parent) == os.getpid()


async def test_a_link_in_place_of_the_installs_tree_never_copies_host_files(hostile: Hostile, test_root: Path) -> None:
    # The API copies ~/.skill-deps back as root after the run: a link there (or inside) must not
    # make it read a host directory that the sandbox cannot see.
    secret_dir = test_root / f"host-secret-{uuid.uuid4().hex[:6]}"
    secret_dir.mkdir()
    (secret_dir / "secret.txt").write_text("host secret\n")
    attack = f"rm -rf ~/.skill-deps && ln -s {secret_dir} ~/.skill-deps && ls -la ~/.skill-deps/ 2>&1 | head -3"
    first = await execute(hostile, "bash", attack)
    inner = f'ln -s {secret_dir} "$PIP_TARGET/inner" && ln -s {secret_dir}/secret.txt "$PIP_TARGET/file"'
    second = await execute(hostile, "bash", inner, session_id=first["session_id"])
    assert second["stderr"] == "", second
    look = 'cat "$PIP_TARGET/file" 2>&1; ls "$PIP_TARGET/inner/" 2>&1; grep -rs "host secret" ~ || echo clean'
    third = await execute(hostile, "bash", look, session_id=first["session_id"])
    assert "host secret" not in third["stdout"], third
    assert third["stdout"].endswith("clean\n"), third

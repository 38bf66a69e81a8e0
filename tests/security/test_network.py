"""Network: the sandbox has its own empty network namespace; only loopback, and nobody on it."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator

import pytest

from tests.security.conftest import Hostile, execute

CONNECT = """
import socket, sys
try:
    socket.create_connection(({host!r}, {port}), timeout=2).close()
    print("connected")
except OSError as error:
    print("failed", type(error).__name__)
"""


@pytest.fixture
async def host_listener() -> AsyncIterator[int]:
    """A live HTTP-ish listener on the host's loopback, standing in for the API's own port."""

    async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(b"HTTP/1.0 200 OK\r\n\r\nhost secret")
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(answer, "127.0.0.1", 0)
    async with server:
        yield server.sockets[0].getsockname()[1]


def host_port_open(port: int) -> bool:
    with socket.socket() as probe:
        probe.settimeout(1)
        return probe.connect_ex(("127.0.0.1", port)) == 0


async def test_host_loopback_service_is_unreachable(hostile: Hostile, host_listener: int) -> None:
    # Expected: the host's 127.0.0.1 is not the sandbox's; a listener the host can reach is refused.
    assert host_port_open(host_listener)
    body = await execute(hostile, "py", CONNECT.format(host="127.0.0.1", port=host_listener))
    assert body["stdout"] == "failed ConnectionRefusedError\n"


async def test_host_redis_port_is_unreachable(hostile: Hostile) -> None:
    # Expected: Redis on the host's 127.0.0.1:6379 (where the service keeps sessions) is out of reach.
    body = await execute(hostile, "py", CONNECT.format(host="127.0.0.1", port=6379))
    assert body["stdout"] == "failed ConnectionRefusedError\n"


async def test_external_host_is_unreachable(hostile: Hostile) -> None:
    # Expected: no route out: connecting to a public address fails at once (network unreachable).
    body = await execute(hostile, "py", CONNECT.format(host="1.1.1.1", port=443))
    assert body["stdout"].startswith("failed")


async def test_cloud_metadata_endpoint_is_unreachable(hostile: Hostile) -> None:
    # Expected: 169.254.169.254 (cloud instance credentials) cannot be reached.
    body = await execute(hostile, "py", CONNECT.format(host="169.254.169.254", port=80))
    assert body["stdout"].startswith("failed")


async def test_dns_does_not_resolve(hostile: Hostile) -> None:
    # Expected: no resolv.conf and no route: name lookups fail (no DNS exfiltration channel).
    code = (
        "import socket\ntry:\n    print(socket.gethostbyname('example.com'))\nexcept OSError as e:\n    print('failed')"
    )
    body = await execute(hostile, "py", code)
    assert body["stdout"] == "failed\n"


async def test_only_loopback_interface_exists(hostile: Hostile) -> None:
    # Expected: the namespace has one interface, lo, and no routes.
    body = await execute(hostile, "bash", "tail -n +2 /proc/net/route | wc -l; cat /proc/net/dev | tail -n +3")
    lines = body["stdout"].splitlines()
    assert lines[0] == "0"
    assert [line.split(":")[0].strip() for line in lines[1:]] == ["lo"]


async def test_raw_socket_is_denied(hostile: Hostile) -> None:
    # Expected: raw sockets (ICMP crafting, sniffing) fail with EPERM.
    code = "import socket\ntry:\n    socket.socket(socket.AF_INET, socket.SOCK_RAW, 1)\nexcept OSError as e:\n    print(e.errno)"
    body = await execute(hostile, "py", code)
    assert body["stdout"] == "1\n"


async def test_packet_socket_is_denied(hostile: Hostile) -> None:
    # Expected: AF_PACKET (link-layer access) fails with EPERM.
    code = "import socket\ntry:\n    socket.socket(socket.AF_PACKET, socket.SOCK_RAW)\nexcept OSError as e:\n    print(e.errno)"
    body = await execute(hostile, "py", code)
    assert body["stdout"] == "1\n"


async def test_netlink_socket_is_denied(hostile: Hostile) -> None:
    # Expected: AF_NETLINK (route/firewall configuration, a frequent kernel attack surface) is EPERM.
    code = "import socket\ntry:\n    socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, 0)\nexcept OSError as e:\n    print(e.errno)"
    body = await execute(hostile, "py", code)
    assert body["stdout"] == "1\n"


async def test_rare_socket_families_are_denied(hostile: Hostile) -> None:
    # Expected: only AF_UNIX/INET/INET6 are allowed; AF_ALG (kernel crypto) and AF_VSOCK are EPERM.
    code = (
        "import socket\nfor family in (38, 40):\n    try:\n        socket.socket(family, socket.SOCK_SEQPACKET)\n"
        "    except OSError as e:\n        print(e.errno)"
    )
    body = await execute(hostile, "py", code)
    assert body["stdout"] == "1\n1\n"


async def test_local_sockets_still_work_inside(hostile: Hostile) -> None:
    # Expected: the sandbox's own loopback works (programs may talk to themselves).
    code = (
        "import socket\nserver = socket.create_server(('127.0.0.1', 0))\n"
        "client = socket.create_connection(server.getsockname())\nconn, _ = server.accept()\n"
        "client.sendall(b'ping')\nprint(conn.recv(4).decode())"
    )
    body = await execute(hostile, "py", code)
    assert body["stdout"] == "ping\n"


async def test_pip_install_without_sandbox_network_fails_at_once_saying_why(hostile: Hostile) -> None:
    # Expected: ENABLE_SANDBOX_NETWORK is off: pip gives up on its first try and its output names the reason.
    code = (
        "import subprocess, sys\n"
        "done = subprocess.run([sys.executable, '-m', 'pip', 'install', 'inflection'], capture_output=True, text=True)\n"
        "print(done.returncode)\n"
        "print(done.stdout + done.stderr)\n"
    )
    body = await execute(hostile, "py", code)
    assert body["stdout"].startswith("1\n"), body
    assert "no-network-in-this-sandbox.invalid" in body["stdout"], body
    assert "Retrying" not in body["stdout"]

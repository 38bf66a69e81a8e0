"""Real backing services for tests and benchmarks: SeaweedFS (S3) and Redis, started and stopped on demand.

Fault tests stop a server and start it again on the same ports and data directory, so each
server object can ``start()`` again after ``stop()``.
"""

from __future__ import annotations

import os
import random
import shutil
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import IO

VENV_BIN = Path(sys.executable).parent
WEED = VENV_BIN / "weed"
SEAWEED_COMPONENTS = ("s3", "master", "volume", "filer", "admin")
# SeaweedFS serves gRPC on every HTTP port + 10000.
GRPC_OFFSET = 10000
START_TIMEOUT_S = 60.0
# The shared Redis the suites use; a second checkout testing on the same machine sets its own port.
TEST_REDIS_PORT = int(os.environ.get("CODEAPI_TEST_REDIS_PORT", "6379"))


def _port_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def free_port(with_grpc: bool = False, taken: set[int] | None = None) -> int:
    """A port in 20000-30000 that is free (and, with ``with_grpc``, so is port + 10000).

    The range stays below Linux's ephemeral ports so a client socket cannot grab it meanwhile.
    """
    taken = taken or set()
    for _ in range(500):
        port = random.randint(20000, 30000 - 1)
        needed = (port, port + GRPC_OFFSET) if with_grpc else (port,)
        if not taken.intersection(needed) and all(_port_free(candidate) for candidate in needed):
            return port
    raise RuntimeError("no free port found")


def _answers_http(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=1):
            return True
    except urllib.error.HTTPError:
        return True  # any HTTP answer means the server is up
    except OSError:
        return False


def _answers_redis(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1) as conn:
            conn.sendall(b"PING\r\n")
            return conn.recv(16).startswith(b"+PONG")
    except OSError:
        return False


def _child_env() -> dict[str, str]:
    # weed mini turns AWS_* / S3_* variables into identities and buckets; tests want neither.
    return {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "S3_"))}


class SeaweedServer:
    """``weed mini`` bound to 127.0.0.1 with every component on its own free port."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        taken: set[int] = set()
        self.ports: dict[str, int] = {}
        for component in SEAWEED_COMPONENTS:
            port = free_port(with_grpc=True, taken=taken)
            taken.update((port, port + GRPC_OFFSET))
            self.ports[component] = port
        self.process: subprocess.Popen[bytes] | None = None
        self._log: IO[bytes] | None = None

    @property
    def endpoint(self) -> str:
        return f"127.0.0.1:{self.ports['s3']}"

    def command(self) -> list[str]:
        return [
            str(WEED),
            "mini",
            f"-dir={self.directory / 'data'}",
            "-ip=127.0.0.1",
            "-ip.bind=127.0.0.1",
            "-master.telemetry=false",
            "-admin.ui=false",
            "-webdav=false",
            "-s3.port.iceberg=0",
            "-s3.port.lance=0",
            "-master.volumeSizeLimitMB=64",
            *(f"-{component}.port={port}" for component, port in self.ports.items()),
        ]

    def start(self) -> None:
        (self.directory / "data").mkdir(parents=True, exist_ok=True)
        self._log = open(self.directory / "weed.log", "ab")
        self.process = subprocess.Popen(self.command(), stdout=self._log, stderr=subprocess.STDOUT, env=_child_env())
        deadline = time.monotonic() + START_TIMEOUT_S
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"weed mini exited early, see {self.directory / 'weed.log'}")
            if _answers_http(f"http://{self.endpoint}/") and self._has_volume_server():
                return
            time.sleep(0.2)
        self.stop()
        raise RuntimeError(f"weed mini did not become ready, see {self.directory / 'weed.log'}")

    def _has_volume_server(self) -> bool:
        """S3 answers before the volume server has registered; writes fail until it has."""
        try:
            url = f"http://127.0.0.1:{self.ports['master']}/dir/status"
            with urllib.request.urlopen(url, timeout=1) as response:
                return b'"DataNodes":[{' in response.read()
        except OSError:
            return False

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.process = None
        if self._log is not None:
            self._log.close()
            self._log = None
        for leftover in self._socket_files():
            leftover.unlink(missing_ok=True)

    def _socket_files(self) -> list[Path]:
        """Unix sockets weed mini leaves in /tmp, named after our ports (no flag moves them all)."""
        return [
            Path(f"/tmp/seaweedfs-s3-{self.ports['s3']}.sock"),
            Path(f"/tmp/seaweedfs-s3-grpc-{self.ports['s3'] + GRPC_OFFSET}.sock"),
            Path(f"/tmp/seaweedfs-filer-{self.ports['filer']}.sock"),
            Path(f"/tmp/seaweedfs-admin-grpc-{self.ports['admin'] + GRPC_OFFSET}.sock"),
        ]


def start_seaweedfs(tmp_dir: Path) -> SeaweedServer:
    server = SeaweedServer(tmp_dir)
    server.start()
    return server


class RedisServer:
    """A throwaway redis-server in the foreground on its own port; ``persistent``: its data outlives a
    restart (append-only file in ``directory``, as the compose stack's Redis)."""

    def __init__(self, directory: Path, port: int, persistent: bool = False) -> None:
        self.directory = directory
        self.port = port
        self.persistent = persistent
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        self.process = subprocess.Popen(
            [
                _redis_server(),
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "yes" if self.persistent else "no",
                "--dir",
                str(self.directory),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        _wait_for_redis(self.port)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.process = None


def _redis_server() -> str:
    found = shutil.which("redis-server")
    if found is None:
        raise RuntimeError("redis-server is not installed (scripts/install --dev installs it)")
    return found


def _wait_for_redis(port: int) -> None:
    deadline = time.monotonic() + 15
    while not _answers_redis(port):
        if time.monotonic() > deadline:
            raise RuntimeError(f"redis-server on port {port} did not answer")
        time.sleep(0.05)


def start_redis(tmp_dir: Path, port: int | None = None, persistent: bool = False) -> RedisServer:
    server = RedisServer(tmp_dir, port or free_port(), persistent)
    server.start()
    return server


def ensure_redis(port: int = TEST_REDIS_PORT) -> None:
    """Make sure a Redis answers on 127.0.0.1:``port``, starting a daemonised one if not.

    The daemon outlives the test run on purpose: CI and developers share it across runs.
    """
    if _answers_redis(port):
        return
    subprocess.run(
        [_redis_server(), "--daemonize", "yes", "--port", str(port), "--bind", "127.0.0.1", "--save", ""],
        check=True,
        stdout=subprocess.DEVNULL,
    )
    _wait_for_redis(port)

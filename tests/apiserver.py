"""A real `codeapi serve` process for tests that need separate processes (replicas, disconnects)."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from pathlib import Path

import httpx

from bench.backends import free_port
from tests.conftest import API_KEY

START_TIMEOUT_S = 60


class Replica:
    def __init__(self, root: Path, backend: dict[str, object] | None = None, launcher: tuple[str, ...] = ()) -> None:
        """``launcher``: what starts ``codeapi serve`` (a command taking it as its arguments), if anything."""
        self.port = free_port()
        root.mkdir(parents=True)
        root.chmod(0o711)
        env = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "API_KEY": API_KEY,
            "DATA_DIR": str(root / "data"),
            "SANDBOX_BASE_DIR": str(root / "sandboxes"),
            "LOG_LEVEL": "WARNING",
            "MAX_EXECUTION_TIME": "20",
            **{key: str(value) for key, value in (backend or {}).items()},
        }
        self.log = open(root / "server.log", "wb")  # noqa: SIM115 - closed in stop()
        self.process = subprocess.Popen(
            [*launcher, sys.prefix + "/bin/codeapi", "serve", "--host", "127.0.0.1", "--port", str(self.port)],
            env=env,
            cwd=root,
            stdout=self.log,
            stderr=subprocess.STDOUT,
        )
        self.url = f"http://127.0.0.1:{self.port}"

    def wait_ready(self) -> None:
        deadline = time.monotonic() + START_TIMEOUT_S
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"replica exited: {self.log.name}")
            try:
                if httpx.get(f"{self.url}/health", timeout=1).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        raise RuntimeError(f"replica did not start: {self.log.name}")

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        self.log.close()


@contextmanager
def serving(*replicas: Replica) -> Iterator[tuple[Replica, ...]]:
    """The replicas once each answers; all stopped afterwards, whatever happened."""
    try:
        for replica in replicas:
            replica.wait_ready()
        yield replicas
    finally:
        for replica in replicas:
            replica.stop()


@asynccontextmanager
async def clients_of(first: Replica, second: Replica) -> AsyncIterator[tuple[httpx.AsyncClient, httpx.AsyncClient]]:
    headers = {"x-api-key": API_KEY}
    async with (
        httpx.AsyncClient(base_url=first.url, headers=headers, timeout=60) as first_client,
        httpx.AsyncClient(base_url=second.url, headers=headers, timeout=60) as second_client,
    ):
        yield first_client, second_client

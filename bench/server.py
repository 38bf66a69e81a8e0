"""The system under test: ``codeapi serve`` as a subprocess on a free port, with its backends.

Everything lives under one temporary directory (``/tmp/codeapi-bench-XXXX``, mode 0711 so the
sandboxes can reach their bind sources); Redis db 7 is flushed before and after a redis-s3 run.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import redis

from bench.backends import SeaweedServer, ensure_redis, free_port, start_seaweedfs
from codeapi.config import ENV_NAMES

VENV_BIN = Path(sys.executable).parent
CODEAPI = VENV_BIN / "codeapi"
BACKENDS = ("embedded", "redis-s3")
LOOPS = ("auto", "asyncio", "uvloop")
EXPECTED_BACKENDS = {
    "embedded": {"metadata": "sqlite", "files": "local"},
    "redis-s3": {"metadata": "redis", "files": "s3"},
}
REDIS_PORT = 6379
REDIS_DB = 7
S3_ACCESS_KEY = "codeapi-bench"
S3_SECRET_KEY = "codeapi-bench-secret"
STARTUP_TIMEOUT_S = 60.0
STOP_TIMEOUT_S = 15.0


class ServerFailed(RuntimeError):
    pass


@dataclass
class RunningServer:
    base_url: str
    api_key: str
    pid: int
    settings: dict[str, str]  # the codeapi variables the server was started with
    startup_s: float
    health: dict[str, Any]
    backend: str
    loop: str
    root: Path
    log_file: Path
    notes: list[str] = field(default_factory=list)

    @property
    def backends(self) -> dict[str, str]:
        found = self.health.get("backends")
        return {str(key): str(value) for key, value in found.items()} if isinstance(found, dict) else {}

    @property
    def backend_matches(self) -> bool:
        return self.backends == EXPECTED_BACKENDS[self.backend]


def make_root() -> Path:
    root = Path(tempfile.mkdtemp(prefix="codeapi-bench-", dir="/tmp"))
    root.chmod(0o711)
    return root


def flush_redis_db() -> None:
    client = redis.Redis(host="127.0.0.1", port=REDIS_PORT, db=REDIS_DB)
    try:
        client.flushdb()
    finally:
        client.close()


def server_environment(settings: dict[str, str]) -> dict[str, str]:
    """The caller's environment without any codeapi variable (so none leaks in), plus ours."""
    env = {key: value for key, value in os.environ.items() if key.upper() not in ENV_NAMES}
    env.update(settings)
    env["PYTHONUNBUFFERED"] = "1"
    return env


def wait_for_health(process: subprocess.Popen[bytes], base_url: str, log_file: Path) -> dict[str, Any]:
    deadline = time.monotonic() + STARTUP_TIMEOUT_S
    with httpx.Client(base_url=base_url, timeout=2) as client:
        while time.monotonic() < deadline:
            if process.poll() is not None:
                raise ServerFailed(f"codeapi serve exited with {process.returncode}:\n{tail(log_file)}")
            try:
                response = client.get("/health/ready")  # 200 once Python's warm path is up
            except httpx.TransportError:
                time.sleep(0.05)
                continue
            if response.status_code == 200:
                body: dict[str, Any] = client.get("/health").json()
                return body
            time.sleep(0.05)
    raise ServerFailed(
        f"codeapi serve was not ready (/health/ready) within {STARTUP_TIMEOUT_S:.0f} s:\n{tail(log_file)}"
    )


def tail(path: Path, lines: int = 30) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except FileNotFoundError:
        return "(no log)"


def server_command(port: int, loop: str) -> list[str]:
    """``codeapi serve``; for an event-loop experiment, the same uvicorn.run with ``loop`` forced
    (``codeapi serve`` leaves uvicorn's default, "auto", which picks uvloop when it is installed)."""
    if loop == "auto":
        return [str(CODEAPI), "serve", "--host", "127.0.0.1", "--port", str(port)]
    code = (
        "import uvicorn; uvicorn.run('codeapi.cli:build_app', factory=True, host='127.0.0.1', "
        f"port={port}, loop={loop!r}, log_config=None, access_log=False, timeout_graceful_shutdown=10)"
    )
    return [sys.executable, "-c", code]


def stop_process(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is not None:
        return
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(timeout=STOP_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


@contextlib.contextmanager
def running_server(
    backend: str, keep: bool = False, loop: str = "auto", extra: dict[str, str] | None = None
) -> Iterator[RunningServer]:
    """Start the backends and ``codeapi serve``; stop them and remove the directory on exit."""
    if os.geteuid() != 0:
        raise ServerFailed("the benchmark must run as root (the server creates nsjail sandboxes)")
    if backend not in BACKENDS:
        raise ValueError(f"unknown backend {backend!r}")
    root = make_root()
    with contextlib.ExitStack() as cleanup:
        if not keep:
            cleanup.callback(shutil.rmtree, root, True)
        port = free_port()
        api_key = secrets.token_hex(16)
        settings = {
            "API_KEY": api_key,
            "DATA_DIR": str(root / "data"),
            "SANDBOX_BASE_DIR": str(root / "sandboxes"),
            "LOG_LEVEL": "WARNING",
            "MAX_EXECUTION_TIME": "60",
        }
        settings.update(extra or {})
        if backend == "redis-s3":
            seaweed: SeaweedServer = start_seaweedfs(root / "seaweedfs")
            cleanup.callback(seaweed.stop)
            ensure_redis(REDIS_PORT)
            flush_redis_db()
            cleanup.callback(flush_redis_db)
            settings.update(
                {
                    "REDIS_URL": f"redis://127.0.0.1:{REDIS_PORT}/{REDIS_DB}",
                    "S3_ENDPOINT": seaweed.endpoint,
                    "S3_ACCESS_KEY": S3_ACCESS_KEY,
                    "S3_SECRET_KEY": S3_SECRET_KEY,
                    "S3_BUCKET": "bench",
                    "S3_REGION": "us-east-1",
                }
            )
        log_file = root / "server.log"
        log = cleanup.enter_context(open(log_file, "ab"))
        started = time.perf_counter()
        # cwd is the temporary directory, so no .env file of the checkout is read.
        process = subprocess.Popen(
            server_command(port, loop),
            cwd=root,
            env=server_environment(settings),
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        cleanup.callback(stop_process, process)
        base_url = f"http://127.0.0.1:{port}"
        health = wait_for_health(process, base_url, log_file)
        server = RunningServer(
            base_url=base_url,
            api_key=api_key,
            pid=process.pid,
            settings=settings,
            startup_s=time.perf_counter() - started,
            health=health,
            backend=backend,
            loop=loop,
            root=root,
            log_file=log_file,
        )
        if not server.backend_matches:
            server.notes.append(
                f"backend mismatch: asked for {backend} ({EXPECTED_BACKENDS[backend]}), "
                f"/health reports {server.backends or health}; the numbers below are NOT for {backend}"
            )
        yield server

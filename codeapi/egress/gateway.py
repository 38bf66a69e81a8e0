"""The API's side of sandbox egress: runs the proxy process, restarts it, opens a network per job.

``EgressGateway.network(job_id)`` gives a job its own network namespace whose only service is the
proxy (netns.py), registered with the proxy under the job's budget for connections and bytes, and
closed with the job. The proxy is a child process at a lower priority; when it dies it is started
again with back-off, and jobs that start meanwhile fail to reach the network rather than wait.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import socket
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import structlog

from codeapi.egress import skilldeps
from codeapi.egress.netns import SandboxNetwork, create_sandbox_network

logger = structlog.get_logger(__name__)
security_logger = structlog.get_logger("codeapi.security")

RESTART_BACKOFF_S = (0.1, 0.5, 1.0, 2.0, 5.0)
PROXY_NICE = 10
CA_BUNDLE = "/etc/ssl/certs/ca-certificates.crt"
# Without ENABLE_SANDBOX_NETWORK: package managers fail at once, naming the reason, instead of
# retrying a lookup that cannot succeed (pip took 11 s to give up).
OFFLINE_INDEX = "https://no-network-in-this-sandbox.invalid/"
OFFLINE_ENV = {
    "PIP_INDEX_URL": OFFLINE_INDEX + "simple/",
    "PIP_RETRIES": "0",
    "npm_config_registry": OFFLINE_INDEX,
    "npm_config_fetch_retries": "0",
}


@dataclass(frozen=True)
class EgressPolicy:
    port: int
    allowlist: tuple[str, ...]
    max_connections: int
    max_bytes: int
    hosts: dict[str, list[str]]  # name -> addresses resolved before DNS (tests, operators' overrides)

    def sandbox_env(self) -> dict[str, str]:
        """What makes pip, npm, go, cargo, curl and Python's HTTP clients use the proxy and trust the host's CAs."""
        proxy = f"http://127.0.0.1:{self.port}"
        return {
            **skilldeps.sandbox_env(),
            **{name: proxy for name in ("HTTPS_PROXY", "https_proxy", "HTTP_PROXY", "http_proxy")},
            "npm_config_https_proxy": proxy,
            "npm_config_proxy": proxy,
            "SSL_CERT_FILE": CA_BUNDLE,
            "REQUESTS_CA_BUNDLE": CA_BUNDLE,
            "PIP_CERT": CA_BUNDLE,
            "NODE_EXTRA_CA_CERTS": CA_BUNDLE,
            "CARGO_HTTP_CAINFO": CA_BUNDLE,
        }


def network_env(gateway: EgressGateway | None) -> dict[str, str]:
    """What a sandbox's package managers need to know about its network, on or off."""
    return OFFLINE_ENV if gateway is None else gateway.policy.sandbox_env()


class EgressGateway:
    def __init__(self, policy: EgressPolicy, skill_deps: skilldeps.SkillDeps) -> None:
        self.policy = policy
        self.skill_deps = skill_deps
        self.process: asyncio.subprocess.Process | None = None
        self.control: socket.socket | None = None
        self.restarts = 0
        self.supervisor: asyncio.Task[None] | None = None
        self.send_lock = asyncio.Lock()

    async def start(self) -> None:
        self.skill_deps.prepare()
        await self.launch()
        self.supervisor = asyncio.create_task(self.supervise(), name="egress-proxy-supervisor")

    async def launch(self) -> None:
        api_end, proxy_end = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        argv = [sys.executable, "-m", "codeapi.egress.proxy", "--control-fd", str(proxy_end.fileno())]
        for entry in self.policy.allowlist:
            argv += ["--allow", entry]
        argv += ["--hosts", json.dumps(self.policy.hosts)]
        try:
            self.process = await asyncio.create_subprocess_exec(
                *argv,
                stdin=asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.PIPE,
                pass_fds=(proxy_end.fileno(),),
                preexec_fn=lambda: os.nice(PROXY_NICE),
            )
        finally:
            proxy_end.close()
        api_end.settimeout(1.0)
        self.control = api_end

    async def supervise(self) -> None:
        """Log the proxy's events; start it again when it exits."""
        while True:
            assert self.process is not None and self.process.stdout is not None
            async for line in self.process.stdout:
                log_event(line)
            code = await self.process.wait()
            self.restarts += 1
            delay = RESTART_BACKOFF_S[min(self.restarts - 1, len(RESTART_BACKOFF_S) - 1)]
            logger.error("egress.proxy_exited", exit_code=code, restart_in_s=delay, restarts=self.restarts)
            if self.control is not None:
                self.control.close()
                self.control = None
            await asyncio.sleep(delay)
            await self.launch()

    async def stop(self) -> None:
        if self.supervisor is not None:
            self.supervisor.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self.supervisor
        if self.control is not None:
            self.control.close()  # the proxy exits when its control socket closes
        if self.process is not None and self.process.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                self.process.kill()
            await self.process.wait()

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.returncode is None and self.control is not None

    def health(self) -> dict[str, Any]:
        return {"status": "healthy" if self.running else "unhealthy", "restarts": self.restarts}

    @asynccontextmanager
    async def network(self, job_id: str) -> AsyncIterator[SandboxNetwork]:
        network = await asyncio.to_thread(create_sandbox_network, self.policy.port)
        try:
            await self.send({"op": "open", "job": job_id, "max_connections": self.policy.max_connections,
                             "max_bytes": self.policy.max_bytes}, network.listener.fileno())  # fmt: skip
            # The proxy holds its own copy now; only the namespace stays open here, for nsenter.
            network.listener.close()
            yield network
        finally:
            network.close()
            await self.send({"op": "close", "job": job_id})

    async def send(self, message: dict[str, Any], fd: int | None = None) -> None:
        async with self.send_lock:
            if self.control is None:
                logger.warning("egress.proxy_unavailable", op=message["op"], job_id=message["job"])
                return
            data = json.dumps(message).encode()
            with contextlib.suppress(OSError):
                # The proxy reads promptly; a full buffer means it is wedged, and it will be restarted.
                if fd is None:
                    self.control.send(data)
                else:
                    socket.send_fds(self.control, [data], [fd])


def log_event(line: bytes) -> None:
    try:
        event = json.loads(line)
    except ValueError:
        return
    name = str(event.pop("event", "egress.unknown"))
    if name in ("egress.refused", "egress.byte_limit"):
        security_logger.warning(name, **event)
    else:
        logger.debug(name, **event)

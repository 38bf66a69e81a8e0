"""LibreChat's side for real: docs/librechat.md's .env blocks, `codeapi jwt-keygen`'s pair, codeapi servers
started from those blocks, and @librechat/agents' tools (tests/librechat/client.cjs) configured from them.

The npm package comes from the fixture the programmatic client tests install it with.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization

from bench.backends import SeaweedServer
from tests.apiserver import Replica
from tests.conftest import API_KEY, shared_backend
from tests.programmatic.test_librechat_client import NODE_BIN, librechat_agents

__all__ = ["librechat_agents"]

ROOT = Path(__file__).resolve().parents[2]
DOC = ROOT / "docs" / "librechat.md"
CLIENT = Path(__file__).with_name("client.cjs")
DOC_HOST = "codeapi.internal:8000"
KID = "lc-codeapi-test"
CLIENT_REDIS_DB = 13
# Servers of this suite take uid ranges of their own, away from the other suites' replicas.
UID_BASE = 1001 + 576


def doc_blocks() -> dict[str, dict[str, str]]:
    """``side mode`` -> the block's variables, for every ```env block of docs/librechat.md."""
    found = re.findall(r"^```env (\w+) ([\w-]+)\n(.*?)^```", DOC.read_text(), re.MULTILINE | re.DOTALL)
    return {f"{side} {mode}": env_lines(body) for side, mode, body in found}


def env_lines(text: str) -> dict[str, str]:
    pairs = (line.partition("=") for line in text.splitlines() if line.strip() and not line.startswith("#"))
    return {name.strip(): value.strip() for name, _, value in pairs}


@dataclass(frozen=True)
class KeyPair:
    librechat: dict[str, str]  # jwt-keygen's lines for LibreChat's .env
    codeapi: dict[str, str]  # and for ours

    @property
    def jwk_x(self) -> str:
        pem = self.codeapi["CODEAPI_JWT_PUBLIC_KEY"].replace("\\n", "\n").encode()
        raw = serialization.load_pem_public_key(pem).public_bytes(
            serialization.Encoding.Raw, serialization.PublicFormat.Raw
        )
        return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


@pytest.fixture(scope="session")
def key_pair() -> KeyPair:
    """What an admin gets from `codeapi jwt-keygen`, split at its blank line into the two files' lines."""
    printed = subprocess.run(
        [sys.prefix + "/bin/codeapi", "jwt-keygen", "--kid", KID], capture_output=True, text=True, check=True
    ).stdout
    librechat, _, codeapi = printed.partition("\n\n")
    return KeyPair(env_lines(librechat), env_lines(codeapi))


def filled(block: dict[str, str], pair: KeyPair, address: str) -> dict[str, str]:
    """A doc block with its placeholders replaced by real values; a placeholder nobody fills fails here."""
    values = {
        "<API_KEY>": API_KEY,
        "<private key line of codeapi jwt-keygen>": pair.librechat["CODEAPI_JWT_PRIVATE_KEY"],
        "<public key line of codeapi jwt-keygen>": pair.codeapi["CODEAPI_JWT_PUBLIC_KEY"],
        "<key id of codeapi jwt-keygen>": KID,
        "<key id>": KID,
        "<x of the public key>": pair.jwk_x,
        DOC_HOST: address,
    }
    result = {}
    for name, value in block.items():
        for placeholder, real in values.items():
            value = value.replace(placeholder, real)
        assert "<" not in value, f"{name} holds a placeholder nobody fills: {value}"
        result[name] = value
    return result


class Server:
    """`codeapi serve` configured with the doc's codeapi blocks (plus a backend and ``extra`` settings)."""

    def __init__(
        self,
        root: Path,
        blocks: tuple[str, ...],
        pair: KeyPair,
        uid: int,
        backend: dict[str, Any],
        extra: dict[str, str] | None = None,
    ) -> None:
        settings: dict[str, str] = {}
        for block in blocks:  # codeapi's blocks name no address
            settings.update(filled(doc_blocks()[f"codeapi {block}"], pair, address=""))
        settings.update(extra or {})
        # Python starts on its first call: these servers run bash, and start faster without the warm pool.
        quick = {"SANDBOX_UID": uid, "SANDBOX_POOL_WARMUP_ON_STARTUP": "false"}
        self.replica = Replica(root, {**quick, **backend, **settings})
        self.address = f"127.0.0.1:{self.replica.port}"
        self.url = self.replica.url

    def librechat_env(self, block: str, pair: KeyPair, *more: str) -> dict[str, str]:
        """LibreChat's .env: the doc's block for ``block`` and those for ``more`` (the stateful route's)."""
        env: dict[str, str] = {}
        for name in (block, *more):
            env.update(filled(doc_blocks()[f"librechat {name}"], pair, self.address))
        return env


def run_client(agents: Path, env: dict[str, str], user: dict[str, str], **options: Any) -> dict[str, Any]:
    done = subprocess.run(
        [str(NODE_BIN / "node"), str(CLIENT), json.dumps({"env": env, "user": user, **options})],
        cwd=agents,
        env={"PATH": f"{NODE_BIN}:/usr/bin:/bin", "NODE_PATH": str(agents / "node_modules")},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    result: dict[str, Any] = json.loads(done.stdout)
    return result


def start(
    root: Path,
    blocks: str | tuple[str, ...],
    pair: KeyPair,
    uid: int,
    backend: dict[str, Any] | None = None,
    extra: dict[str, str] | None = None,
) -> Iterator[Server]:
    server = Server(root, (blocks,) if isinstance(blocks, str) else blocks, pair, uid, backend or {}, extra)
    try:
        server.replica.wait_ready()
        yield server
    finally:
        server.replica.stop()


@pytest.fixture(scope="session", params=["embedded", "shared"])
def jwt_server(request: pytest.FixtureRequest, test_root: Path, key_pair: KeyPair) -> Iterator[Server]:
    """The doc's JWT block with its stateful route's block, on both backends."""
    backend: dict[str, Any] = {}
    if request.param == "shared":
        seaweed: SeaweedServer = request.getfixturevalue("api_seaweed")
        backend = shared_backend(seaweed, redis_db=CLIENT_REDIS_DB)
    offset = 64 if request.param == "shared" else 0
    root = test_root / f"librechat-jwt-{request.param}"
    yield from start(root, ("jwt", "stateful"), key_pair, UID_BASE + offset, backend)


def stateful_hint(user_id: str, scope: str = "user", *parts: str) -> str:
    """The runtime_session_hint LibreChat derives for a stateful agent (packages/api's
    resolveRuntimeSessionHint): ``v2:<scope>:`` and 32 hex digits of the sha256 of the JSON list
    [user id, agent or conversation id]."""
    fingerprint = hashlib.sha256(json.dumps([user_id, *parts], separators=(",", ":")).encode()).hexdigest()
    return f"v2:{scope}:{fingerprint[:32]}"

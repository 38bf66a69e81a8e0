"""Security events in a real server's log: structured, with the client and a key's prefix, never a secret."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from codeapi.auth.keys import fingerprint
from tests.admin.conftest import MASTER_KEY
from tests.apiserver import Replica
from tests.conftest import API_KEY

GUESSED_KEY = "guessed-key-123456789"
USER = {"x-api-key": API_KEY}
USER_FINGERPRINT = fingerprint(API_KEY)


def server(root: Path, **env: Any) -> Iterator[Replica]:
    replica = Replica(
        root, {"MASTER_API_KEY": MASTER_KEY, "REPL_ENABLED": "false", "LOG_FORMAT": "json", "LOG_LEVEL": "INFO", **env}
    )
    try:
        replica.wait_ready()
        yield replica
    finally:
        replica.stop()


def events(replica: Replica) -> list[dict[str, Any]]:
    lines = Path(replica.log.name).read_text().splitlines()
    return [json.loads(line) for line in lines if line.startswith("{")]


@pytest.fixture(scope="module")
def logged(test_root: Path) -> Iterator[Replica]:
    yield from server(test_root / f"seclog-{uuid.uuid4().hex[:6]}")


def test_auth_failures_rate_limits_admin_actions_and_timeouts_are_logged(logged: Replica) -> None:
    admin = {"x-api-key": MASTER_KEY}
    with httpx.Client(base_url=logged.url, timeout=60) as client:
        assert client.get("/files/" + "A" * 21, headers={"x-api-key": GUESSED_KEY}).status_code == 401
        assert client.get("/api/v1/admin/keys", headers={"x-api-key": "not-the-master-key-00"}).status_code == 401
        created = client.post(
            "/api/v1/admin/keys", headers=admin, json={"name": "logged", "rate_limits": {"per_minute": 1}}
        )
        key = created.json()["api_key"]
        tenant = {"x-api-key": key}
        timed_out = client.post("/exec", headers=tenant, json={"lang": "bash", "code": "sleep 30", "timeout": 1000})
        assert timed_out.status_code == 200
        # Hostile: more processes than MAX_PROCESSES (64) allows; the cap holds and is reported.
        forks = {"lang": "bash", "code": "for i in $(seq 100); do sleep 5 & done 2>/dev/null; wait", "timeout": 3000}
        assert client.post("/exec", headers=USER, json=forks).status_code == 200
        assert client.get("/files/" + "A" * 21, headers=tenant).status_code == 429
        client.delete(f"/api/v1/admin/keys/{created.json()['record']['key_hash']}", headers=admin)
    found: dict[str, list[dict[str, Any]]] = {}
    for event in events(logged):
        if event.get("logger") == "codeapi.security":
            found.setdefault(event["event"], []).append(event)
    assert found["security.auth_failed"][0]["client_ip"] == "127.0.0.1"
    assert found["security.auth_failed"][0]["key_fingerprint"]
    assert found["security.admin_auth_failed"][0]["client_ip"] == "127.0.0.1"
    assert found["admin.key_created"][0]["key_prefix"] == key[:11]
    assert found["sandbox.timed_out"][0]["caller"] == key[:11]
    assert found["security.rate_limited"][0]["caller"] == key[:11]
    assert "admin.key_revoked" in found
    capped = found["sandbox.process_capped"][0]
    assert (capped["processes"], capped["client_ip"], capped["caller"]) == (64, "127.0.0.1", USER_FINGERPRINT)
    log_text = Path(logged.log.name).read_text()
    for secret in (GUESSED_KEY, key, MASTER_KEY, API_KEY, "not-the-master-key-00"):
        assert secret not in log_text


def test_security_logs_can_be_switched_off(test_root: Path) -> None:
    for replica in server(test_root / f"quiet-{uuid.uuid4().hex[:6]}", ENABLE_SECURITY_LOGS="false"):
        with httpx.Client(base_url=replica.url, timeout=60) as client:
            assert client.get("/files/" + "A" * 21, headers={"x-api-key": GUESSED_KEY}).status_code == 401
        assert [event for event in events(replica) if event.get("logger") == "codeapi.security"] == []
        assert any(event["event"] == "codeapi.started" for event in events(replica))

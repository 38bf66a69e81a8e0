"""@librechat/agents 3.9.2's tools with LibreChat's per-user tokens, on both backends: execution profiles
as the client sends them, and two tenants whose users share an id."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.librechat.conftest import UID_BASE, KeyPair, Server, run_client, start

ACME_ALICE = {"id": "alice", "tenantId": "acme"}
GLOBEX_ALICE = {"id": "alice", "tenantId": "globex"}
TOOLS = ("execute_code", "bash_tool")


def test_the_default_profile_is_served(librechat_agents: Path, jwt_server: Server, key_pair: KeyPair) -> None:
    env = jwt_server.librechat_env("jwt", key_pair)
    calls = [{"tool": "execute_code", "lang": "bash", "code": "echo default profile"}]
    ran = run_client(librechat_agents, env, ACME_ALICE, executionProfile="default", calls=calls)
    assert ran["results"][0]["content"].startswith("stdout:\ndefault profile"), ran


@pytest.fixture(scope="module")
def default_only_server(test_root: Path, key_pair: KeyPair) -> Iterator[Server]:
    """The doc's JWT block on a deployment that turned the stateful route off."""
    extra = {"CODEAPI_EXECUTION_PROFILES": "default"}
    yield from start(test_root / "librechat-default-only", "jwt", key_pair, UID_BASE + 320, extra=extra)


def test_a_stateful_agent_on_a_default_only_deployment_is_a_permanent_capability_mismatch(
    librechat_agents: Path, default_only_server: Server, key_pair: KeyPair
) -> None:
    env = default_only_server.librechat_env("jwt", key_pair, "stateful")
    calls = [{"tool": "prewarm"}, *({"tool": tool, "lang": "bash", "code": "echo never"} for tool in TOOLS)]
    for options in ({"executionProfile": "stateful"}, {"stateful": {"hint": "v2:user:" + "0" * 32}}):
        ran = run_client(librechat_agents, env, ACME_ALICE, calls=calls, **options)
        prewarm, *tools = ran["results"]
        if "stateful" in options:
            assert prewarm["prewarm"]["status"] == 409, prewarm
            assert prewarm["prewarm"]["body"]["error"] == "execution_profile_mismatch"
        for result in tools:
            assert "does not provide the requested execution profile" in result["error"], result
            assert "permanent capability mismatch" in result["error"]


def bearer_of(agents: Path, env: dict[str, str], user: dict[str, str]) -> dict[str, str]:
    token = run_client(agents, env, user, mint=True)["token"]
    return {"authorization": f"Bearer {token}"}


def test_two_tenants_with_one_user_id_share_nothing(
    librechat_agents: Path, jwt_server: Server, key_pair: KeyPair
) -> None:
    env = jwt_server.librechat_env("jwt", key_pair)
    code = "printf acme-secret > /mnt/data/report.txt"
    ran = run_client(librechat_agents, env, ACME_ALICE, calls=[{"tool": "bash_tool", "code": code}])
    artifact = ran["results"][0]["artifact"]
    session_id, file_id = artifact["session_id"], artifact["files"][0]["id"]
    acme, globex = bearer_of(librechat_agents, env, ACME_ALICE), bearer_of(librechat_agents, env, GLOBEX_ALICE)
    with httpx.Client(base_url=f"{jwt_server.url}/v1", timeout=60) as client:
        # LibreChat fetches a run's outputs with its user's token: acme's alice gets hers.
        query = {"kind": "user", "id": "alice"}
        assert client.get(f"/download/{session_id}/{file_id}", params=query, headers=acme).content == b"acme-secret"
        assert client.get(f"/download/{session_id}/{file_id}", params=query, headers=globex).status_code == 404
        assert client.get(f"/sessions/{session_id}/objects/{file_id}", headers=globex).status_code == 404
        assert client.get(f"/files/{session_id}", params={"detail": "full"}, headers=globex).json() == []
        continued = {"lang": "bash", "code": "cat report.txt 2>/dev/null || echo nothing", "session_id": session_id}
        theirs = client.post("/exec", json=continued, headers=globex).json()
        assert (theirs["session_id"] != session_id, theirs["stdout"]) == (True, "nothing\n")
        mine = client.post("/exec", json=continued, headers=acme).json()
        assert (mine["session_id"], mine["stdout"]) == (session_id, "acme-secret")

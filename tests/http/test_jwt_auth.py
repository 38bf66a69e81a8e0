"""Bearer JWTs as current LibreChat mints them (contract §3.1), verified with its public key."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519, rsa

from codeapi.app import create_app
from codeapi.config import ConfigError
from tests.conftest import API_KEY, ClientFactory
from tests.conftest import test_settings as settings_at

ED25519 = ed25519.Ed25519PrivateKey.generate()
RSA = rsa.generate_private_key(public_exponent=65537, key_size=2048)
STRANGER = ed25519.Ed25519PrivateKey.generate()


def public_pem(key: Any) -> str:
    return (
        key.public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode()
    )


def token(key: Any = ED25519, algorithm: str = "EdDSA", lifetime_s: int = 300, **changes: Any) -> str:
    """Claims and header as LibreChat's packages/api/src/auth/codeapi.ts builds them."""
    now = int(time.time())
    claims: dict[str, Any] = {
        "iss": "librechat",
        "aud": "codeapi",
        "sub": "user-1",
        "iat": now,
        "nbf": now,
        "exp": now + lifetime_s,
        "jti": str(uuid.uuid4()),
        "tenant_id": "legacy",
        "role": "USER",
        "principal_source": "librechat_jwt",
        "auth_context_hash": "0" * 64,
    }
    claims.update(changes)
    claims = {name: value for name, value in claims.items() if value is not None}
    return jwt.encode(claims, key, algorithm=algorithm, headers={"kid": "lc-codeapi-2026-05"})


def bearer(value: str) -> dict[str, str]:
    return {"authorization": f"Bearer {value}"}


@pytest.fixture(scope="module")
async def guarded(make_client: ClientFactory) -> AsyncIterator[httpx.AsyncClient]:
    # The PEM as LibreChat's .env holds it: one line with literal \n.
    inline = public_pem(ED25519).replace("\n", "\\n")
    async with make_client(headers={}, CODEAPI_JWT_PUBLIC_KEY=inline) as client:
        yield client


async def status(client: httpx.AsyncClient, headers: dict[str, str]) -> int:
    return (await client.get("/files/" + "A" * 21, headers=headers)).status_code


async def test_a_librechat_token_runs_code(guarded: httpx.AsyncClient) -> None:
    response = await guarded.post("/exec", json={"lang": "bash", "code": "echo signed"}, headers=bearer(token()))
    assert response.status_code == 200
    assert response.json()["stdout"] == "signed\n"


async def test_api_keys_still_work_beside_tokens(guarded: httpx.AsyncClient) -> None:
    assert await status(guarded, {"x-api-key": API_KEY}) == 200
    # x-api-key wins when present, as in the reference: a wrong key is not rescued by a good token.
    assert await status(guarded, {"x-api-key": "wrong", **bearer(token())}) == 401


@pytest.mark.parametrize(
    "credential",
    [
        token(STRANGER),
        token(iss="someone-else"),
        token(aud="another-api"),
        token(exp=int(time.time()) - 120, iat=int(time.time()) - 400, nbf=int(time.time()) - 400),
        token(nbf=int(time.time()) + 600, iat=int(time.time()) + 600, exp=int(time.time()) + 900),
        token(lifetime_s=3600),
        token(sub=None),
        token(sub=""),
        token(sub=7),
        token(exp=str(int(time.time()) + 300)),
        token(iat=str(int(time.time()))),
        token(RSA, "RS256"),
        jwt.encode({"iss": "librechat", "aud": "codeapi", "sub": "u"}, key=None, algorithm="none"),
        "not.a.jwt",
    ],
    ids=[
        "other-signer",
        "wrong-issuer",
        "wrong-audience",
        "expired",
        "not-yet-valid",
        "lives-too-long",
        "no-subject",
        "empty-subject",
        "numeric-subject",
        "exp-a-string",
        "iat-a-string",
        "other-algorithm",
        "unsigned",
        "garbage",
    ],
)
async def test_tokens_librechat_did_not_mint_now_are_refused(guarded: httpx.AsyncClient, credential: str) -> None:
    response = await guarded.get("/files/" + "A" * 21, headers=bearer(credential))
    assert response.status_code == 401
    assert response.json()["error"].startswith("Invalid token")


async def test_rs256_and_a_jwk_from_a_file(make_client: ClientFactory, tmp_path: Path) -> None:
    jwk_file = tmp_path / "librechat-public.jwk"
    jwk_file.write_text(json.dumps(json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(RSA.public_key()))))
    settings = {"CODEAPI_JWT_PUBLIC_KEY_FILE": str(jwk_file), "CODEAPI_JWT_ALGORITHM": "RS256"}
    async with make_client(headers={}, **settings) as client:
        assert await status(client, bearer(token(RSA, "RS256"))) == 200
        assert await status(client, bearer(token())) == 401


async def test_an_issuer_and_audience_of_their_own(make_client: ClientFactory) -> None:
    settings = {
        "CODEAPI_JWT_PUBLIC_KEY": public_pem(ED25519),
        "CODEAPI_JWT_ISSUER": "lc-eu",
        "CODEAPI_JWT_AUDIENCE": "sandbox-eu",
    }
    async with make_client(headers={}, **settings) as client:
        assert await status(client, bearer(token(iss="lc-eu", aud="sandbox-eu"))) == 200
        assert await status(client, bearer(token())) == 401  # LibreChat's defaults no longer match


async def test_without_a_public_key_a_bearer_token_is_not_a_credential(make_client: ClientFactory) -> None:
    async with make_client(headers={}) as client:
        response = await client.get("/files/" + "A" * 21, headers=bearer(token()))
        assert response.status_code == 401
        assert response.json()["error"] == "API key is required"


def test_a_key_that_is_not_a_public_key_stops_the_start(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="CODEAPI_JWT_PUBLIC_KEY"):
        create_app(
            settings_at(tmp_path, CODEAPI_JWT_PUBLIC_KEY="-----BEGIN PUBLIC KEY-----\nnope\n-----END PUBLIC KEY-----")
        )


def test_a_missing_key_file_is_a_configuration_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="CODEAPI_JWT_PUBLIC_KEY_FILE"):
        settings_at(tmp_path, CODEAPI_JWT_PUBLIC_KEY_FILE=str(tmp_path / "absent.pem"))


async def test_the_tokens_user_owns_sessions_whatever_the_body_claims(guarded: httpx.AsyncClient) -> None:
    """A same-user file reference continues its session only for the user the token names."""
    uploaded = await guarded.post("/upload", files={"file": ("data.csv", b"a,b\n")}, headers=bearer(token(sub="alice")))
    upload = uploaded.json()
    ref = {"id": upload["files"][0]["fileId"], "storage_session_id": upload["storage_session_id"], "name": "data.csv"}
    payload = {"lang": "bash", "code": "ls", "files": [ref]}
    as_alice = await guarded.post("/exec", json={**payload, "user_id": "mallory"}, headers=bearer(token(sub="alice")))
    assert as_alice.json()["session_id"] == upload["storage_session_id"]
    as_mallory = await guarded.post("/exec", json={**payload, "user_id": "alice"}, headers=bearer(token(sub="mallory")))
    assert as_mallory.json()["session_id"] != upload["storage_session_id"]
    assert as_mallory.json()["stdout"] == "data.csv\n"  # the referenced file is still mounted


async def test_a_token_for_another_user_does_not_continue_a_session(guarded: httpx.AsyncClient) -> None:
    as_alice = bearer(token(sub="alice"))
    as_mallory = bearer(token(sub="mallory"))
    started = await guarded.post(
        "/exec", json={"lang": "bash", "code": "echo alice-only > secret.txt"}, headers=as_alice
    )
    session_id = started.json()["session_id"]

    continued = {
        "lang": "bash",
        "code": "ls; cat secret.txt 2>/dev/null || echo nothing",
        "session_id": session_id,
        "entity_id": "asst_tokens",
    }
    # The body's user_id is a claim; the token's user is the one that counts.
    mallory = await guarded.post("/exec", json={**continued, "user_id": "alice"}, headers=as_mallory)
    alice = await guarded.post("/exec", json=continued, headers=as_alice)

    assert mallory.json()["session_id"] != session_id
    assert mallory.json()["stdout"] == "nothing\n"
    assert alice.json()["session_id"] == session_id
    assert "alice-only" in alice.json()["stdout"]

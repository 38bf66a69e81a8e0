"""The official verifier's settings (contract §9.1): keys by kid for rotation, allowed algorithms, the
lifetime cap, the claims LibreChat always sends, and which credentials CODEAPI_AUTH_PROVIDER accepts."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519, rsa

from codeapi.app import create_app
from codeapi.config import ConfigError
from tests.auth.signing import bearer, mint, public_jwk, public_pem
from tests.conftest import API_KEY, ClientFactory
from tests.conftest import test_settings as settings_at

OLD = ed25519.Ed25519PrivateKey.generate()
NEW = ed25519.Ed25519PrivateKey.generate()
RSA = rsa.generate_private_key(public_exponent=65537, key_size=2048)
LISTING = "/files/" + "A" * 21


def jwks(*keys: tuple[Any, str]) -> str:
    return json.dumps({"keys": [public_jwk(key, kid) for key, kid in keys]})


async def status(client: httpx.AsyncClient, token: str, **headers: str) -> int:
    return (await client.get(LISTING, headers={**bearer(token), **headers})).status_code


async def refusal(client: httpx.AsyncClient, token: str) -> str:
    response = await client.get(LISTING, headers=bearer(token))
    assert response.status_code == 401, response.text
    message: str = response.json()["error"]
    return message


async def test_keys_are_chosen_by_kid_so_two_can_verify_at_once(make_client: ClientFactory) -> None:
    async with make_client(headers={}, CODEAPI_JWT_JWKS_JSON=jwks((OLD, "lc-2026-05"), (NEW, "lc-2026-06"))) as client:
        assert await status(client, mint(OLD, kid="lc-2026-05")) == 200
        assert await status(client, mint(NEW, kid="lc-2026-06")) == 200
        assert (await refusal(client, mint(OLD, kid="lc-2026-06"))).startswith("Invalid token: Signature")
        assert await refusal(client, mint(NEW, kid="lc-2026-07")) == "Invalid token: no key has the id 'lc-2026-07'"
        assert await refusal(client, mint(NEW, kid="")) == "Invalid token: no key has the id ''"


async def test_a_directory_of_keys_named_by_their_kid(make_client: ClientFactory, tmp_path: Path) -> None:
    (tmp_path / "lc-old.pem").write_text(public_pem(OLD))
    (tmp_path / "lc-rsa.jwk").write_text(json.dumps(public_jwk(RSA, "ignored: the file names the kid")))
    (tmp_path / ".lc-new.pem").write_text(public_pem(NEW))  # hidden: not a key
    async with make_client(headers={}, CODEAPI_JWT_PUBLIC_KEYS_DIR=str(tmp_path)) as client:
        assert await status(client, mint(OLD, kid="lc-old")) == 200
        assert await status(client, mint(RSA, kid="lc-rsa")) == 200
        assert await status(client, mint(NEW, kid=".lc-new")) == 401


async def test_a_public_key_named_by_kid_verifies_only_that_kid(make_client: ClientFactory) -> None:
    async with make_client(headers={}, CODEAPI_JWT_PUBLIC_KEY=public_pem(OLD), CODEAPI_JWT_KID="lc-old") as client:
        assert await status(client, mint(OLD, kid="lc-old")) == 200
        assert await status(client, mint(OLD, kid="lc-other")) == 401


async def test_an_unnamed_single_key_verifies_any_kid_as_before(make_client: ClientFactory) -> None:
    async with make_client(headers={}, CODEAPI_JWT_PUBLIC_KEY=public_pem(OLD)) as client:
        assert await status(client, mint(OLD, kid="whatever-librechat-names")) == 200


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"CODEAPI_JWT_PUBLIC_KEY": public_pem(OLD), "CODEAPI_JWT_JWKS_JSON": jwks((NEW, "n"))}, "CODEAPI_JWT_KID"),
        ({"CODEAPI_JWT_JWKS_JSON": jwks((OLD, "k"), (NEW, "k"))}, "configured twice: k"),
        ({"CODEAPI_JWT_JWKS_JSON": json.dumps({"keys": [{**public_jwk(OLD, "k"), "kid": None}]})}, "needs its kid"),
        ({"CODEAPI_JWT_JWKS_JSON": json.dumps({"keys": [{**public_jwk(OLD, "k"), "alg": "RS256"}]})}, "says alg"),
        ({"CODEAPI_JWT_JWKS_JSON": "[]"}, "CODEAPI_JWT_JWKS_JSON"),
        ({"CODEAPI_JWT_PUBLIC_KEY": public_pem(RSA), "CODEAPI_JWT_ALGORITHM": "EdDSA"}, "CODEAPI_JWT_ALGORITHM=EdDSA"),
        (
            {
                "CODEAPI_JWT_PUBLIC_KEY": OLD.private_bytes(
                    serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
                ).decode()
            },
            "private key",
        ),
    ],
    ids=[
        "unnamed-beside-others",
        "kid-twice",
        "jwk-without-kid",
        "jwk-alg-not-its-type",
        "not-a-jwks",
        "pinned-alg",
        "private",
    ],
)
def test_key_settings_that_cannot_verify_stop_the_start(tmp_path: Path, settings: dict[str, str], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        create_app(settings_at(tmp_path, **settings))


async def test_only_the_allowed_algorithms_verify(make_client: ClientFactory) -> None:
    settings = {"CODEAPI_JWT_JWKS_JSON": jwks((OLD, "ed"), (RSA, "rsa")), "CODEAPI_JWT_ALLOWED_ALGS": "EdDSA"}
    async with make_client(headers={}, **settings) as client:
        assert await status(client, mint(OLD, kid="ed")) == 200
        assert await refusal(client, mint(RSA, kid="rsa")) == "Invalid token: algorithm 'RS256' is not allowed"


async def test_tokens_living_longer_than_the_configured_maximum_are_refused(make_client: ClientFactory) -> None:
    async with make_client(
        headers={}, CODEAPI_JWT_PUBLIC_KEY=public_pem(OLD), CODEAPI_JWT_MAX_TTL_SECONDS=60
    ) as client:
        assert await status(client, mint(OLD, lifetime_s=60)) == 200
        assert "at most 60 s" in await refusal(client, mint(OLD, lifetime_s=61))


def test_the_maximum_lifetime_is_capped_at_300_seconds(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="CODEAPI_JWT_MAX_TTL_SECONDS"):
        settings_at(tmp_path, CODEAPI_JWT_MAX_TTL_SECONDS=301)


@pytest.mark.parametrize(
    "changes",
    [
        {"jti": None},
        {"jti": "x" * 257},
        {"principal_source": None},
        {"principal_source": "agent_run"},
        {"auth_context_hash": None},
        {"tenant_id": ""},
        {"tenant_id": 7},
        {"iat": int(time.time()) + 120, "nbf": int(time.time()), "exp": int(time.time()) + 300},
        {"exp": int(time.time()) - 1, "iat": int(time.time()), "nbf": int(time.time())},
    ],
    ids=[
        "no-jti",
        "long-jti",
        "no-source",
        "other-source",
        "no-hash",
        "empty-tenant",
        "numeric-tenant",
        "future-iat",
        "exp-before-iat",
    ],
)
async def test_tokens_without_what_librechat_always_sends_are_refused(
    make_client: ClientFactory, changes: dict[str, Any]
) -> None:
    async with make_client(headers={}, CODEAPI_JWT_PUBLIC_KEY=public_pem(OLD)) as client:
        assert (await refusal(client, mint(OLD, **changes))).startswith("Invalid token")


async def test_librechat_jwt_provider_accepts_only_tokens(make_client: ClientFactory) -> None:
    settings = {"CODEAPI_AUTH_PROVIDER": "librechat-jwt", "CODEAPI_JWT_PUBLIC_KEY": public_pem(OLD)}
    async with make_client(headers={}, **settings) as client:
        keyed = await client.get(LISTING, headers={"x-api-key": API_KEY})
        assert keyed.status_code == 401
        assert keyed.json()["error"] == "Bearer token is required"
        # LibreChat's provisioning adds its LIBRECHAT_CODE_API_KEY beside the token: the token decides.
        assert await status(client, mint(OLD), **{"x-api-key": "not-a-key"}) == 200


async def test_legacy_api_key_provider_ignores_tokens(make_client: ClientFactory) -> None:
    settings = {"CODEAPI_AUTH_PROVIDER": "legacy-api-key", "CODEAPI_JWT_PUBLIC_KEY": public_pem(OLD)}
    async with make_client(headers={}, **settings) as client:
        assert (await refusal(client, mint(OLD))) == "API key is required"
        assert (await client.get(LISTING, headers={"x-api-key": API_KEY})).status_code == 200


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"CODEAPI_AUTH_PROVIDER": "none"}, "AUTH_ENABLED=false"),
        ({"CODEAPI_AUTH_PROVIDER": "librechat-jwt"}, "needs a verification key"),
        ({"CODEAPI_AUTH_PROVIDER": "both"}, "needs a verification key"),
        ({"CODEAPI_AUTH_PROVIDER": "typo"}, "CODEAPI_AUTH_PROVIDER"),
        ({"CODEAPI_JWT_ALLOWED_ALGS": "HS256"}, "CODEAPI_JWT_ALLOWED_ALGS"),
        ({"CODEAPI_JWT_PUBLIC_KEYS_DIR": "/nonexistent-keys"}, "CODEAPI_JWT_PUBLIC_KEYS_DIR"),
    ],
)
def test_provider_settings_that_cannot_work_are_configuration_errors(
    tmp_path: Path, settings: dict[str, str], message: str
) -> None:
    with pytest.raises(ConfigError, match=message):
        settings_at(tmp_path, **settings)


async def test_strict_tenant_isolation_refuses_tokens_without_a_tenant(make_client: ClientFactory) -> None:
    settings = {"CODEAPI_JWT_PUBLIC_KEY": public_pem(OLD), "CODEAPI_TENANT_ISOLATION_STRICT": True}
    async with make_client(headers={}, **settings) as client:
        assert "tenant_id is required" in await refusal(client, mint(OLD, tenant_id=None))
        assert await status(client, mint(OLD, tenant_id="acme")) == 200


async def test_a_token_without_a_tenant_belongs_to_the_single_tenant(make_client: ClientFactory) -> None:
    settings = {"CODEAPI_JWT_PUBLIC_KEY": public_pem(OLD), "CODEAPI_JWT_SINGLE_TENANT_ID": "acme"}
    async with make_client(headers={}, **settings) as client:
        body = {"lang": "bash", "code": "echo kept > kept.txt", "entity_id": "asst_single_tenant"}
        first = await client.post("/exec", json=body, headers=bearer(mint(OLD, tenant_id=None)))
        again = {**body, "code": "cat kept.txt 2>/dev/null || echo none"}
        same = await client.post("/exec", json=again, headers=bearer(mint(OLD, tenant_id="acme")))
        other = await client.post("/exec", json=again, headers=bearer(mint(OLD, tenant_id="legacy")))
        assert same.json()["session_id"] == first.json()["session_id"]
        assert same.json()["stdout"] == "kept\n"
        assert other.json()["session_id"] != first.json()["session_id"]
        assert other.json()["stdout"] == "none\n"

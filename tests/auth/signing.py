"""Tokens as LibreChat's packages/api/src/auth/codeapi.ts mints them (header alg, typ and kid; its claims),
signed here with PyJWT for tests that drive the API in-process. tests/librechat mints them in Node."""

from __future__ import annotations

import hashlib
import json
import time
import uuid
from typing import Any

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519, rsa

DEFAULT_KID = "lc-codeapi-2026-05"  # LibreChat's default CODEAPI_JWT_KID

PrivateKey = ed25519.Ed25519PrivateKey | rsa.RSAPrivateKey


def public_pem(key: PrivateKey) -> str:
    return (
        key.public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode()
    )


def public_jwk(key: PrivateKey, kid: str) -> dict[str, Any]:
    algorithm = (
        jwt.algorithms.OKPAlgorithm if isinstance(key, ed25519.Ed25519PrivateKey) else jwt.algorithms.RSAAlgorithm
    )
    jwk: dict[str, Any] = json.loads(algorithm.to_jwk(key.public_key()))
    return {**jwk, "kid": kid}


def context_hash(sub: str, tenant_id: str, role: str, principal_source: str) -> str:
    canonical = {
        "chc_user_id": "",
        "org_id": "",
        "principal_source": principal_source,
        "role": role,
        "service_id": "",
        "sub": sub,
        "tenant_id": tenant_id,
    }
    return hashlib.sha256(json.dumps(canonical, separators=(",", ":")).encode()).hexdigest()


def mint(key: PrivateKey, kid: str = DEFAULT_KID, lifetime_s: int = 300, **changes: Any) -> str:
    """``changes`` override claims; a claim set to None is left out."""
    now = int(time.time())
    sub, tenant_id = changes.get("sub", "alice"), changes.get("tenant_id", "legacy")
    claims: dict[str, Any] = {
        "iss": "librechat",
        "aud": "codeapi",
        "sub": sub,
        "iat": now,
        "nbf": now,
        "exp": now + lifetime_s,
        "jti": str(uuid.uuid4()),
        "tenant_id": tenant_id,
        "role": "USER",
        "principal_source": "librechat_jwt",
        "auth_context_hash": context_hash(str(sub), str(tenant_id), "USER", "librechat_jwt"),
    }
    claims.update(changes)
    claims = {name: value for name, value in claims.items() if value is not None}
    algorithm = "EdDSA" if isinstance(key, ed25519.Ed25519PrivateKey) else "RS256"
    return jwt.encode(claims, key, algorithm=algorithm, headers={"typ": "JWT", "kid": kid})


def bearer(token: str) -> dict[str, str]:
    return {"authorization": f"Bearer {token}"}

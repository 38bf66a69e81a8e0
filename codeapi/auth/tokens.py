"""Bearer JWTs that current LibreChat mints per user for the Code API (contract §3.1, §9.1).

LibreChat signs with its private key (EdDSA by default, or RS256) and names the key in the header's
``kid``; this side verifies with the public key of that kid (``keyring``), the issuer and audience
LibreChat puts in, and refuses what LibreChat never mints: a token living longer than
CODEAPI_JWT_MAX_TTL_SECONDS, or one without its identity claims. The verified principal is the pair
(tenant, user) that owns sessions, files, state, rate limits and usage.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import jwt

from codeapi.auth.keyring import load_keyring
from codeapi.config.groups import AuthSettings
from codeapi.errors import AuthError
from codeapi.sessions.owners import token_owner

CLOCK_SKEW_S = 30  # between LibreChat's host and this one, as the official verifier allows
REQUIRED_CLAIMS = ("exp", "iat", "nbf", "iss", "aud", "sub", "jti")
PRINCIPAL_SOURCES = ("librechat_jwt", "openid_reuse")  # what LibreChat's signer ever puts in
MAX_JTI_LENGTH = 256


@dataclass(frozen=True)
class Principal:
    tenant_id: str
    user_id: str  # the token's sub

    @property
    def owner_id(self) -> str:
        return token_owner(self.tenant_id, self.user_id)


def extract_bearer(headers: Mapping[str, str]) -> str | None:
    scheme, _, token = headers.get("authorization", "").partition(" ")
    return token.strip() or None if scheme.lower() == "bearer" else None


class TokenVerifier:
    def __init__(self, auth: AuthSettings) -> None:
        self.keyring = load_keyring(auth)
        self.allowed_algorithms = tuple(auth.jwt_allowed_algs)
        self.issuer = auth.jwt_issuer
        self.audience = auth.jwt_audience
        self.max_ttl_s = auth.jwt_max_ttl_seconds
        self.single_tenant_id = auth.jwt_single_tenant_id
        self.strict_tenants = auth.tenant_isolation_strict
        self.only_credential = not auth.api_keys_accepted

    def verify(self, token: str) -> Principal:
        """The principal of a valid token; AuthError for anything else."""
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError as error:
            raise AuthError(f"Invalid token: {error}") from None
        algorithm = header.get("alg")
        if algorithm not in self.allowed_algorithms:
            raise AuthError(f"Invalid token: algorithm {algorithm!r} is not allowed")
        if header.get("typ", "JWT") != "JWT":
            raise AuthError("Invalid token: typ must be JWT")
        key = self.keyring.find(header.get("kid"))
        if key is None:
            raise AuthError(f"Invalid token: no key has the id {header.get('kid')!r}")
        if key.algorithm != algorithm:
            raise AuthError(f"Invalid token: key {header.get('kid')!r} verifies {key.algorithm}, not {algorithm}")
        try:
            claims = jwt.decode(
                token,
                key.key,
                algorithms=[key.algorithm],  # the key's, never what the token's own header asks for
                audience=self.audience,
                issuer=self.issuer,
                leeway=CLOCK_SKEW_S,
                options={"require": list(REQUIRED_CLAIMS)},
            )
        except jwt.PyJWTError as error:
            raise AuthError(f"Invalid token: {error}") from None
        user_id = self.checked_identity(claims)
        return Principal(self.tenant_of(claims), user_id)

    def checked_identity(self, claims: dict[str, Any]) -> str:
        """The token's sub, once its times and identity claims are what LibreChat mints."""
        # PyJWT accepts a numeric string for exp (it calls int() on it) and an empty sub.
        if not all(is_number(claims[name]) for name in ("exp", "iat", "nbf")):
            raise AuthError("Invalid token: exp, iat and nbf must be numbers")
        if claims["iat"] > time.time() + CLOCK_SKEW_S:
            raise AuthError("Invalid token: issued in the future")
        if not 0 < claims["exp"] - claims["iat"] <= self.max_ttl_s:
            raise AuthError(f"Invalid token: must live more than 0 and at most {self.max_ttl_s} s")
        for name in ("sub", "jti", "auth_context_hash"):
            if not is_text(claims.get(name)):
                raise AuthError(f"Invalid token: {name} must be a non-empty string")
        if len(claims["jti"]) > MAX_JTI_LENGTH:
            raise AuthError("Invalid token: jti is too long")
        if claims.get("principal_source") not in PRINCIPAL_SOURCES:
            raise AuthError(f"Invalid token: principal_source must be one of {', '.join(PRINCIPAL_SOURCES)}")
        user_id: str = claims["sub"]
        return user_id

    def tenant_of(self, claims: dict[str, Any]) -> str:
        """The token's tenant_id; without one, the single tenant (refused under strict isolation)."""
        tenant_id = claims.get("tenant_id")
        if tenant_id is None:
            if self.strict_tenants:
                raise AuthError("Invalid token: tenant_id is required (CODEAPI_TENANT_ISOLATION_STRICT)")
            return self.single_tenant_id
        if not is_text(tenant_id):
            raise AuthError("Invalid token: tenant_id must be a non-empty string")
        checked: str = tenant_id
        return checked


def build_token_verifier(auth: AuthSettings) -> TokenVerifier | None:
    """Bearer tokens are credentials once a verification key is configured (and the provider allows them)."""
    return TokenVerifier(auth) if auth.jwt_accepted else None


def is_number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def is_text(value: object) -> bool:
    return isinstance(value, str) and bool(value.strip())

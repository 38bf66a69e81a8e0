"""Bearer JWTs that current LibreChat mints per user for the Code API (contract §3.1).

LibreChat signs with its private key (EdDSA by default, or RS256); this side verifies with the
public half, the issuer and audience LibreChat puts in (``librechat`` and ``codeapi`` unless both
sides configure others), and refuses tokens that live longer than LibreChat ever mints them for.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

import jwt

from codeapi.errors import AuthError

MAX_LIFETIME_S = 300  # LibreChat caps its tokens at 300 s: a longer-lived one was not minted by it
CLOCK_LEEWAY_S = 30  # clock skew between LibreChat's host and this one
REQUIRED_CLAIMS = ("exp", "iat", "nbf", "iss", "aud", "sub")


class InvalidVerificationKey(ValueError):
    """CODEAPI_JWT_PUBLIC_KEY(_FILE) holds no public key usable with CODEAPI_JWT_ALGORITHM."""


def extract_bearer(headers: Mapping[str, str]) -> str | None:
    scheme, _, token = headers.get("authorization", "").partition(" ")
    return token.strip() or None if scheme.lower() == "bearer" else None


def load_public_key(text: str, algorithm: str) -> Any:
    """A PEM public key or a JWK (JSON), as the algorithm's key object."""
    try:
        if text.startswith("{"):
            return jwt.PyJWK(json.loads(text), algorithm=algorithm).key
        return jwt.get_algorithm_by_name(algorithm).prepare_key(text)
    except (jwt.PyJWTError, ValueError, TypeError) as error:
        raise InvalidVerificationKey(f"not a {algorithm} public key: {error}") from None


class TokenVerifier:
    def __init__(self, key_text: str, algorithm: str, issuer: str, audience: str) -> None:
        self.key = load_public_key(key_text, algorithm)
        self.algorithm = algorithm
        self.issuer = issuer
        self.audience = audience

    def verify(self, token: str) -> str:
        """The user id (``sub``) of a valid token; AuthError for anything else."""
        try:
            claims = jwt.decode(
                token,
                self.key,
                algorithms=[self.algorithm],  # never what the token's own header asks for
                audience=self.audience,
                issuer=self.issuer,
                leeway=CLOCK_LEEWAY_S,
                options={"require": list(REQUIRED_CLAIMS)},
            )
        except jwt.PyJWTError as error:
            raise AuthError(f"Invalid token: {error}") from None
        # PyJWT accepts a numeric string for exp (it calls int() on it) and an empty sub.
        if not all(is_number(claims[name]) for name in ("exp", "iat", "nbf")):
            raise AuthError("Invalid token: exp, iat and nbf must be numbers")
        if not isinstance(claims["sub"], str) or not claims["sub"].strip():
            raise AuthError("Invalid token: sub must name a user")
        if claims["exp"] - claims["iat"] > MAX_LIFETIME_S:
            raise AuthError(f"Invalid token: lives longer than {MAX_LIFETIME_S} s")
        return claims["sub"]


def is_number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)

"""`codeapi jwt-keygen`: a fresh Ed25519 pair as the .env lines of both sides.

LibreChat signs with the private half (its CODEAPI_JWT_PRIVATE_KEY), codeapi verifies with the public
half; both name the pair by the same key id, so a later pair can be added beside it (rotation). PEM
keys are written on one line with literal \\n, which both sides read back as newlines.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from datetime import UTC, datetime

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519


@dataclass(frozen=True)
class KeyPairLines:
    librechat: list[str]  # for LibreChat's .env
    codeapi: list[str]  # for ours

    def render(self) -> str:
        return "\n".join(
            [
                "# LibreChat's .env (it signs a token per user with the private key)",
                *self.librechat,
                "",
                "# codeapi's .env (it verifies them with the public key of that kid)",
                *self.codeapi,
                "",
            ]
        )


def new_kid(now: datetime | None = None) -> str:
    return f"lc-codeapi-{(now or datetime.now(UTC)):%Y-%m-%d}-{secrets.token_hex(3)}"


def one_line(pem: bytes) -> str:
    return pem.decode().strip().replace("\n", "\\n")


def key_pair_lines(kid: str) -> KeyPairLines:
    private = ed25519.Ed25519PrivateKey.generate()
    private_pem = private.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    public_pem = private.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return KeyPairLines(
        librechat=[
            "CODEAPI_JWT_ENABLED=true",
            f"CODEAPI_JWT_PRIVATE_KEY={one_line(private_pem)}",
            f"CODEAPI_JWT_KID={kid}",
        ],
        codeapi=[f"CODEAPI_JWT_PUBLIC_KEY={one_line(public_pem)}", f"CODEAPI_JWT_KID={kid}"],
    )

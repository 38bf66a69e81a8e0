"""The public keys that verify LibreChat's tokens, by key id (``kid``): several at once for rotation.

From the official verifier's sources (contract §9.1): an inline JWKS (CODEAPI_JWT_JWKS_JSON), a directory
of key files named by their kid (CODEAPI_JWT_PUBLIC_KEYS_DIR), and one key (CODEAPI_JWT_PUBLIC_KEY or
ours, its _FILE) named by CODEAPI_JWT_KID. That one key may go unnamed when it is the only key: it then
verifies tokens whatever kid they carry, as codeapi did before key ids. Each key's algorithm follows from
its type (Ed25519: EdDSA, RSA: RS256), so a token can never choose how its own signature is checked.
"""

from __future__ import annotations

import base64
import binascii
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519, rsa

from codeapi.config import ConfigError
from codeapi.config.groups import AuthSettings


@dataclass(frozen=True)
class VerificationKey:
    kid: str | None  # None: the only key, whatever kid a token names
    algorithm: str  # "EdDSA" or "RS256"
    key: Any  # the cryptography public key object


class Keyring:
    def __init__(self, keys: list[VerificationKey]) -> None:
        self.keys = keys
        self.by_kid = {key.kid: key for key in keys if key.kid is not None}

    def find(self, kid: object) -> VerificationKey | None:
        if len(self.keys) == 1 and self.keys[0].kid is None:
            return self.keys[0]
        return self.by_kid.get(kid) if isinstance(kid, str) else None


def algorithm_of(key: Any, variable: str) -> str:
    if isinstance(key, ed25519.Ed25519PublicKey):
        return "EdDSA"
    if isinstance(key, rsa.RSAPublicKey):
        return "RS256"
    raise ConfigError(f"{variable}: only Ed25519 (EdDSA) and RSA (RS256) public keys verify LibreChat's tokens")


def from_jwk(jwk: Any, variable: str) -> tuple[Any, str]:
    if not isinstance(jwk, dict):
        raise ConfigError(f"{variable}: a JWK is a JSON object")
    try:
        key = jwt.PyJWK({name: value for name, value in jwk.items() if name != "alg"}).key  # the type decides
    except (jwt.PyJWTError, ValueError, TypeError, KeyError) as error:
        raise ConfigError(f"{variable}: not a public JWK: {error}") from None
    algorithm = algorithm_of(key, variable)
    if jwk.get("alg") not in (None, algorithm):
        raise ConfigError(f"{variable}: the key of kid {jwk.get('kid')!r} says alg {jwk['alg']}, its type {algorithm}")
    return key, algorithm


def parse_public_key(text: str, variable: str) -> tuple[Any, str]:
    """A PEM, a JWK (JSON) or a base64 DER public key, with the algorithm it verifies."""
    text = text.strip()
    if "PRIVATE KEY" in text or (text.startswith("{") and '"d"' in text):
        raise ConfigError(f"{variable} holds a private key: give the public half (`codeapi jwt-keygen` prints both)")
    try:
        if text.startswith("{"):
            return from_jwk(json.loads(text), variable)
        if text.startswith("-----"):
            key = serialization.load_pem_public_key(text.encode())
        else:
            key = serialization.load_der_public_key(base64.b64decode(text, validate=True))
    except (ValueError, TypeError, binascii.Error) as error:
        raise ConfigError(f"{variable}: not a public key: {error}") from None
    return key, algorithm_of(key, variable)


def jwks_keys(text: str) -> list[VerificationKey]:
    variable = "CODEAPI_JWT_JWKS_JSON"
    try:
        document = json.loads(text)
    except ValueError as error:
        raise ConfigError(f"{variable}: not JSON: {error}") from None
    entries = document.get("keys") if isinstance(document, dict) else None
    if not isinstance(entries, list):
        raise ConfigError(f'{variable}: a JWKS is {{"keys": [...]}}')
    keys = []
    for entry in entries:
        if not isinstance(entry, dict) or not isinstance(entry.get("kid"), str) or not entry["kid"]:
            raise ConfigError(f"{variable}: every key needs its kid (the kid LibreChat's tokens name)")
        key, algorithm = from_jwk(entry, variable)
        keys.append(VerificationKey(entry["kid"], algorithm, key))
    return keys


def directory_keys(directory: Path) -> list[VerificationKey]:
    """One key per file, its kid the file name without its extension; hidden files are not keys."""
    keys = []
    for path in sorted(directory.iterdir()):
        if path.name.startswith(".") or not path.is_file():
            continue
        key, algorithm = parse_public_key(path.read_text(), f"CODEAPI_JWT_PUBLIC_KEYS_DIR ({path.name})")
        keys.append(VerificationKey(path.stem, algorithm, key))
    return keys


def single_key(auth: AuthSettings, text: str) -> VerificationKey:
    key, algorithm = parse_public_key(text, "CODEAPI_JWT_PUBLIC_KEY")
    if auth.jwt_algorithm is not None and auth.jwt_algorithm != algorithm:
        raise ConfigError(f"CODEAPI_JWT_PUBLIC_KEY: an {algorithm} key, but CODEAPI_JWT_ALGORITHM={auth.jwt_algorithm}")
    return VerificationKey(auth.jwt_kid, algorithm, key)


def load_keyring(auth: AuthSettings) -> Keyring:
    keys = jwks_keys(auth.jwt_jwks_json) if auth.jwt_jwks_json and auth.jwt_jwks_json.strip() else []
    if auth.jwt_public_keys_dir is not None:
        keys += directory_keys(auth.jwt_public_keys_dir)
    if (text := auth.jwt_key_text) is not None:
        keys.append(single_key(auth, text))
    if not keys:
        raise ConfigError("no JWT verification key: CODEAPI_JWT_JWKS_JSON and CODEAPI_JWT_PUBLIC_KEYS_DIR hold none")
    if len(keys) > 1 and any(key.kid is None for key in keys):
        raise ConfigError("CODEAPI_JWT_KID: name CODEAPI_JWT_PUBLIC_KEY's key id when other keys are configured too")
    kids = [key.kid for key in keys]
    if duplicates := sorted({kid for kid in kids if kid is not None and kids.count(kid) > 1}):
        raise ConfigError(f"JWT key id(s) configured twice: {', '.join(duplicates)}")
    return Keyring(keys)

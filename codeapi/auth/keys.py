"""API key extraction and checking (contract §3): x-api-key, else HTTP Basic with the key as user name."""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
from collections.abc import Mapping


def extract_key(headers: Mapping[str, str]) -> str | None:
    """x-api-key wins when present; Basic may be "KEY:", "KEY" (node-fetch v2) or ":KEY"."""
    api_key = headers.get("x-api-key", "").strip()
    if api_key:
        return api_key
    authorization = headers.get("authorization", "")
    scheme, _, encoded = authorization.partition(" ")
    if scheme.lower() != "basic" or not encoded.strip():
        return None
    try:
        decoded = base64.b64decode(encoded.strip(), validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError):
        return None
    user, _, password = decoded.partition(":")
    return user or password or None


def fingerprint(key: str) -> str:
    """What may be logged about a key."""
    return hashlib.sha256(key.encode()).hexdigest()[:12]


class KeyChecker:
    def __init__(self, valid_keys: tuple[str, ...]) -> None:
        self.digests = tuple(hashlib.sha256(key.encode()).digest() for key in valid_keys)

    def matches(self, key: str) -> bool:
        digest = hashlib.sha256(key.encode()).digest()
        # Compare against every key without stopping early, so timing reveals nothing.
        matched = False
        for valid in self.digests:
            matched |= hmac.compare_digest(digest, valid)
        return matched

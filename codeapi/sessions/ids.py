"""21-character nanoid ids: the only shape LibreChat's download route accepts (``^[A-Za-z0-9_-]{21}$``)."""

from __future__ import annotations

import re
import secrets

ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_-"
ID_LENGTH = 21
ID_PATTERN = re.compile(r"^[A-Za-z0-9_-]{21}$")


def new_id() -> str:
    # 64 symbols: every byte's low 6 bits map uniformly onto the alphabet.
    return "".join(ALPHABET[byte & 63] for byte in secrets.token_bytes(ID_LENGTH))


def is_id(value: str) -> bool:
    return bool(ID_PATTERN.match(value))

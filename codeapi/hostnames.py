"""DNS host names: the one grammar that the allowlist setting (config/) and the egress proxy (egress/) share.

An allowlist entry is an exact name (``example.org``) or, with a leading dot, every name below it on a
label boundary (``.example.org`` allows ``a.example.org`` but neither ``example.org`` nor
``badexample.org``). Names are compared in lower case without a trailing dot; anything that is not a
plain DNS name (an address literal, a name with a port or other characters) is refused before any
lookup, and an allowlist entry that is not one is a configuration error.
"""

from __future__ import annotations

import re

LABEL = re.compile(r"^(?!-)[a-z0-9-]{1,63}(?<!-)$")
MAX_NAME_LENGTH = 253


def normalise(name: str) -> str | None:
    """The name in canonical form, or None when it is not a DNS host name (e.g. an IP literal)."""
    name = name.strip().lower().removesuffix(".")
    if not name or len(name) > MAX_NAME_LENGTH:
        return None
    labels = name.split(".")
    if len(labels) < 2 or not all(LABEL.match(label) for label in labels):
        return None
    if labels[-1].isdigit():
        return None  # an IPv4 literal, or a name that resolvers would read as one
    return name


def allowlist_entry(entry: str) -> str:
    """The entry in canonical form, its leading dot kept; ValueError when it is not a host name."""
    is_suffix = entry.strip().startswith(".")
    name = normalise(entry.strip().removeprefix("."))
    if name is None:
        raise ValueError(f"not a host name: {entry!r} (use 'name.example' or '.example' for every name below)")
    return "." + name if is_suffix else name

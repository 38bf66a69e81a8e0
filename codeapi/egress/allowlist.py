"""Which host names the egress proxy lets a sandbox reach.

The package registries are always allowed; ``SANDBOX_EGRESS_ALLOWLIST`` adds names. An entry is an
exact name (``example.org``) or, with a leading dot, every name below it on a label boundary
(``.example.org`` allows ``a.example.org`` but neither ``example.org`` nor ``badexample.org``).
Names are compared in lower case without a trailing dot; anything that is not a plain DNS name
(an address literal, a name with a port or other characters) is refused before any lookup, and an
allowlist entry that is not one is a configuration error.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass

REGISTRIES: tuple[str, ...] = (
    "pypi.org",  # pip's index
    "files.pythonhosted.org",  # pip's file host
    "registry.npmjs.org",
    "proxy.golang.org",  # Go module proxy
    "sum.golang.org",  # Go checksum database
    "index.crates.io",  # cargo's sparse index
    "static.crates.io",  # crate files
    "crates.io",
)
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


@dataclass(frozen=True)
class Allowlist:
    exact: frozenset[str]
    suffixes: tuple[str, ...]  # each with its leading dot

    @classmethod
    def build(cls, extra: Iterable[str]) -> Allowlist:
        exact: set[str] = set(REGISTRIES)
        suffixes: list[str] = []
        for entry in extra:
            is_suffix = entry.strip().startswith(".")
            name = normalise(entry.strip().removeprefix("."))
            if name is None:
                raise ValueError(f"not a host name: {entry!r} (use 'name.example' or '.example' for every name below)")
            if is_suffix:
                suffixes.append("." + name)
            else:
                exact.add(name)
        return cls(frozenset(exact), tuple(suffixes))

    def allows(self, host: str) -> bool:
        name = normalise(host)
        if name is None:
            return False
        return name in self.exact or any(name.endswith(suffix) for suffix in self.suffixes)

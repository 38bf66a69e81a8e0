"""Which host names the egress proxy lets a sandbox reach: the package registries, and the names that
``SANDBOX_EGRESS_ALLOWLIST`` adds (their grammar is codeapi/hostnames.py's)."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from codeapi.hostnames import allowlist_entry, normalise

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


@dataclass(frozen=True)
class Allowlist:
    exact: frozenset[str]
    suffixes: tuple[str, ...]  # each with its leading dot

    @classmethod
    def build(cls, extra: Iterable[str]) -> Allowlist:
        exact: set[str] = set(REGISTRIES)
        suffixes: list[str] = []
        for entry in extra:
            name = allowlist_entry(entry)
            if name.startswith("."):
                suffixes.append(name)
            else:
                exact.add(name)
        return cls(frozenset(exact), tuple(suffixes))

    def allows(self, host: str) -> bool:
        name = normalise(host)
        if name is None:
            return False
        return name in self.exact or any(name.endswith(suffix) for suffix in self.suffixes)

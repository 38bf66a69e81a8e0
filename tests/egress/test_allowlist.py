from __future__ import annotations

import pytest

from codeapi.egress.allowlist import REGISTRIES, Allowlist
from codeapi.egress.proxy import Refused, parse_connect


def test_registries_are_allowed_without_configuration() -> None:
    allowlist = Allowlist.build([])
    assert all(allowlist.allows(name) for name in REGISTRIES)
    assert allowlist.allows("PyPI.org.")


def test_exact_entry_allows_only_that_name() -> None:
    allowlist = Allowlist.build(["mirror.example.org"])
    assert allowlist.allows("mirror.example.org")
    assert not allowlist.allows("evil.mirror.example.org")
    assert not allowlist.allows("example.org")


def test_suffix_entry_allows_names_below_it_on_a_label_boundary() -> None:
    allowlist = Allowlist.build([".example.org"])
    assert allowlist.allows("a.example.org")
    assert allowlist.allows("a.b.example.org")
    assert not allowlist.allows("example.org")
    assert not allowlist.allows("badexample.org")
    assert not allowlist.allows("example.org.evil.net")


@pytest.mark.parametrize(
    "host",
    [
        "127.0.0.1",
        "[::1]",
        "::ffff:127.0.0.1",
        "localhost",
        "10.0.0.1",
        "pypi.org:80",
        "pypi.org@evil",
        "",
        "x.example.org:443",
    ],
)
def test_address_literals_and_odd_names_are_never_allowed(host: str) -> None:
    assert not Allowlist.build([".example.org"]).allows(host)


@pytest.mark.parametrize("entry", ["10.0.0.1", "bad name", "*.example.org", "http://x.org"])
def test_allowlist_entry_that_is_not_a_host_name_is_a_configuration_error(entry: str) -> None:
    with pytest.raises(ValueError, match="not a host name"):
        Allowlist.build([entry])


def test_only_connect_requests_are_accepted() -> None:
    assert parse_connect(b"CONNECT pypi.org:443 HTTP/1.1\r\nHost: pypi.org\r\n\r\n") == ("pypi.org", 443)
    with pytest.raises(Refused) as refused:
        parse_connect(b"GET http://pypi.org/simple/ HTTP/1.1\r\n\r\n")
    assert refused.value.status == 403
    with pytest.raises(Refused):
        parse_connect(b"CONNECT pypi.org HTTP/1.1\r\n\r\n")


def test_a_whole_top_level_domain_cannot_be_allowed() -> None:
    with pytest.raises(ValueError, match="not a host name"):
        Allowlist.build([".org"])

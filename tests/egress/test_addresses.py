"""The destination classifier, on addresses only: no connection is opened by these tests."""

from __future__ import annotations

import pytest

from codeapi.egress.addresses import is_allowed_destination

REFUSED = [
    "127.0.0.1",
    "127.8.9.10",
    "0.0.0.0",
    "10.0.0.1",
    "10.255.255.255",
    "172.16.0.1",
    "172.31.255.254",
    "192.168.1.1",
    "100.64.0.1",  # carrier-grade NAT
    "169.254.169.254",  # cloud metadata
    "169.254.0.1",
    "192.0.0.192",
    "224.0.0.1",
    "239.255.255.250",
    "255.255.255.255",
    "240.0.0.1",
    "::",
    "::1",
    "fc00::1",
    "fd00:ec2::254",  # a metadata address
    "fe80::1",
    "fec0::1",
    "ff02::1",
    "::ffff:127.0.0.1",  # IPv4-mapped forms reach the IPv4 address
    "::ffff:10.0.0.1",
    "::ffff:169.254.169.254",
    "::127.0.0.1",  # IPv4-compatible
    "2002:a00:1::1",  # 6to4 of 10.0.0.1
    "2002:7f00:1::",  # 6to4 of 127.0.0.1
    "64:ff9b::a00:1",  # NAT64 of 10.0.0.1
    "64:ff9b::a9fe:a9fe",  # NAT64 of 169.254.169.254
    "64:ff9b:1::1",  # local-use NAT64
    "2001:0:4136:e378:8000:63bf:f5ff:fffe",  # Teredo to 10.0.0.1
]
ALLOWED = [
    "151.101.0.223",
    "104.16.0.1",
    "203.0.113.80",  # documentation range: where this workplace's registries answer
    "2a04:4e42::223",
    "::ffff:151.101.0.223",
    "64:ff9b::9765:df",  # NAT64 of a public address
]


@pytest.mark.parametrize("address", REFUSED)
def test_destination_in_an_internal_range_is_refused(address: str) -> None:
    assert not is_allowed_destination(address)


@pytest.mark.parametrize("address", ALLOWED)
def test_public_destination_is_allowed(address: str) -> None:
    assert is_allowed_destination(address)


def test_scoped_ipv6_address_is_refused() -> None:
    assert not is_allowed_destination("2a04:4e42::223%eth0")

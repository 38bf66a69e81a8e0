"""Which addresses the egress proxy may connect to.

The proxy connects to the address it resolved itself, never to a name, and only when that address
is outside every range that reaches the operator's own network: loopback, the private and shared
(carrier-grade NAT) ranges, link-local (cloud metadata lives there), multicast, broadcast,
unspecified and reserved addresses, IPv6 unique-local and site-local. An IPv6 address that carries
an IPv4 one (mapped, compatible, 6to4, NAT64, Teredo) is judged by the IPv4 address it reaches.

The list is explicit instead of ``ipaddress``'s ``is_global``: documentation and benchmarking
ranges are routable on some networks (package mirrors sit there behind some egress gateways), and
what must never be reached is the operator's network, which these ranges describe.
"""

from __future__ import annotations

import ipaddress

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

BLOCKED_V4 = tuple(
    ipaddress.IPv4Network(net)
    for net in (
        "0.0.0.0/8",  # "this network"; 0.0.0.0 reaches the local host
        "10.0.0.0/8",
        "100.64.0.0/10",  # carrier-grade NAT, used inside clouds
        "127.0.0.0/8",
        "169.254.0.0/16",  # link-local: 169.254.169.254 is the cloud metadata service
        "172.16.0.0/12",
        "192.0.0.0/24",  # IETF protocol assignments (incl. DS-Lite, 192.0.0.192 metadata on some clouds)
        "192.168.0.0/16",
        "198.18.0.0/15",  # benchmarking; used for internal fabrics
        "224.0.0.0/4",  # multicast
        "240.0.0.0/4",  # reserved, and 255.255.255.255 broadcast
    )
)
BLOCKED_V6 = tuple(
    ipaddress.IPv6Network(net)
    for net in (
        "::/128",
        "::1/128",
        "fc00::/7",  # unique-local (incl. fd00:ec2::254, a metadata address)
        "fe80::/10",  # link-local
        "fec0::/10",  # site-local (deprecated, still routed by some stacks)
        "ff00::/8",  # multicast
        "100::/64",  # discard-only
    )
)
NAT64 = ipaddress.IPv6Network("64:ff9b::/96")
NAT64_LOCAL = ipaddress.IPv6Network("64:ff9b:1::/48")
COMPATIBLE = ipaddress.IPv6Network("::/96")  # deprecated IPv4-compatible form ::a.b.c.d


def embedded_v4(address: ipaddress.IPv6Address) -> ipaddress.IPv4Address | None:
    """The IPv4 address an IPv6 one delivers to, for the forms that carry one."""
    if address.ipv4_mapped is not None:
        return address.ipv4_mapped
    if address.sixtofour is not None:
        return address.sixtofour
    if address.teredo is not None:
        return address.teredo[1]  # the client's address: where the tunnel ends
    if address in NAT64 or address in COMPATIBLE:
        return ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
    return None


def is_allowed_destination(address: IPAddress | str) -> bool:
    """Whether the proxy may open a connection to ``address``."""
    ip = ipaddress.ip_address(address) if isinstance(address, str) else address
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.scope_id:
            return False
        if any(ip in net for net in BLOCKED_V6) or ip in NAT64_LOCAL:
            return False
        carried = embedded_v4(ip)
        return carried is None or is_allowed_destination(carried)
    return not any(ip in net for net in BLOCKED_V4)

"""Who is asking: the client address that the limits on one client count against.

The address is the socket's (``REMOTE_ADDR``), unless the socket's peer is one of
``TRUSTED_PROXIES``: then it is the first hop of ``X-Forwarded-For``, read from the right, that
is not itself a trusted proxy. A client cannot choose its address by sending the header itself:
a proxy appends the address it saw, so everything left of the first untrusted hop is the
client's own text, and is never read.

An IPv6 client usually has a whole /64 to choose addresses from: it counts as one address.
"""

from __future__ import annotations

import ipaddress

from django.conf import settings
from django.http import HttpRequest

Address = ipaddress.IPv4Address | ipaddress.IPv6Address
IPV6_CLIENT_PREFIX = 64
UNKNOWN = "unknown"  # no usable REMOTE_ADDR (a test client, a unix socket): one shared bucket


def client_address(request: HttpRequest) -> str:
    """The client's address as the limits count it: ``192.0.2.7``, or ``2001:db8:1:2::/64``."""
    peer = _parse(request.META.get("REMOTE_ADDR", ""))
    if peer is None:
        return UNKNOWN
    client = peer
    if _trusted(peer):
        hops = request.META.get("HTTP_X_FORWARDED_FOR", "").split(",")
        for text in reversed(hops):
            hop = _parse(text.strip())
            if hop is None:
                break  # not an address: nothing left of it can be believed
            client = hop
            if not _trusted(hop):
                break
    return _bucket(client)


def _parse(text: str) -> Address | None:
    try:
        address = ipaddress.ip_address(text)
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


def _trusted(address: Address) -> bool:
    return any(address in network for network in settings.TRUSTED_PROXIES)


def _bucket(address: Address) -> str:
    if isinstance(address, ipaddress.IPv6Address):
        return str(ipaddress.IPv6Network((address, IPV6_CLIENT_PREFIX), strict=False))
    return str(address)

"""Who is calling, and from where: a visitor's owner id, and the client address beside it.

Owner ids are free in public mode (an anonymous one costs a page load), so the client address is a
second identity that limits hang on. Behind a proxy that writes X-Forwarded-For (Spaces) the address is
the last hop that is not the proxies' own private network: a client may prepend anything it likes to
that header, but not after the hop the proxy appended. Off a proxy it is the socket's peer.

An IPv6 address counts as its /64: one subscriber is routinely given a whole /64, so single IPv6
addresses would be as free as owner ids.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Mapping
from typing import Any

UNKNOWN = "unknown"
# Where a hosting provider's own proxies live: private, shared (carrier-grade NAT), loopback, link-local.
PROXY_NETWORKS = tuple(
    ipaddress.ip_network(n)
    for n in (
        "10.0.0.0/8",
        "172.16.0.0/12",
        "192.168.0.0/16",
        "100.64.0.0/10",
        "127.0.0.0/8",
        "169.254.0.0/16",
        "::1/128",
        "fc00::/7",
        "fe80::/10",
    )
)


class Caller(str):
    """An owner id (the string itself, so it goes wherever an owner goes) that also carries the client
    address of the request it came from, for the limits per address."""

    address: str | None

    def __new__(cls, owner: str, address: str | None = None) -> Caller:
        caller = super().__new__(cls, owner)
        caller.address = address
        return caller

    def __reduce__(self):  # a run's owner is pickled to ZeroGPU workers: keep it a Caller
        return (Caller, (str(self), self.address))


def address_of(owner: Any) -> str | None:
    """The client address an owner id came with, if it came from a request."""
    return getattr(owner, "address", None)


def client_address(headers: Mapping[str, str] | Any, peer: str | None, trust_forwarded: bool) -> str:
    """The caller's address: from X-Forwarded-For when a proxy in front writes it, else the peer."""
    if trust_forwarded:
        hops = _hops(_header_values(headers, "x-forwarded-for"))
        for hop in reversed(hops):  # the proxies' own hops come last; the one before them is the client
            if not _internal(hop):
                return _grouped(hop)
        if hops:
            return _grouped(hops[0])
    return _grouped(peer) if peer else UNKNOWN


def _grouped(address: str) -> str:
    """An IPv6 address as its /64 network (an IPv4-mapped one as its IPv4 address); anything else as is."""
    try:
        ip = ipaddress.ip_address(address.strip("[]"))
    except ValueError:
        return address
    if ip.version == 4 or ip.is_loopback:
        return str(ip)
    if ip.ipv4_mapped is not None:
        return str(ip.ipv4_mapped)
    return str(ipaddress.ip_network(f"{ip}/64", strict=False))


def request_address(request: Any, trust_forwarded: bool) -> str:
    """`client_address` of a gradio or starlette request."""
    inner = getattr(request, "request", request)  # gr.Request wraps the starlette one
    client = getattr(request, "client", None) or getattr(inner, "client", None)
    headers = getattr(request, "headers", None) or getattr(inner, "headers", None) or {}
    return client_address(headers, getattr(client, "host", None), trust_forwarded)


def _header_values(headers: Any, name: str) -> list[str]:
    if hasattr(headers, "getlist"):
        return list(headers.getlist(name))
    value = headers.get(name) if hasattr(headers, "get") else None
    return [value] if value else []


def _hops(values: Iterable[str]) -> list[str]:
    return [hop.strip() for value in values for hop in str(value).split(",") if hop.strip()][-32:]


def _internal(hop: str) -> bool:
    try:
        ip = ipaddress.ip_address(hop)
    except ValueError:
        return False
    return any(ip in network for network in PROXY_NETWORKS if network.version == ip.version)

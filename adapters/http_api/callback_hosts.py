"""Where callbacks may go: public addresses only, unless ``callback_allow_private`` is set.

The caller chooses ``callback_url``, so without a guard a caller could make the
server POST to itself, to a cloud metadata service or into the private network
(SSRF). Two checks:

* at submit, a host that is ``localhost`` or a literal loopback / private /
  link-local / otherwise non-public IP is refused at once (400);
* at delivery, the host is resolved with the event loop's ``getaddrinfo`` (no
  blocking) and refused when any of its addresses is not public. The request is
  then sent to a checked address (with the original ``Host`` header and TLS
  server name), so a DNS answer that changes between the check and the
  connection cannot slip through. Behind an outgoing proxy (``HTTPS_PROXY`` &
  co., honoured as httpx does) the request goes by name: the proxy connects,
  and it can only be given the name, not the address.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
import urllib.request
from collections.abc import Awaitable, Callable

import httpx

Resolver = Callable[[str, int], Awaitable[list[str]]]
"""``(host, port) -> addresses``; raises ``OSError`` when the name does not resolve."""


class CallbackRefused(Exception):
    """The callback host is not allowed (not a delivery failure worth retrying)."""


_NAT64 = ipaddress.ip_network("64:ff9b::/96")


def is_public(address: str) -> bool:
    """True for a globally routable unicast address (IPv4 wrapped in IPv6 is judged as IPv4)."""
    ip = ipaddress.ip_address(address)
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:
            ip = ip.ipv4_mapped
        elif ip.sixtofour is not None:
            ip = ip.sixtofour
        elif ip in _NAT64:
            ip = ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
    return ip.is_global and not ip.is_multicast


def proxy_for(url: httpx.URL) -> bool:
    """True when the environment sends requests to ``url`` through a proxy (as httpx's ``trust_env``)."""
    proxies = urllib.request.getproxies_environment()
    if not (proxies.get(url.scheme) or proxies.get("all")):
        return False
    return not urllib.request.proxy_bypass_environment(url.host, proxies)


def _is_local_name(host: str) -> bool:
    host = host.rstrip(".").lower()
    return host == "localhost" or host.endswith(".localhost")


def literal_refusal(url: str) -> str | None:
    """Why ``url`` is refused without resolving anything (its host is this machine or a
    non-public IP literal), or None."""
    host = httpx.URL(url).host
    if _is_local_name(host):
        return f"{host} is this machine"
    try:
        public = is_public(host)
    except ValueError:
        return None  # a name: checked when the callback is delivered
    return None if public else f"{host} is not a public address"


async def system_resolver(host: str, port: int) -> list[str]:
    infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return list(dict.fromkeys(str(info[4][0]) for info in infos))


async def checked_addresses(host: str, port: int, resolver: Resolver, *, allow_private: bool) -> list[str]:
    """The addresses that may be connected to for ``host``, in the resolver's order.

    Raises :class:`CallbackRefused` when the host is not allowed, ``OSError`` when it
    does not resolve.
    """
    if not allow_private and _is_local_name(host):
        raise CallbackRefused(f"{host} is this machine")
    addresses = await resolver(host, port)
    if not addresses:
        raise OSError(f"{host} has no address")
    if not allow_private:
        private = [a for a in addresses if not is_public(a)]
        if private:
            raise CallbackRefused(f"{host} resolves to {private[0]}, which is not a public address")
    return addresses


def pinned_request(url: httpx.URL, address: str) -> tuple[httpx.URL, dict[str, str], dict[str, str]]:
    """``url`` sent to ``address``: the target URL, the Host header and the request extensions
    (the TLS server name stays the original host, so certificates are checked against it)."""
    target = url.copy_with(host=address)
    host_header = url.netloc.decode("ascii")
    extensions = {"sni_hostname": url.raw_host.decode("ascii")} if url.scheme == "https" else {}
    return target, {"Host": host_header}, extensions

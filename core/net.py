"""Small network facts the adapters' settings check (e.g. "plain http only for a loopback host")."""

from __future__ import annotations

import ipaddress


def is_loopback(host: str) -> bool:
    """Whether ``host`` is this machine: ``localhost`` or a literal loopback address (127.0.0.0/8, ::1).

    Only what the name itself says counts: no DNS lookup, so any other host name is not loopback.
    """
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False

"""Restricting the local addresses WebRTC gathers ICE host candidates on.

aiortc gathers on every interface except loopback, as RFC 8445 asks, and offers no option to change that. A
loopback-only deployment (tests, benchmarks, a server reached through an SSH tunnel) needs 127.0.0.1, so the one
function aioice gathers host addresses with is replaced, for the whole process.
"""

from __future__ import annotations

import ipaddress

import aioice.ice


def restrict_ice_host_addresses(addresses: tuple[str, ...]) -> None:
    """From now on, every peer connection in this process gathers host candidates on `addresses` only."""
    try:
        chosen = [str(ipaddress.ip_address(address)) for address in addresses]
    except ValueError as error:
        raise ValueError(f"an ICE address must be an IP address of this machine: {error}") from error

    def chosen_addresses(use_ipv4: bool, use_ipv6: bool) -> list[str]:
        return [
            address
            for address in chosen
            if (use_ipv4 and ipaddress.ip_address(address).version == 4)
            or (use_ipv6 and ipaddress.ip_address(address).version == 6)
        ]

    aioice.ice.get_host_addresses = chosen_addresses

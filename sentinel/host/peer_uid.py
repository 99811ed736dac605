"""The local user at the other end of a loopback TCP connection.

``SO_PEERCRED`` answers for Unix sockets only. For TCP over loopback the
kernel still knows who owns the client's socket: ``/proc/net/tcp`` (IPv4)
and ``/proc/net/tcp6`` list every socket of this network namespace, one a
line, with its local and remote address and its owner's uid::

    sl  local_address rem_address   st ... uid ...
     0: 0100007F:A3F2 0100007F:1F90 01 ...   1003 ...

An address is the kernel's ``__be32`` words printed as host-order hex (so
127.0.0.1 reads ``0100007F`` on a little-endian machine), a port is
big-endian hex. The client's socket is the line whose local address is the
connection's peer and whose remote address is the server's own end of it.

Only loopback peers are looked up: a remote peer's socket is on another
host. None means not found (the client closed meanwhile, the table could
not be read): the caller counts such connections apart.
"""

from __future__ import annotations

import ipaddress
import socket
import struct
from typing import Optional, Union

TABLES = {socket.AF_INET: "/proc/net/tcp", socket.AF_INET6: "/proc/net/tcp6"}
MAX_LINES = 200_000  # a table this long is not read to its end: the lookup fails (None)

Address = Union[ipaddress.IPv4Address, ipaddress.IPv6Address]


def _ip(host: str) -> Address:
    """``host`` without a scope, an IPv4-mapped IPv6 address as IPv4."""
    address = ipaddress.ip_address(host.split("%", 1)[0])
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


def _kernel_hex(address: Address, port: int) -> str:
    """``address:port`` as ``/proc/net/tcp{,6}`` prints it."""
    packed = address.packed
    words = struct.unpack(f"={len(packed) // 4}I", packed)  # the kernel prints each word in host order
    return "".join(f"{word:08X}" for word in words) + f":{port:04X}"


def is_loopback(host: str) -> bool:
    try:
        return _ip(host).is_loopback
    except ValueError:
        return False


def loopback_peer_uid(peer: tuple[str, int], local: tuple[str, int],
                      table: Optional[str] = None) -> Optional[int]:
    """The uid owning the client socket of a loopback connection from ``peer``
    to this server's ``local`` end (both as ``getpeername``/``getsockname``
    give them); None if it is not a loopback peer or cannot be found."""
    try:
        peer_ip, local_ip = _ip(peer[0]), _ip(local[0])
    except (ValueError, IndexError):
        return None
    if not peer_ip.is_loopback or peer_ip.version != local_ip.version:
        return None
    family = socket.AF_INET if peer_ip.version == 4 else socket.AF_INET6
    want_local = _kernel_hex(peer_ip, int(peer[1]))
    want_remote = _kernel_hex(local_ip, int(local[1]))
    try:
        with open(table or TABLES[family], encoding="ascii", errors="replace") as lines:
            next(lines, None)  # the header
            for count, line in enumerate(lines):
                if count >= MAX_LINES:
                    return None
                fields = line.split()
                if len(fields) > 7 and fields[1] == want_local and fields[2] == want_remote:
                    return int(fields[7])
    except (OSError, ValueError):
        return None
    return None

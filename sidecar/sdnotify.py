"""Tells a service manager that the sidecar is ready or stopping: systemd's notification protocol
(``Type=notify``), one datagram on the socket systemd names, standard library only.

READY=1 is sent once the gRPC health service answers SERVING, STOPPING=1 when it turns NOT_SERVING
for a graceful stop: the service manager and a health check agree on when the sidecar is ready.
"""
from __future__ import annotations

import logging
import socket

log = logging.getLogger("laser.sidecar")


def notify(state: str, address: str | None) -> bool:
    """Send `state` (e.g. "READY=1") to the notification socket at `address`; False when there is none.

    An abstract socket is written with a leading "@", as systemd does. A socket that cannot be reached
    is logged, never fatal: the service works without a manager.

    >>> notify("READY=1", None)
    False
    """
    if not address:
        return False
    target = "\0" + address[1:] if address.startswith("@") else address
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
            sock.connect(target)
            sock.sendall(state.encode())
    except OSError as exc:
        log.warning("cannot notify the service manager at %s: %s", address, exc)
        return False
    return True

"""The one check every listening command (app, serve, live) makes before it says where it listens."""
from __future__ import annotations

import errno
import socket

from ..errors import InputError


def check_port(host: str, port: int, option: str = "--port") -> None:
    """An InputError unless ``host``:``port`` can be listened on now: a port out of range, one in use, an
    address this machine does not have. Port 0 (any free port) always passes."""
    if not 0 <= port <= 65535:
        raise InputError(f"{option} {port} is not a port; use 1-65535 (or 0 for any free port)")
    try:
        family = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0][0]
        with socket.socket(family, socket.SOCK_STREAM) as s:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            s.bind((host, port))
    except OSError as exc:
        if exc.errno == errno.EADDRINUSE:
            raise InputError(f"port {port} on {host} is already in use (another server?); pass another {option}") from None
        raise InputError(f"cannot listen on {host}:{port} ({exc.strerror or exc}); pass another --host or {option}") from None

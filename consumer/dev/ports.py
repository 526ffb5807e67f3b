"""Local ports for the development tools: free ones to give the local broker, and
whether a chosen one can be listened on before something is started there."""

from __future__ import annotations

import contextlib
import socket


def free_ports(count: int, avoid: tuple[int | None, ...] = ()) -> list[int]:
    # All sockets are held open together so the ports are distinct (and distinct from
    # `avoid`, ports chosen by an earlier call). Another process can still take one before
    # the JVM binds it; start() then fails with the bind error.
    with contextlib.ExitStack() as stack:
        ports: list[int] = []
        while len(ports) < count:
            sock = stack.enter_context(socket.socket())
            sock.bind(("127.0.0.1", 0))
            port = sock.getsockname()[1]
            if port not in avoid:
                ports.append(port)
        return ports


def why_port_is_taken(host: str, port: int) -> str | None:
    """The operating system's reason `port` on `host` cannot be listened on ("" is every
    address), or None when it can. Bound as a server binds, with SO_REUSEADDR, so a port
    whose last connection is in TIME_WAIT counts as free, as it is for the server."""
    with socket.socket() as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError as exc:
            return exc.strerror or str(exc)
    return None

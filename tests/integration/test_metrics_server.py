"""The metrics and probe endpoint under hostile clients, on real sockets (no broker):
half-sent requests hold no threads and do not keep /healthz from answering, idle
connections are closed after the timeout, connections beyond the limit wait rather than
multiply, and the endpoint listens only where LOYALTY_METRICS_HOST says."""

from __future__ import annotations

import select
import socket
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager

import pytest

from consumer.metrics import HttpServer, Metrics, serve_http

# What the issue measured: 1,000 half-sent requests held 1,002 threads.
HALF_SENT_CONNECTIONS = 1000
HALF_REQUEST = b"GET /healthz HTTP/1.1\r\nHost: x\r\n"  # no blank line: never complete


@contextmanager
def endpoint(host: str = "127.0.0.1", **limits: float) -> Iterator[HttpServer]:
    server = serve_http(
        Metrics(), 0, lambda: (True, "alive"), lambda: (True, "ready"), host=host, **limits
    )
    try:
        yield server
    finally:
        server.shutdown()


@contextmanager
def half_sent(port: int, count: int) -> Iterator[list[socket.socket]]:
    """`count` connections that never complete a request. Connected without waiting:
    past the server's connection limit the kernel queues them, as an attacker's would
    be; each one that is connected has sent half a request."""
    sockets = []
    try:
        for _ in range(count):
            client = socket.socket()
            client.setblocking(False)
            client.connect_ex(("127.0.0.1", port))
            sockets.append(client)
        _, writable, _ = select.select([], sockets[:512], [], 5)
        for client in writable:
            if client.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR) == 0:
                client.send(HALF_REQUEST)
        yield sockets
    finally:
        for client in sockets:
            client.close()


def healthz(port: int, host: str = "127.0.0.1", timeout: float = 10) -> int:
    try:
        with urllib.request.urlopen(f"http://{host}:{port}/healthz", timeout=timeout) as reply:
            return reply.status
    except urllib.error.HTTPError as exc:
        return exc.code


def test_half_sent_requests_hold_no_threads_and_healthz_still_answers():
    with endpoint() as server:
        assert healthz(server.server_port) == 200
        before = threading.active_count()
        with half_sent(server.server_port, HALF_SENT_CONNECTIONS):
            assert healthz(server.server_port, timeout=30) == 200
            # The endpoint's threads (HTTP_WORKER_THREADS workers and one I/O loop) were
            # all running before the first connection: not one more for a thousand.
            assert threading.active_count() <= before
            with urllib.request.urlopen(
                f"http://127.0.0.1:{server.server_port}/metrics", timeout=30
            ) as reply:
                assert b"loyalty_build_info" in reply.read()


def test_an_idle_connection_is_closed_after_the_timeout():
    with (
        endpoint(connection_timeout_seconds=1.0) as server,
        half_sent(server.server_port, 3) as sockets,
    ):
        for client in sockets:
            client.setblocking(True)
            client.settimeout(30)
            # The server closes it: recv() sees the end of the stream, not a timeout.
            assert client.recv(1024) == b""


def test_connections_beyond_the_limit_wait_until_idle_ones_are_closed():
    with endpoint(connection_limit=20, connection_timeout_seconds=1.0) as server:
        before = threading.active_count()
        with half_sent(server.server_port, 60):
            # Accepted once the idle ones time out; never a thread per connection.
            assert healthz(server.server_port, timeout=60) == 200
            assert threading.active_count() <= before


def test_the_endpoint_listens_only_on_the_configured_host():
    with endpoint(host="127.0.0.1") as server:
        assert healthz(server.server_port) == 200
        # Another loopback address of the same machine: nothing listens there.
        with pytest.raises(OSError):
            socket.create_connection(("127.0.0.2", server.server_port), timeout=5).close()


def test_shutdown_releases_the_port():
    with endpoint() as server:
        port = server.server_port
    deadline = time.monotonic() + 10
    refused = False
    while not refused and time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
        except OSError:
            refused = True
    assert refused

"""The benchmarks' delay proxy (`testing/netdelay.py`), against a real TCP echo server on
loopback: every byte passes intact and in order both ways, the end of input passes too,
and each exchange is held for the round trip asked for.

The timing assertions are lower bounds only: the proxy holds each direction for half the
round trip, so a busy machine can make an exchange later, never earlier. Nothing asserts
how fast anything is. (That git itself goes through it: tests/test_latency.py.)
"""

from __future__ import annotations

import os
import socket
import socketserver
import threading
import time
from collections.abc import Iterator

import pytest

from testing.netdelay import DelayProxy


class _Echo(socketserver.BaseRequestHandler):
    def handle(self) -> None:
        while data := self.request.recv(65536):
            self.request.sendall(data)


@pytest.fixture
def echo_port() -> Iterator[int]:
    server = socketserver.ThreadingTCPServer(("127.0.0.1", 0), _Echo)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server.server_address[1]
    finally:
        server.shutdown()
        server.server_close()
        thread.join(10)


def _exchange(port: int, pings: int, payload: bytes) -> tuple[float, bytes]:
    """Connect, `pings` request/reply exchanges one after the other, then `payload`
    sent while the echo is read, then our end closed; returns the seconds the pings
    took from connecting, and every byte received up to the server's end of input."""
    got = bytearray()
    t0 = time.monotonic()
    with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
        for k in range(pings):
            msg = b"ping %d\n" % k
            sock.sendall(msg)
            reply = b""
            while len(reply) < len(msg):
                chunk = sock.recv(len(msg) - len(reply))
                assert chunk, "the connection ended mid-reply"
                reply += chunk
            got += reply
        pinged = time.monotonic() - t0

        def send() -> None:
            sock.sendall(payload)
            sock.shutdown(socket.SHUT_WR)

        sender = threading.Thread(target=send)
        sender.start()
        while chunk := sock.recv(65536):
            got += chunk
        sender.join(30)
    return pinged, bytes(got)


def test_the_delay_proxy_holds_each_round_trip_and_passes_bytes_intact(echo_port: int) -> None:
    payload = os.urandom(3 << 20)  # more than the proxy's reads and the sockets' buffers
    expected = b"".join(b"ping %d\n" % k for k in range(4)) + payload
    direct_pinged, direct = _exchange(echo_port, 4, payload)
    assert direct == expected
    rtt = 0.1
    with DelayProxy(echo_port, rtt) as proxy:
        pinged, got = _exchange(proxy.port, 4, payload)
        assert proxy.connections == 1
    assert got == expected
    # The handshake's round trip, then one per exchange: at least 5 round trips, whatever
    # the unproxied exchanges took (on loopback, next to nothing).
    assert pinged >= 0.9 * 5 * rtt, (pinged, direct_pinged)

"""Slow clients for the webhook server's limits (unit and integration tests).

``Slowpoke`` trickles bytes and never completes anything; ``Trickler`` drives many of them
from one thread and samples the process's descriptors and threads as it goes.
"""

from __future__ import annotations

import contextlib
import os
import socket
import ssl
import threading

from actors.infra.webhook import VALIDATE_PATH

TRICKLE_INTERVAL = 0.2


class Slowpoke:
    """A client that trickles bytes and never completes anything: an HTTP request inside
    TLS, or (``handshake=False``) a TLS record announcing 16 KiB of ClientHello."""

    def __init__(self, port: int, ctx: ssl.SSLContext, *, handshake: bool) -> None:
        self.cut = False
        raw = socket.create_connection(("127.0.0.1", port), timeout=10)
        self.sock: socket.socket = raw
        try:
            if handshake:
                self.sock = ctx.wrap_socket(raw, server_hostname="127.0.0.1")
                self.sock.sendall(f"POST {VALIDATE_PATH} HTTP/1.1\r\nX-Slow: ".encode())
            else:
                raw.sendall(b"\x16\x03\x01\x40\x00")
        except OSError:
            self.cut = True  # evicted already: that is being cut off too
        self.sock.setblocking(False)

    def trickle(self) -> None:
        """One more byte, and notice whether the server has cut us off (EOF or reset)."""
        if self.cut:
            return
        try:
            self.sock.send(b"a")
            data = self.sock.recv(1)
        except (ssl.SSLWantReadError, ssl.SSLWantWriteError, BlockingIOError):
            return  # nothing to read (or the send buffer is full): still connected
        except OSError:
            self.cut = True
            return
        # The server sends nothing to a request it never saw complete: any data or EOF
        # means the connection is over.
        self.cut = True
        assert data == b"", data

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.sock.close()


class Trickler(threading.Thread):
    """Sends one byte per slow client every TRICKLE_INTERVAL and samples the process's
    open descriptors and threads each round."""

    def __init__(self) -> None:
        super().__init__(name="trickler", daemon=True)
        self.clients: list[Slowpoke] = []
        self.lock = threading.Lock()
        self.done = threading.Event()
        self.max_fds = 0
        self.max_threads = 0

    def add(self, client: Slowpoke) -> None:
        with self.lock:
            self.clients.append(client)

    def sample(self) -> None:
        with self.lock:
            clients = list(self.clients)
        for c in clients:
            c.trickle()
        self.max_fds = max(self.max_fds, len(os.listdir("/proc/self/fd")))
        self.max_threads = max(self.max_threads, threading.active_count())

    def run(self) -> None:
        while not self.done.wait(TRICKLE_INTERVAL):
            self.sample()

    def all_cut(self) -> bool:
        with self.lock:
            return all(c.cut for c in self.clients)

    def stop(self) -> None:
        self.done.set()
        if self.ident is not None:  # the small tests drive sample() themselves
            self.join(10)
        for c in self.clients:
            c.close()

"""The plain HTTP endpoint for probes and metrics (``--http-address``, 127.0.0.1:9464).

``GET /healthz`` and ``GET /readyz`` answer what :mod:`actors.domain.probes` decides (one line
of text); ``GET /metrics`` is the Prometheus exposition of :class:`ServiceMetrics`'s
registry (prometheus_client's encoder, which also offers OpenMetrics to a client that
asks for it). ``HEAD`` works too; anything else is 404 or 501. When the endpoint has a
:class:`~actors.infra.log_stream.LogStreams`, ``GET /passthrough/engine/logs/{id}`` is
handed to it (the WebSocket log stream, docs/contract.md §6.4).

Transport, and why it cannot be starved: the serving thread accepts and runs every
connection in its own daemon thread, at most :data:`MAX_CONNECTIONS` at once. A
connection must be answered within :data:`REQUEST_DEADLINE` seconds of its accept, how
ever steadily a slow client trickles its request in: the serving thread sweeps the
deadlines every :data:`POLL_INTERVAL` and cuts connections past theirs. When every slot
is taken, a new connection evicts the oldest one still sending its request (never one
being answered; :class:`actors.infra.webhook.ConnTable` decides, as for the webhook). Every
answer closes its connection (no keep-alive: a probe or scrape is one request), so no
idle connection holds a slot. ``stop`` returns within about ``POLL_INTERVAL``.

A log stream request leaves this accounting as soon as its headers are read
(:meth:`_Server.detach`): it may last hours, so it must neither hold a probe slot nor
meet the request deadline; :class:`~actors.infra.log_stream.LogStreams` bounds those
connections with its own limit instead.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import socket
import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, HTTPServer
from typing import Any
from urllib.parse import urlsplit

from prometheus_client.exposition import choose_encoder

from actors.domain.log_stream import Refusal, is_logs_path
from actors.domain.probes import (
    LeaderStateFn,
    Liveness,
    election_disabled,
    health_answer,
    ready_answer,
)
from actors.infra.log_stream import LogStreams
from actors.infra.metrics import ServiceMetrics
from actors.infra.webhook import ConnTable, Phase

log = logging.getLogger("dockmirror.http")

DEFAULT_HTTP_ADDRESS = "127.0.0.1:9464"
#: Connections served at once (threads). Probes and scrapes are a few per minute.
MAX_CONNECTIONS = 16
#: From accept to the end of the answer. kubelet gives a probe 1 s by default, Prometheus
#: a scrape 10 s; our answers take milliseconds once the request is in.
REQUEST_DEADLINE = 5.0
#: How often the serving thread sweeps deadlines and checks for ``stop``.
POLL_INTERVAL = 0.25
#: How long a new connection waits for an evicted one's slot before it is refused.
EVICT_WAIT = 1.0


class AddressError(ValueError):
    """An ``--http-address`` that is not HOST:PORT."""


def parse_http_address(text: str) -> tuple[str, int] | None:
    """``HOST:PORT`` (``[::1]:9464`` for IPv6; port 0 picks a free one) or ``""`` (off).

    Raises :class:`AddressError` with a one-line message for anything else.
    """
    text = text.strip()
    if not text:
        return None
    problem = (
        f"--http-address must be HOST:PORT (e.g. {DEFAULT_HTTP_ADDRESS}), or empty to turn "
        f"the endpoint off; got {text!r}"
    )
    try:
        parts = urlsplit("//" + text)
        host, port = parts.hostname, parts.port
    except ValueError as exc:
        raise AddressError(f"{problem}: {exc}") from None
    if not host or port is None or parts.path or parts.query or parts.username:
        raise AddressError(problem)
    return host, port


def http_address_arg(text: str) -> str:
    """argparse ``type=``: validates ``--http-address`` and keeps it as given."""
    try:
        parse_http_address(text)
    except AddressError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    return text


class _Handler(BaseHTTPRequestHandler):
    """One connection, one request; runs in that connection's thread."""

    protocol_version = "HTTP/1.1"
    server: _Server
    server_version = "dockmirror"
    sys_version = ""

    def __init__(self, request: Any, client_address: Any, server: _Server, conn: Any) -> None:
        self.conn = conn
        super().__init__(request, client_address, server)

    def log_message(self, format: str, *args: Any) -> None:
        log.debug("%s - " + format, self.client_address[0], *args)

    def log_error(self, format: str, *args: Any) -> None:
        if not self.conn.cut:
            log.info("%s - " + format, self.client_address[0], *args)

    def _send(
        self, status: int, body: bytes, content_type: str, headers: dict[str, str] | None = None
    ) -> None:
        self.server.answering(self.conn)
        self.send_response(status)
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        self.send_header("Connection", "close")
        self.close_connection = True
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _text(self, status: int, text: str) -> None:
        self._send(status, (text + "\n").encode(), "text/plain; charset=utf-8")

    def send_error(self, code: int, message: str | None = None, explain: str | None = None) -> None:
        # Bad request lines, unknown methods: a short text answer instead of HTML.
        with contextlib.suppress(OSError):
            self._text(code, message or self.responses.get(code, ("error",))[0])
        self.close_connection = True

    def _refuse(self, refusal: Refusal) -> None:
        """A log stream's plain HTTP answer (instead of the WebSocket upgrade)."""
        headers = {}
        if refusal.retry_after_s is not None:
            headers["Retry-After"] = str(refusal.retry_after_s)
        body = (refusal.text + "\n").encode()
        self._send(refusal.status, body, "text/plain; charset=utf-8", headers)

    def _log_stream(self, logs: LogStreams) -> None:
        """The connection thread serves the stream until it ends (docs/contract.md §6.4)."""
        self.close_connection = True
        if self.command != "GET":
            self._text(405, "method not allowed: the log stream is a WebSocket (GET)")
            return
        if not self.server.detach(self.conn):
            return  # cut meanwhile (past its deadline, or the endpoint is stopping)
        try:
            logs.serve(self.connection, self.path, self.headers, self._refuse)
        except OSError:
            pass  # the client went away
        except Exception:
            # Never an HTTP answer here: the connection may be a WebSocket by now.
            log.exception("log stream failed: %s", self.path)

    def do_GET(self) -> None:
        path = urlsplit(self.path).path
        try:
            logs = self.server.endpoint.logs
            if logs is not None and is_logs_path(path):
                self._log_stream(logs)
            elif path == "/healthz":
                self._text(*self.server.endpoint.healthz())
            elif path == "/readyz":
                self._text(*self.server.endpoint.readyz())
            elif path == "/metrics":
                body, content_type = self.server.endpoint.metrics_text(self.headers.get("Accept"))
                self._send(200, body, content_type)
            else:
                self._text(404, "not found: try /healthz, /readyz or /metrics")
        except OSError:
            self.close_connection = True  # the client went away or was cut
        except Exception:
            log.exception("internal error answering %s", path)
            with contextlib.suppress(OSError):
                self._text(500, "internal error")

    do_HEAD = do_GET


class _Server(HTTPServer):
    """Accepts in the serving thread; one daemon thread per connection, bounded."""

    allow_reuse_address = True
    request_queue_size = 32

    def __init__(self, address: tuple[str, int], endpoint: HttpEndpoint) -> None:
        self.endpoint = endpoint
        self._slots = threading.BoundedSemaphore(MAX_CONNECTIONS)
        # Idle never happens (every answer closes): the idle timeout is the deadline too.
        self._table = ConnTable(REQUEST_DEADLINE, REQUEST_DEADLINE)
        self._lock = threading.Lock()
        self._closing = False
        self._detached: set[int] = set()  # id() of connections handed to the log streams
        if ":" in address[0]:
            self.address_family = socket.AF_INET6
        super().__init__(address, _Handler)  # type: ignore[arg-type]

    def process_request(self, request: Any, client_address: Any) -> None:
        """Serving thread: take a slot (evicting the oldest unfinished request when
        full), then start the connection's thread."""
        if not self._slots.acquire(blocking=False):
            with self._lock:
                victim = self._table.victim()
                if victim is not None:
                    self._cut(victim)
            if not self._slots.acquire(timeout=EVICT_WAIT):
                log.warning(
                    "%s - refused: all %d connections busy", client_address[0], MAX_CONNECTIONS
                )
                self.shutdown_request(request)
                return
        conn = None
        try:
            request.settimeout(REQUEST_DEADLINE + 1.0)  # a backstop should the sweep stop
            with self._lock:
                if self._closing:
                    raise OSError("stopping")
                conn = self._table.add(request, client_address[0], time.monotonic())
            threading.Thread(
                target=self._run, args=(conn, client_address), name="http-conn", daemon=True
            ).start()
        except Exception as exc:
            # Stopping, or no thread could be started: drop this one, keep accepting.
            if conn is not None:
                with self._lock:
                    self._table.remove(conn)
            self.shutdown_request(request)
            self._slots.release()
            if not self._closing:
                log.warning("%s - connection dropped: %s", client_address[0], exc)

    def _run(self, conn: Any, client_address: Any) -> None:
        try:
            _Handler(conn.sock, client_address, self, conn)
        except Exception:
            if not conn.cut:
                log.warning("%s - connection error", client_address[0], exc_info=True)
        finally:
            with self._lock:
                self._table.remove(conn)
                detached = id(conn) in self._detached
                self._detached.discard(id(conn))
            self.shutdown_request(conn.sock)
            if not detached:
                self._slots.release()

    def detach(self, conn: Any) -> bool:
        """Connection thread: a log stream leaves the table (no deadline, no eviction)
        and gives its slot back at once. False when it was cut already."""
        with self._lock:
            if conn.cut or self._closing or not self._table.remove(conn):
                return False
            self._detached.add(id(conn))
        conn.sock.settimeout(None)  # the request deadline's backstop no longer applies
        self._slots.release()
        return True

    def answering(self, conn: Any) -> None:
        """Connection thread: the request is complete; it is no longer to be evicted."""
        with self._lock:
            if not conn.cut:
                self._table.answering(conn, time.monotonic())

    def service_actions(self) -> None:
        """Serving thread, every ``POLL_INTERVAL``: cut connections past their deadline."""
        now = time.monotonic()
        with self._lock:
            for conn in self._table.expired(now):
                if conn.phase is Phase.REQUEST:
                    log.info(
                        "%s - request not complete within %.0f s; cut", conn.peer, REQUEST_DEADLINE
                    )
                self._cut(conn)

    def _cut(self, conn: Any) -> None:
        """Under ``_lock``: wake the connection's thread by shutting its socket down (the
        thread owns the descriptor and closes it)."""
        conn.cut = True
        self._table.remove(conn)
        with contextlib.suppress(OSError):
            conn.sock.shutdown(socket.SHUT_RDWR)

    def close_connections(self) -> None:
        with self._lock:
            self._closing = True
            for conn in self._table:
                self._cut(conn)


class HttpEndpoint:
    """The probes and metrics endpoint of one service instance.

    ``start`` and ``stop`` are called by the supervisor's main thread; the answers are
    computed in the connection threads from thread-safe snapshots (``liveness``,
    ``metrics.ready``, ``leader_state``). ``start`` raises OSError when the address
    cannot be bound (the supervisor turns that into a one-line exit).
    """

    def __init__(
        self,
        address: tuple[str, int],
        *,
        metrics: ServiceMetrics,
        liveness: Liveness,
        leader_state: LeaderStateFn = election_disabled,
        clock: Callable[[], float] = time.monotonic,
        logs: LogStreams | None = None,
    ) -> None:
        self.address = address
        self.metrics = metrics
        #: The WebSocket log streams (None: the path is answered 404 like any other).
        self.logs = logs
        self.liveness = liveness
        self.leader_state = leader_state
        self._clock = clock
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None

    # --- answers (connection threads) ----------------------------------------------------
    def healthz(self) -> tuple[int, str]:
        return health_answer(self.liveness.snapshot(), self._clock())

    def readyz(self) -> tuple[int, str]:
        try:
            state = str(self.leader_state())
        except Exception as exc:
            return 503, f"not ready: leader state unknown ({exc})"
        stopping = self.liveness.snapshot().stopping
        return ready_answer(state, self.metrics.ready, stopping=stopping)

    def metrics_text(self, accept: str | None = None) -> tuple[bytes, str]:
        encoder, content_type = choose_encoder(accept or "")
        return encoder(self.metrics.registry), content_type

    # --- lifecycle (main thread) ---------------------------------------------------------
    @property
    def url(self) -> str:
        host, port = self.bound_address
        shown = f"[{host}]" if ":" in host else host
        return f"http://{shown}:{port}"

    @property
    def bound_address(self) -> tuple[str, int]:
        if self._server is None:
            return self.address
        host, port = self._server.server_address[:2]
        return str(host), int(port)

    def start(self) -> None:
        self._server = _Server(self.address, self)
        self._thread = threading.Thread(
            target=self._server.serve_forever,
            kwargs={"poll_interval": POLL_INTERVAL},
            name="http-endpoint",
            daemon=True,
        )
        self._thread.start()

    def is_alive(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def stop(self) -> None:
        """Stop accepting, cut open connections, close the socket; returns promptly."""
        server, self._server = self._server, None
        if server is None:
            return
        server.shutdown()  # returns once serve_forever noticed (<= POLL_INTERVAL)
        if self.logs is not None:
            self.logs.close_all()  # 1001 to every follower; their threads end on their own
        server.close_connections()
        server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=2.0)

"""HTTPS admission webhook server and its ValidatingWebhookConfiguration (docs/contract.md §5).

:class:`WebhookServer` serves ``POST`` :data:`VALIDATE_PATH`
(decisions in :mod:`actors.domain.webhook_review`) and ``GET /healthz`` on 127.0.0.1 over TLS.
No request -- oversized, truncated, not HTTP, not TLS -- can stop the serving thread:
the TLS handshake and each connection run in their own daemon thread, and every failure
is answered (or the connection dropped) and logged once at WARNING. Nor can slow clients
starve it: connections are capped (``MAX_CONNECTIONS``; a new one evicts the oldest that
is not being answered), a request must be complete ``REQUEST_DEADLINE`` seconds after
accept or after its first byte, however steadily it trickles in, and bodies over
``MAX_BODY_BYTES`` answer 413 unread. Idle keep-alive connections that time out
(``IDLE_TIMEOUT``) or are closed by the client between requests are normal and logged at
DEBUG only.

:class:`WebhookRegistration` creates or replaces the ValidatingWebhookConfiguration that
points the API server at it, deletes it, and probes that the API server really calls it,
all through the Kubernetes port (its failures are :class:`~actors.ports.kube_port.KubeError`
families). The configuration holds two webhooks on the same URL (the decision tells them
apart by the request's resource): Container CREATE/UPDATE (§5.1) and ContainerNamespace
DELETE, which is always allowed with a warning (§5.2).
See docs/admission.md.
"""

from __future__ import annotations

import base64
import contextlib
import enum
import json
import logging
import secrets
import socket
import ssl
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from actors.domain.names import (
    ACTION_ANNOTATION,
    CONTAINER_NAMESPACES,
    CONTAINERS,
    GROUP,
    JSON,
    VERSION,
)
from actors.domain.webhook_review import CREATE_DENIED_MESSAGE, MAX_BODY_BYTES, review
from actors.ports.kube_port import (
    KubeConflict,
    KubeError,
    KubeForbidden,
    KubeHttp,
    KubeNotFound,
    WebhookConfigs,
    dry_run_create,
)

logger = logging.getLogger("dockmirror.webhook")

#: controller-runtime's path for the validating webhook of Container (group dots as dashes).
VALIDATE_PATH = f"/validate-{GROUP.replace('.', '-')}-{VERSION}-container"
HEALTHZ_PATH = "/healthz"
WEBHOOK_NAME = f"container-mutating.{GROUP}"
#: The ContainerNamespace delete warning's webhook (rancher-desktop-daemon's name).
NAMESPACE_WEBHOOK_NAME = f"container-namespace-deleting.{GROUP}"
#: Label carried by the dry-run probe object; its value is a random token.
PROBE_LABEL = "dockmirror.rancherdesktop.io/webhook-probe"

#: Connections served at once, one thread each; a connection beyond it evicts the oldest
#: one that is not being answered (see ConnTable.victim) or is refused. The API server keeps
#: at most 25 idle connections per webhook host (client-go's transport cache) and opens more
#: only for concurrent admission calls, so 128 leaves ample room for it while bounding
#: threads (about 8 MiB of address space and 22 KB RSS each) and file descriptors.
MAX_CONNECTIONS = 128
#: Deadline from accept to a complete request (TLS handshake, request line, headers, body),
#: and from the first byte of each later request on a keep-alive connection. The API server
#: gives up on a webhook call after its timeoutSeconds (10 s by default; we register 5 s), so
#: a request that is not complete after 10 s has no reader left. Progress does not extend it:
#: a client trickling one byte a second is cut off after 10 s all the same.
REQUEST_DEADLINE = 10.0
#: Idle limit of a keep-alive connection between requests. Longer than client-go's 90 s
#: IdleConnTimeout so that the API server, not we, closes an idle connection: a server-side
#: close can cross a request the client is sending on that connection, and Go does not retry
#: a POST. Idle connections are evicted when the server is full, so they cannot starve it.
IDLE_TIMEOUT = 120.0
#: How long a closing connection's unread input is drained (see _lingering_close).
LINGER_SECONDS = 2.0
#: How long accept() waits for an evicted connection's thread to give its slot back (it
#: only has to notice its cut socket) before refusing the new connection.
EVICT_WAIT = 1.0
#: Timeouts, evictions and refusals: the first of each interval is logged at WARNING, the
#: rest are counted into one line per interval, so a flood of clients cannot flood the log.
PRESSURE_LOG_INTERVAL = 10.0


def _json_bytes(obj: Any) -> bytes:
    return json.dumps(obj).encode()


class Phase(enum.Enum):
    """Where a connection is in its life; decides its deadline and whether it may be evicted."""

    REQUEST = "request"  # TLS handshake, or reading a request's line, headers and body
    ANSWER = "answer"  # the request is complete and being reviewed and answered
    IDLE = "idle"  # keep-alive, waiting for the first byte of the next request
    CLOSING = "closing"  # draining unread input before close (_lingering_close)


@dataclass(eq=False)
class Conn:
    """One accepted connection's bookkeeping in a :class:`ConnTable`."""

    sock: Any
    peer: str
    phase: Phase
    since: float  # when the current phase began (monotonic seconds)
    deadline: float
    cut: bool = False  # shut down by the server; its thread closes quietly


class ConnTable:
    """Deadlines and eviction order of the open connections: pure logic, no locks, no
    clock of its own (every method takes ``now``), so it is tested without threads. The
    server calls it under its lock from the accept thread and the connection threads."""

    def __init__(self, request_deadline: float, idle_timeout: float) -> None:
        self.request_deadline = request_deadline
        self.idle_timeout = idle_timeout
        self._conns: dict[int, Conn] = {}

    def __len__(self) -> int:
        return len(self._conns)

    def __iter__(self) -> Iterator[Conn]:
        return iter(list(self._conns.values()))

    def add(self, sock: Any, peer: str, now: float) -> Conn:
        """A new connection: its deadline covers the TLS handshake and the first request."""
        conn = Conn(sock, peer, Phase.REQUEST, now, now + self.request_deadline)
        self._conns[id(conn)] = conn
        return conn

    def remove(self, conn: Conn) -> bool:
        """Forget ``conn``; False if it was not tracked (already cut or removed)."""
        return self._conns.pop(id(conn), None) is not None

    def request_started(self, conn: Conn, now: float) -> None:
        """The first byte of a request arrived. Only a request after an idle spell gets a
        fresh deadline: the first request's deadline runs from accept (handshake included)."""
        if conn.phase is Phase.IDLE:
            self._enter(conn, Phase.REQUEST, now, now + self.request_deadline)

    def answering(self, conn: Conn, now: float) -> None:
        """The request is complete; the deadline stays (a client that does not read its
        answer cannot hold the thread beyond it)."""
        self._enter(conn, Phase.ANSWER, now, conn.deadline)

    def answered(self, conn: Conn, now: float) -> None:
        self._enter(conn, Phase.IDLE, now, now + self.idle_timeout)

    def closing(self, conn: Conn, now: float, linger: float) -> None:
        self._enter(conn, Phase.CLOSING, now, now + linger)

    def expired(self, now: float) -> list[Conn]:
        return [c for c in self._conns.values() if c.deadline <= now]

    def victim(self) -> Conn | None:
        """The connection to evict for a new one when all slots are taken: one that is still
        handshaking, reading its request or closing, the oldest first (a slow client has
        been at it longest; a well-behaved one needs milliseconds), else the longest idle.
        Never one being answered: its request is complete and costs milliseconds."""
        candidates = [c for c in self._conns.values() if c.phase is not Phase.ANSWER]
        if not candidates:
            return None
        return min(candidates, key=lambda c: (c.phase is Phase.IDLE, c.since))

    @staticmethod
    def _enter(conn: Conn, phase: Phase, now: float, deadline: float) -> None:
        conn.phase, conn.since, conn.deadline = phase, now, deadline


class PressureLog:
    """Warnings about connections the server cut or refused, bounded: per kind (timed
    out, evicted, refused), the first one of an interval is logged at once with its
    detail, later ones are counted and summed up in one line when the interval is over
    (``flush``) or the server stops. Used by the serving thread only; ``now`` is passed in.
    """

    def __init__(self, interval: float) -> None:
        self.interval = interval
        self._last: dict[str, float] = {}  # kind -> when its interval began
        self._counts: dict[str, int] = {}

    def event(self, kind: str, now: float, msg: str, *args: Any) -> None:
        self.flush(now)
        if now - self._last.get(kind, -float("inf")) >= self.interval:
            self._last[kind] = now
            logger.warning(msg, *args)
        else:
            self._counts[kind] = self._counts.get(kind, 0) + 1

    def flush(self, now: float, *, force: bool = False) -> None:
        for kind, count in sorted(self._counts.items()):
            since = self._last[kind]
            if force or now - since >= self.interval:
                logger.warning(
                    "webhook connections %s: %d more in the last %.0f s", kind, count, now - since
                )
                self._last[kind] = now
                del self._counts[kind]


class _Handler(BaseHTTPRequestHandler):
    """One connection's HTTP/1.1 requests; runs in that connection's thread."""

    protocol_version = "HTTP/1.1"
    server: _TLSServer
    server_version = "dockmirror-webhook"
    sys_version = ""

    # -- plumbing ---------------------------------------------------------

    def __init__(self, request: Any, client_address: Any, server: _TLSServer, conn: Conn):
        self.conn = conn  # set before the base class runs setup() and handle()
        super().__init__(request, client_address, server)

    def setup(self) -> None:
        # The socket's timeout was set by the server (a backstop only: the server's
        # deadline sweep cuts slow and idle connections); keep it.
        self.timeout = self.request.gettimeout()
        super().setup()

    def log_message(self, format: str, *args: Any) -> None:
        logger.debug("%s - " + format, self.client_address[0], *args)

    def log_error(self, format: str, *args: Any) -> None:
        if self.conn.cut:
            return  # the server cut it and has said why; what follows is the echo
        logger.warning("%s - " + format, self.client_address[0], *args)

    def handle_one_request(self) -> None:
        # Wait for the first byte of the next request before the base class reads it.
        # Between requests the connection is idle: the server's sweep closes it after
        # the idle timeout, at DEBUG (the API server keeps idle keep-alive connections;
        # that is normal). From the first byte on, the request deadline runs.
        try:
            first = self.rfile.peek(1)
        except TimeoutError:
            logger.debug("%s - idle keep-alive connection timed out", self.client_address[0])
            self.close_connection = True
            return
        except (ConnectionError, ssl.SSLError, OSError) as exc:
            logger.debug("%s - connection closed while idle: %s", self.client_address[0], exc)
            self.close_connection = True
            return
        if not first:
            self.close_connection = True
            return
        self.server.note(self.conn, Phase.REQUEST)
        super().handle_one_request()

    def _send(self, status: int, body: bytes, *, close: bool = False, ctype: str = "") -> None:
        self.server.note(self.conn, Phase.ANSWER)
        self.send_response(status)
        self.send_header("Content-Type", ctype or JSON)
        self.send_header("Content-Length", str(len(body)))
        if close:
            self.send_header("Connection", "close")
            self.close_connection = True
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)
        self.wfile.flush()
        self.server.owner._count()
        self.server.note(self.conn, Phase.IDLE)

    def send_error(self, code: int, message: str | None = None, explain: str | None = None) -> None:
        # Used by the base class for unparsable request lines, bad headers, unknown
        # methods. Answer with JSON instead of HTML and log once.
        msg = message or self.responses.get(code, ("error",))[0]
        if not self.conn.cut:
            logger.warning("%s - rejected request: %d %s", self.client_address[0], code, msg)
        try:
            self._send(code, _json_bytes({"error": msg}), close=True)
        except OSError:
            self.close_connection = True

    def _reject(self, code: int, message: str) -> None:
        self.send_error(code, message)

    # -- routes -----------------------------------------------------------

    def do_GET(self) -> None:
        path = urlsplit(self.path).path
        if path == HEALTHZ_PATH:
            self._send(200, b"ok", ctype="text/plain")
        elif path == VALIDATE_PATH:
            self._reject(405, "method not allowed")
        else:
            self._reject(404, "not found")

    do_HEAD = do_GET

    def do_POST(self) -> None:
        try:
            self._post()
        except (TimeoutError, ConnectionError, ssl.SSLError) as exc:
            if not self.conn.cut:
                logger.warning("%s - connection failed: %s", self.client_address[0], exc)
            self.close_connection = True
        except Exception:
            logger.exception("%s - internal error handling %s", self.client_address[0], self.path)
            try:
                self._send(500, _json_bytes({"error": "internal error"}), close=True)
            except OSError:
                self.close_connection = True

    def _post(self) -> None:
        if urlsplit(self.path).path != VALIDATE_PATH:
            self._reject(404, "not found")
            return
        if self.headers.get("Transfer-Encoding") is not None:
            self._reject(400, "Transfer-Encoding is not supported; send Content-Length")
            return
        lengths = self.headers.get_all("Content-Length") or []
        if len(set(lengths)) != 1:
            self._reject(400, "missing or conflicting Content-Length")
            return
        raw = lengths[0].strip()
        if not (raw.isascii() and raw.isdigit()):
            self._reject(400, "invalid Content-Length")
            return
        length = int(raw)
        if length > MAX_BODY_BYTES:
            self._reject(413, f"body larger than {MAX_BODY_BYTES} bytes")
            return
        body = self.rfile.read(length)
        if len(body) != length:
            self._reject(400, "body shorter than Content-Length")
            return
        self.server.note(self.conn, Phase.ANSWER)  # complete: no longer to be evicted
        status, out = review(body)
        if status == 200:
            self.server.owner._note_probe(body)
        elif status == 400:
            logger.warning("%s - malformed AdmissionReview: %s", self.client_address[0], out)
        else:
            logger.error("%s - review failed: %s", self.client_address[0], out)
        self._send(status, out)


class _Closing(Exception):
    """The server is stopping: a connection accepted meanwhile is dropped."""


class _TLSServer(HTTPServer):
    """Accepts in the serving thread and runs each connection (TLS handshake included) in
    its own daemon thread, at most ``max_connections`` at once. The serving thread also
    sweeps deadlines (``service_actions``, every ``poll_interval``) and cuts connections
    that overrun them by shutting their socket down, which wakes their blocked thread."""

    allow_reuse_address = True
    request_queue_size = 64

    def __init__(
        self,
        address: tuple[str, int],
        ctx: ssl.SSLContext,
        owner: WebhookServer,
        *,
        max_connections: int,
        request_deadline: float,
        idle_timeout: float,
    ):
        self.ssl_context = ctx
        self.owner = owner
        self.max_connections = max_connections
        self._slots = threading.BoundedSemaphore(max_connections)
        self._table = ConnTable(request_deadline, idle_timeout)
        self._lock = threading.Lock()  # guards _table and every shutdown of a tracked socket
        self._closing = False
        self._pressure = PressureLog(PRESSURE_LOG_INTERVAL)
        # A per-operation socket timeout as a backstop, should the sweep ever stop.
        self.backstop_timeout = max(request_deadline, idle_timeout) + LINGER_SECONDS
        super().__init__(address, _Handler)

    # -- accept thread ----------------------------------------------------

    def process_request(self, request: socket.socket, client_address: Any) -> None:
        """Serving thread: take a slot (evicting if needed), wrap without handshaking (no
        I/O here) and start the connection's thread."""
        now = time.monotonic()
        if not self._slots.acquire(blocking=False):
            with self._lock:
                victim = self._table.victim()
                if victim is not None:
                    self._cut(victim)
            # Wait for the victim's thread to give its slot back, or (all connections
            # being answered) for an answer to finish; the kernel's listen backlog holds
            # further clients meanwhile. Past EVICT_WAIT, refuse: the client sees a close.
            peer = client_address[0]
            if not self._slots.acquire(timeout=EVICT_WAIT):
                self._pressure.event(
                    "refused",
                    now,
                    "%s - connection refused: all %d connections busy answering for %.1f s",
                    peer,
                    self.max_connections,
                    EVICT_WAIT,
                )
                self.shutdown_request(request)
                return
            if victim is not None:
                self._pressure.event(
                    "evicted",
                    now,
                    "%s - connection limit (%d) reached: cut the oldest unfinished "
                    "connection (from %s, %s for %.1f s)",
                    peer,
                    self.max_connections,
                    victim.peer,
                    victim.phase.value,
                    now - victim.since,
                )
        sock: socket.socket = request
        conn: Conn | None = None
        try:
            with contextlib.suppress(OSError):  # headers and body are separate writes
                request.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            request.settimeout(self.backstop_timeout)
            sock = self.ssl_context.wrap_socket(
                request, server_side=True, do_handshake_on_connect=False
            )
            with self._lock:
                if self._closing:
                    raise _Closing
                conn = self._table.add(sock, client_address[0], now)
            threading.Thread(
                target=self._run, args=(conn, client_address), name="webhook-conn", daemon=True
            ).start()
        except Exception as exc:
            # Closing, or no thread could be started (e.g. the process's thread limit):
            # drop this connection, give its slot back and keep accepting.
            if conn is not None:
                with self._lock:
                    self._table.remove(conn)
            with contextlib.suppress(OSError):
                sock.close()
            self._slots.release()
            if not isinstance(exc, _Closing):
                logger.exception("%s - could not start a connection", client_address[0])

    def service_actions(self) -> None:
        """Serving thread, after every accept and every ``poll_interval``: cut connections
        past their deadline."""
        now = time.monotonic()
        with self._lock:
            for conn in self._table.expired(now):
                self._cut(conn)
                if conn.phase in (Phase.REQUEST, Phase.ANSWER):
                    self._pressure.event(
                        "timed out",
                        now,
                        "%s - Request timed out: not complete within %.1f s "
                        "(TLS handshake, headers and body); connection cut",
                        conn.peer,
                        self._table.request_deadline,
                    )
                elif conn.phase is Phase.IDLE:
                    logger.debug("%s - idle keep-alive connection timed out", conn.peer)
        self._pressure.flush(now)

    # -- connection threads -----------------------------------------------

    def _run(self, conn: Conn, client_address: Any) -> None:
        tls = conn.sock
        try:
            try:
                tls.do_handshake()
            except (ssl.SSLError, OSError, ValueError) as exc:
                if not conn.cut:
                    logger.warning("%s - TLS handshake failed: %s", client_address[0], exc)
                return
            try:
                _Handler(tls, client_address, self, conn)
                self.note(conn, Phase.CLOSING)
                self._lingering_close(tls)
            except Exception:
                if not conn.cut:
                    self.handle_error(tls, client_address)
        finally:
            with self._lock:
                self._table.remove(conn)
            with contextlib.suppress(OSError):
                tls.close()
            self._slots.release()

    def note(self, conn: Conn, phase: Phase) -> None:
        """Connection thread: ``conn`` enters ``phase`` (REQUEST: the first byte of a
        request arrived; ANSWER: the request is complete; IDLE: answered, keep-alive;
        CLOSING: draining before close). A cut connection is no longer tracked."""
        now = time.monotonic()
        with self._lock:
            if conn.cut:
                return
            if phase is Phase.REQUEST:
                self._table.request_started(conn, now)
            elif phase is Phase.ANSWER:
                self._table.answering(conn, now)
            elif phase is Phase.IDLE:
                self._table.answered(conn, now)
            else:
                self._table.closing(conn, now, LINGER_SECONDS)

    # -- cutting ----------------------------------------------------------

    def _cut(self, conn: Conn) -> None:
        """Under ``_lock``: shut the connection's socket down (its thread owns and closes
        it) and stop tracking it. The thread still holds the descriptor, so the shutdown
        cannot hit a reused one."""
        conn.cut = True
        self._table.remove(conn)
        with contextlib.suppress(OSError, ValueError):
            # Plain socket shutdown on the descriptor, bypassing the TLS wrapper that the
            # connection thread owns; its blocked handshake, read or write returns at once.
            socket.socket.shutdown(conn.sock, socket.SHUT_RDWR)

    def close_connections(self) -> None:
        """Refuse new connections and cut open ones (keep-alive connections from the API
        server would otherwise keep being answered after stop())."""
        with self._lock:
            self._closing = True
            for conn in self._table:
                self._cut(conn)
        # The serving thread has ended (stop() joined it): its log is ours now.
        self._pressure.flush(time.monotonic(), force=True)

    @property
    def open_connections(self) -> int:
        with self._lock:
            return len(self._table)

    @staticmethod
    def _lingering_close(tls: ssl.SSLSocket) -> None:
        # Closing a socket with unread input (a body we refused to read) makes the kernel
        # send RST, which can destroy our error response before the client reads it. So
        # half-close, then discard input for a bounded time until the client closes.
        deadline = time.monotonic() + LINGER_SECONDS
        with contextlib.suppress(OSError, ValueError):
            tls.shutdown(socket.SHUT_WR)  # also drops the TLS layer: raw bytes below
            while (left := deadline - time.monotonic()) > 0:
                tls.settimeout(left)
                if not tls.recv(65536):
                    break

    def handle_error(self, request: Any, client_address: Any) -> None:
        logger.warning("%s - connection error", client_address[0], exc_info=True)


class WebhookServer:
    """The HTTPS admission endpoint on 127.0.0.1:<port> (0 picks a free port).

    ``start``, ``stop`` and ``reload_certificates`` are called by the supervisor's thread;
    the server runs in its own serving thread plus one daemon thread per connection, at
    most ``max_connections`` (see the module constants for the limits and why).
    """

    def __init__(
        self,
        cert_path: Path,
        key_path: Path,
        port: int = 0,
        host: str = "127.0.0.1",
        *,
        max_connections: int = MAX_CONNECTIONS,
        request_deadline: float = REQUEST_DEADLINE,
        idle_timeout: float = IDLE_TIMEOUT,
    ):
        if max_connections < 1 or request_deadline <= 0 or idle_timeout <= 0:
            raise ValueError("max_connections, request_deadline and idle_timeout must be > 0")
        self._cert_path = Path(cert_path)
        self._key_path = Path(key_path)
        self._host = host
        self._port = port
        self._limits = {
            "max_connections": max_connections,
            "request_deadline": request_deadline,
            "idle_timeout": idle_timeout,
        }
        self._lock = threading.Lock()
        self._served = 0
        self._last_probe: str | None = None
        self._httpd: _TLSServer | None = None
        self._thread: threading.Thread | None = None

    # -- state ------------------------------------------------------------

    @property
    def port(self) -> int:
        return self._port

    @property
    def url(self) -> str:
        return f"https://{self._host}:{self._port}{VALIDATE_PATH}"

    @property
    def open_connections(self) -> int:
        """Connections accepted and not yet cut or closed (at most ``max_connections``)."""
        httpd = self._httpd
        return httpd.open_connections if httpd is not None else 0

    @property
    def served_count(self) -> int:
        """Number of HTTP responses sent (any route, any status)."""
        with self._lock:
            return self._served

    @property
    def last_probe(self) -> str | None:
        """Token of the last reviewed object labelled ``PROBE_LABEL`` (see
        :meth:`WebhookRegistration.wait_until_called`)."""
        with self._lock:
            return self._last_probe

    def _count(self) -> None:
        with self._lock:
            self._served += 1

    def _note_probe(self, body: bytes) -> None:
        if PROBE_LABEL.encode() not in body:
            return
        try:
            labels = json.loads(body)["request"]["object"]["metadata"]["labels"]
            token = labels[PROBE_LABEL]
        except (ValueError, KeyError, TypeError):
            return
        if isinstance(token, str):
            with self._lock:
                self._last_probe = token

    # -- lifecycle --------------------------------------------------------

    def _context(self) -> ssl.SSLContext:
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.minimum_version = ssl.TLSVersion.TLSv1_2
        ctx.load_cert_chain(self._cert_path, self._key_path)
        return ctx

    def reload_certificates(self) -> None:
        """Load renewed certificate files; new connections use them."""
        if self._httpd is not None:
            self._httpd.ssl_context.load_cert_chain(self._cert_path, self._key_path)

    def start(self) -> None:
        if self._thread is not None:
            raise RuntimeError("WebhookServer already started")
        self._httpd = _TLSServer((self._host, self._port), self._context(), self, **self._limits)
        self._port = self._httpd.server_address[1]
        self._thread = threading.Thread(
            target=self._serve, name=f"webhook-{self._port}", daemon=True
        )
        self._thread.start()
        logger.info("webhook serving on %s", self.url)

    def _serve(self) -> None:
        assert self._httpd is not None
        try:
            self._httpd.serve_forever(poll_interval=0.1)
        except Exception:
            logger.exception("webhook server loop died")

    def stop(self, timeout: float = 5.0) -> None:
        """Stop accepting, close the listener and cut every open connection (slow or idle
        ones included: each thread wakes from its cut socket and exits on its own)."""
        httpd, thread = self._httpd, self._thread
        if httpd is None or thread is None:
            return
        httpd.shutdown()
        thread.join(timeout)
        httpd.server_close()
        httpd.close_connections()
        self._httpd = None
        self._thread = None
        logger.info("webhook on port %d stopped", self._port)

    def is_alive(self) -> bool:
        return self._thread is not None and self._thread.is_alive()


# ---------------------------------------------------------------------------
# Registration


class WebhookNotCalledError(RuntimeError):
    """The API server did not route a probe request to this webhook in time."""


class WebhookRegistration:
    """Create/replace, probe and delete ``ValidatingWebhookConfiguration/dockmirror-<ns>``."""

    def __init__(
        self,
        http: KubeHttp,
        namespace: str,
        port: int,
        ca_pem: bytes,
        *,
        server: WebhookServer | None = None,
        host: str = "127.0.0.1",
        url: str | None = None,
    ):
        """``host`` is the address the server listens on (``--webhook-host``) and goes
        into the registered URL; ``url`` (``--webhook-url``) replaces that URL as is,
        for an API server that reaches us another way (a tunnel, a proxy)."""
        self.http = http
        self._configs = WebhookConfigs(http)
        self.namespace = namespace
        self.port = port
        self.ca_pem = ca_pem
        self._server = server
        self.host = host
        self.url_override = url

    @property
    def name(self) -> str:
        return f"dockmirror-{self.namespace}"

    @property
    def url(self) -> str:
        """The URL the API server calls: ``--webhook-url`` as is, else built from the
        host and port (IPv6 literals bracketed)."""
        if self.url_override:
            return self.url_override
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"https://{host}:{self.port}{VALIDATE_PATH}"

    def body(self) -> dict[str, Any]:
        client_config = {
            "url": self.url,
            "caBundle": base64.b64encode(self.ca_pem).decode(),
        }
        namespace_selector = {"matchLabels": {"kubernetes.io/metadata.name": self.namespace}}
        return {
            "apiVersion": "admissionregistration.k8s.io/v1",
            "kind": "ValidatingWebhookConfiguration",
            "metadata": {
                "name": self.name,
                "labels": {"app.kubernetes.io/managed-by": "dockmirror"},
            },
            "webhooks": [
                {
                    "name": WEBHOOK_NAME,
                    "clientConfig": client_config,
                    "rules": [
                        {
                            "operations": ["CREATE", "UPDATE"],
                            "apiGroups": [GROUP],
                            "apiVersions": [VERSION],
                            "resources": [CONTAINERS],
                            "scope": "Namespaced",
                        }
                    ],
                    "failurePolicy": "Fail",
                    "matchPolicy": "Equivalent",
                    "sideEffects": "None",
                    "admissionReviewVersions": ["v1", "v1beta1"],
                    "timeoutSeconds": 5,
                    "namespaceSelector": namespace_selector,
                },
                {
                    # Warns only: a service that is down must never block a delete
                    # (upstream uses Fail; docs/contract.md §9, D14).
                    "name": NAMESPACE_WEBHOOK_NAME,
                    "clientConfig": client_config,
                    "rules": [
                        {
                            "operations": ["DELETE"],
                            "apiGroups": [GROUP],
                            "apiVersions": [VERSION],
                            "resources": [CONTAINER_NAMESPACES],
                            "scope": "Namespaced",
                        }
                    ],
                    "failurePolicy": "Ignore",
                    "matchPolicy": "Equivalent",
                    "sideEffects": "None",
                    "admissionReviewVersions": ["v1", "v1beta1"],
                    "timeoutSeconds": 5,
                    "namespaceSelector": namespace_selector,
                },
            ],
        }

    def register(self, attempts: int = 5) -> None:
        """Create the configuration, or replace it if it exists (re-reading on 409).

        Main thread. Raises a :class:`KubeError` family: the first answer that is not a
        409/404 race, or the last :class:`KubeConflict` after ``attempts`` races.
        """
        last: KubeError = KubeConflict(409, "no attempt made", reason="Conflict")
        for _ in range(attempts):
            try:
                self._configs.create(self.body())
                logger.info("registered ValidatingWebhookConfiguration %s", self.name)
                return
            except KubeConflict as exc:
                last = exc
            try:
                current = self._configs.get(self.name)
                current_rv = (current.get("metadata") or {}).get("resourceVersion")
                body = self.body()
                body["metadata"]["resourceVersion"] = current_rv
                stored = self._configs.replace(self.name, body)
                # The apiserver skips an update that changes nothing and keeps the
                # resourceVersion: the periodic recheck (--webhook-recheck) is then
                # silent, and only a real repair (edited, new CA bundle) is logged.
                if (stored.get("metadata") or {}).get("resourceVersion") == current_rv:
                    logger.debug("ValidatingWebhookConfiguration %s is up to date", self.name)
                else:
                    logger.info("replaced ValidatingWebhookConfiguration %s", self.name)
                return
            except (KubeNotFound, KubeConflict) as exc:  # deleted or changed meanwhile
                last = exc
        raise type(last)(
            last.status, f"could not register {self.name}: {last.message}", reason=last.reason
        )

    def delete(self) -> None:
        """Delete the configuration; one already gone is fine. Raises a KubeError family."""
        try:
            self._configs.delete(self.name)
            logger.info("deleted ValidatingWebhookConfiguration %s", self.name)
        except KubeNotFound:
            pass

    def _probe_object(self, token: str) -> dict[str, Any]:
        return {
            "apiVersion": f"{GROUP}/{VERSION}",
            "kind": "Container",
            "metadata": {
                "generateName": "dockmirror-webhook-probe-",
                "namespace": self.namespace,
                "labels": {PROBE_LABEL: token},
                "annotations": {ACTION_ANNOTATION: "start"},
            },
        }

    def wait_until_called(self, timeout: float = 30.0, interval: float = 0.2) -> None:
        """Server-side dry-run CREATE a Container carrying the action annotation until the
        API server answers with this webhook's denial (and, when the server was given,
        until that server saw the probe). Raises WebhookNotCalledError on timeout."""
        token = secrets.token_hex(8)
        deadline = time.monotonic() + timeout
        last = "no attempt made"
        while True:
            try:
                dry_run_create(self.http, self.namespace, CONTAINERS, self._probe_object(token))
                last = "dry-run create was allowed (webhook not active yet)"
            except KubeForbidden as exc:
                if WEBHOOK_NAME in exc.message and CREATE_DENIED_MESSAGE in exc.message:
                    if self._server is None or self._server.last_probe == token:
                        logger.info("webhook %s is called by the API server", self.name)
                        return
                    last = "denied by a webhook, but not by this server"
                else:
                    last = f"{exc}"[:300]
            except KubeError as exc:  # e.g. 500: the apiserver cannot reach the webhook
                last = f"{exc}"[:300]
            if time.monotonic() >= deadline:
                raise WebhookNotCalledError(
                    f"API server did not call webhook {self.name} within {timeout}s: {last}"
                )
            time.sleep(interval)

"""The WebSocket transport of the log stream (docs/contract.md §6.4).

:class:`LogStreams` serves ``GET /passthrough/engine/logs/{containerID}`` for the HTTP
endpoint (:mod:`actors.infra.http_endpoint`), which hands it the connection once the
request line and headers are read. Everything runs in that connection's thread, except
what the WebSocket library and :class:`_Stream` start per stream:

1. the request is parsed (:func:`actors.domain.log_stream.parse_log_request`: 400);
2. a slot is taken (at most ``max_streams`` at once; beyond: 429 with ``Retry-After``);
3. the :class:`LogSource` looks up the mirror, checks the engine, inspects the container
   and opens Docker's log stream (404, 400, 503, 500 as plain HTTP answers, like
   upstream, which reports Docker's errors before it upgrades);
4. the handshake: the same-origin check (403), then websockets' sans-I/O
   ``ServerProtocol`` validates the upgrade (426/400 otherwise) and writes the 101;
5. websockets' threaded ``Connection`` takes the socket: RFC 6455 framing, ping/pong
   and the closing handshake are the library's, not ours. Keepalive: a ping every
   :data:`~actors.domain.log_stream.PING_INTERVAL_S`, a peer silent for
   :data:`~actors.domain.log_stream.READ_DEADLINE_S` is dropped; a frame that cannot be
   written within :data:`~actors.domain.log_stream.WRITE_TIMEOUT_S` drops the peer too;
6. the connection thread pumps Docker's output: one binary frame per TTY chunk, or per
   demultiplexed frame (:class:`~actors.domain.log_stream.StdDemux`); a drain thread
   discards what the client sends and, when the WebSocket closes (the client left, or
   keepalive gave up), closes Docker's stream at once, which ends the pump.

Threads per open stream: four (the connection's, the drain, websockets' reader and its
keepalive), all ending with the stream.

Close codes: 1000 ``Closing connection`` when Docker's stream ended (``follow=false``
after the current output; ``follow`` after the container stopped), 1011
``failed to copy container logs: ...`` when it broke, 1001 ``Service stopping`` at
:meth:`LogStreams.close_all`.

Why a library: a WebSocket server is framing, masking, fragmentation, control frames,
UTF-8 checks and a closing handshake with its own timeouts; websockets implements RFC
6455 completely and is maintained, while http.server keeps serving the probes exactly
as before.
"""

from __future__ import annotations

import contextlib
import logging
import socket
import threading
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any, Protocol

from websockets.exceptions import ConnectionClosed
from websockets.frames import CloseCode
from websockets.http11 import Request
from websockets.server import ServerProtocol
from websockets.sync.connection import Connection

from actors.domain.log_stream import (
    CLIENT_MESSAGE_LIMIT,
    CLOSE_REASON,
    CLOSE_TIMEOUT_S,
    DEFAULT_MAX_LOG_STREAMS,
    LOGS_FAILED,
    ORIGIN_REFUSED,
    PING_INTERVAL_S,
    PONG_TIMEOUT_S,
    STOPPING_REASON,
    WRITE_TIMEOUT_S,
    LogRequest,
    Refusal,
    StdDemux,
    StreamError,
    copy_failed,
    origin_allowed,
    parse_log_request,
    too_many_streams,
)
from actors.infra.metrics import NO_METRICS, NoMetrics

log = logging.getLogger("dockmirror.logs")
#: websockets' own per-connection lines ("connection open", "connection closed") at INFO
#: would repeat ours for every stream; its warnings and errors still show.
_ws_log = logging.getLogger("dockmirror.logs.websocket")
_ws_log.setLevel(logging.WARNING)


class Refused(Exception):
    """A step before the upgrade failed; the client gets ``refusal`` as plain HTTP."""

    def __init__(self, refusal: Refusal) -> None:
        super().__init__(f"{refusal.status} {refusal.text}")
        self.refusal = refusal


class StreamFailed(Exception):
    """Docker's stream broke while it was being copied; ``str()`` says how."""


@dataclass
class OpenedLogs:
    """A container's log stream, ready to be copied.

    ``chunks`` is iterated by the connection thread and raises :class:`StreamFailed`
    when the stream breaks; ``close`` may be called from any thread, at any time, more
    than once, and ends the iteration.
    """

    tty: bool
    chunks: Iterator[bytes]
    close: Callable[[], None]


class LogSource(Protocol):
    """Where streams come from: the mirror lookup, the engine check and Docker
    (:class:`actors.service.log_source.EngineLogSource`)."""

    def open(self, request: LogRequest) -> OpenedLogs:
        """Connection thread; raises :class:`Refused` for an answer other than 101."""
        ...


Respond = Callable[[Refusal], None]


def _request_bytes(target: str, headers: Any) -> bytes:
    """The request line and headers as sent (http.server decoded them as ISO-8859-1)."""
    lines = [f"GET {target} HTTP/1.1", *(f"{k}: {v}" for k, v in headers.items()), "", ""]
    return "\r\n".join(lines).encode("iso-8859-1", "replace")


@dataclass(eq=False)
class _Stream:
    """One upgraded stream: the connection thread pumps, a drain thread listens."""

    conn: Connection
    opened: OpenedLogs
    request: LogRequest
    stopping: threading.Event = field(default_factory=threading.Event)
    frames: int = 0

    def run(self) -> None:
        """Connection thread: copy until Docker's stream ends, it breaks, or the client
        goes; then close the WebSocket (at most ``CLOSE_TIMEOUT_S`` for the handshake)."""
        name = f"log-drain-{self.request.container_id[:12]}"
        drain = threading.Thread(target=self._drain, name=name, daemon=True)
        drain.start()
        code, reason = CloseCode.NORMAL_CLOSURE, CLOSE_REASON
        try:
            self._pump()
        except ConnectionClosed:
            pass  # the client went away (or keepalive gave up): nothing more to say
        except (StreamFailed, StreamError) as exc:
            code, reason = CloseCode.INTERNAL_ERROR, copy_failed(str(exc))
            log.info("log stream of %s broke: %s", self.request.container_id[:12], exc)
        except Exception as exc:
            code, reason = CloseCode.INTERNAL_ERROR, copy_failed(str(exc) or type(exc).__name__)
            log.exception("log stream of %s failed", self.request.container_id[:12])
        finally:
            self.opened.close()
        if self.stopping.is_set():
            code, reason = CloseCode.GOING_AWAY, STOPPING_REASON
        self.conn.close(code, reason)
        drain.join(CLOSE_TIMEOUT_S + 1.0)

    def _pump(self) -> None:
        demux = None if self.opened.tty else StdDemux()
        for chunk in self.opened.chunks:
            payloads: Iterable[bytes] = (chunk,) if demux is None else demux.feed(chunk)
            for payload in payloads:
                self.conn.send(payload)
                self.frames += 1

    def _drain(self) -> None:
        """Drain thread: discard client messages until the WebSocket closes, then close
        Docker's stream so the pump (blocked reading it) ends at once."""
        try:
            while True:
                self.conn.recv()
        except ConnectionClosed:
            pass
        except Exception:
            log.debug("log stream drain ended", exc_info=True)
        finally:
            self.opened.close()

    def abort(self) -> None:
        """Any thread: end the stream with 1001 (the service stops)."""
        self.stopping.set()
        self.opened.close()


class LogStreams:
    """The log streams of one HTTP endpoint: the limit, the count, the transport.

    :meth:`serve` runs in the connection's thread for the whole life of the stream;
    :attr:`active` (slots taken, streams being opened included) and :meth:`close_all`
    may be called from any thread.
    """

    def __init__(
        self,
        source: LogSource,
        *,
        max_streams: int = DEFAULT_MAX_LOG_STREAMS,
        metrics: NoMetrics = NO_METRICS,
        ping_interval_s: float = PING_INTERVAL_S,
        pong_timeout_s: float = PONG_TIMEOUT_S,
        write_timeout_s: float = WRITE_TIMEOUT_S,
    ) -> None:
        """The keepalive and write bounds are upstream's; tests shorten them."""
        self.source = source
        self.max_streams = max_streams
        self.metrics = metrics
        self.ping_interval_s = ping_interval_s
        self.pong_timeout_s = pong_timeout_s
        self.write_timeout_s = write_timeout_s
        self._lock = threading.Lock()
        self._slots = 0
        self._streams: set[_Stream] = set()
        self._closing = False

    @property
    def active(self) -> int:
        with self._lock:
            return self._slots

    def serve(self, sock: socket.socket, target: str, headers: Any, respond: Respond) -> None:
        """Connection thread: answer one request for ``target`` (path and query as sent).

        ``headers`` is the request's header mapping (``items()``, ``get()``); ``respond``
        writes a plain HTTP answer. Returns when the stream is over; never raises for
        a client's or Docker's failure (they end the stream); OSError from the socket
        (the client went away) propagates to the caller, which closes it.
        """
        request = parse_log_request(target)
        if isinstance(request, Refusal):
            self._refuse(respond, request)
            return
        if not self._take_slot():
            self._refuse(respond, too_many_streams(self.max_streams))
            return
        refusal: Refusal | None = None
        try:
            try:
                opened = self.source.open(request)
            except Refused as exc:
                refusal = exc.refusal
            except Exception:
                log.exception("log stream of %s: opening failed", request.container_id[:12])
                refusal = Refusal(500, LOGS_FAILED)
            else:
                try:
                    outcome = self._upgrade(sock, target, headers, request, opened)
                except BaseException:
                    opened.close()
                    raise
                if isinstance(outcome, _Stream):
                    self._run(outcome)
                else:
                    refusal = outcome
        finally:
            with self._lock:
                self._slots -= 1
        # After the slot is free: a client that asks again at once is not refused 429.
        if refusal is not None:
            self._refuse(respond, refusal)

    def close_all(self) -> None:
        """Any thread (the endpoint's stop): end every stream with 1001, refuse new ones
        (their sockets are closed by the endpoint). Returns without waiting."""
        with self._lock:
            self._closing = True
            streams = list(self._streams)
        for stream in streams:
            stream.abort()

    # --- steps (connection thread) ------------------------------------------------------
    def _take_slot(self) -> bool:
        with self._lock:
            if self._closing or self._slots >= self.max_streams:
                return False
            self._slots += 1
            return True

    def _refuse(self, respond: Respond, refusal: Refusal) -> None:
        self.metrics.log_stream_answered(refusal.status)
        log.debug("log stream refused: %d %s", refusal.status, refusal.text)
        respond(refusal)

    def _upgrade(
        self,
        sock: socket.socket,
        target: str,
        headers: Any,
        request: LogRequest,
        opened: OpenedLogs,
    ) -> _Stream | Refusal | None:
        """The handshake: a ``_Stream`` once upgraded, a refusal still to be answered
        (403), or None when websockets refused the handshake itself (426, 400: its own
        answer is sent here). Docker's stream is closed on every path but success."""
        if not origin_allowed(headers.get("Origin"), headers.get("Host")):
            opened.close()
            return Refusal(403, ORIGIN_REFUSED)
        protocol = ServerProtocol(max_size=CLIENT_MESSAGE_LIMIT, logger=_ws_log)
        # http.server has read the request; the sans-I/O protocol must parse it itself to
        # move on to frames, so it gets the request again as bytes.
        protocol.receive_data(_request_bytes(target, headers))
        events = protocol.events_received()
        if len(events) != 1 or not isinstance(events[0], Request):
            opened.close()
            return Refusal(400, "Bad Request: not a WebSocket handshake")
        response = protocol.accept(events[0])
        if response.status_code != 101:
            opened.close()  # before the answer: the client may ask again at once
            log.debug("log stream handshake refused: %d", response.status_code)
        protocol.send_response(response)
        sock.sendall(b"".join(protocol.data_to_send()))
        self.metrics.log_stream_answered(response.status_code)
        if response.status_code != 101:
            return None
        # From here the socket belongs to websockets. Its timeout bounds each write
        # (a client that stops reading); reads wait in select(), keepalive bounds them.
        sock.settimeout(self.write_timeout_s)
        conn = Connection(
            sock,
            protocol,
            ping_interval=self.ping_interval_s,
            ping_timeout=self.pong_timeout_s,
            close_timeout=CLOSE_TIMEOUT_S,
            max_queue=4,
        )
        conn.start_keepalive()
        return _Stream(conn, opened, request)

    def _run(self, stream: _Stream) -> None:
        with self._lock:
            closing = self._closing
            self._streams.add(stream)
        if closing:
            stream.abort()
        cid = stream.request.container_id[:12]
        log.debug("log stream of %s open (follow=%s)", cid, stream.request.follow)
        try:
            stream.run()
        finally:
            with self._lock:
                self._streams.discard(stream)
            with contextlib.suppress(Exception):
                stream.conn.close()  # idempotent; the socket is closed by websockets
            log.debug("log stream of %s closed after %d frames", cid, stream.frames)

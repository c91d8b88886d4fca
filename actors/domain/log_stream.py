"""The log stream's decisions (docs/contract.md §6.4): pure, tested without sockets.

``GET /passthrough/engine/logs/{containerID}?tail=N&follow=bool`` on the service's HTTP
address becomes a WebSocket that carries one container's output. This module decides
everything a client can observe that does not need a socket:

* :func:`parse_log_request`: the container ID and the query (400 answers);
* :func:`refusal_for`: the HTTP answer when a step before the upgrade fails (404, 400,
  503, 500), from the failing step and a port-neutral :class:`Failure` kind;
* :func:`origin_allowed`: the same-origin rule of upstream's WebSocket library (403);
* :class:`StdDemux`: Docker's multiplexed stream (stdout/stderr) split into payloads;
* :class:`EngineLink`: whether the engine answers, as the Docker events reader last
  reported it (read by the HTTP threads for the 503).

Upstream (rancher-desktop-daemon, ``container_passthrough.go``) is the reference: the
texts of its answers are kept byte for byte; where this service differs (``tail`` is
checked, 429 beyond :data:`DEFAULT_MAX_LOG_STREAMS`, 503 when Docker does not answer)
docs/contract.md §6.4 and §9 say so.
"""

from __future__ import annotations

import enum
import threading
from dataclasses import dataclass
from urllib.parse import parse_qs, unquote, urlsplit

#: Where the stream is served; the container ID is the next path segment.
LOGS_PATH = "/passthrough/engine/logs/"

#: Upstream's keepalive: a ping every 10 s, and a peer that has not answered for 60 s is
#: gone. With websockets' keepalive (a ping every interval, then wait for its pong) a
#: pong timeout of 50 s drops a silent peer at most 60 s after its last answer.
PING_INTERVAL_S = 10.0
READ_DEADLINE_S = 60.0
PONG_TIMEOUT_S = READ_DEADLINE_S - PING_INTERVAL_S
#: Upstream's write deadline for one frame: a client that stops reading (its TCP window
#: full) is dropped instead of holding the Docker stream for ever.
WRITE_TIMEOUT_S = 10.0
#: Upstream's ``controlTimeout``: how long the closing handshake may take.
CLOSE_TIMEOUT_S = 1.0
#: Upstream's read limit: clients have nothing to say; anything they send is discarded.
CLIENT_MESSAGE_LIMIT = 4096
#: One binary frame per read of a TTY stream: Go's ``io.Copy`` buffer.
TTY_READ_SIZE = 32 * 1024
#: Streams served at once (``--max-log-streams``). Each holds a Docker connection and
#: four threads (the connection's, a drain, websockets' reader and keepalive) while it
#: lasts; 64 streams are 256 mostly idle threads.
DEFAULT_MAX_LOG_STREAMS = 64
#: Seconds a client refused with 429 is told to wait (``Retry-After``).
BUSY_RETRY_AFTER_S = 10

# --- answer texts (upstream's ``http.Error`` bodies; a newline follows on the wire) -----
INVALID_ID = "Invalid container ID"
NOT_FOUND = "Container not found"
LOOKUP_FAILED = "Failed to get container"
INVALID_FOLLOW = "Invalid follow parameter"
NOT_RUNNING = "Docker watcher not running"
INVALID_ARGUMENT = "Invalid argument"
INSPECT_FAILED = "Failed to inspect container"
LOGS_FAILED = "Failed to get container logs"
#: gorilla/websocket's answer to a cross-origin upgrade (upstream's default CheckOrigin).
ORIGIN_REFUSED = "websocket: request origin not allowed by Upgrader.CheckOrigin"
# Ours (upstream passes any tail to Docker and has no stream limit):
INVALID_TAIL = "Invalid tail parameter"
TOO_MANY_STREAMS = "Too many log streams"
#: The reason of the normal close (1000) once Docker's stream ended.
CLOSE_REASON = "Closing connection"
#: The reason of the close (1001) when the service stops.
STOPPING_REASON = "Service stopping"


def copy_failed(error: str) -> str:
    """The reason of the close (1011) when Docker's stream broke (upstream's text; a
    close reason is at most 123 bytes, so it is cut there)."""
    text = f"failed to copy container logs: {error}"
    return text.encode()[:123].decode("utf-8", "ignore")


@dataclass(frozen=True)
class LogRequest:
    """A valid request: ``tail`` is Docker's ``all`` or a number of lines."""

    container_id: str
    follow: bool = True
    tail: str = "all"


@dataclass(frozen=True)
class Refusal:
    """An HTTP answer instead of the upgrade: status, one line of text, extra headers."""

    status: int
    text: str
    retry_after_s: int | None = None


def is_logs_path(path: str) -> bool:
    """True for a request path (query included or not) under :data:`LOGS_PATH`."""
    return urlsplit(path).path.startswith(LOGS_PATH)


_HEX = frozenset("0123456789abcdefABCDEF")

#: Go's ``strconv.ParseBool``, which upstream uses for ``follow``.
_GO_TRUE = frozenset({"1", "t", "T", "TRUE", "true", "True"})
_GO_FALSE = frozenset({"0", "f", "F", "FALSE", "false", "False"})


def parse_go_bool(text: str) -> bool | None:
    """``strconv.ParseBool``: True, False, or None for anything else (``yes`` included)."""
    if text in _GO_TRUE:
        return True
    if text in _GO_FALSE:
        return False
    return None


def parse_tail(text: str) -> str | None:
    """Docker's ``tail``: ``all``, or a whole number of lines (a negative one means all,
    as Docker reads it); None for anything else (Docker would silently send all lines)."""
    if text == "all":
        return text
    digits = text[1:] if text.startswith("-") else text
    if digits.isascii() and digits.isdigit() and len(digits) <= 18:
        return "all" if text.startswith("-") else str(int(digits))
    return None


def parse_log_request(target: str) -> LogRequest | Refusal:
    """The request target (path and query, as sent) -> a request or a 400.

    Like upstream: the container ID is the first path segment after :data:`LOGS_PATH`
    (percent-decoded; more segments are ignored) and must be hexadecimal, of any length
    (a short ID passes here and is answered 404, as mirrors are named by the full ID).
    ``follow`` defaults to true and takes Go's boolean spellings; ``tail`` defaults to
    all lines. The first value of a repeated parameter counts; an empty one is absent.
    """
    parts = urlsplit(target)
    rest = unquote(parts.path[len(LOGS_PATH) :]) if parts.path.startswith(LOGS_PATH) else ""
    container_id = rest.lstrip("/").split("/", 1)[0]
    if not container_id or not set(container_id) <= _HEX:
        return Refusal(400, INVALID_ID)
    query = parse_qs(parts.query, keep_blank_values=True)
    follow = True
    if text := (query.get("follow") or [""])[0]:
        parsed = parse_go_bool(text)
        if parsed is None:
            return Refusal(400, INVALID_FOLLOW)
        follow = parsed
    tail = "all"
    if text := (query.get("tail") or [""])[0]:
        parsed_tail = parse_tail(text)
        if parsed_tail is None:
            return Refusal(400, INVALID_TAIL)
        tail = parsed_tail
    return LogRequest(container_id, follow, tail)


def origin_allowed(origin: str | None, host: str | None) -> bool:
    """gorilla/websocket's default ``CheckOrigin``: no ``Origin`` header (not a browser),
    or an origin whose host:port equals the request's ``Host`` (case-insensitive).

    Why: the endpoint has no authentication; this keeps a web page the user happens to
    visit from reading container logs through the user's browser.
    """
    if origin is None:
        return True
    try:
        origin_host = urlsplit(origin).netloc
    except ValueError:
        return False
    return bool(origin_host) and origin_host.lower() == (host or "").lower()


class Step(enum.Enum):
    """What the service does before the upgrade, in this order."""

    MIRROR = "mirror"  # GET the Container mirror named by the ID
    ENGINE = "engine"  # the engine connection as last reported
    INSPECT = "inspect"  # docker inspect: is it a TTY container?
    LOGS = "logs"  # open Docker's log stream


class Failure(enum.Enum):
    """What went wrong in a step, independent of the port that said so."""

    NOT_FOUND = "not_found"  # 404 from the apiserver or Docker
    INVALID = "invalid"  # Docker refused the arguments (400)
    UNAVAILABLE = "unavailable"  # no answer: not connected, refused, timed out
    ERROR = "error"  # any other error answer


_FAILED_TEXT = {Step.MIRROR: LOOKUP_FAILED, Step.INSPECT: INSPECT_FAILED, Step.LOGS: LOGS_FAILED}


def refusal_for(step: Step, failure: Failure) -> Refusal:
    """The answer when ``step`` failed with ``failure`` (upstream's statuses and texts).

    * a missing mirror or container: 404 ``Container not found``;
    * Docker refusing an argument: 400 ``Invalid argument``;
    * the engine not connected, or not answering Docker calls: 503 ``Docker watcher not
      running`` (upstream answers 503 only when its watcher is gone, and 500 when Docker
      does not answer; both mean "the engine is not there", so both are 503 here);
    * the apiserver not answering the mirror lookup, or any other error: 500 with the
      step's text.
    """
    if failure is Failure.NOT_FOUND:
        return Refusal(404, NOT_FOUND)
    if step is Step.ENGINE or (failure is Failure.UNAVAILABLE and step is not Step.MIRROR):
        return Refusal(503, NOT_RUNNING)
    if failure is Failure.INVALID and step is not Step.MIRROR:
        return Refusal(400, INVALID_ARGUMENT)
    return Refusal(500, _FAILED_TEXT.get(step, LOGS_FAILED))


def too_many_streams(limit: int) -> Refusal:
    """429 when ``limit`` streams are open (``--max-log-streams``)."""
    return Refusal(
        429,
        f"{TOO_MANY_STREAMS}: {limit} are open (--max-log-streams); try again later",
        BUSY_RETRY_AFTER_S,
    )


class StreamError(Exception):
    """Docker's multiplexed stream cannot be read on: a daemon error frame or an unknown
    stream type. ``str()`` is Go's ``stdcopy`` text."""


#: Stream types of Docker's 8-byte frame header (moby ``stdcopy``).
STDIN, STDOUT, STDERR, SYSTEMERR = 0, 1, 2, 3
HEADER_SIZE = 8


class StdDemux:
    """Docker's multiplexed log stream -> the payloads, one per frame, in order.

    Each frame is ``[type, 0, 0, 0, size (4 bytes, big-endian)]`` followed by ``size``
    bytes; chunks may split or join frames anywhere. Like upstream's ``stdcopy.StdCopy``
    with stdout and stderr going to the same writer, stdout and stderr are not told apart
    (stdin, never sent for logs, counts as stdout); a ``systemerr`` frame or an unknown
    type raises :class:`StreamError`; a frame cut by the end of the stream is dropped.
    Empty frames yield nothing. One instance per stream, used by one thread.
    """

    def __init__(self) -> None:
        self._buf = bytearray()

    def feed(self, data: bytes) -> list[bytes]:
        """Add ``data``; return the payloads of the frames it completed."""
        buf = self._buf
        buf += data
        out: list[bytes] = []
        start = 0
        while len(buf) - start >= HEADER_SIZE:
            kind = buf[start]
            if kind > SYSTEMERR:
                raise StreamError(f"Unrecognized input header: {kind}")
            size = int.from_bytes(buf[start + 4 : start + HEADER_SIZE], "big")
            end = start + HEADER_SIZE + size
            if len(buf) < end:
                break
            payload = bytes(buf[start + HEADER_SIZE : end])
            start = end
            if kind == SYSTEMERR:
                del buf[:start]
                raise StreamError(
                    "error from daemon in stream: " + payload.decode("utf-8", "replace")
                )
            if payload:
                out.append(payload)
        del buf[:start]
        return out

    @property
    def pending(self) -> int:
        """Bytes of an incomplete frame kept for the next :meth:`feed`."""
        return len(self._buf)


class EngineLink:
    """Whether the engine answers, as the Docker events reader last reported it.

    ``reachable``/``lost`` are called by the reader's thread (through the supervisor's
    wiring); ``state`` by the HTTP threads. Until the first report the engine counts as
    not connected. A lock guards the pair.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._up = False
        self._reason = "not connected yet"

    def reachable(self) -> None:
        with self._lock:
            self._up, self._reason = True, ""

    def lost(self, reason: str) -> None:
        with self._lock:
            self._up, self._reason = False, reason

    def state(self) -> tuple[bool, str]:
        """(connected, why not)."""
        with self._lock:
            return self._up, self._reason

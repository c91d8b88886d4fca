"""The WebSocket log stream on the real HTTP endpoint (loopback sockets, a scripted source):
frames, close codes, plain HTTP refusals, the stream limit, a follower that goes away,
a silent follower dropped by keepalive, a stop, and the probes unaffected by streams."""

from __future__ import annotations

import base64
import contextlib
import http.client
import os
import queue
import socket
import threading
import time
from collections.abc import Iterator

import pytest
from websockets.exceptions import ConnectionClosed, InvalidStatus
from websockets.sync.client import ClientConnection, connect

from actors.domain.log_stream import LOGS_PATH, NOT_FOUND, NOT_RUNNING, LogRequest, Refusal
from actors.domain.probes import Liveness
from actors.infra import http_endpoint
from actors.infra.http_endpoint import HttpEndpoint
from actors.infra.log_stream import LogStreams, OpenedLogs, Refused, StreamFailed
from actors.infra.metrics import ServiceMetrics
from tests.support.wait import wait_for

CID = "ab" * 32
END = object()


def frame(kind: int, payload: bytes) -> bytes:
    return bytes([kind, 0, 0, 0]) + len(payload).to_bytes(4, "big") + payload


class Feed:
    """A scripted Docker stream: the test puts chunks (or an exception, or END)."""

    def __init__(self) -> None:
        self.items: queue.Queue[object] = queue.Queue()
        self.closed = threading.Event()

    def put(self, *items: object) -> None:
        for item in items:
            self.items.put(item)

    def chunks(self) -> Iterator[bytes]:
        while not self.closed.is_set():
            try:
                item = self.items.get(timeout=0.05)
            except queue.Empty:
                continue
            if item is END:
                return
            if isinstance(item, Exception):
                raise item
            assert isinstance(item, bytes)
            yield item

    def close(self) -> None:
        self.closed.set()


class Source:
    """Hands out one :class:`Feed` per request; refuses when told to."""

    def __init__(self) -> None:
        self.tty = False
        self.refusal: Refusal | None = None
        self.feeds: list[Feed] = []
        self.requests: list[LogRequest] = []

    def open(self, request: LogRequest) -> OpenedLogs:
        self.requests.append(request)
        if self.refusal is not None:
            raise Refused(self.refusal)
        feed = Feed()
        self.feeds.append(feed)
        return OpenedLogs(tty=self.tty, chunks=feed.chunks(), close=feed.close)


class Rig:
    def __init__(self, **limits: float) -> None:
        self.source = Source()
        self.metrics = ServiceMetrics()
        self.logs = LogStreams(self.source, metrics=self.metrics, **limits)  # type: ignore[arg-type]
        self.metrics.bind_scrape(log_streams=lambda: self.logs.active)  # as probe_wiring does
        self.endpoint = HttpEndpoint(
            ("127.0.0.1", 0), metrics=self.metrics, liveness=Liveness(), logs=self.logs
        )
        self.endpoint.start()
        self.port = self.endpoint.bound_address[1]

    def url(self, query: str = "", cid: str = CID) -> str:
        return f"ws://127.0.0.1:{self.port}{LOGS_PATH}{cid}{query}"

    def connect(self, query: str = "", **kwargs: object) -> ClientConnection:
        return connect(self.url(query), open_timeout=5, close_timeout=2, **kwargs)  # type: ignore[arg-type]

    def feed(self, n: int = 1) -> Feed:
        wait_for(lambda: len(self.source.feeds) >= n, timeout=5, message="stream opened")
        return self.source.feeds[n - 1]

    def answers(self, code: int) -> float:
        value = self.metrics.registry.get_sample_value(
            "dockmirror_log_stream_answers_total", {"code": str(code)}
        )
        return value or 0.0

    def get(self, path: str, method: str = "GET") -> tuple[int, str, dict[str, str]]:
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=5)
        try:
            conn.request(method, path)
            answer = conn.getresponse()
            return answer.status, answer.read().decode(), dict(answer.getheaders())
        finally:
            conn.close()


@pytest.fixture
def rig() -> Iterator[Rig]:
    r = Rig()
    yield r
    r.endpoint.stop()


def test_non_tty_output_is_demultiplexed_one_frame_each(rig: Rig):
    with rig.connect("?tail=5") as ws:
        feed = rig.feed()
        assert rig.source.requests == [LogRequest(CID, True, "5")]
        # Two Docker frames in one chunk, one frame split over two chunks.
        feed.put(frame(1, b"out\n") + frame(2, b"err\n"), frame(1, b"split\n")[:6])
        feed.put(frame(1, b"split\n")[6:], END)
        assert [ws.recv(timeout=5) for _ in range(3)] == [b"out\n", b"err\n", b"split\n"]
        with pytest.raises(ConnectionClosed):
            ws.recv(timeout=5)
    assert (ws.close_code, ws.close_reason) == (1000, "Closing connection")
    assert feed.closed.is_set()
    wait_for(lambda: rig.logs.active == 0, timeout=5, message="slot released")
    assert rig.answers(101) == 1


def test_tty_output_is_raw(rig: Rig):
    rig.source.tty = True
    with rig.connect("?follow=false") as ws:
        feed = rig.feed()
        feed.put(b"hello\r\n", b"\x01\x00 not a header", END)
        assert ws.recv(timeout=5) == b"hello\r\n"
        assert ws.recv(timeout=5) == b"\x01\x00 not a header"
        with pytest.raises(ConnectionClosed):
            ws.recv(timeout=5)
    assert ws.close_code == 1000


def test_a_broken_stream_closes_with_1011(rig: Rig):
    with rig.connect() as ws:
        feed = rig.feed()
        feed.put(frame(1, b"a\n"), StreamFailed("Docker connection reset"))
        assert ws.recv(timeout=5) == b"a\n"
        with pytest.raises(ConnectionClosed):
            ws.recv(timeout=5)
    assert ws.close_code == 1011
    assert ws.close_reason == "failed to copy container logs: Docker connection reset"


def test_a_daemon_error_frame_closes_with_1011(rig: Rig):
    with rig.connect() as ws:
        rig.feed().put(frame(3, b"no space left"))
        with pytest.raises(ConnectionClosed):
            ws.recv(timeout=5)
    assert ws.close_reason == (
        "failed to copy container logs: error from daemon in stream: no space left"
    )


def test_refusals_are_plain_http(rig: Rig):
    status, body, _ = rig.get(LOGS_PATH + "xyz")
    assert (status, body) == (400, "Invalid container ID\n")
    status, body, _ = rig.get(LOGS_PATH + CID + "?follow=maybe")
    assert (status, body) == (400, "Invalid follow parameter\n")
    rig.source.refusal = Refusal(404, NOT_FOUND)
    status, body, headers = rig.get(LOGS_PATH + CID)
    assert (status, body) == (404, "Container not found\n")
    assert headers["Content-Type"] == "text/plain; charset=utf-8"
    rig.source.refusal = Refusal(503, NOT_RUNNING)
    with pytest.raises(InvalidStatus) as caught:
        rig.connect()
    assert caught.value.response.status_code == 503
    assert caught.value.response.body == b"Docker watcher not running\n"
    assert rig.answers(400) == 2 and rig.answers(404) == 1 and rig.answers(503) == 1
    assert rig.logs.active == 0


def test_plain_get_head_and_cross_origin(rig: Rig):
    status, body, _ = rig.get(LOGS_PATH + CID)  # no upgrade headers
    assert status == 426 and "WebSocket" in body
    assert rig.source.feeds[0].closed.is_set()  # the Docker stream opened for it is closed
    assert rig.get(LOGS_PATH + CID, method="HEAD")[0] == 405
    with pytest.raises(InvalidStatus) as caught:
        rig.connect(origin="https://evil.example")  # type: ignore[arg-type]
    assert caught.value.response.status_code == 403
    with rig.connect(origin=f"http://127.0.0.1:{rig.port}") as ws:  # type: ignore[arg-type]
        rig.feed(3).put(b"", END)
        with pytest.raises(ConnectionClosed):
            ws.recv(timeout=5)


def test_stream_limit_refuses_with_429_and_frees_on_close():
    r = Rig()
    r.logs.max_streams = 2
    try:
        with r.connect() as first, r.connect():
            with pytest.raises(InvalidStatus) as caught:
                r.connect()
            answer = caught.value.response
            assert answer.status_code == 429 and answer.headers["Retry-After"] == "10"
            assert b"Too many log streams" in answer.body
            first.close()
            wait_for(lambda: r.logs.active == 1, timeout=5, message="one slot free")
            with r.connect():
                pass
    finally:
        r.endpoint.stop()


def test_a_follower_that_disconnects_frees_the_docker_stream_at_once(rig: Rig):
    with rig.connect() as ws:
        feed = rig.feed()
        feed.put(frame(1, b"a\n"))
        assert ws.recv(timeout=5) == b"a\n"
        scrape = rig.metrics.registry.get_sample_value
        assert scrape("dockmirror_log_streams") == 1
        assert drain_threads() == 1
        ws.socket.shutdown(socket.SHUT_RDWR)  # gone without a closing handshake
        assert feed.closed.wait(5), "the Docker stream stayed open"
    wait_for(lambda: rig.logs.active == 0, timeout=5, message="slot released")
    assert scrape("dockmirror_log_streams") == 0
    wait_for(lambda: drain_threads() == 0, timeout=5, message="the stream's threads ended")


def drain_threads() -> int:
    return sum(1 for t in threading.enumerate() if t.name.startswith("log-drain-"))


def _raw_upgrade(port: int) -> socket.socket:
    """A client that completes the handshake and then never reads or answers."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=5)
    key = base64.b64encode(os.urandom(16)).decode()
    sock.sendall(
        (
            f"GET {LOGS_PATH}{CID} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
            f"Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
            "Sec-WebSocket-Version: 13\r\n\r\n"
        ).encode()
    )
    assert sock.recv(12) == b"HTTP/1.1 101"
    return sock


def test_a_silent_follower_is_dropped_by_keepalive():
    r = Rig(ping_interval_s=0.2, pong_timeout_s=0.4)
    sock = _raw_upgrade(r.port)
    try:
        feed = r.feed()
        started = time.monotonic()
        assert feed.closed.wait(5), "keepalive did not drop the silent peer"
        assert time.monotonic() - started < 3
        wait_for(lambda: r.logs.active == 0, timeout=5, message="slot released")
    finally:
        sock.close()
        r.endpoint.stop()


def test_a_live_follower_outlasts_many_pings_and_may_talk():
    """Pongs and client messages are read (discarded): the stream stays open."""
    r = Rig(ping_interval_s=0.1, pong_timeout_s=0.3)
    try:
        with r.connect() as ws:
            feed = r.feed()
            for _ in range(6):
                ws.send("anything")  # discarded, like upstream
                ws.send(b"\x00" * 100)
                time.sleep(0.2)  # ten ping intervals in all, three pong timeouts
            assert not feed.closed.is_set(), "a follower that answers pings was dropped"
            feed.put(frame(1, b"still here\n"))
            assert ws.recv(timeout=5) == b"still here\n"
    finally:
        r.endpoint.stop()


def test_a_client_message_over_the_limit_closes_with_1009(rig: Rig):
    with rig.connect() as ws:
        feed = rig.feed()
        ws.send(b"x" * 4096)  # at the limit: discarded
        ws.send(b"x" * 4097)
        with pytest.raises(ConnectionClosed):
            ws.recv(timeout=5)
    assert ws.close_code == 1009
    assert feed.closed.wait(5)


def test_a_follower_that_stops_reading_is_dropped_by_the_write_bound():
    r = Rig(write_timeout_s=0.5, ping_interval_s=60.0)
    sock = _raw_upgrade(r.port)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    try:
        feed = r.feed()
        for _ in range(400):  # far more than the socket buffers hold
            feed.put(frame(1, b"x" * 16384))
        assert feed.closed.wait(10), "the writer is still blocked on a reader that stopped"
        wait_for(lambda: r.logs.active == 0, timeout=5, message="slot released")
    finally:
        sock.close()
        r.endpoint.stop()


def test_streams_hold_no_probe_slot(rig: Rig):
    count = http_endpoint.MAX_CONNECTIONS + 4
    with contextlib.ExitStack() as streams:
        for _ in range(count):
            streams.enter_context(rig.connect())
        wait_for(lambda: rig.logs.active == count, timeout=10, message="all open")
        assert rig.get("/healthz")[0] == 200
        assert rig.get("/metrics")[0] == 200
    wait_for(lambda: rig.logs.active == 0, timeout=10, message="all closed")


def test_stop_closes_streams_with_1001():
    r = Rig()
    with r.connect() as ws:
        feed = r.feed()
        started = time.monotonic()
        r.endpoint.stop()
        assert time.monotonic() - started < 2.0
        with pytest.raises(ConnectionClosed):
            ws.recv(timeout=5)
    assert (ws.close_code, ws.close_reason) == (1001, "Service stopping")
    assert feed.closed.is_set()

"""The log stream's pure decisions (actors/domain/log_stream.py, docs/contract.md §6.4):
request parsing, answers for failed steps, the origin rule, Docker's stream demultiplexer
and the engine link; and the service's source (actors/service/log_source.py), which turns
port errors into those answers."""

from __future__ import annotations

import itertools
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from actors.domain.log_stream import (
    INVALID_ARGUMENT,
    INVALID_FOLLOW,
    INVALID_ID,
    INVALID_TAIL,
    LOGS_PATH,
    NOT_FOUND,
    NOT_RUNNING,
    EngineLink,
    Failure,
    LogRequest,
    Refusal,
    StdDemux,
    Step,
    StreamError,
    copy_failed,
    is_logs_path,
    origin_allowed,
    parse_go_bool,
    parse_log_request,
    parse_tail,
    refusal_for,
    too_many_streams,
)
from actors.infra.log_stream import Refused, StreamFailed
from actors.ports.docker_port import DockerError, DockerNotFound, DockerTimeout, DockerUnavailable
from actors.ports.kube_port import KubeNotFound, KubeUnavailable
from actors.service.log_source import EngineLogSource, failure_of

CID = "0123456789abcdef" * 4


# --- request parsing ---------------------------------------------------------------------
@pytest.mark.parametrize(
    ("target", "expected"),
    [
        (LOGS_PATH + CID, LogRequest(CID, True, "all")),
        (LOGS_PATH + CID + "?tail=5", LogRequest(CID, True, "5")),
        (LOGS_PATH + CID + "?follow=false&tail=0", LogRequest(CID, False, "0")),
        (LOGS_PATH + CID + "?follow=0", LogRequest(CID, False, "all")),
        (LOGS_PATH + CID + "?follow=T", LogRequest(CID, True, "all")),
        (LOGS_PATH + CID + "?follow=&tail=", LogRequest(CID, True, "all")),  # empty = absent
        (LOGS_PATH + CID + "?tail=all", LogRequest(CID, True, "all")),
        (LOGS_PATH + CID + "?tail=-1", LogRequest(CID, True, "all")),  # Docker: all lines
        (LOGS_PATH + CID + "?tail=007", LogRequest(CID, True, "7")),
        (LOGS_PATH + CID + "?follow=1&follow=nope", LogRequest(CID, True, "all")),  # first
        (LOGS_PATH + CID + "/extra/segments", LogRequest(CID, True, "all")),  # like upstream
        (LOGS_PATH + "/" + CID, LogRequest(CID, True, "all")),  # leading slashes trimmed
        (LOGS_PATH + "%61bc", LogRequest("abc", True, "all")),  # percent-decoded
        (LOGS_PATH + "ABC123", LogRequest("ABC123", True, "all")),  # short, upper: 404 later
    ],
)
def test_valid_requests(target, expected):
    assert parse_log_request(target) == expected


@pytest.mark.parametrize(
    ("target", "text"),
    [
        (LOGS_PATH, INVALID_ID),
        (LOGS_PATH + "xyz", INVALID_ID),
        (LOGS_PATH + CID + "g", INVALID_ID),
        (LOGS_PATH + "abc%0A", INVALID_ID),  # a newline after decoding
        (LOGS_PATH + "../healthz", INVALID_ID),
        (LOGS_PATH + CID + "?follow=yes", INVALID_FOLLOW),
        (LOGS_PATH + CID + "?follow=TrUe", INVALID_FOLLOW),
        (LOGS_PATH + CID + "?tail=abc", INVALID_TAIL),
        (LOGS_PATH + CID + "?tail=1.5", INVALID_TAIL),
        (LOGS_PATH + CID + "?tail=%D9%A3", INVALID_TAIL),  # an Arabic-Indic digit
        ("/healthz", INVALID_ID),
    ],
)
def test_bad_requests_are_400(target, text):
    assert parse_log_request(target) == Refusal(400, text)


def test_go_booleans_and_tails():
    for text in ("1", "t", "T", "TRUE", "true", "True"):
        assert parse_go_bool(text) is True
    for text in ("0", "f", "F", "FALSE", "false", "False"):
        assert parse_go_bool(text) is False
    for text in ("", "yes", "on", "tRUE", " 1"):
        assert parse_go_bool(text) is None
    assert [parse_tail(t) for t in ("all", "0", "12", "-3")] == ["all", "0", "12", "all"]
    assert [parse_tail(t) for t in ("", "ALL", "+1", "1e3", "9" * 19)] == [None] * 5


def test_logs_path():
    assert is_logs_path(LOGS_PATH + "abc?tail=1")
    assert not is_logs_path("/passthrough/engine/logs")  # no ID segment: not ours
    assert not is_logs_path("/metrics")


# --- answers for failed steps -------------------------------------------------------------
def test_refusals_follow_upstream():
    for step in Step:
        assert refusal_for(step, Failure.NOT_FOUND) == Refusal(404, NOT_FOUND)
    assert refusal_for(Step.ENGINE, Failure.UNAVAILABLE) == Refusal(503, NOT_RUNNING)
    assert refusal_for(Step.MIRROR, Failure.UNAVAILABLE) == Refusal(500, "Failed to get container")
    assert refusal_for(Step.MIRROR, Failure.ERROR) == Refusal(500, "Failed to get container")
    assert refusal_for(Step.INSPECT, Failure.UNAVAILABLE) == Refusal(503, NOT_RUNNING)
    assert refusal_for(Step.LOGS, Failure.UNAVAILABLE) == Refusal(503, NOT_RUNNING)
    assert refusal_for(Step.INSPECT, Failure.INVALID) == Refusal(400, INVALID_ARGUMENT)
    assert refusal_for(Step.LOGS, Failure.INVALID) == Refusal(400, INVALID_ARGUMENT)
    assert refusal_for(Step.INSPECT, Failure.ERROR) == Refusal(500, "Failed to inspect container")
    assert refusal_for(Step.LOGS, Failure.ERROR) == Refusal(500, "Failed to get container logs")
    busy = too_many_streams(3)
    assert (busy.status, busy.retry_after_s) == (429, 10) and "3 are open" in busy.text


def test_port_errors_as_failures():
    assert failure_of(KubeNotFound(404, "gone")) is Failure.NOT_FOUND
    assert failure_of(KubeUnavailable(503, "busy")) is Failure.ERROR  # -> 500 for the lookup
    assert failure_of(DockerNotFound("No such container", status_code=404)) is Failure.NOT_FOUND
    assert failure_of(DockerError("bad", status_code=400)) is Failure.INVALID
    assert failure_of(DockerError("conflict", status_code=409)) is Failure.ERROR
    assert failure_of(DockerError("boom", status_code=500)) is Failure.ERROR
    assert failure_of(DockerUnavailable("refused")) is Failure.UNAVAILABLE
    assert failure_of(DockerTimeout("slow")) is Failure.UNAVAILABLE


def test_close_reason_fits_a_close_frame():
    assert copy_failed("x") == "failed to copy container logs: x"
    assert len(copy_failed("é" * 200).encode()) <= 123


@pytest.mark.parametrize(
    ("origin", "host", "allowed"),
    [
        (None, "127.0.0.1:9464", True),  # not a browser
        ("http://127.0.0.1:9464", "127.0.0.1:9464", True),
        ("http://LOCALHOST:9464", "localhost:9464", True),
        ("http://127.0.0.1:9465", "127.0.0.1:9464", False),
        ("https://evil.example", "127.0.0.1:9464", False),
        ("null", "127.0.0.1:9464", False),
        ("", "127.0.0.1:9464", False),
    ],
)
def test_same_origin_rule(origin, host, allowed):
    assert origin_allowed(origin, host) is allowed


# --- the demultiplexer ---------------------------------------------------------------------
def frame(kind: int, payload: bytes) -> bytes:
    return bytes([kind, 0, 0, 0]) + len(payload).to_bytes(4, "big") + payload


def test_demux_frames_in_one_chunk_and_across_chunks():
    demux = StdDemux()
    data = frame(1, b"out\n") + frame(2, b"err\n") + frame(0, b"in\n") + frame(1, b"")
    assert demux.feed(data) == [b"out\n", b"err\n", b"in\n"]  # empty frames yield nothing
    assert demux.pending == 0
    assert demux.feed(frame(1, b"split")[:5]) == []
    assert demux.feed(frame(1, b"split")[5:]) == [b"split"]


@given(
    st.lists(st.tuples(st.sampled_from([0, 1, 2]), st.binary(max_size=40)), max_size=8), st.data()
)
def test_demux_any_split_gives_the_same_payloads(frames, data):
    stream = b"".join(frame(k, p) for k, p in frames)
    cuts = sorted(data.draw(st.lists(st.integers(0, len(stream)), max_size=6)))
    demux = StdDemux()
    got: list[bytes] = []
    for a, b in itertools.pairwise([0, *cuts, len(stream)]):
        got.extend(demux.feed(stream[a:b]))
    assert got == [p for _, p in frames if p]
    assert demux.pending == 0


def test_demux_errors_like_stdcopy():
    demux = StdDemux()
    with pytest.raises(StreamError, match=r"^error from daemon in stream: disk on fire$"):
        demux.feed(frame(1, b"before\n") + frame(3, b"disk on fire"))
    with pytest.raises(StreamError, match=r"^Unrecognized input header: 7$"):
        StdDemux().feed(frame(7, b"x"))
    cut = StdDemux()
    assert cut.feed(frame(1, b"incomplete")[:-3]) == []
    assert cut.pending > 0  # dropped at the end of the stream, like stdcopy


def test_engine_link():
    link = EngineLink()
    assert link.state() == (False, "not connected yet")
    link.reachable()
    assert link.state() == (True, "")
    link.lost("failed to ping Docker")
    assert link.state() == (False, "failed to ping Docker")


# --- the service's source --------------------------------------------------------------------
class Store:
    def __init__(self, error: Exception | None = None) -> None:
        self.error = error
        self.gets: list[str] = []

    def get(self, name: str) -> dict[str, Any]:
        self.gets.append(name)
        if self.error is not None:
            raise self.error
        return {"metadata": {"name": name}}


class Stream:
    def __init__(self, chunks: list[bytes], error: Exception | None = None) -> None:
        self._chunks, self.error, self.closed = chunks, error, 0

    def chunks(self, size: int):
        yield from self._chunks
        if self.error is not None:
            raise self.error

    def close(self) -> None:
        self.closed += 1


class Docker:
    def __init__(
        self,
        tty: bool = False,
        inspect_error: Exception | None = None,
        logs_error: Exception | None = None,
        stream: Stream | None = None,
    ) -> None:
        self.tty, self.inspect_error, self.logs_error = tty, inspect_error, logs_error
        self.stream = stream or Stream([b"x"])
        self.calls: list[tuple[Any, ...]] = []

    def inspect(self, cid: str) -> dict[str, Any]:
        self.calls.append(("inspect", cid))
        if self.inspect_error is not None:
            raise self.inspect_error
        return {"Id": cid, "Config": {"Tty": self.tty}}

    def logs(self, cid: str, *, follow: bool, tail: str) -> Stream:
        self.calls.append(("logs", cid, follow, tail))
        if self.logs_error is not None:
            raise self.logs_error
        return self.stream


def connected() -> tuple[bool, str]:
    return True, ""


def refusal(source: EngineLogSource) -> Refusal:
    with pytest.raises(Refused) as caught:
        source.open(LogRequest(CID))
    return caught.value.refusal


def test_source_opens_after_every_check():
    docker = Docker(tty=True)
    store = Store()
    opened = EngineLogSource(store, docker, connected).open(LogRequest(CID, False, "5"))
    assert opened.tty is True and list(opened.chunks) == [b"x"]
    assert store.gets == [CID]
    assert docker.calls == [("inspect", CID), ("logs", CID, False, "5")]
    opened.close()
    assert docker.stream.closed == 1


def test_source_answers_in_upstreams_order():
    # No mirror: 404 before the engine or Docker is asked.
    docker = Docker()
    source = EngineLogSource(Store(KubeNotFound(404, "not found")), docker, lambda: (False, "x"))
    assert refusal(source) == Refusal(404, NOT_FOUND) and docker.calls == []
    # The apiserver does not answer: 500, as upstream's failed Get.
    source = EngineLogSource(Store(KubeUnavailable(503, "etcd")), docker, connected)
    assert refusal(source) == Refusal(500, "Failed to get container")
    # The engine is not connected: 503 without a Docker call.
    source = EngineLogSource(Store(), docker, lambda: (False, "failed to ping Docker"))
    assert refusal(source) == Refusal(503, NOT_RUNNING) and docker.calls == []
    # Docker's answers to inspect and logs.
    gone = DockerNotFound("No such container", status_code=404)
    assert refusal(EngineLogSource(Store(), Docker(inspect_error=gone), connected)).status == 404
    down = DockerUnavailable("connection refused")
    assert refusal(EngineLogSource(Store(), Docker(inspect_error=down), connected)).status == 503
    bad = DockerError("bad parameter", status_code=400)
    assert refusal(EngineLogSource(Store(), Docker(logs_error=bad), connected)) == Refusal(
        400, INVALID_ARGUMENT
    )
    boom = DockerError("boom", status_code=500)
    assert refusal(EngineLogSource(Store(), Docker(logs_error=boom), connected)) == Refusal(
        500, "Failed to get container logs"
    )


def test_a_broken_docker_stream_is_stream_failed():
    stream = Stream([b"a"], error=DockerUnavailable("connection reset"))
    opened = EngineLogSource(Store(), Docker(stream=stream), connected).open(LogRequest(CID))
    chunks = iter(opened.chunks)
    assert next(chunks) == b"a"
    with pytest.raises(StreamFailed, match="connection reset"):
        next(chunks)


# --- the wiring (actors/service/probe_wiring.py) ---------------------------------------------
def test_probes_follow_the_engine_through_the_docker_events_readers_messages():
    from types import SimpleNamespace

    from actors.service.probe_wiring import Probes
    from messages.inbound import DockerEvent, DockerLost, EngineReachable

    probes = Probes(SimpleNamespace(http_address="", max_log_streams=3))
    routed: list[object] = []
    send = probes.watch_engine(routed.append)
    assert probes.engine_state() == (False, "not connected yet")
    messages = [
        EngineReachable(since="1.0"),
        DockerEvent(container_id=CID, action="start", time_nano=1),
        DockerLost(reason="failed to ping Docker: refused"),
    ]
    send(messages[0])
    assert probes.engine_state() == (True, "")
    send(messages[1])
    assert probes.engine_state() == (True, "")
    probes.leader_state = lambda: "standby"  # a standby mirrors nothing: 503
    assert probes.engine_state() == (False, "standby")
    probes.leader_state = lambda: "leader"
    send(messages[2])
    assert probes.engine_state() == (False, "failed to ping Docker: refused")
    assert routed == messages  # every message still reaches the router, in order
    routed.clear()
    # Once started, the reader must be in the supervisor's table: it is not on a standby,
    # nor in App mode while the App wants no mirroring; its last report is stale then.
    refs: dict[str, object] = {}
    probes.start(SimpleNamespace(journal=SimpleNamespace(listener=None), refs=refs))
    send(EngineReachable(since="2.0"))
    assert probes.engine_state() == (False, "not mirroring")
    refs["docker-events"] = object()
    assert probes.engine_state() == (True, "")
    streams = probes._log_streams(SimpleNamespace(store=Store(), docker=Docker()))
    assert streams is not None and streams.max_streams == 3
    assert probes._log_streams(SimpleNamespace()) is None  # no ports: no log streams

"""The WebSocket log stream of the real service on the devenv (docs/contract.md §6.4,
scenario 11): TTY and plain output, stdout and stderr, ``tail``, ``follow=false`` on a
running container, new output while following, a follower that disconnects, and the
plain HTTP answers 400, 404 and 503 (an extra engine that is stopped)."""

from __future__ import annotations

import http.client
import re
import secrets
import socket
import time

import pytest
from prometheus_client.parser import text_string_to_metric_families
from websockets.exceptions import ConnectionClosed, InvalidStatus
from websockets.sync.client import ClientConnection, connect

from tests.support.engines import engines_down, engines_remove, engines_up
from tests.support.service import Service
from tests.support.wait import wait_for

LOGS = "/passthrough/engine/logs/"


def http_port(svc: Service) -> int:
    """The service's --http-address port (127.0.0.1:0 picks one; the log names it)."""
    found = wait_for(
        lambda: re.search(r"probes and metrics on http://127\.0\.0\.1:(\d+)", svc.log_text()),
        timeout=10,
        message="the endpoint's address in the service log",
    )
    return int(found.group(1))


def open_stream(port: int, cid: str, query: str = "") -> ClientConnection:
    return connect(f"ws://127.0.0.1:{port}{LOGS}{cid}{query}", open_timeout=10, close_timeout=5)


def read_to_close(ws: ClientConnection, timeout: float = 30.0) -> list[bytes]:
    """Every frame until the server closes; fails if it does not close within timeout."""
    frames: list[bytes] = []
    deadline = time.monotonic() + timeout
    while True:
        left = deadline - time.monotonic()
        assert left > 0, f"stream still open after {timeout} s; got {frames!r}"
        try:
            message = ws.recv(timeout=left)
        except TimeoutError:
            continue
        except ConnectionClosed:
            return frames
        assert isinstance(message, bytes), "log frames are binary"
        frames.append(message)


def get(port: int, path: str) -> tuple[int, str]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        conn.request("GET", path)
        answer = conn.getresponse()
        return answer.status, answer.read().decode()
    finally:
        conn.close()


def open_streams(port: int) -> float:
    """The service's ``dockmirror_log_streams`` gauge."""
    status, body = get(port, "/metrics")
    assert status == 200
    for family in text_string_to_metric_families(body):
        if family.name == "dockmirror_log_streams":
            return family.samples[0].value
    raise AssertionError("no dockmirror_log_streams in /metrics")


def exited(container) -> bool:
    container.reload()
    return container.status == "exited"


def test_scenario_11_tty_plain_tail_and_follow_false(service_factory, run_container):
    svc = service_factory()
    port = http_port(svc)
    script = "echo hello; sleep 1; echo world"

    # TTY: raw output, so the terminal's CR LF arrives as written.
    tty = run_container(["sh", "-c", script], tty=True)
    svc.wait_mirror(tty.id)
    with open_stream(port, tty.id) as ws:
        text = b"".join(read_to_close(ws)).decode()
    assert ws.close_code == 1000 and ws.close_reason == "Closing connection"
    assert text.splitlines(keepends=True) == ["hello\r\n", "world\r\n"]

    # Not a TTY: demultiplexed, plain lines; stderr arrives too (same stream).
    plain = run_container(["sh", "-c", script + "; echo oops >&2"])
    svc.wait_mirror(plain.id)
    with open_stream(port, plain.id) as ws:
        frames = read_to_close(ws)
    assert ws.close_code == 1000
    # stdout keeps its order; stderr is copied by its own reader in Docker, so "oops"
    # may arrive before or after "world".
    assert [f for f in frames if f != b"oops\n"] == [b"hello\n", b"world\n"]
    assert frames.count(b"oops\n") == 1 and len(frames) == 3

    # tail=5 of ten lines, the container done before we ask.
    ten = run_container(["sh", "-c", "for i in 0 1 2 3 4 5 6 7 8 9; do echo line $i; done"])
    wait_for(lambda: exited(ten), timeout=30, message="ten lines written")
    svc.wait_mirror(ten.id)
    with open_stream(port, ten.id, "?tail=5") as ws:
        lines = b"".join(read_to_close(ws)).decode().splitlines()
    assert lines == [f"line {i}" for i in range(5, 10)]

    # follow=false: the current output, then the stream ends; the container keeps running.
    running = run_container(["sh", "-c", "echo ready; exec sleep 3600"])
    svc.wait_status(running.id, "running")
    wait_for(lambda: b"ready" in running.logs(), timeout=30, message="output written")
    with open_stream(port, running.id, "?follow=false") as ws:
        assert read_to_close(ws, timeout=15) == [b"ready\n"]
    assert ws.close_code == 1000
    running.reload()
    assert running.status == "running"
    wait_for(lambda: open_streams(port) == 0, timeout=10, message="no stream left open")


def test_follow_sees_new_output_and_a_follower_that_leaves_frees_its_stream(
    service_factory, run_container
):
    svc = service_factory()
    port = http_port(svc)
    script = "echo first; while [ ! -e /tmp/go ]; do sleep 0.1; done; echo second; exec sleep 3600"
    c = run_container(["sh", "-c", script])
    svc.wait_status(c.id, "running")
    with (
        open_stream(port, c.id, "?follow=true") as ws,
        open_stream(port, c.id, "?tail=1") as second,
        open_stream(port, c.id, "?tail=1") as third,
    ):
        assert ws.recv(timeout=15) == b"first\n"
        assert c.exec_run(["touch", "/tmp/go"]).exit_code == 0  # new output, while we follow
        assert ws.recv(timeout=15) == b"second\n"
        # Two more followers of the same container: the last line, then they follow too.
        for other in (second, third):
            assert other.recv(timeout=15) in (b"first\n", b"second\n")
        wait_for(lambda: open_streams(port) == 3, timeout=10, message="three streams")
        for follower in (ws, second, third):
            follower.socket.shutdown(socket.SHUT_RDWR)  # gone without a closing handshake
        started = time.monotonic()
        wait_for(lambda: open_streams(port) == 0, timeout=10, message="streams freed")
        freed_s = time.monotonic() - started
    assert freed_s < 5, f"streams of departed followers freed only after {freed_s:.1f} s"
    c.reload()
    assert c.status == "running"  # leaving a stream does nothing to the container
    # The service still serves streams afterwards.
    with open_stream(port, c.id, "?follow=false&tail=1") as ws:
        assert read_to_close(ws, timeout=15) == [b"second\n"]


def test_bad_requests_and_unknown_containers(service_factory, run_container):
    svc = service_factory()
    port = http_port(svc)
    c = run_container()
    svc.wait_mirror(c.id)
    assert get(port, LOGS + "not-hex") == (400, "Invalid container ID\n")
    assert get(port, LOGS + c.id + "?follow=yes") == (400, "Invalid follow parameter\n")
    assert get(port, LOGS + c.id + "?tail=ten") == (400, "Invalid tail parameter\n")
    # Hex, but no mirror: an unknown ID, and a real container's short ID (mirrors carry
    # the full ID).
    assert get(port, LOGS + secrets.token_hex(32)) == (404, "Container not found\n")
    assert get(port, LOGS + c.id[:12]) == (404, "Container not found\n")
    with pytest.raises(InvalidStatus) as caught:
        open_stream(port, secrets.token_hex(32))
    assert caught.value.response.status_code == 404
    assert open_streams(port) == 0


@pytest.mark.timeout(300)
def test_503_while_the_engine_is_disconnected(service_factory, namespace):
    name = "logs503"
    engines_remove(name)
    (engine,) = engines_up(name)
    client = engine.client()
    try:
        svc = service_factory(extra_args=("--docker-host", engine.docker_host))
        port = http_port(svc)
        # Exits at once on SIGTERM, so the engine stops without a grace period.
        c = client.containers.run(
            "busybox:local",
            ["sh", "-c", "echo up; trap 'exit 0' TERM; sleep 3600 & wait"],
            detach=True,
            network_mode="none",
        )
        svc.wait_status(c.id, "running")
        with open_stream(port, c.id) as follower:
            assert follower.recv(timeout=15) == b"up\n"
            engines_down(name)
            wait_for(
                lambda: svc.engine_ready() == ("False", "ConnectFailed"),
                timeout=30,
                interval=0.2,
                message="EngineReady=False/ConnectFailed",
            )
            # The open follower ended with the engine (its container stopped, or the
            # connection broke); either close is legal.
            read_to_close(follower, timeout=15)
        assert follower.close_code in (1000, 1011), follower.close_code
        # The mirror is still there (stale) but the engine is not: 503.
        assert svc.mirror(c.id) is not None
        assert get(port, LOGS + c.id) == (503, "Docker watcher not running\n")
        assert open_streams(port) == 0

        engines_up(name)
        wait_for(
            lambda: svc.engine_ready() == ("True", "Connected"),
            timeout=90,
            interval=0.2,
            message="EngineReady=True after the engine returned",
        )
        with open_stream(port, c.id, "?follow=false") as ws:
            assert b"up\n" in b"".join(read_to_close(ws, timeout=15))
    finally:
        client.close()
        engines_remove(name)

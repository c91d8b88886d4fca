"""The webhook server cannot be starved (issue 10, point 8).

* ``ConnTable``: deadlines and eviction order, pure, with explicit times;
* the real ``WebhookServer`` over real TLS on 127.0.0.1: 500 slow clients (most trickle an
  HTTP request inside TLS, some never finish the TLS handshake) do not stop a well-behaved
  client's admission answer, threads and file descriptors stay bounded, and every slow
  client is cut off although it keeps sending; ``stop()`` stays prompt with them connected.

All client sockets live in this process, so the descriptor bound is checked as "our own
client sockets plus at most ``max_connections`` on the server side".
"""

from __future__ import annotations

import http.client
import json
import os
import resource
import ssl
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from actors.domain.names import ACTION_ANNOTATION, JSON
from actors.infra import webhook as webhook_mod
from actors.infra.certs import ensure_certificates
from actors.infra.webhook import (
    MAX_CONNECTIONS,
    VALIDATE_PATH,
    Conn,
    ConnTable,
    Phase,
    PressureLog,
    WebhookServer,
)
from tests.support.slow_clients import Slowpoke, Trickler
from tests.support.wait import wait_for

# -- ConnTable: pure ---------------------------------------------------------------------


def test_first_request_deadline_runs_from_accept_and_progress_does_not_extend_it() -> None:
    table = ConnTable(request_deadline=10.0, idle_timeout=120.0)
    conn = table.add(object(), "peer", now=100.0)
    assert (conn.phase, conn.deadline) == (Phase.REQUEST, 110.0)  # handshake included
    table.request_started(conn, now=105.0)  # first byte of the first request
    assert conn.deadline == 110.0
    assert table.expired(109.9) == []
    assert table.expired(110.0) == [conn]


def test_keep_alive_gets_idle_timeout_then_a_fresh_request_deadline() -> None:
    table = ConnTable(request_deadline=10.0, idle_timeout=120.0)
    conn = table.add(object(), "peer", now=0.0)
    table.answering(conn, now=1.0)
    assert (conn.phase, conn.deadline) == (Phase.ANSWER, 10.0)  # answering keeps it
    table.answered(conn, now=1.5)
    assert (conn.phase, conn.deadline) == (Phase.IDLE, 121.5)
    assert table.expired(121.0) == []
    table.request_started(conn, now=100.0)
    assert (conn.phase, conn.deadline) == (Phase.REQUEST, 110.0)
    table.closing(conn, now=101.0, linger=2.0)
    assert (conn.phase, conn.deadline) == (Phase.CLOSING, 103.0)


def test_victim_is_the_oldest_unfinished_request_then_the_longest_idle_never_answering() -> None:
    table = ConnTable(request_deadline=10.0, idle_timeout=120.0)
    idle_old = table.add("idle-old", "p", now=0.0)
    table.answered(idle_old, now=0.5)
    idle_new = table.add("idle-new", "p", now=1.0)
    table.answered(idle_new, now=1.5)
    slow_old = table.add("slow-old", "p", now=2.0)
    table.add("slow-new", "p", now=3.0)
    busy = table.add("busy", "p", now=0.0)
    table.answering(busy, now=0.1)
    order = []
    while (victim := table.victim()) is not None:
        order.append(victim.sock)
        assert table.remove(victim)
    assert order == ["slow-old", "slow-new", "idle-old", "idle-new"]
    assert len(table) == 1 and not table.remove(slow_old)  # only "busy" is left


@settings(max_examples=300, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.sampled_from(["add", "request", "answering", "answered", "closing", "remove"]),
            st.integers(min_value=0, max_value=4),  # which connection
            st.floats(min_value=0.0, max_value=5.0),  # time passing before the step
        ),
        max_size=40,
    )
)
def test_conn_table_invariants(steps: list[tuple[str, int, float]]) -> None:
    """Any sequence of phase changes: a request never gets more than request_deadline
    from the moment it began (progress never extends it), expired() is exactly the
    overdue set, and the victim is never a connection being answered and is the first
    in (idle last, oldest first) order."""
    table = ConnTable(request_deadline=10.0, idle_timeout=120.0)
    now = 0.0
    conns: dict[int, Conn] = {}
    began: dict[int, float] = {}  # when each connection's current request began
    for op, key, dt in steps:
        now += dt
        conn = conns.get(key)
        if op == "add" and conn is None:
            conns[key] = table.add(key, "p", now)
            began[key] = now
        elif conn is None:
            continue
        elif op == "request":
            if conn.phase is Phase.IDLE:
                began[key] = now
            table.request_started(conn, now)
        elif op == "answering" and conn.phase is Phase.REQUEST:
            table.answering(conn, now)
        elif op == "answered" and conn.phase is Phase.ANSWER:
            table.answered(conn, now)
        elif op == "closing":
            table.closing(conn, now, linger=2.0)
        elif op == "remove":
            assert table.remove(conn)
            del conns[key]
        for k, c in conns.items():
            if c.phase in (Phase.REQUEST, Phase.ANSWER):
                assert c.deadline <= began[k] + table.request_deadline
        assert {id(c) for c in table.expired(now)} == {
            id(c) for c in conns.values() if c.deadline <= now
        }
        victim = table.victim()
        candidates = [c for c in conns.values() if c.phase is not Phase.ANSWER]
        if not candidates:
            assert victim is None
        else:
            assert victim is not None and victim.phase is not Phase.ANSWER
            rank = lambda c: (c.phase is Phase.IDLE, c.since)  # noqa: E731
            assert rank(victim) == min(rank(c) for c in candidates)


def test_pressure_log_is_bounded(caplog: pytest.LogCaptureFixture) -> None:
    log = PressureLog(interval=10.0)
    with caplog.at_level("WARNING", logger="dockmirror.webhook"):
        log.event("timed out", 100.0, "first %s", "a")  # first of its kind: at once
        for i in range(50):
            log.event("evicted", 101.0 + i * 0.1, "evicted %d", i)  # first one at once
        log.event("timed out", 105.0, "x")
        log.flush(109.0)  # no interval is over: nothing more yet
        assert [r.getMessage() for r in caplog.records] == ["first a", "evicted 0"]
        log.flush(110.0)  # the timeouts' interval is over, the evictions' is not
        log.event("timed out", 111.0, "y")  # counted: its summary just went out
        log.flush(111.5, force=True)  # the server stops: say what is left
    assert [r.getMessage() for r in caplog.records] == [
        "first a",
        "evicted 0",
        "webhook connections timed out: 1 more in the last 10 s",
        "webhook connections evicted: 49 more in the last 10 s",
        "webhook connections timed out: 1 more in the last 2 s",
    ]


def test_limits_must_be_positive(tmp_path: Any) -> None:
    with pytest.raises(ValueError):
        WebhookServer(tmp_path / "c", tmp_path / "k", max_connections=0)
    with pytest.raises(ValueError):
        WebhookServer(tmp_path / "c", tmp_path / "k", request_deadline=0)


# -- the real server ------------------------------------------------------------------------

SLOW_CLIENTS = 500
#: Every tenth slow client never finishes its TLS handshake.
HANDSHAKE_STALLERS = SLOW_CLIENTS // 10
#: Short so the test is quick; what matters is that progress never extends it.
DEADLINE = 3.0


@pytest.fixture(scope="module")
def tls(tmp_path_factory: pytest.TempPathFactory) -> Any:
    return ensure_certificates(tmp_path_factory.mktemp("state"))


@pytest.fixture(scope="module")
def client_ctx(tls: Any) -> ssl.SSLContext:
    return ssl.create_default_context(cadata=tls.ca_pem.decode())


@pytest.fixture(autouse=True)
def enough_descriptors() -> Iterator[None]:
    """500 client sockets and up to MAX_CONNECTIONS server sockets live in this process."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    need = 2 * SLOW_CLIENTS + MAX_CONNECTIONS + 256
    if hard != resource.RLIM_INFINITY and hard < need:
        pytest.fail(f"this test needs {need} file descriptors; the hard limit is {hard}")
    if soft != resource.RLIM_INFINITY and soft < need:
        resource.setrlimit(resource.RLIMIT_NOFILE, (need, hard))
    yield
    resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


def admission_doc(uid: str) -> bytes:
    return json.dumps(
        {
            "apiVersion": "admission.k8s.io/v1",
            "kind": "AdmissionReview",
            "request": {
                "uid": uid,
                "operation": "CREATE",
                "object": {"metadata": {"annotations": {ACTION_ANNOTATION: "start"}}},
            },
        }
    ).encode()


def admit(srv: WebhookServer, ctx: ssl.SSLContext, uid: str) -> tuple[float, dict[str, Any]]:
    """A well-behaved client: one AdmissionReview on a new connection; (seconds, answer)."""
    start = time.monotonic()
    conn = http.client.HTTPSConnection("127.0.0.1", srv.port, context=ctx, timeout=30)
    try:
        conn.request("POST", VALIDATE_PATH, admission_doc(uid), {"Content-Type": JSON})
        resp = conn.getresponse()
        assert resp.status == 200
        answer = json.loads(resp.read())
    finally:
        conn.close()
    return time.monotonic() - start, answer


def open_slow_clients(srv: WebhookServer, ctx: ssl.SSLContext, trickler: Trickler) -> None:
    for i in range(SLOW_CLIENTS):
        trickler.add(Slowpoke(srv.port, ctx, handshake=i % 10 != 0))


def test_500_slow_clients_do_not_starve_admission(tls: Any, client_ctx: ssl.SSLContext) -> None:
    srv = WebhookServer(tls.cert_path, tls.key_path, request_deadline=DEADLINE)
    srv.start()
    trickler = Trickler()
    try:
        base_fds = len(os.listdir("/proc/self/fd"))
        base_threads = threading.active_count()
        trickler.start()
        started = time.monotonic()
        open_slow_clients(srv, client_ctx, trickler)
        opened_in = time.monotonic() - started
        # The last MAX_CONNECTIONS slow clients were opened within the deadline (this takes
        # well under a second) and evicted the older ones: the server is full of them.
        # (A stalled handshake's connect returns before the server has accepted it.)
        wait_for(
            lambda: srv.open_connections == MAX_CONNECTIONS,
            timeout=DEADLINE / 2,
            message=f"server full of slow clients (opened in {opened_in:.2f}s)",
        )
        elapsed, answer = admit(srv, client_ctx, "well-behaved")
        assert answer["response"]["uid"] == "well-behaved"
        assert answer["response"]["allowed"] is False
        assert elapsed < 5.0, f"admission took {elapsed:.2f}s behind {SLOW_CLIENTS} slow clients"

        # Every slow client is cut off although it keeps sending (evicted, or at the
        # deadline: none gets longer than DEADLINE after its accept).
        wait_for(trickler.all_cut, timeout=DEADLINE + 15, message="all slow clients cut off")
        wait_for(lambda: srv.open_connections == 0, timeout=5, message="no connection left")
        # Bounded: the server never held more than MAX_CONNECTIONS sockets and threads
        # (plus a few: an evicted thread gives its slot back just before it ends; the
        # well-behaved client; the listing of /proc/self/fd itself).
        assert trickler.max_fds <= base_fds + SLOW_CLIENTS + MAX_CONNECTIONS + 8, (
            trickler.max_fds,
            base_fds,
        )
        assert trickler.max_threads <= base_threads + 1 + MAX_CONNECTIONS + 8, (
            trickler.max_threads,
            base_threads,
        )
        # The server keeps serving, and its threads are gone with their connections.
        assert admit(srv, client_ctx, "after")[1]["response"]["uid"] == "after"
        wait_for(
            lambda: threading.active_count() <= base_threads + 1,
            timeout=5,
            message="connection threads ended",
        )
    finally:
        trickler.stop()
        srv.stop()


def test_stop_is_prompt_with_slow_clients_connected(tls: Any, client_ctx: ssl.SSLContext) -> None:
    srv = WebhookServer(tls.cert_path, tls.key_path, request_deadline=60.0)
    srv.start()
    trickler = Trickler()
    try:
        base_threads = threading.active_count()
        for i in range(200):
            trickler.add(Slowpoke(srv.port, client_ctx, handshake=i % 10 != 0))
        wait_for(lambda: srv.open_connections == MAX_CONNECTIONS, timeout=5, message="full")
        start = time.monotonic()
        srv.stop()
        assert time.monotonic() - start < 2.0
        wait_for(lambda: (trickler.sample(), trickler.all_cut())[1], timeout=10, message="cut")
        wait_for(
            lambda: threading.active_count() <= base_threads - 1,  # serving thread gone too
            timeout=5,
            message="connection threads ended",
        )
    finally:
        trickler.stop()
        srv.stop()


def test_full_server_evicts_the_oldest_slow_client(tls: Any, client_ctx: ssl.SSLContext) -> None:
    srv = WebhookServer(tls.cert_path, tls.key_path, max_connections=2, request_deadline=60.0)
    srv.start()
    trickler = Trickler()
    try:
        trickler.add(Slowpoke(srv.port, client_ctx, handshake=True))
        trickler.add(Slowpoke(srv.port, client_ctx, handshake=False))
        wait_for(lambda: srv.open_connections == 2, timeout=5, message="both accepted")
        elapsed, answer = admit(srv, client_ctx, "u")
        assert answer["response"]["uid"] == "u" and elapsed < 5.0
        oldest, newest = trickler.clients
        wait_for(lambda: (oldest.trickle(), oldest.cut)[1], timeout=5, message="oldest cut")
        newest.trickle()
        assert not newest.cut
    finally:
        trickler.stop()
        srv.stop()


def test_full_server_with_nothing_to_evict_refuses_after_a_bounded_wait(
    tls: Any, client_ctx: ssl.SSLContext, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The only slot is held by a request being answered (its review is held up here), so
    # there is no victim: the next connection waits EVICT_WAIT for a slot, then is closed.
    release = threading.Event()
    reviewing = threading.Event()
    real_review = webhook_mod.review

    def held_review(body: bytes) -> tuple[int, bytes]:
        reviewing.set()
        release.wait(30)
        return real_review(body)

    monkeypatch.setattr(webhook_mod, "review", held_review)
    monkeypatch.setattr(webhook_mod, "EVICT_WAIT", 0.2)
    srv = WebhookServer(tls.cert_path, tls.key_path, max_connections=1, request_deadline=60.0)
    srv.start()
    first: list[tuple[float, dict[str, Any]]] = []
    worker = threading.Thread(target=lambda: first.append(admit(srv, client_ctx, "first")))
    try:
        worker.start()
        assert reviewing.wait(10)
        with pytest.raises((OSError, http.client.HTTPException)):
            admit(srv, client_ctx, "refused")
        release.set()
        worker.join(10)
        assert first and first[0][1]["response"]["uid"] == "first"
        assert admit(srv, client_ctx, "later")[1]["response"]["uid"] == "later"
    finally:
        release.set()
        srv.stop()


def test_trickling_client_is_cut_at_the_deadline_despite_progress(
    tls: Any, client_ctx: ssl.SSLContext
) -> None:
    deadline = 1.0
    srv = WebhookServer(tls.cert_path, tls.key_path, request_deadline=deadline)
    srv.start()
    try:
        connected = time.monotonic()
        client = Slowpoke(srv.port, client_ctx, handshake=True)
        pace = threading.Event()  # never set: paces the client, orders nothing
        while not client.cut:
            assert time.monotonic() - connected < deadline + 10, "never cut off"
            client.trickle()  # ten bytes a second: steady progress
            pace.wait(0.1)
        # The server accepted after our connect, so it cannot have cut us any earlier.
        assert time.monotonic() - connected >= deadline
        client.close()
    finally:
        srv.stop()


def test_idle_keep_alive_outlives_the_request_deadline(
    tls: Any, client_ctx: ssl.SSLContext
) -> None:
    # The API server reuses connections: idle time between requests is not request time.
    deadline = 0.5
    srv = WebhookServer(tls.cert_path, tls.key_path, request_deadline=deadline)
    srv.start()
    conn = http.client.HTTPSConnection("127.0.0.1", srv.port, context=client_ctx, timeout=10)
    try:
        conn.request("GET", "/healthz")
        assert conn.getresponse().read() == b"ok"
        idle_since = time.monotonic()
        # Let the connection sit idle for longer than a request may take.
        wait_for(
            lambda: time.monotonic() - idle_since > 3 * deadline,
            timeout=10,
            message="idle for three request deadlines",
        )
        assert srv.open_connections == 1
        sock = conn.sock
        conn.request("GET", "/healthz")
        assert conn.getresponse().read() == b"ok"
        assert conn.sock is sock  # the same connection answered, not a reconnect
    finally:
        conn.close()
        srv.stop()

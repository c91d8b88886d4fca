"""/healthz, /readyz and /metrics: the pure answers, the real endpoint on a loopback port
(statuses, bodies, a parsable exposition with every series), its bounds against slow
clients, a prompt stop, and the supervisor-side wiring (Probes)."""

from __future__ import annotations

import http.client
import socket
import threading
import time
from collections.abc import Iterator
from types import SimpleNamespace

import pytest
from prometheus_client.parser import text_string_to_metric_families

from actors.domain.probes import Liveness, LivenessSnapshot, health_answer, ready_answer
from actors.infra import http_endpoint
from actors.infra.http_endpoint import AddressError, HttpEndpoint, parse_http_address
from actors.infra.metrics import SERIES, RouterDepths, ServiceMetrics
from actors.service.probe_wiring import Probes
from messages.journal import Effect
from tests.support.wait import wait_for
from tests.unit._helpers import FakeClock


# --- addresses ----------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("127.0.0.1:9464", ("127.0.0.1", 9464)),
        ("[::1]:0", ("::1", 0)),
        ("localhost:8080", ("localhost", 8080)),
        ("", None),
        ("  ", None),
    ],
)
def test_parse_http_address(text, expected):
    assert parse_http_address(text) == expected


@pytest.mark.parametrize("text", ["9464", "127.0.0.1", ":9464", "127.0.0.1:99999", "a:b", "h:1/x"])
def test_bad_http_address_is_one_clear_line(text):
    with pytest.raises(AddressError) as caught:
        parse_http_address(text)
    message = str(caught.value)
    assert "--http-address must be HOST:PORT" in message and "\n" not in message


# --- decisions ----------------------------------------------------------------------------
def test_health_answers():
    assert health_answer(LivenessSnapshot(), now=5.0) == (200, "ok: starting")
    alive = LivenessSnapshot({"router": True, "webhook": True}, observed_at=10.0)
    assert health_answer(alive, now=11.0) == (200, "ok")
    dead = LivenessSnapshot({"router": False, "kube-watch": False, "events": True}, 10.0)
    assert health_answer(dead, now=11.0) == (503, "dead: kube-watch, router")
    status, text = health_answer(alive, now=25.0)
    assert status == 503 and text.startswith("supervisor loop stalled")
    stopping = LivenessSnapshot({"router": True}, observed_at=10.0, stopping=True)
    assert health_answer(stopping, now=60.0) == (200, "ok: stopping")


def test_ready_answers():
    assert ready_answer("disabled", True)[0] == 200
    assert ready_answer("leader", True) == (200, "ready: initial sync done (leader)")
    assert ready_answer("leader", False)[0] == 503
    assert ready_answer("disabled", False) == (
        503,
        "not ready: initial sync in progress (leader election disabled)",
    )
    status, text = ready_answer("standby", False)
    assert status == 200 and "standby" in text
    assert ready_answer("leader", True, stopping=True) == (503, "not ready: stopping")
    assert ready_answer("candidate", True)[0] == 503


def test_liveness_snapshot_keeps_stopping():
    clock = FakeClock(3.0)
    liveness = Liveness(clock)
    liveness.observe({"router": True})
    liveness.stop()
    liveness.observe({"router": False})
    snap = liveness.snapshot()
    assert snap.stopping and snap.alive == {"router": False} and snap.observed_at == 3.0
    assert liveness.alive() == {"router": False}


# --- the real endpoint --------------------------------------------------------------------
class Rig:
    def __init__(self) -> None:
        self.metrics = ServiceMetrics()
        self.liveness = Liveness()
        self.leader = "disabled"
        self.endpoint = HttpEndpoint(
            ("127.0.0.1", 0),
            metrics=self.metrics,
            liveness=self.liveness,
            leader_state=lambda: self.leader,
        )
        self.endpoint.start()

    @property
    def port(self) -> int:
        return self.endpoint.bound_address[1]

    def get(self, path: str, method: str = "GET", **headers: str) -> tuple[int, str, dict]:
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=5)
        try:
            conn.request(method, path, headers=headers)
            answer = conn.getresponse()
            return answer.status, answer.read().decode(), dict(answer.getheaders())
        finally:
            conn.close()


@pytest.fixture
def rig() -> Iterator[Rig]:
    r = Rig()
    yield r
    r.endpoint.stop()


def test_healthz_names_what_is_dead(rig: Rig):
    assert rig.get("/healthz")[:2] == (200, "ok: starting\n")
    rig.liveness.observe({"router": True, "webhook": True})
    assert rig.get("/healthz")[:2] == (200, "ok\n")
    rig.liveness.observe({"router": False, "webhook": True})
    assert rig.get("/healthz")[:2] == (503, "dead: router\n")


def test_readyz_follows_the_sync_and_the_leader_state(rig: Rig):
    status, body, headers = rig.get("/readyz")
    assert status == 503 and "initial sync in progress" in body
    assert headers["Content-Type"].startswith("text/plain")
    rig.metrics.engine_ready(True)
    assert rig.get("/readyz")[:2] == (200, "ready: initial sync done (leader election disabled)\n")
    rig.metrics.engine_ready(False)
    rig.leader = "standby"
    assert rig.get("/readyz")[0] == 200
    rig.leader = "leader"
    assert rig.get("/readyz")[0] == 503
    rig.liveness.stop()
    assert rig.get("/readyz")[:2] == (503, "not ready: stopping\n")


def test_readyz_when_the_leader_state_fails(rig: Rig):
    def broken() -> str:
        raise RuntimeError("lease unknown")

    rig.endpoint.leader_state = broken
    status, body, _ = rig.get("/readyz")
    assert status == 503 and "lease unknown" in body


def test_other_paths_and_methods(rig: Rig):
    assert rig.get("/nope")[0] == 404
    status, body, _ = rig.get("/healthz", method="HEAD")
    assert status == 200 and body == ""
    assert rig.get("/healthz", method="POST")[0] == 501


def _activity(metrics: ServiceMetrics) -> None:
    """What a short run does: a router start, a sync, an action, a failed call, a retry,
    a restart."""
    metrics.bind_router(lambda: RouterDepths(backlog=1, retries=2, container_actors=3))
    metrics.full_sync_started()
    metrics.engine_ready(True)
    metrics.on_entry(Effect(target="docker", op="pause", outcome="ok", duration_ms=12.0))
    metrics.on_entry(Effect(target="kube", op="get", outcome="unavailable", duration_ms=3.0))
    metrics.on_entry(Effect(target="docker", op="inspect", outcome="not_found", duration_ms=1.0))
    metrics.action_seen("c1", "pause", "t")
    metrics.action_done("c1", "pause", "t", None)
    metrics.retry_scheduled("c1")
    metrics.actor_restarted("router")
    metrics.bind_scrape(
        event_backlog=lambda: 4, alive=lambda: {"router": True}, leader_state=lambda: "leader"
    )


def test_metrics_parse_and_hold_every_series(rig: Rig):
    _activity(rig.metrics)
    status, body, headers = rig.get("/metrics")
    assert status == 200
    assert headers["Content-Type"].startswith("text/plain; version=0.0.4")
    families = {f.name: f for f in text_string_to_metric_families(body)}
    assert set(SERIES) <= set(families), set(SERIES) - set(families)

    def sample(family: str, suffix: str = "", **labels: str) -> float:
        for s in families[family].samples:
            if s.name == family + suffix and all(s.labels.get(k) == v for k, v in labels.items()):
                return s.value
        raise AssertionError(f"no sample {family}{suffix} {labels}")

    assert sample("dockmirror_actions", "_total", action="pause", outcome="succeeded") == 1
    assert sample("dockmirror_action_duration_seconds", "_count", action="pause") == 1
    assert sample("dockmirror_docker_call_duration_seconds", "_count", op="pause") == 1
    assert sample("dockmirror_docker_call_errors", "_total", op="inspect", outcome="not_found") == 1
    assert sample("dockmirror_kube_call_errors", "_total", op="get", outcome="unavailable") == 1
    assert sample("dockmirror_retries_scheduled", "_total", step="container") == 1
    assert sample("dockmirror_actor_restarts", "_total", actor="router") == 1
    assert sample("dockmirror_full_sync_duration_seconds", "_count") == 1
    assert sample("dockmirror_queue_depth", queue="router_backlog") == 1
    assert sample("dockmirror_queue_depth", queue="retry_queue") == 2
    assert sample("dockmirror_queue_depth", queue="event_writer") == 4
    assert sample("dockmirror_actors_alive", actor="router") == 1
    assert sample("dockmirror_actors_alive", actor="container") == 3
    assert sample("dockmirror_engine_ready") == 1
    assert sample("dockmirror_admission_info", mode="webhook") == 1
    assert sample("dockmirror_leader", state="leader") == 1
    assert sample("dockmirror_leader", state="standby") == 0


def test_metrics_offers_openmetrics_when_asked(rig: Rig):
    status, body, headers = rig.get("/metrics", Accept="application/openmetrics-text")
    assert status == 200 and headers["Content-Type"].startswith("application/openmetrics-text")
    assert body.rstrip().endswith("# EOF")


def _silent_connection(port: int) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", port), timeout=5)
    sock.sendall(b"GET /heal")  # an unfinished request line, never completed
    return sock


def test_slow_clients_cannot_starve_the_probes(rig: Rig):
    hogs = [_silent_connection(rig.port) for _ in range(http_endpoint.MAX_CONNECTIONS * 2)]
    try:
        started = time.monotonic()
        assert rig.get("/healthz")[0] == 200
        # Eviction makes room at once; the request deadline (5 s) is not waited for.
        assert time.monotonic() - started < http_endpoint.REQUEST_DEADLINE
    finally:
        for sock in hogs:
            sock.close()


def test_unfinished_request_is_cut_at_its_deadline(rig: Rig):
    sock = _silent_connection(rig.port)
    try:
        # The server closes it (recv returns b"") within the deadline plus a sweep.
        sock.settimeout(http_endpoint.REQUEST_DEADLINE + 3)
        assert sock.recv(1024) == b""
    finally:
        sock.close()


def test_stop_is_prompt_with_open_connections():
    r = Rig()
    hogs = [_silent_connection(r.port) for _ in range(4)]
    try:
        started = time.monotonic()
        r.endpoint.stop()
        assert time.monotonic() - started < 2.0
        with pytest.raises(OSError):
            socket.create_connection(("127.0.0.1", r.port), timeout=1).close()
        r.endpoint.stop()  # idempotent
    finally:
        for sock in hogs:
            sock.close()


# --- wiring ---------------------------------------------------------------------------------
class FakeRef:
    def __init__(self, alive: bool = True, queued: int = 0) -> None:
        self.alive = alive
        self.actor_inbox = SimpleNamespace(qsize=lambda: queued)

    def is_alive(self) -> bool:
        return self.alive


def _supervisor(refs: dict[str, FakeRef], webhook_alive: bool = True) -> SimpleNamespace:
    return SimpleNamespace(
        journal=SimpleNamespace(listener=None),
        refs=refs,
        events_ref=refs.get("events"),
        webhook=SimpleNamespace(is_alive=lambda: webhook_alive),
    )


def test_probes_wire_the_journal_liveness_and_endpoint():
    probes = Probes(SimpleNamespace(http_address="127.0.0.1:0"))
    refs = {"router": FakeRef(), "events": FakeRef(queued=9)}
    sup = _supervisor(refs, webhook_alive=False)
    probes.start(sup)
    try:
        assert sup.journal.listener == probes.metrics.on_entry
        assert probes.endpoint is not None
        probes.observe_liveness(sup)
        port = probes.endpoint.bound_address[1]
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
        conn.request("GET", "/healthz")
        answer = conn.getresponse()
        assert (answer.status, answer.read()) == (503, b"dead: webhook\n")
        conn.close()
        registry = probes.metrics.registry
        assert registry.get_sample_value("dockmirror_queue_depth", {"queue": "event_writer"}) == 9
        probes.leader_state = lambda: "standby"  # what leader election will assign
        assert registry.get_sample_value("dockmirror_leader", {"state": "standby"}) == 1
        probes.set_admission_mode("policy")
        assert registry.get_sample_value("dockmirror_admission_info", {"mode": "policy"}) == 1
    finally:
        probes.stop()
        probes.stop()
    assert probes.endpoint is None


def test_probes_read_the_admission_mode_from_the_config():
    probes = Probes(SimpleNamespace(http_address="", admission="policy"))
    registry = probes.metrics.registry
    assert registry.get_sample_value("dockmirror_admission_info", {"mode": "policy"}) == 1


def test_probes_off_with_an_empty_address():
    probes = Probes(SimpleNamespace(http_address=""))
    sup = _supervisor({})
    probes.start(sup)
    assert probes.endpoint is None
    assert sup.journal.listener == probes.metrics.on_entry  # metrics still counted


def test_address_in_use_is_a_one_line_exit():
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        probes = Probes(SimpleNamespace(http_address=f"127.0.0.1:{port}"))
        with pytest.raises(SystemExit) as caught:
            probes.start(_supervisor({}))
    message = str(caught.value.code)
    assert message.startswith(f"dockmirror: cannot listen on --http-address 127.0.0.1:{port}: ")
    assert "in use" in message and "\n" not in message


def test_endpoint_answers_while_a_scrape_callback_hangs_elsewhere(rig: Rig):
    """Probes do not depend on the metrics: a health check answers while a scrape is slow."""
    gate = threading.Event()
    rig.metrics.bind_scrape(event_backlog=lambda: gate.wait(10) and 0)
    scrape = threading.Thread(target=rig.get, args=("/metrics",), daemon=True)
    scrape.start()
    try:
        wait_for(lambda: rig.get("/healthz")[0] == 200, timeout=5, message="health answer")
    finally:
        gate.set()
        scrape.join(5)

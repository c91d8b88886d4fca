"""/healthz, /readyz and /metrics of the real service against the real devenv (issue 11,
point 7): healthy, ready once EngineReady is True, one action moves the action counter
and histogram, and every listed series is exposed; a SIGTERM closes the endpoint."""

from __future__ import annotations

import http.client
import socket

from prometheus_client.parser import text_string_to_metric_families

from actors.infra.metrics import SERIES
from tests.support.wait import wait_for


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def get(port: int, path: str) -> tuple[int, str]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    try:
        conn.request("GET", path)
        answer = conn.getresponse()
        return answer.status, answer.read().decode()
    finally:
        conn.close()


def scrape(port: int) -> dict[str, dict[tuple[str, tuple[tuple[str, str], ...]], float]]:
    """family -> {(sample name, sorted labels): value}."""
    status, body = get(port, "/metrics")
    assert status == 200
    return {
        family.name: {(s.name, tuple(sorted(s.labels.items()))): s.value for s in family.samples}
        for family in text_string_to_metric_families(body)
    }


def sample(families, family: str, name: str, **labels: str) -> float:
    return families.get(family, {}).get((name, tuple(sorted(labels.items()))), 0.0)


def test_probes_and_metrics_of_the_running_service(service_factory, run_container):
    port = free_port()
    svc = service_factory(extra_args=("--http-address", f"127.0.0.1:{port}"))
    assert f"probes and metrics on http://127.0.0.1:{port}" in svc.log_since_start()
    # "ok: starting" until the first liveness sweep (1 s after start), then "ok".
    wait_for(lambda: get(port, "/healthz") == (200, "ok\n"), timeout=10, message="/healthz ok")
    wait_for(lambda: get(port, "/readyz")[0] == 200, timeout=10, message="/readyz 200")
    assert get(port, "/readyz")[1] == "ready: initial sync done (leader)\n"

    before = scrape(port)
    assert set(SERIES) <= set(before), set(SERIES) - set(before)
    c = run_container()
    svc.wait_status(c.id, "running")
    la = svc.request(c.id, "pause")
    assert (la["action"], la["state"]) == ("pause", "Succeeded")

    def action_counted():
        after = scrape(port)
        actions = "dockmirror_actions"
        counted = sample(after, actions, actions + "_total", action="pause", outcome="succeeded")
        return after if counted == 1 else None

    after = wait_for(action_counted, timeout=10, message="pause counted")
    count = "dockmirror_action_duration_seconds_count"
    assert sample(after, "dockmirror_action_duration_seconds", count, action="pause") == 1
    docker_calls = "dockmirror_docker_call_duration_seconds"
    assert sample(after, docker_calls, docker_calls + "_count", op="pause") >= 1
    kube_calls = "dockmirror_kube_call_duration_seconds"
    assert sample(after, kube_calls, kube_calls + "_count", op="remove_annotation") >= 1
    sync = "dockmirror_full_sync_duration_seconds"
    assert sample(after, sync, sync + "_count") >= 1
    assert sample(after, "dockmirror_engine_ready", "dockmirror_engine_ready") == 1
    alive = "dockmirror_actors_alive"
    # Default mode on the devenv: --admission auto picks the policy (no webhook server).
    for actor in ("router", "events", "docker-events", "kube-watch"):
        assert sample(after, alive, alive, actor=actor) == 1, actor
    leader = "dockmirror_leader"
    assert sample(after, leader, leader, state="leader") == 1
    admission = "dockmirror_admission_info"
    assert sample(after, admission, admission, mode="policy") == 1
    queues = {dict(labels)["queue"] for _, labels in after["dockmirror_queue_depth"]}
    assert queues == {"router_backlog", "retry_queue", "event_writer"}

    assert svc.stop() == 0
    with socket.socket() as sock:
        sock.settimeout(2)
        assert sock.connect_ex(("127.0.0.1", port)) != 0  # the endpoint closed with the service

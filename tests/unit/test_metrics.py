"""ServiceMetrics: the hooks' bookkeeping (injected clock, no threads), and the hooks as the
real router and container actors call them (FakeDocker + FakeMirrorStore)."""

from __future__ import annotations

import pykka
import pytest

from actors.domain.names import ACTION_ANNOTATION
from actors.infra.metrics import (
    MAX_PENDING_ACTIONS,
    NO_METRICS,
    RouterDepths,
    ServiceMetrics,
    step_label,
)
from actors.ports.kube_port import KubeUnavailable
from actors.runtime.router import RouterActor, RouterSettings
from messages.inbound import DockerLost, EngineReachable, MirrorObserved, Tick
from messages.journal import Effect, Note
from tests.unit._helpers import Env, FakeClock, FakeEngineStatus, wait_for


def value(m: ServiceMetrics, name: str, **labels: str) -> float:
    """A sample's value; 0 when the series has no sample yet."""
    return m.registry.get_sample_value(name, labels) or 0.0


# --- pure bookkeeping ---------------------------------------------------------------------
def test_action_latency_runs_from_first_sight_to_done_and_counts_outcomes():
    clock = FakeClock(100.0)
    m = ServiceMetrics(clock=clock)
    m.action_seen("c1", "stop", "t1")
    clock.advance(2.0)
    m.action_seen("c1", "stop", "t1")  # a retry of the same request keeps its first sight
    clock.advance(1.0)
    m.action_done("c1", "stop", "t1", None)
    m.action_seen("c2", "pause", "t1")
    m.action_done("c2", "pause", "t1", "Error response from daemon: not running")
    assert value(m, "dockmirror_actions_total", action="stop", outcome="succeeded") == 1
    assert value(m, "dockmirror_actions_total", action="pause", outcome="failed") == 1
    assert value(m, "dockmirror_action_duration_seconds_sum", action="stop") == pytest.approx(3.0)
    assert value(m, "dockmirror_action_duration_seconds_count", action="pause") == 1
    # The same action, written again (a new stamp), is a new request with its own latency.
    m.action_seen("c1", "stop", "t2")
    clock.advance(0.5)
    m.action_done("c1", "stop", "t2", None)
    assert value(m, "dockmirror_action_duration_seconds_sum", action="stop") == pytest.approx(3.5)


def test_action_done_without_sight_counts_but_observes_no_latency():
    m = ServiceMetrics(clock=FakeClock())
    m.action_done("c1", "start", "t", None)
    assert value(m, "dockmirror_actions_total", action="start", outcome="succeeded") == 1
    assert value(m, "dockmirror_action_duration_seconds_count", action="start") == 0


def test_pending_requests_are_bounded():
    m = ServiceMetrics(clock=FakeClock())
    for i in range(MAX_PENDING_ACTIONS + 5):
        m.action_seen(f"c{i}", "stop", "t")
    assert len(m._pending) == MAX_PENDING_ACTIONS
    assert ("c0", "stop", "t") not in m._pending  # the oldest went first


def test_known_actions_start_at_zero():
    m = ServiceMetrics()
    for action in ("start", "stop", "pause", "unpause", "restart"):
        for outcome in ("succeeded", "failed"):
            labels = {"action": action, "outcome": outcome}
            assert m.registry.get_sample_value("dockmirror_actions_total", labels) == 0


def test_effects_become_call_latency_and_errors_other_entries_are_ignored():
    m = ServiceMetrics()
    m.on_entry(Effect(target="docker", op="pause", outcome="ok", duration_ms=20.0))
    m.on_entry(Effect(target="docker", op="inspect", outcome="not_found", duration_ms=2.0))
    m.on_entry(Effect(target="kube", op="apply_status", outcome="unavailable", duration_ms=5.0))
    m.on_entry(Effect(target="elsewhere", op="x", outcome="error"))
    m.on_entry(Note(text="retry scheduled"))
    assert value(m, "dockmirror_docker_call_duration_seconds_sum", op="pause") == pytest.approx(
        0.02
    )
    assert value(m, "dockmirror_docker_call_errors_total", op="pause", outcome="ok") == 0
    assert value(m, "dockmirror_docker_call_errors_total", op="inspect", outcome="not_found") == 1
    errors = value(m, "dockmirror_kube_call_errors_total", op="apply_status", outcome="unavailable")
    assert errors == 1
    assert value(m, "dockmirror_kube_call_duration_seconds_count", op="apply_status") == 1


def test_full_sync_duration_and_readiness():
    clock = FakeClock()
    m = ServiceMetrics(clock=clock)
    assert not m.ready
    m.full_sync_started()
    clock.advance(4.0)
    m.engine_ready(True)
    assert m.ready
    assert value(m, "dockmirror_full_sync_duration_seconds_sum") == pytest.approx(4.0)
    m.engine_ready(False)  # the engine was lost
    assert not m.ready
    m.engine_ready(True)  # a retried EngineReady write without a new sync: no new sample
    assert value(m, "dockmirror_full_sync_duration_seconds_count") == 1
    m.bind_router(lambda: RouterDepths(0, 0, 0))  # a new router: not ready until it synced
    assert not m.ready


def test_retry_steps_and_restarts():
    m = ServiceMetrics()
    assert step_label("ab" * 32) == "container"
    assert step_label("<full-sync>") == "full-sync"
    m.retry_scheduled("ab" * 32)
    m.retry_scheduled("<engine-ready>")
    m.actor_restarted("router")
    assert value(m, "dockmirror_retries_scheduled_total", step="container") == 1
    assert value(m, "dockmirror_retries_scheduled_total", step="engine-ready") == 1
    assert value(m, "dockmirror_actor_restarts_total", actor="router") == 1


def test_scrape_callbacks_are_read_at_scrape_time_and_may_fail():
    m = ServiceMetrics()
    depths = [RouterDepths(backlog=3, retries=2, container_actors=5)]
    m.bind_router(lambda: depths[0])
    m.bind_scrape(
        event_backlog=lambda: 7,
        alive=lambda: {"router": True, "kube-watch": False},
        leader_state=lambda: "standby",
    )
    assert value(m, "dockmirror_queue_depth", queue="router_backlog") == 3
    assert value(m, "dockmirror_queue_depth", queue="retry_queue") == 2
    assert value(m, "dockmirror_queue_depth", queue="event_writer") == 7
    assert value(m, "dockmirror_actors_alive", actor="container") == 5
    assert value(m, "dockmirror_actors_alive", actor="kube-watch") == 0
    assert value(m, "dockmirror_leader", state="standby") == 1
    assert value(m, "dockmirror_leader", state="leader") == 0
    depths[0] = RouterDepths(backlog=0, retries=1, container_actors=1)
    assert value(m, "dockmirror_queue_depth", queue="router_backlog") == 0

    def broken() -> int:
        raise RuntimeError("router being replaced")

    m.bind_scrape(event_backlog=broken)
    assert value(m, "dockmirror_queue_depth", queue="event_writer") == 0  # still answers


def test_instances_have_separate_registries():
    a, b = ServiceMetrics(), ServiceMetrics()
    a.retry_scheduled("<resync>")
    assert value(a, "dockmirror_retries_scheduled_total", step="resync") == 1
    assert value(b, "dockmirror_retries_scheduled_total", step="resync") == 0


def test_no_metrics_hooks_do_nothing():
    NO_METRICS.action_seen("c", "stop", "t")
    NO_METRICS.action_done("c", "stop", "t", None)
    NO_METRICS.retry_scheduled("c")
    NO_METRICS.full_sync_started()
    NO_METRICS.engine_ready(True)
    NO_METRICS.actor_restarted("router")
    NO_METRICS.bind_router(lambda: RouterDepths(0, 0, 0))


# --- the hooks in the real actors ---------------------------------------------------------
@pytest.fixture(autouse=True)
def _stop_actors():
    yield
    pykka.ActorRegistry.stop_all()


def test_router_and_container_actor_feed_the_metrics(tmp_path):
    env = Env(tmp_path)
    metrics = ServiceMetrics()
    env.journal.listener = metrics.on_entry
    cid = env.docker.create("a")
    status = FakeEngineStatus()
    clock = FakeClock()
    ref = RouterActor.start(
        journal=env.journal,
        docker=env.docker,
        store=env.store,
        engine_status=status,
        emit=env.events,
        settings=RouterSettings(max_active=4, idle_timeout_s=60),
        clock=clock,
        wake_at=lambda due, fn: None,  # only Ticks run due retries: the test is the clock
        metrics=metrics,
    )
    ref.tell(EngineReachable())
    wait_for(lambda: metrics.ready, timeout=5, message="readiness after the full sync")
    assert value(metrics, "dockmirror_full_sync_duration_seconds_count") == 1
    assert value(metrics, "dockmirror_docker_call_duration_seconds_count", op="list") == 1
    assert value(metrics, "dockmirror_kube_call_duration_seconds_count", op="engine_ready") == 1

    env.store.fail_next("patch_status", KubeUnavailable(503, "unavailable"))
    obj = env.store.client_annotate(cid, "pause")
    ref.tell(MirrorObserved(name=cid, obj=obj, resource_version=obj["metadata"]["resourceVersion"]))

    def consumed() -> bool:
        if ACTION_ANNOTATION not in (env.store.get(cid)["metadata"].get("annotations") or {}):
            return True
        clock.advance(1.0)
        ref.tell(Tick())
        return False

    wait_for(consumed, timeout=10, message="annotation consumed after one retry")
    wait_for(
        lambda: value(metrics, "dockmirror_actions_total", action="pause", outcome="succeeded"),
        timeout=5,
        message="the action counted",
    )
    assert value(metrics, "dockmirror_action_duration_seconds_count", action="pause") == 1
    assert value(metrics, "dockmirror_retries_scheduled_total", step="container") == 1
    errors = value(
        metrics, "dockmirror_kube_call_errors_total", op="patch_last_action", outcome="unavailable"
    )
    assert errors == 1
    depths = metrics.router_depths()
    assert depths is not None and depths.container_actors >= 1

    ref.tell(DockerLost(reason="gone"))
    wait_for(lambda: not metrics.ready, timeout=5, message="not ready after the engine was lost")

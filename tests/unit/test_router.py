"""RouterActor with FakeDocker + FakeMirrorStore: full sync, backlog, retirement, supervision.

The router has no timer of its own; the test is its clock (``FakeClock``) and sends the
``Tick`` messages the supervisor would send.
"""

from __future__ import annotations

import secrets
import threading
import time

import pykka
import pytest

from actors.domain.names import ACTION_ANNOTATION, FINALIZER
from actors.infra import faults
from actors.ports.kube_port import KubeInvalid, KubeUnavailable
from actors.runtime.container import ContainerActor
from actors.runtime.router import RouterActor, RouterSettings
from messages.inbound import (
    DockerEvent,
    DockerLost,
    EngineReachable,
    MirrorObserved,
    Tick,
)
from tests.unit._helpers import Env, FakeClock, FakeEngineStatus, barrier, wait_for

CONNECTED = (True, "Connected", "Container engine synced")


@pytest.fixture(autouse=True)
def _stop_actors():
    yield
    pykka.ActorRegistry.stop_all()
    faults.configure("")


class Rig:
    def __init__(
        self, env: Env, *, timer: bool = False, clock=None, status=None, **settings
    ) -> None:
        self.env = env
        self.clock = clock or FakeClock()
        self.status = status or FakeEngineStatus()
        self.settings = RouterSettings(
            **{"max_active": 2, "idle_timeout_s": 0.5, "restart_backoff_s": 0.2, **settings}
        )
        self.ref = RouterActor.start(
            journal=env.journal,
            docker=env.docker,
            store=env.store,
            engine_status=self.status,
            emit=env.events,
            settings=self.settings,
            clock=self.clock,
            # Without the timer, only Ticks run due retries: the test controls time.
            wake_at=None if timer else (lambda due, fn: None),
        )

    def tick(self, advance: float = 1.0) -> None:
        self.clock.advance(advance)
        self.ref.tell(Tick())

    def ready(self) -> bool:
        return CONNECTED in self.status.calls.items

    def until(self, predicate, message: str, timeout: float = 5.0, tick: bool = True):
        """Wait for ``predicate``; with ``tick``, let idle actors retire meanwhile."""

        def step():
            if predicate():
                return True
            if tick:
                self.tick()
            return False

        return wait_for(step, timeout=timeout, message=message)


def live_children() -> int:
    return len(pykka.ActorRegistry.get_by_class(ContainerActor))


class MaxSampler:
    """Samples the live ContainerActor count in the background; ``peak`` is the max seen."""

    def __init__(self) -> None:
        self.peak = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, live_children())
            self._stop.wait(0.001)

    def stop(self) -> int:
        self._stop.set()
        self._thread.join(2)
        return self.peak


@pytest.fixture
def env(tmp_path) -> Env:
    return Env(tmp_path)


def mirrors(env: Env) -> set[str]:
    return set(env.store.objects())


def test_full_sync_mirrors_all_prunes_stale_and_writes_ready(env: Env):
    ids = {env.docker.create(f"c{i}", running=i % 2 == 0) for i in range(3)}
    stale = secrets.token_hex(32)
    env.store.client_create({"metadata": {"name": stale, "finalizers": [FINALIZER]}})
    env.store.client_create({"metadata": {"name": "hand-made"}})
    rig = Rig(env, max_active=16)
    rig.ref.tell(EngineReachable())
    rig.until(lambda: mirrors(env) == ids and rig.ready(), "mirrors match Docker, ready")
    for cid in ids:
        obj = env.store.get(cid)
        assert obj["metadata"]["finalizers"] == [FINALIZER]
        assert obj["status"]["status"] in ("running", "created")
    assert env.docker.calls_of("remove") == []
    assert rig.status.calls.items == [CONNECTED]


def test_backlog_respects_max_active(env: Env):
    ids = {env.docker.create(f"c{i}") for i in range(6)}
    rig = Rig(env, max_active=2)
    sampler = MaxSampler()
    rig.ref.tell(EngineReachable())
    rig.until(lambda: mirrors(env) == ids and rig.ready(), "all six mirrored", timeout=10)
    assert sampler.stop() <= 2
    assert rig.status.calls.items == [CONNECTED]


def test_idle_actors_retire_and_a_later_message_starts_one(env: Env):
    a = env.docker.create("a")
    b = env.docker.create("b")
    rig = Rig(env, max_active=4, idle_timeout_s=5)
    rig.ref.tell(EngineReachable())
    wait_for(rig.ready, timeout=5, message="ready")
    assert live_children() == 2
    rig.tick(10)
    wait_for(lambda: live_children() == 0, timeout=5, message="idle actors retired")

    env.docker.docker_stop_direct(a)
    rig.ref.tell(DockerEvent(container_id=a, action="die"))
    wait_for(
        lambda: env.store.get(a)["status"]["status"] == "exited",
        timeout=5,
        message="event synced by a fresh actor",
    )
    assert live_children() == 1
    assert env.store.get(b)["status"]["status"] == "running"


def test_message_for_a_retiring_actor_waits_for_it_to_stop(env: Env):
    cid = env.docker.create("a")
    rig = Rig(env, max_active=4, idle_timeout_s=5)
    rig.ref.tell(EngineReachable())
    wait_for(rig.ready, timeout=5, message="ready")
    sampler = MaxSampler()
    env.docker.docker_pause_direct(cid)
    rig.tick(10)  # retire ...
    rig.ref.tell(DockerEvent(container_id=cid, action="pause"))  # ... and need it again
    wait_for(
        lambda: env.store.get(cid)["status"]["status"] == "paused",
        timeout=5,
        message="event handled after the retirement",
    )
    assert sampler.stop() <= 1  # never two actors for one container


def test_annotation_seen_by_watch_runs_the_action(env: Env):
    cid = env.docker.create("a")
    rig = Rig(env, max_active=4, idle_timeout_s=5)
    rig.ref.tell(EngineReachable())
    wait_for(rig.ready, timeout=5, message="ready")
    rig.tick(10)
    wait_for(lambda: live_children() == 0, timeout=5, message="retired")
    obj = env.store.client_annotate(cid, "pause")
    rig.ref.tell(
        MirrorObserved(name=cid, obj=obj, resource_version=obj["metadata"]["resourceVersion"])
    )
    wait_for(
        lambda: ACTION_ANNOTATION not in (env.store.get(cid)["metadata"].get("annotations") or {}),
        timeout=5,
        message="annotation consumed",
    )
    assert env.store.get(cid)["status"]["lastAction"]["state"] == "Succeeded"
    assert env.docker.state_of(cid) == "paused"


def test_child_that_raises_is_restarted_and_finishes(env: Env):
    cid = env.docker.create("a")
    faults.configure("container.on_receive=raise")
    rig = Rig(env, max_active=4, idle_timeout_s=60)
    rig.ref.tell(EngineReachable())
    wait_for(
        lambda: env.notes("container actor died; restart scheduled"),
        timeout=5,
        message="router noticed the death",
    )
    assert env.store.objects() == {}
    # One tick past the 0.2 s backoff restarts it. No more ticks: each one advances the
    # clock a second, and enough of them on a slow machine would retire the restarted
    # child (idle timeout 60 s) before the count below.
    rig.tick()
    rig.until(
        lambda: cid in env.store.objects() and rig.ready(), "restarted child synced", tick=False
    )
    assert env.store.get(cid)["status"]["status"] == "running"
    assert live_children() == 1


def test_docker_lost_writes_connect_failed(env: Env):
    rig = Rig(env)
    rig.ref.tell(DockerLost(reason="failed to ping Docker: boom"))
    wait_for(lambda: rig.status.calls.items, timeout=5, message="EngineReady written")
    assert rig.status.calls.items == [(False, "ConnectFailed", "failed to ping Docker: boom")]


class FailingEngineStatus(FakeEngineStatus):
    """Refuses the next ``fail`` EngineReady writes with a transient 429."""

    def __init__(self, fail: int) -> None:
        super().__init__()
        self.fail = fail
        self.refused: list[tuple[bool, str, str]] = []

    def set_ready(self, ready: bool, reason: str, message: str) -> None:
        if self.fail > 0:
            self.fail -= 1
            self.refused.append((ready, reason, message))
            raise KubeUnavailable(429, "too many requests")
        super().set_ready(ready, reason, message)


def test_a_refused_connect_failed_write_is_retried(env: Env):
    # scripts/chaos flaky (full run ab26819f): the only EngineReady=False write after a
    # hung engine's failed ping met a transient 429 and was never retried, so EngineReady
    # stayed True through the whole 20 s hang.
    rig = Rig(env, status=FailingEngineStatus(fail=2))
    lost = (False, "ConnectFailed", "failed to ping Docker: read timed out")
    rig.ref.tell(DockerLost(reason=lost[2]))
    rig.until(lambda: rig.status.calls.items, "EngineReady=False written after retries")
    assert rig.status.refused == [lost, lost]
    assert rig.status.calls.items == [lost]
    assert len(env.notes("EngineReady not written")) == 2


def test_a_pending_connect_failed_retry_never_overwrites_the_reconnect(env: Env):
    env.docker.create("a")
    rig = Rig(env, status=FailingEngineStatus(fail=1))
    rig.ref.tell(DockerLost(reason="failed to ping Docker: boom"))
    barrier(rig.ref)
    assert rig.status.refused and not rig.status.calls.items  # False refused, retry pending
    rig.ref.tell(EngineReachable())  # the engine is back before the retry is due
    wait_for(rig.ready, timeout=5, message="ready")
    for _ in range(5):  # well past the retry's backoff
        rig.tick()
    barrier(rig.ref)
    assert rig.status.calls.items == [CONNECTED]


def test_full_sync_with_engine_down_writes_connect_failed(env: Env):
    env.docker.create("a")
    env.docker.unavailable = True
    rig = Rig(env)
    rig.ref.tell(EngineReachable())
    wait_for(lambda: rig.status.calls.items, timeout=5, message="EngineReady written")
    ready, reason, text = rig.status.calls.items[0]
    assert (ready, reason) == (False, "ConnectFailed")
    assert text.startswith("failed to ping Docker: ")
    assert env.store.objects() == {}


def test_several_actions_at_once_one_fails(env: Env):
    """docs/contract.md §7 scenario 57: five containers act together; one fails, four succeed."""
    running = [env.docker.create(f"r{i}") for i in range(4)]
    exited = env.docker.create("x", running=False)
    rig = Rig(env, max_active=8, idle_timeout_s=60)
    rig.ref.tell(EngineReachable())
    wait_for(rig.ready, timeout=5, message="ready")
    requests = {
        running[0]: "stop",
        running[1]: "pause",
        running[2]: "restart",
        running[3]: "unpause",
        exited: "pause",
    }
    for cid, value in requests.items():
        obj = env.store.client_annotate(cid, value)
        rig.ref.tell(MirrorObserved(name=cid, obj=obj))

    def results():
        out = {}
        for cid in requests:
            obj = env.store.get(cid)
            if ACTION_ANNOTATION in (obj["metadata"].get("annotations") or {}):
                return None
            out[cid] = (obj.get("status") or {}).get("lastAction")
        return out if all(out.values()) else None

    done = wait_for(results, timeout=5, message="all five processed")
    states = {cid: (la["action"], la["state"]) for cid, la in done.items()}
    assert states == {
        running[0]: ("stop", "Succeeded"),
        running[1]: ("pause", "Succeeded"),
        running[2]: ("restart", "Succeeded"),
        running[3]: ("unpause", "Succeeded"),
        exited: ("pause", "Failed"),
    }
    assert "is not running" in done[exited]["error"]


# --- retries (issue 10) ---------------------------------------------------------------


def _annotate(rig: Rig, env: Env, cid: str, value: str) -> None:
    obj = env.store.client_annotate(cid, value)
    rig.ref.tell(MirrorObserved(name=cid, obj=obj))


def _consumed(env: Env, cid: str) -> bool:
    return ACTION_ANNOTATION not in (env.store.get(cid)["metadata"].get("annotations") or {})


def test_failed_step_is_retried_by_the_router_until_it_succeeds(env: Env):
    cid = env.docker.create("a")
    rig = Rig(env, max_active=4, idle_timeout_s=60)
    rig.ref.tell(EngineReachable())
    wait_for(rig.ready, timeout=5, message="ready")
    for _ in range(3):  # three transient failures in a row
        env.store.fail_next("patch_status", KubeUnavailable(503, "unavailable"))
    _annotate(rig, env, cid, "stop")
    rig.until(lambda: _consumed(env, cid), "annotation consumed after retries", timeout=10)
    assert env.store.get(cid)["status"]["lastAction"]["state"] == "Succeeded"
    assert env.docker.calls_of("stop") == [cid]
    delays = [n.detail["in_s"] for n in env.notes("retry scheduled")]
    assert len(delays) == 3 and delays == sorted(delays) and delays[0] < 0.1
    assert env.docker.calls_of("list_ids") == [None]  # no full sync for one object


def test_permanently_failing_object_never_loops_full_syncs(env: Env, monkeypatch):
    cid = env.docker.create("a")
    other = env.docker.create("b")
    apply_metadata = env.store.apply_metadata

    def refuse_one(name: str):
        if name == cid:
            raise KubeInvalid(422, "always refused")
        return apply_metadata(name)

    monkeypatch.setattr(env.store, "apply_metadata", refuse_one)
    rig = Rig(env, max_active=4, idle_timeout_s=60)
    rig.ref.tell(EngineReachable())
    rig.until(lambda: other in env.store.objects(), "the healthy container is mirrored")
    for count in range(1, 7):  # six failures, each retried when due
        rig.until(lambda n=count: len(env.notes("retry scheduled")) >= n, f"failure {count}")
    assert env.docker.calls_of("list_ids") == [None]
    failures = env.notes("retry scheduled")
    assert len(failures) >= 5 and {n.detail["container"] for n in failures} == {cid}
    delays = [n.detail["in_s"] for n in failures]
    assert delays == sorted(delays)  # backing off, not a loop
    assert rig.ready()  # one failing object does not hold EngineReady back


def test_full_sync_list_failure_is_retried_with_backoff(env: Env):
    cid = env.docker.create("a")
    env.store.fail_next("list", KubeUnavailable(503, "etcd"))
    env.store.fail_next("list", KubeUnavailable(503, "etcd"))
    rig = Rig(env, max_active=4)
    rig.ref.tell(EngineReachable())
    rig.until(lambda: rig.ready() and cid in env.store.objects(), "synced after retries")
    assert [n.detail["error"][:3] for n in env.notes("full sync postponed")] == ["503"] * 2


def test_resync_recovers_a_request_whose_watch_event_was_lost(env: Env):
    cid = env.docker.create("a")
    rig = Rig(env, max_active=4, idle_timeout_s=60, resync_interval_s=600)
    rig.ref.tell(EngineReachable())
    wait_for(rig.ready, timeout=5, message="ready")
    env.store.client_annotate(cid, "pause")  # the router is never told
    rig.tick(599)
    barrier(rig.ref)
    assert not _consumed(env, cid)
    rig.until(lambda: _consumed(env, cid), "resync ran the action")
    assert env.docker.state_of(cid) == "paused"
    assert env.notes("resync")[0].detail == {"mirrors": 1, "pending": 1}
    assert rig.status.ensured == 1  # and ContainerNamespace/moby was checked


def test_short_retry_runs_without_waiting_for_a_tick(env: Env):
    """The real wake-up timer: a retry due in milliseconds needs no 1 s Tick."""
    cid = env.docker.create("a")
    rig = Rig(env, max_active=4, idle_timeout_s=60, timer=True, clock=time.monotonic)
    rig.ref.tell(Tick())  # the initial full sync is due at once
    wait_for(rig.ready, timeout=5, message="ready")
    env.store.fail_next("patch_metadata", KubeUnavailable(503, "unavailable"))
    _annotate(rig, env, cid, "pause")  # from here on, no Tick is ever sent
    wait_for(lambda: _consumed(env, cid), timeout=5, message="retried by the wake-up")
    assert env.notes("retry scheduled")

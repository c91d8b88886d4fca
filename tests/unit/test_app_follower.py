"""App mode's runtime (docs/contract.md §3.1, §3.5) against the fake apiserver.

The App follower and the app-watch reader run as real actors on
:class:`tests.fakes.app_api.FakeCluster`; a :class:`MirroringSwitch` is applied by a
thread standing in for the supervisor's main loop, and its start callback stands in for
the router (it creates ``ContainerNamespace/moby`` and reports readiness like
``EngineStatus``'s listener). "Docker" is never involved: the cleanup must not need it.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pykka
import pytest

from actors.domain.app_mode import Condition, Decision, Target
from actors.domain.names import (
    ACTION_ANNOTATION,
    CONTAINER_ENGINE_READY,
    CONTAINER_NAMESPACES,
    CONTAINERS,
    FINALIZER,
    IMAGES,
    VOLUMES,
)
from actors.domain.retry_queue import ItemBackoff
from actors.infra.journal import Journal
from actors.ports.kube_port import KubeConflict, KubeForbidden, KubeUnavailable
from actors.runtime.app_follower import (
    ABSENT,
    SUPERSEDED,
    UNCHANGED,
    WRITTEN,
    AppFollower,
    write_engine_condition,
)
from actors.runtime.app_watch import AppWatchReader
from actors.runtime.engine_status import EngineStatus
from actors.runtime.mirroring_switch import MirroringSwitch
from messages.app import AppDeleted, AppObserved, EngineReadiness, MirroringChanged
from messages.base import Message
from messages.journal import Note
from tests.fakes.app_api import FakeCluster
from tests.unit._helpers import Collector, barrier, journal_entries, wait_for

NS = "rancher-desktop"
#: Deadline of every wait (generous: a loaded machine is slow; a pass is quick).
WAIT_S = 30.0


@pytest.fixture(autouse=True)
def _stop_actors() -> Iterator[None]:
    yield
    pykka.ActorRegistry.stop_all()


class Harness:
    """A follower, its switch, a main-loop thread applying it, and the fake cluster."""

    def __init__(self, tmp_path: Path, cluster: FakeCluster | None = None) -> None:
        self.cluster = cluster or FakeCluster()
        self.journal_path = tmp_path / "trace.jsonl"
        self.journal = Journal(path=self.journal_path)
        self.starts: list[int] = []
        self.stops = 0
        self.moved: list[str] = []
        self.follower: pykka.ActorRef | None = None
        self.fail_start: Exception | None = None
        #: What the stand-in router reports after a start (None: nothing).
        self.report: tuple[bool, str, str] | None = (True, "Connected", "Container engine synced")
        self.switch = MirroringSwitch(start=self._start, stop=self._stop, notify=self.tell)
        self._running = True
        self._loop = threading.Thread(target=self._main_loop, daemon=True)
        self._loop.start()

    def _main_loop(self) -> None:
        while self._running:
            self.switch.apply()
            time.sleep(0.005)

    def close(self) -> None:
        self._running = False
        self._loop.join(timeout=WAIT_S)

    def tell(self, message: Message) -> None:
        if self.follower is not None:
            try:
                self.follower.tell(message)
            except pykka.ActorDeadError:
                pass

    def _start(self, epoch: int) -> None:
        if self.fail_start is not None:
            raise self.fail_start
        self.starts.append(epoch)
        if (CONTAINER_NAMESPACES, "moby") not in self.cluster.objects(NS):
            self.cluster.client_add(CONTAINER_NAMESPACES, "moby")
        if self.report is not None:
            ready, reason, message = self.report
            self.tell(EngineReadiness(epoch=epoch, ready=ready, reason=reason, message=message))

    def _stop(self) -> None:
        self.stops += 1

    def start_follower(self, **kwargs: Any) -> pykka.ActorRef:
        kwargs.setdefault("backoff", ItemBackoff(base_s=0.01, cap_s=0.05))
        self.follower = AppFollower.start(
            journal=self.journal,
            api=self.cluster.app_api,
            sweeper=self.cluster.sweeper(NS),
            switch=self.switch,
            namespace=NS,
            on_moved=self.moved.append,
            **kwargs,
        )
        return self.follower

    def observe(self) -> None:
        """What the app-watch reader would send after a change."""
        self.tell(AppObserved(obj=self.cluster.app()))

    def settled(self) -> None:
        """The follower handled everything told before (a barrier, not a sleep)."""
        assert self.follower is not None
        barrier(self.follower, timeout=WAIT_S)

    def notes(self, text: str) -> list[Note]:
        return [
            e
            for e in journal_entries(self.journal_path)
            if isinstance(e, Note) and e.actor == "app" and e.text == text
        ]

    def engine_ready(self) -> dict[str, Any] | None:
        return self.cluster.condition(CONTAINER_ENGINE_READY)

    def wait_ready(self, status: str, reason: str, *, timeout: float = WAIT_S) -> dict[str, Any]:
        def check() -> dict[str, Any] | None:
            cond = self.engine_ready()
            if cond and (cond["status"], cond["reason"]) == (status, reason):
                generation = self.cluster.app()["metadata"]["generation"]
                if cond.get("observedGeneration") == generation:
                    return cond
            return None

        return wait_for(check, timeout=timeout, message=f"ContainerEngineReady={status}/{reason}")


@pytest.fixture
def harness(tmp_path: Path) -> Iterator[Harness]:
    h = Harness(tmp_path)
    yield h
    h.close()


def mirrors(cluster: FakeCluster) -> list[tuple[str, str]]:
    return sorted(cluster.objects(NS))


def fill_namespace(cluster: FakeCluster) -> None:
    """Mirrors of the four kinds, with and without the finalizer, one terminating, one
    hand-made with an action annotation, and an object of another namespace."""
    cluster.client_add(CONTAINERS, "a" * 64, finalizers=[FINALIZER])
    cluster.client_add(
        CONTAINERS, "b" * 64, finalizers=[FINALIZER], annotations={ACTION_ANNOTATION: "bogus"}
    )
    cluster.client_add(CONTAINERS, "hand-made")
    cluster.client_add(IMAGES, "img-1", finalizers=[FINALIZER])
    cluster.client_add(VOLUMES, "vol-1", finalizers=[FINALIZER])
    cluster.client_add(VOLUMES, "vol-2", finalizers=[FINALIZER])
    cluster.client_delete(VOLUMES, "vol-2")  # Terminating, held by our finalizer
    cluster.client_add(CONTAINERS, "c" * 64, "other-namespace", finalizers=[FINALIZER])


# --- running -----------------------------------------------------------------------------------


def test_running_on_moby_starts_mirroring_and_reports_connected(harness: Harness) -> None:
    harness.cluster.client_create_app(vm_running=True)
    harness.start_follower()
    cond = harness.wait_ready("True", "Connected")
    assert cond["message"] == "Container engine synced"
    assert harness.starts == [1]
    assert harness.switch.state().on


def test_not_running_never_starts_and_writes_stopped(harness: Harness) -> None:
    harness.cluster.client_create_app(vm_running=False)
    harness.start_follower()
    cond = harness.wait_ready("False", "Stopped")
    assert cond["message"] == "Container engine stopped"
    assert harness.starts == []


def test_readiness_follows_the_router_of_the_current_run_only(harness: Harness) -> None:
    harness.cluster.client_create_app(vm_running=True)
    harness.start_follower()
    harness.wait_ready("True", "Connected")
    harness.tell(
        EngineReadiness(
            epoch=1, ready=False, reason="ConnectFailed", message="failed to ping Docker: x"
        )
    )
    cond = harness.wait_ready("False", "ConnectFailed")
    assert cond["message"] == "failed to ping Docker: x"
    # Syncing and Stopped are not App reasons; a report of another run is ignored.
    harness.tell(EngineReadiness(epoch=1, ready=False, reason="Syncing", message="s"))
    harness.tell(EngineReadiness(epoch=7, ready=True, reason="Connected", message="c"))
    harness.tell(EngineReadiness(epoch=1, ready=True, reason="Connected", message="back"))
    cond = harness.wait_ready("True", "Connected")
    assert cond["message"] == "back"


def test_a_new_generation_is_stamped_while_connected(harness: Harness) -> None:
    harness.cluster.client_create_app(vm_running=True)
    harness.start_follower()
    harness.wait_ready("True", "Connected")
    harness.cluster.client_patch_spec({"kubernetes": {"enabled": True}})
    harness.observe()
    cond = harness.wait_ready("True", "Connected")
    assert cond["observedGeneration"] == 2
    assert harness.starts == [1]  # not restarted for an unrelated spec change


def test_a_failed_start_is_connect_failed_and_retried(harness: Harness) -> None:
    harness.fail_start = RuntimeError("no router today")
    harness.cluster.client_create_app(vm_running=True)
    harness.start_follower()
    cond = harness.wait_ready("False", "ConnectFailed")
    assert "no router today" in cond["message"]
    assert harness.stops >= 1  # a half start is stopped again
    harness.fail_start = None
    harness.wait_ready("True", "Connected")
    assert harness.switch.state().on


# --- stopping and cleaning up (scenarios 24, 25, 28, 56) ------------------------------------------


def test_stop_deletes_every_mirror_of_the_four_kinds_then_writes_stopped(harness: Harness) -> None:
    harness.cluster.client_create_app(vm_running=True)
    harness.start_follower()
    harness.wait_ready("True", "Connected")
    fill_namespace(harness.cluster)
    harness.cluster.client_set_running(False)
    harness.observe()
    harness.wait_ready("False", "Stopped")
    assert mirrors(harness.cluster) == []
    assert list(harness.cluster.objects("other-namespace")) == [(CONTAINERS, "c" * 64)]
    assert harness.stops == 1 and not harness.switch.state().on
    # Stopped was written only after the last object was gone.
    ops = [op for op, _ in harness.cluster.calls]
    last_write = len(ops) - 1 - ops[::-1].index("patch_conditions")
    assert "delete" not in ops[last_write:]
    # Read the App afresh, after the check that found all four kinds empty.
    assert ops[last_write - 2 : last_write] == ["list", "get_app"]


def test_containerd_is_not_applicable_with_no_mirrors(harness: Harness) -> None:
    harness.cluster.client_create_app(vm_running=True)
    harness.start_follower()
    harness.wait_ready("True", "Connected")
    harness.cluster.client_patch_spec({"containerEngine": {"name": "containerd"}})
    harness.observe()
    cond = harness.wait_ready("True", "NotApplicable")
    assert cond["message"] == "Engine mirroring is only supported with the moby backend"
    assert mirrors(harness.cluster) == []
    assert harness.starts == [1]


def test_already_stopped_costs_no_list_calls_and_a_new_generation_is_stamped(
    harness: Harness,
) -> None:
    harness.cluster.client_create_app(vm_running=False)
    harness.start_follower()
    harness.wait_ready("False", "Stopped")
    lists = len(harness.cluster.calls_of("list"))
    harness.observe()  # an App event that changes nothing for the engine
    harness.observe()
    harness.settled()
    assert len(harness.cluster.calls_of("list")) == lists
    harness.cluster.client_patch_spec({"running": False, "kubernetes": {"enabled": False}})
    harness.observe()
    cond = harness.wait_ready("False", "Stopped")
    assert cond["observedGeneration"] == 2


def test_missing_image_and_volume_kinds_count_as_clean(tmp_path: Path) -> None:
    harness = Harness(tmp_path, FakeCluster(kinds=(CONTAINERS, CONTAINER_NAMESPACES)))
    try:
        harness.cluster.client_create_app(vm_running=True)
        harness.start_follower()
        harness.wait_ready("True", "Connected")
        harness.cluster.client_add(CONTAINERS, "a" * 64, finalizers=[FINALIZER])
        harness.cluster.client_set_running(False)
        harness.observe()
        harness.wait_ready("False", "Stopped")
        assert mirrors(harness.cluster) == []
    finally:
        harness.close()


def test_per_item_errors_are_collected_and_retried(harness: Harness) -> None:
    harness.cluster.client_create_app(vm_running=True)
    harness.start_follower()
    harness.wait_ready("True", "Connected")
    fill_namespace(harness.cluster)
    harness.cluster.fail_next("patch_metadata", KubeForbidden(403, "nope"))
    harness.cluster.fail_next("delete", KubeUnavailable(503, "busy"))
    harness.cluster.client_set_running(False)
    harness.observe()
    # The first pass deletes what it can; the two failures do not stop the others.
    wait_for(
        lambda: len(mirrors(harness.cluster)) <= 2, timeout=WAIT_S, message="the others deleted"
    )
    harness.wait_ready("False", "Stopped")
    assert mirrors(harness.cluster) == []


def test_conflicts_while_stripping_are_read_again(harness: Harness) -> None:
    harness.cluster.client_create_app(vm_running=False)
    harness.cluster.client_add(CONTAINERS, "a" * 64, finalizers=[FINALIZER])
    harness.cluster.fail_next("patch_metadata", KubeConflict(409, "stale"), times=2)
    harness.start_follower()
    harness.wait_ready("False", "Stopped")
    assert mirrors(harness.cluster) == []
    assert harness.cluster.calls_of("get") == [f"{CONTAINERS}/{'a' * 64}"] * 2


def test_a_foreign_finalizer_holds_the_condition_back_until_it_goes(harness: Harness) -> None:
    harness.cluster.client_create_app(vm_running=False)
    harness.cluster.client_add(CONTAINERS, "a" * 64, finalizers=[FINALIZER, "example.com/hold"])
    harness.start_follower(cleanup_timeout_s=0.2, poll_interval_s=0.02)
    wait_for(
        lambda: (
            harness.cluster.objects(NS)
            .get((CONTAINERS, "a" * 64), {})
            .get("metadata", {})
            .get("deletionTimestamp")
        ),
        timeout=WAIT_S,
        message="the object terminating",
    )
    wait_for(
        lambda: any("timed out" in n.detail["error"] for n in harness.notes("cleanup failed")),
        timeout=WAIT_S,
        message="the cleanup giving up on the object left",
    )
    assert harness.engine_ready() is None  # never Stopped while an object is left
    obj = harness.cluster.objects(NS)[(CONTAINERS, "a" * 64)]
    assert obj["metadata"]["finalizers"] == ["example.com/hold"]
    harness.cluster.sweeper(NS).patch_metadata(
        CONTAINERS,
        "a" * 64,
        {"finalizers": None},
        resource_version=obj["metadata"]["resourceVersion"],
    )
    harness.wait_ready("False", "Stopped")


def test_running_again_during_the_cleanup_abandons_it(harness: Harness) -> None:
    harness.cluster.client_create_app(vm_running=True)
    harness.start_follower(cleanup_timeout_s=30, poll_interval_s=0.02)
    harness.wait_ready("True", "Connected")
    harness.cluster.client_add(CONTAINERS, "a" * 64, finalizers=[FINALIZER, "example.com/hold"])
    harness.cluster.client_set_running(False)
    harness.observe()
    wait_for(lambda: harness.stops == 1, timeout=WAIT_S, message="mirroring stopped")
    harness.cluster.client_set_running(True)
    harness.observe()
    wait_for(lambda: harness.starts == [1, 2], timeout=WAIT_S, message="mirroring started again")
    harness.wait_ready("True", "Connected")


def test_condition_write_conflicts_are_retried(harness: Harness) -> None:
    harness.cluster.client_create_app(vm_running=False)
    harness.cluster.fail_next("patch_conditions", KubeConflict(409, "stale"), times=6)
    harness.start_follower()
    harness.wait_ready("False", "Stopped")  # 5 attempts, then a retry with backoff


# --- restarts, deletions, a moved namespace ------------------------------------------------------


def test_a_restarted_follower_keeps_mirroring_without_a_new_start(harness: Harness) -> None:
    harness.cluster.client_create_app(vm_running=True)
    first = harness.start_follower()
    harness.wait_ready("True", "Connected")
    first.stop()
    harness.start_follower()
    harness.settled()
    assert harness.starts == [1]  # still on: no second start
    first = harness.follower
    first.stop()
    # A change while no follower runs (its watch event is lost): the next one reads it.
    harness.cluster.client_set_running(False)
    harness.start_follower()
    harness.wait_ready("False", "Stopped")
    assert harness.starts == [1] and harness.stops == 1


def test_a_restarted_follower_still_cleans_up_after_mirroring(harness: Harness) -> None:
    harness.cluster.client_create_app(vm_running=True)
    first = harness.start_follower()
    harness.wait_ready("True", "Connected")
    first.stop()
    # Mirroring off behind its back, as a crash between the stop and the cleanup leaves it;
    # the App still shows Stopped of an older run, for the current generation.
    harness.switch.request(False)
    wait_for(lambda: not harness.switch.state().on, timeout=WAIT_S, message="switched off")
    harness.cluster.client_add(CONTAINERS, "a" * 64, finalizers=[FINALIZER])
    rv = harness.cluster.app()["metadata"]["resourceVersion"]
    conditions = [
        c for c in harness.cluster.app()["status"]["conditions"] if c["type"] == "Running"
    ]
    conditions.append(
        {
            "type": CONTAINER_ENGINE_READY,
            "status": "False",
            "reason": "Stopped",
            "message": "old",
            "observedGeneration": 1,
            "lastTransitionTime": "2026-01-01T00:00:00Z",
        }
    )
    harness.cluster.app_api.patch_conditions(conditions, resource_version=rv)
    harness.cluster.client_set_running(False)
    harness.start_follower()
    wait_for(
        lambda: not mirrors(harness.cluster), timeout=WAIT_S, message="cleanup despite Stopped"
    )


def test_a_deleted_app_changes_nothing(harness: Harness) -> None:
    harness.cluster.client_create_app(vm_running=True)
    harness.start_follower()
    harness.wait_ready("True", "Connected")
    harness.cluster.client_delete_app()
    harness.tell(AppDeleted())
    harness.settled()
    assert harness.switch.state().on and harness.stops == 0
    assert [n.detail for n in harness.notes("mirroring requested")] == [{"on": True}]


def test_an_app_naming_another_namespace_cleans_ours_up_and_hands_over(harness: Harness) -> None:
    harness.cluster.client_create_app(vm_running=True)
    harness.start_follower()
    harness.wait_ready("True", "Connected")
    harness.cluster.client_add(CONTAINERS, "a" * 64, finalizers=[FINALIZER])
    harness.cluster.client_delete_app()
    harness.cluster.client_create_app(namespace="elsewhere", vm_running=True)
    harness.observe()
    wait_for(lambda: harness.moved == ["elsewhere"], timeout=WAIT_S, message="handed over")
    assert mirrors(harness.cluster) == []
    assert harness.stops == 1
    cond = harness.engine_ready()
    assert cond is None  # nothing is written on an App that is not ours
    harness.observe()
    harness.settled()
    assert harness.moved == ["elsewhere"]  # once


# --- write_engine_condition ------------------------------------------------------------------


def test_write_engine_condition_outcomes() -> None:
    cluster = FakeCluster()
    api = cluster.app_api
    wanted = Condition("False", "Stopped", "Container engine stopped")
    stopped = Decision(Target.CLEAN, NS, wanted)
    assert write_engine_condition(api, wanted, namespace=NS, expected=stopped) == ABSENT
    cluster.client_create_app(vm_running=False)
    assert write_engine_condition(api, wanted, namespace=NS, expected=stopped) == WRITTEN
    assert write_engine_condition(api, wanted, namespace=NS, expected=stopped) == UNCHANGED
    run = Decision(Target.RUN, NS)
    assert write_engine_condition(api, wanted, namespace=NS, expected=run) == SUPERSEDED
    cluster.fail_next("patch_conditions", KubeConflict(409, "stale"), times=5)
    cluster.client_patch_spec({"kubernetes": {"enabled": True}})
    with pytest.raises(KubeConflict):
        write_engine_condition(api, wanted, namespace=NS, expected=stopped)
    assert len(cluster.calls_of("get_app")) >= 5


# --- the App watch reader --------------------------------------------------------------------


def test_app_watch_sends_the_app_and_its_deletion(tmp_path: Path) -> None:
    cluster = FakeCluster()
    sent = Collector()
    ref = AppWatchReader.start(
        journal=Journal(path=tmp_path / "t.jsonl"), api=cluster.app_api, send=sent
    )
    try:
        wait_for(lambda: sent.of(AppDeleted), timeout=WAIT_S, message="no App at the list")
        cluster.client_create_app()
        cluster.client_set_running(True)
        wait_for(lambda: len(sent.of(AppObserved)) == 2, timeout=WAIT_S, message="two observations")
        assert sent.of(AppObserved)[0].event_type == "ADDED"
        cluster.client_delete_app()
        wait_for(lambda: len(sent.of(AppDeleted)) == 2, timeout=WAIT_S, message="deletion")
        assert all(isinstance(m, AppDeleted | AppObserved) for m in sent.items)
    finally:
        ref.stop()


# --- the switch ------------------------------------------------------------------------------


def test_switch_runs_callbacks_on_apply_and_confirms() -> None:
    calls: list[Any] = []
    told = Collector()
    switch = MirroringSwitch(start=calls.append, stop=lambda: calls.append("stop"), notify=told)
    switch.apply()
    assert told.items == []  # nothing requested
    switch.request(True)
    switch.request(False)
    switch.request(True)  # the latest wins
    assert calls == []  # nothing happens outside apply
    switch.apply()
    assert calls == [1] and told.items == [
        MirroringChanged(on=True, epoch=1, msg_id=told.items[0].msg_id)
    ]
    assert switch.state().on and switch.state().dirty
    switch.request(True)
    switch.apply()
    assert calls == [1] and told.items[-1].on  # a repeated request is confirmed, not redone
    switch.mark_clean()
    assert switch.state().dirty  # not while mirroring
    switch.request(False)
    switch.apply()
    assert calls == [1, "stop"] and not told.items[-1].on
    switch.mark_clean()
    assert not switch.state().dirty
    switch.request(True)
    switch.apply()
    assert calls[-1] == 2 and switch.state().epoch == 2
    switch.reset()
    assert calls[-1] == "stop" and not switch.state().on
    assert len(told.items) == 4  # reset tells nobody


def test_switch_failed_start_is_stopped_and_reported() -> None:
    stops: list[int] = []

    def start(_epoch: int) -> None:
        raise RuntimeError("boom")

    told = Collector()
    switch = MirroringSwitch(start=start, stop=lambda: stops.append(1), notify=told)
    switch.request(True)
    switch.apply()
    (message,) = told.items
    assert (message.on, message.epoch, message.error) == (False, 1, "RuntimeError: boom")
    assert stops == [1] and not switch.state().on and switch.state().dirty


def test_switch_request_does_not_wait_for_a_slow_stop() -> None:
    entered, release = threading.Event(), threading.Event()

    def slow_stop() -> None:
        entered.set()
        release.wait(WAIT_S)

    switch = MirroringSwitch(start=lambda _e: None, stop=slow_stop, notify=Collector())
    switch.request(True)
    switch.apply()
    switch.request(False)
    applier = threading.Thread(target=switch.apply, daemon=True)
    applier.start()
    assert entered.wait(WAIT_S)
    switch.request(True)  # from the follower's thread while the stop runs: returns at once
    assert applier.is_alive()  # the stop is still running
    release.set()
    applier.join(timeout=WAIT_S)


# --- EngineStatus's listener ----------------------------------------------------------------


class DownHttp:
    """An apiserver that answers nothing."""

    def request(self, *_args: Any, **_kwargs: Any) -> dict[str, Any]:
        raise KubeUnavailable(None, "down")


def test_engine_status_reports_every_readiness_before_and_whatever_the_write() -> None:
    seen: list[tuple[bool, str, str]] = []
    status = EngineStatus(DownHttp(), NS, listener=lambda *args: seen.append(args))  # type: ignore[arg-type]
    with pytest.raises(KubeUnavailable):
        status.set_ready(True, "Connected", "Container engine synced")
    assert seen == [(True, "Connected", "Container engine synced")]

    def broken(*_args: Any) -> None:
        raise RuntimeError("listener bug")

    status.listener = broken
    with pytest.raises(KubeUnavailable):  # the write still happens (and fails on its own)
        status.set_ready(False, "ConnectFailed", "x")

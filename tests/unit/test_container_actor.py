"""ContainerActor against FakeDocker + FakeMirrorStore.

Contract: docs/contract.md §2.6, §3.4, §3.6, §4.3-§4.7.

The watch is emulated by ``Env.observe`` (tells the actor the stored object, as the
kube-watch reader would for the newest event). Every wait has a deadline.
"""

from __future__ import annotations

import time

import pykka
import pytest

from actors.domain.names import ACTION_ANNOTATION, ACTIONS_MANAGER, DISPATCH_ANNOTATION, FINALIZER
from actors.domain.timefmt import kube_time_from_ns
from actors.infra import faults
from actors.ports.docker_port import DockerError
from actors.ports.kube_port import KubeNotFound
from actors.runtime.actions import (
    DispatchRecord,
    dispatch_record_of,
    encode_dispatch_record,
    not_a_container_error,
)
from actors.runtime.container import RETRY_REASON
from messages.inbound import (
    ContainerGone,
    EmitEvent,
    MirrorObserved,
    Recover,
    StepFailed,
    SyncContainer,
    SyncDone,
)
from tests.unit._helpers import KUBE_TIME, Env, barrier, wait_for


@pytest.fixture(autouse=True)
def _stop_actors():
    yield
    pykka.ActorRegistry.stop_all()
    faults.configure("")


@pytest.fixture
def env(tmp_path) -> Env:
    return Env(tmp_path)


def _synced(env: Env, *, running: bool = True, name: str = "web") -> tuple[str, pykka.ActorRef]:
    cid = env.docker.create(name, running=running)
    ref = env.start_actor(cid)
    ref.tell(SyncContainer(reason="test"))
    barrier(ref)
    assert env.mirror(cid) is not None
    return cid, ref


def _request(env: Env, ref: pykka.ActorRef, cid: str, value: str, **kw) -> None:
    env.store.client_annotate(cid, value, **kw)
    env.observe(ref, cid)


def _done(env: Env, cid: str) -> dict:
    return wait_for(
        lambda: env.annotation(cid) is None and env.last_action(cid),
        timeout=5,
        message="annotation consumed and lastAction written",
    )


def _events(env: Env, reason: str) -> list[EmitEvent]:
    return [e for e in env.events.of(EmitEvent) if e.reason == reason]


# --- sync -----------------------------------------------------------------------------


def test_sync_creates_mirror_with_finalizer_status_and_conditions(env: Env):
    cid = env.docker.create("web")
    ref = env.start_actor(cid)
    ref.tell(SyncContainer(reason="full sync", token=7))
    wait_for(lambda: env.reports.of(SyncDone), timeout=5, message="SyncDone")
    done = env.reports.of(SyncDone)[0]
    assert (done.container_id, done.token, done.ok) == (cid, 7, True)

    obj = env.mirror(cid)
    assert obj is not None
    assert obj["metadata"]["finalizers"] == [FINALIZER]
    status = obj["status"]
    assert status["status"] == "running" and status["name"] == "web"
    assert status["namespace"] == "moby" and status["pid"] > 0
    assert KUBE_TIME.match(status["startedAt"]) and "lastAction" not in status
    conditions = {c["type"]: c for c in status["conditions"]}
    assert conditions["Running"]["status"] == "True"
    assert conditions["Running"]["reason"] == "Running"
    assert conditions["Paused"]["status"] == "False"
    assert conditions["OOMKilled"]["status"] == "Unknown"
    changed = _events(env, "ConditionChanged")
    assert sorted(e.action for e in changed) == sorted(conditions)
    # Each regards the mirror version that shows the change (kubectl describe finds
    # Events by uid; the version keeps later transitions out of this one's series).
    meta = obj["metadata"]
    assert {(e.uid, e.resource_version) for e in changed} == {
        (meta["uid"], meta["resourceVersion"])
    }


def test_resync_of_unchanged_container_keeps_resource_version(env: Env):
    cid, ref = _synced(env)
    rv = env.mirror(cid)["metadata"]["resourceVersion"]
    events_before = len(env.events.items)
    for _ in range(3):
        ref.tell(SyncContainer(reason="again"))
    barrier(ref)
    assert env.mirror(cid)["metadata"]["resourceVersion"] == rv
    assert len(env.events.items) == events_before
    assert not env.store.calls_of("apply_status")[1:]  # only the first sync applied status


def test_state_change_updates_conditions_and_emits_events(env: Env):
    cid, ref = _synced(env)
    env.events._items.clear()
    env.docker.docker_pause_direct(cid)
    ref.tell(SyncContainer(reason="pause"))
    barrier(ref)
    status = env.mirror(cid)["status"]
    assert status["status"] == "paused"
    conditions = {c["type"]: c for c in status["conditions"]}
    assert conditions["Running"]["status"] == "False"
    assert conditions["Running"]["reason"] == "NotRunning"
    assert conditions["Paused"]["status"] == "True"
    assert sorted(e.action for e in _events(env, "ConditionChanged")) == ["Paused", "Running"]


# --- deletion -----------------------------------------------------------------------------


def test_docker_destroy_removes_mirror_without_docker_call(env: Env):
    cid, ref = _synced(env)
    env.docker.docker_remove_direct(cid)
    env.docker.calls.clear()
    ref.tell(ContainerGone())
    barrier(ref)
    assert env.mirror(cid) is None
    assert env.docker.calls == []


def test_user_delete_force_removes_container_then_strips_finalizer(env: Env):
    cid, ref = _synced(env)
    env.store.client_delete(cid)
    assert env.mirror(cid)["metadata"]["deletionTimestamp"]
    env.observe(ref, cid)
    wait_for(lambda: env.mirror(cid) is None, timeout=5, message="mirror gone")
    assert env.docker.calls_of("remove") == [cid]
    assert env.docker.state_of(cid) is None


def test_user_delete_of_already_gone_container_still_strips_finalizer(env: Env):
    cid, ref = _synced(env)
    env.docker.docker_remove_direct(cid)
    env.store.client_delete(cid)
    env.observe(ref, cid)
    wait_for(lambda: env.mirror(cid) is None, timeout=5, message="mirror gone")


def test_user_delete_racing_docker_rm_waits_for_the_destroy_event(env: Env):
    """Docker's 409 "removal ... already in progress" is not a failure.

    Contract: docs/contract.md §7 scenario 37.
    """
    cid, ref = _synced(env)
    env.docker.fail_next(
        "remove",
        DockerError(f"removal of container {cid} is already in progress", status_code=409),
        cid,
    )
    env.store.client_delete(cid)
    env.observe(ref, cid)
    wait_for(
        lambda: env.notes("docker removal already in progress; checking again shortly"),
        timeout=5,
        message="in-progress removal noted",
    )
    # Not an error: a quick retry is scheduled (no Warning), the finalizer stays.
    wait_for(lambda: env.reports.of(StepFailed), timeout=5, message="retry requested")
    assert env.reports.of(StepFailed)[0].retry_after_s > 0
    assert not [e for e in env.events.items if e.type == "Warning"]
    assert env.mirror(cid)["metadata"]["finalizers"] == [FINALIZER]
    # The other client's removal ends: Docker's destroy event strips the finalizer.
    env.docker.docker_remove_direct(cid)
    ref.tell(ContainerGone())
    wait_for(lambda: env.mirror(cid) is None, timeout=5, message="mirror gone")


def test_finalizer_reasserted_after_client_strips_it(env: Env):
    cid, ref = _synced(env)
    env.store.client_strip_finalizer(cid)
    assert "finalizers" not in env.mirror(cid)["metadata"]
    env.observe(ref, cid)  # the watch shows the strip
    env.docker.docker_restart_direct(cid)
    ref.tell(SyncContainer(reason="restart"))
    barrier(ref)
    assert env.mirror(cid)["metadata"]["finalizers"] == [FINALIZER]


def test_finalizer_reasserted_even_before_the_watch_shows_the_strip(env: Env):
    """docs/contract.md §7 scenario 47, lagging watch: the Docker event's sync still restores it."""
    cid, ref = _synced(env)
    env.store.client_strip_finalizer(cid)  # the actor's cached view still has it
    env.docker.docker_restart_direct(cid)
    ref.tell(SyncContainer(reason="restart"))
    barrier(ref)
    assert env.mirror(cid)["metadata"]["finalizers"] == [FINALIZER]


# --- actions: happy paths -------------------------------------------------------------------

# action -> (how to prepare the container, Docker state afterwards)
HAPPY = {
    "start": ("exited", "running"),
    "stop": ("running", "exited"),
    "pause": ("running", "paused"),
    "unpause": ("paused", "running"),
    "restart": ("running", "running"),
}


@pytest.mark.parametrize("action", sorted(HAPPY))
def test_action_happy_path(env: Env, action: str):
    before, after = HAPPY[action]
    cid = env.docker.create("web")
    if before == "exited":
        env.docker.docker_stop_direct(cid)
    elif before == "paused":
        env.docker.docker_pause_direct(cid)
    started = env.docker.inspect(cid)["State"]["StartedAt"]
    ref = env.start_actor(cid)
    ref.tell(SyncContainer(reason="test"))
    barrier(ref)
    env.docker.calls.clear()

    _request(env, ref, cid, action)
    la = _done(env, cid)

    assert la["action"] == action and la["state"] == "Succeeded"
    assert "error" not in la
    assert KUBE_TIME.match(la["observedAt"]) and KUBE_TIME.match(la["completedAt"])
    assert la["observedAt"] <= la["completedAt"]
    assert env.docker.state_of(cid) == after
    assert env.docker.calls_of(action) == [cid]
    if action == "restart":
        assert env.docker.inspect(cid)["State"]["StartedAt"] > started
        assert _record_on(env, cid) is None
    ok = _events(env, "ActionSucceeded")
    assert [(e.action, e.type) for e in ok] == [(action, "Normal")]
    barrier(ref)
    # The happy path never meets a conflict (docs/contract.md §4.5 "no 409 loop").
    assert [e for e in env.effects() if e.outcome == "conflict"] == []
    assert [e.op for e in env.effects() if e.op in ("patch_last_action", "remove_annotation")] == [
        "patch_last_action",
        "remove_annotation",
    ]


def test_failed_action_consumes_annotation(env: Env):
    cid, ref = _synced(env, running=False)
    env.docker.docker_start_direct(cid)
    env.docker.docker_stop_direct(cid)
    _request(env, ref, cid, "pause")
    la = _done(env, cid)
    assert la["action"] == "pause" and la["state"] == "Failed"
    assert la["error"] == f"Error response from daemon: Container {cid} is not running"
    failed = _events(env, "ActionFailed")
    assert [(e.action, e.type) for e in failed] == [("pause", "Warning")]


def test_failed_then_succeeded_action_drops_previous_error(env: Env):
    cid, ref = _synced(env, running=False)
    _request(env, ref, cid, "unpause")
    la = _done(env, cid)
    assert la["error"] == f"cannot unpause container {cid}: not running"
    _request(env, ref, cid, "start")
    la = wait_for(
        lambda: (
            env.annotation(cid) is None
            and (env.last_action(cid) or {}).get("action") == "start"
            and env.last_action(cid)
        ),
        timeout=5,
        message="start recorded",
    )
    assert la["state"] == "Succeeded" and "error" not in la


def test_missing_container_action_fails_with_no_such_container(env: Env):
    cid, ref = _synced(env)
    env.docker.docker_remove_direct(cid)  # destroy event suppressed: mirror stays
    _request(env, ref, cid, "stop")
    la = _done(env, cid)
    assert la["state"] == "Failed"
    assert la["error"] == f"Error response from daemon: No such container: {cid}"


def test_invalid_value_removes_annotation_without_docker_call(env: Env):
    cid, ref = _synced(env)
    env.docker.calls.clear()
    _request(env, ref, cid, "bogus")
    wait_for(lambda: env.annotation(cid) is None, timeout=5, message="annotation removed")
    barrier(ref)
    assert env.docker.calls == []
    assert env.last_action(cid) is None
    assert env.notes("dropping invalid action")


def test_terminating_mirror_with_annotation_skips_action(env: Env):
    """docs/contract.md §7 scenario 35: the action never runs; the delete is forwarded instead."""
    cid, ref = _synced(env)
    env.store.patch_metadata(
        cid,
        {"finalizers": [FINALIZER, "test/blocker"]},
        resource_version=None,
        field_manager="test",
    )
    env.store.client_delete(cid)
    env.store.client_annotate(cid, "stop")
    env.docker.calls.clear()
    env.observe(ref, cid)
    wait_for(
        lambda: env.mirror(cid)["metadata"]["finalizers"] == ["test/blocker"],
        timeout=5,
        message="mirror finalizer stripped",
    )
    barrier(ref)
    assert env.docker.calls_of("stop") == []
    assert env.docker.calls_of("remove") == [cid]
    assert env.last_action(cid) is None
    assert env.annotation(cid) == "stop"


def test_conflict_on_last_action_patch_is_retried_with_one_docker_call(env: Env):
    cid, ref = _synced(env)
    env.docker.calls.clear()
    env.store.conflict_next("patch_status")
    _request(env, ref, cid, "stop")
    la = _done(env, cid)
    assert la["action"] == "stop" and la["state"] == "Succeeded"
    assert env.docker.calls_of("stop") == [cid]
    barrier(ref)
    outcomes = [e.outcome for e in env.effects("patch_last_action")]
    assert outcomes == ["conflict", "ok"]


def test_mirror_deleted_mid_action_ends_quietly(env: Env):
    """docs/contract.md §7 scenario 36: NotFound on the lastAction patch; nothing else written."""
    cid, ref = _synced(env)
    gate = env.docker.block("restart", cid)
    _request(env, ref, cid, "restart")
    assert gate.wait_entered(5)
    # The container stays; the mirror goes (user delete completes elsewhere).
    env.store.client_delete(cid)
    env.store.client_strip_finalizer(cid)
    assert env.mirror(cid) is None
    gate.release()
    barrier(ref)
    assert env.effects("patch_last_action")[-1].outcome == "not_found"
    assert env.effects("remove_annotation") == []
    assert env.deaths.items == []
    assert ref.is_alive()


def test_not_found_on_patch_is_treated_as_gone(env: Env):
    cid, ref = _synced(env)
    env.store.fail_next("patch_status", KubeNotFound(404, "gone", reason="NotFound"))
    env.store.calls.clear()
    _request(env, ref, cid, "stop")
    wait_for(lambda: env.docker.state_of(cid) == "exited", timeout=5, message="stopped")
    barrier(ref)
    assert env.store.calls_of("patch_metadata") == []
    assert env.annotation(cid) == "stop"  # nothing more is written
    assert ref.is_alive() and env.deaths.items == []


def test_concurrent_rewrite_keeps_newer_request(env: Env):
    """Stop in flight, client writes start; both run, start last.

    Contract: docs/contract.md §4.6, §7 scenario 33.
    """
    cid, ref = _synced(env)
    gate = env.docker.block("stop", cid)
    _request(env, ref, cid, "stop")
    assert gate.wait_entered(5)
    env.store.client_annotate(cid, "start")
    env.observe(ref, cid)  # the watch delivers the rewrite while stop is in flight
    gate.release()
    wait_for(
        lambda: (env.last_action(cid) or {}).get("action") == "stop",
        timeout=5,
        message="stop recorded",
    )
    assert env.annotation(cid) == "start"  # the removal guard kept the newer request
    env.observe(ref, cid)  # the watch delivers the lastAction write (annotation = start)
    la = wait_for(
        lambda: (
            env.annotation(cid) is None
            and (env.last_action(cid) or {}).get("action") == "start"
            and env.last_action(cid)
        ),
        timeout=5,
        message="start recorded",
    )
    assert la["state"] == "Succeeded"
    assert env.docker.state_of(cid) == "running"
    assert env.docker.calls_of("stop") == [cid] and env.docker.calls_of("start") == [cid]
    removals = env.effects("remove_annotation")
    assert [e.detail.get("value") for e in removals] == ["start"]


def test_docker_unavailable_keeps_annotation_and_writes_nothing(env: Env):
    cid, ref = _synced(env)
    env.docker.unavailable = True
    _request(env, ref, cid, "stop")
    barrier(ref)
    assert env.annotation(cid) == "stop"
    assert env.last_action(cid) is None
    assert env.notes("step failed; retry scheduled")
    assert [m.retryable for m in env.reports.of(StepFailed)] == [True]
    assert ref.is_alive()
    env.docker.unavailable = False  # the router's retry: a Recover
    ref.tell(Recover(reason=RETRY_REASON))
    la = _done(env, cid)
    assert la["action"] == "stop" and la["state"] == "Succeeded"


def test_name_not_a_container_id_fails_without_docker_call(env: Env):
    env.store.client_create({"metadata": {"name": "hand-made"}})
    ref = env.start_actor("hand-made")
    env.store.client_annotate("hand-made", "stop")
    env.observe(ref, "hand-made")
    la = _done(env, "hand-made")
    assert la["state"] == "Failed"
    assert la["error"] == not_a_container_error("hand-made")
    assert "64-hex" in la["error"]
    assert env.docker.calls == []


def test_stale_mirror_observed_is_ignored(env: Env):
    cid, ref = _synced(env)
    old = env.store.get(cid)
    env.docker.docker_pause_direct(cid)
    ref.tell(SyncContainer(reason="pause"))  # our own write bumps the RV
    barrier(ref)
    stale = dict(old)
    stale["metadata"] = {**old["metadata"], "annotations": {ACTION_ANNOTATION: "stop"}}
    env.docker.calls.clear()
    ref.tell(MirrorObserved(name=cid, obj=stale))
    barrier(ref)
    assert env.docker.calls == []
    assert env.last_action(cid) is None
    assert env.notes("stale mirror view ignored")


# --- exactly-once restart (dispatch record in the cluster) -----------------------------------


def _ago(seconds: float) -> str:
    return kube_time_from_ns(time.time_ns() - int(seconds * 1e9))


def _dispatched(env: Env, cid: str, started_at: str, stamp: str = "") -> None:
    """What an instance leaves on the mirror when it dies right after the record write."""
    record = DispatchRecord(started_at=started_at, annotation_time=stamp)
    env.store.patch_metadata(
        cid,
        {"annotations": {DISPATCH_ANNOTATION: encode_dispatch_record(record)}},
        resource_version=None,
        field_manager=ACTIONS_MANAGER,
    )


def _record_on(env: Env, cid: str) -> str | None:
    return (env.mirror(cid)["metadata"].get("annotations") or {}).get(DISPATCH_ANNOTATION)


def test_restart_writes_its_record_before_docker_and_removes_it_with_the_annotation(env: Env):
    cid, ref = _synced(env)
    before = env.docker.inspect(cid)["State"]["StartedAt"]
    stamp = _ago(0)
    gate = env.docker.block("restart", cid)
    _request(env, ref, cid, "restart", at=stamp)
    assert gate.wait_entered(5)
    # The record is in the cluster while Docker restarts the container ...
    record = dispatch_record_of(env.mirror(cid))
    assert record == DispatchRecord(started_at=before, annotation_time=stamp)
    gate.release()
    la = _done(env, cid)
    assert (la["action"], la["state"]) == ("restart", "Succeeded")
    # ... and left in the very patch that removed the action annotation.
    assert _record_on(env, cid) is None
    removal = [e for e in env.effects("remove_annotation") if e.outcome == "ok"]
    assert len(removal) == 1
    assert env.store.calls_of("patch_metadata").count(cid) == 2  # record, then removal


def test_record_and_started_at_changed_does_not_restart_again(env: Env):
    cid, ref = _synced(env)
    before = env.docker.inspect(cid)["State"]["StartedAt"]
    stamp = _ago(5)
    env.store.client_annotate(cid, "restart", at=stamp)
    _dispatched(env, cid, before, stamp)
    env.docker.docker_restart_direct(cid)  # the dead instance's restart went through
    env.docker.calls.clear()
    env.observe(ref, cid)
    la = _done(env, cid)
    assert la["action"] == "restart" and la["state"] == "Succeeded"
    assert env.docker.calls_of("restart") == []
    assert _record_on(env, cid) is None
    barrier(ref)
    assert env.notes("restart replay judged")[-1].detail == {"verdict": "already_done"}


def test_record_and_started_at_unchanged_after_settle_restarts_again(env: Env, tmp_path):
    env.deps.restart_settle_margin_s = 0.3
    cid = env.docker.create("web", stop_timeout=0)
    ref = env.start_actor(cid)
    ref.tell(SyncContainer(reason="test"))
    barrier(ref)
    before = env.docker.inspect(cid)["State"]["StartedAt"]
    stamp = _ago(120)
    env.store.client_annotate(cid, "restart", at=stamp)
    _dispatched(env, cid, before, stamp)  # sent, but the daemon never restarted it
    env.docker.calls.clear()
    env.observe(ref, cid)
    la = _done(env, cid)
    assert la["state"] == "Succeeded"
    assert env.docker.calls_of("restart") == [cid]
    assert env.docker.inspect(cid)["State"]["StartedAt"] > before
    barrier(ref)
    assert env.notes("restart replay judged")[-1].detail == {"verdict": "run_again"}


def test_annotation_rewritten_after_dispatch_is_a_new_request(env: Env):
    cid, ref = _synced(env)
    before = env.docker.inspect(cid)["State"]["StartedAt"]
    _dispatched(env, cid, before, _ago(60))  # the stamp of the request that was dispatched
    env.docker.docker_restart_direct(cid)  # StartedAt changed: would read as "already done"
    env.docker.calls.clear()
    env.store.client_annotate(cid, "restart")  # managedFields time: now, after the dispatch
    env.observe(ref, cid)
    la = _done(env, cid)
    assert la["state"] == "Succeeded"
    assert env.docker.calls_of("restart") == [cid]
    assert _record_on(env, cid) is None
    barrier(ref)
    assert env.notes("restart replay judged")[-1].detail == {"verdict": "new_request"}


def test_record_without_its_request_is_dropped(env: Env):
    """A client removed the annotation itself while the restart was in flight."""
    cid, ref = _synced(env)
    _dispatched(env, cid, "S0", _ago(5))
    env.observe(ref, cid)
    wait_for(lambda: _record_on(env, cid) is None, timeout=5, message="record dropped")
    assert env.docker.calls_of("restart") == []
    assert env.last_action(cid) is None


def test_unreadable_record_is_ignored_and_the_restart_runs(env: Env):
    cid, ref = _synced(env)
    env.store.patch_metadata(
        cid,
        {"annotations": {DISPATCH_ANNOTATION: "not json"}},
        resource_version=None,
        field_manager="kubectl-edit",
    )
    env.docker.calls.clear()
    _request(env, ref, cid, "restart")
    la = _done(env, cid)
    assert la["state"] == "Succeeded"
    assert env.docker.calls_of("restart") == [cid]
    assert _record_on(env, cid) is None


# --- fault points ----------------------------------------------------------------------------


def test_fault_after_docker_kills_actor_and_recover_completes(env: Env):
    cid, ref = _synced(env)
    faults.configure("action.after_docker=raise")
    _request(env, ref, cid, "stop")
    wait_for(lambda: env.deaths.items, timeout=5, message="on_death called")
    name, error = env.deaths.items[0]
    assert name == f"container/{cid[:12]}" and "injected fault" in error
    wait_for(lambda: not ref.is_alive(), timeout=5, message="actor dead")
    assert env.docker.state_of(cid) == "exited"
    assert env.annotation(cid) == "stop" and env.last_action(cid) is None

    faults.configure("")
    fresh = env.start_actor(cid, incarnation=2)
    fresh.tell(Recover(reason="restart"))
    la = _done(env, cid)
    assert la["action"] == "stop" and la["state"] == "Succeeded"
    assert env.docker.calls_of("stop") == [cid, cid]  # replayed: a 304 the second time
    assert env.mirror(cid)["status"]["status"] == "exited"


def test_fault_in_restart_replay_runs_exactly_once(env: Env):
    cid, ref = _synced(env)
    faults.configure("action.after_docker=raise")
    _request(env, ref, cid, "restart")
    wait_for(lambda: env.deaths.items, timeout=5, message="on_death called")
    assert _record_on(env, cid) is not None  # the record survived the crash
    faults.configure("")
    fresh = env.start_actor(cid, incarnation=2)
    fresh.tell(Recover(reason="restart"))
    la = _done(env, cid)
    assert la["action"] == "restart" and la["state"] == "Succeeded"
    assert env.docker.calls_of("restart") == [cid]
    assert _record_on(env, cid) is None


def test_sync_postponed_when_docker_unavailable(env: Env):
    cid = env.docker.create("web")
    env.docker.unavailable = True
    ref = env.start_actor(cid)
    ref.tell(SyncContainer(reason="full sync", token=3))
    done = wait_for(lambda: env.reports.of(SyncDone), timeout=5, message="SyncDone")[0]
    assert done.ok is False
    assert env.mirror(cid) is None and ref.is_alive()


def test_unexpected_error_in_tell_kills_actor(env: Env):
    _cid, ref = _synced(env)
    env.docker.fail_next("inspect", RuntimeError("bug"))
    ref.tell(SyncContainer(reason="boom"))
    wait_for(lambda: env.deaths.items, timeout=5, message="on_death called")
    assert "RuntimeError: bug" in env.deaths.items[0][1]
    wait_for(lambda: not ref.is_alive(), timeout=5, message="actor dead")


def test_overwrite_while_disconnected_runs_only_the_last_value(env: Env):
    """Pause then unpause written while Docker is down: only unpause runs.

    Contract: docs/contract.md §7 scenario 34.
    """
    cid, ref = _synced(env)
    env.docker.unavailable = True
    _request(env, ref, cid, "pause")
    _request(env, ref, cid, "unpause")
    barrier(ref)
    env.docker.unavailable = False
    env.docker.calls.clear()
    env.observe(ref, cid)
    la = _done(env, cid)
    assert (la["action"], la["state"]) == ("unpause", "Succeeded")
    assert env.docker.calls_of("pause") == [] and env.docker.calls_of("unpause") == []
    assert "pause" not in env.docker.events_of(cid)


def test_repeated_transitions_regard_new_mirror_versions(env: Env):
    """pause, unpause, pause: every outcome and condition change regards the mirror's
    uid and a version no earlier transition regarded (issue 13 point 6)."""
    cid, ref = _synced(env)
    env.events._items.clear()
    for value in ("pause", "unpause", "pause"):
        _request(env, ref, cid, value)
        wait_for(
            lambda value=value: (
                env.annotation(cid) is None
                and (env.last_action(cid) or {}).get("action") == value
                and [e for e in _events(env, "ActionSucceeded") if e.action == value]
            ),
            timeout=5,
            message=f"{value} done",
        )
        ref.tell(SyncContainer(reason="docker event"))
        barrier(ref)
    uid = env.mirror(cid)["metadata"]["uid"]
    outcomes = _events(env, "ActionSucceeded")
    assert [e.action for e in outcomes] == ["pause", "unpause", "pause"]
    changes = [e for e in _events(env, "ConditionChanged") if e.action == "Paused"]
    assert [e.note for e in changes] == [
        "Container is paused",
        "Container is not paused",
        "Container is paused",
    ]
    regarded = [(e.uid, e.resource_version) for e in outcomes + changes]
    assert {u for u, _ in regarded} == {uid}
    # The two pause outcomes (and the two "paused" changes) regard different versions.
    assert outcomes[0].resource_version != outcomes[2].resource_version
    assert changes[0].resource_version != changes[2].resource_version


def test_back_to_back_pause_unpause_never_fails(env: Env):
    """Duplicate deliveries of the same view never turn lastAction Failed.

    Contract: docs/contract.md §7 scenario 43.
    """
    cid, ref = _synced(env)
    for i in range(20):
        value = "pause" if i % 2 == 0 else "unpause"
        env.store.client_annotate(cid, value)
        env.observe(ref, cid)
        env.observe(ref, cid)  # the same (stale) view delivered twice
        la = wait_for(
            lambda value=value: (
                env.annotation(cid) is None
                and (env.last_action(cid) or {}).get("action") == value
                and env.last_action(cid)
            ),
            timeout=5,
            message=f"cycle {i}",
        )
        assert la["state"] == "Succeeded", la
    barrier(ref)
    assert env.docker.state_of(cid) == "running"

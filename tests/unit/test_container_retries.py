"""Container actor: every failed step is reported for a retry, and no outcome is lost.

The router's side (the backoff queue) is in ``test_retry_queue.py`` and
``test_router.py``; here the test plays the router: it reads the actor's
``StepFailed`` reports and sends the ``Recover`` a due retry would send.
"""

from __future__ import annotations

import secrets

import pykka
import pytest

from actors.domain.names import DISPATCH_ANNOTATION, FINALIZER
from actors.ports.docker_port import DockerError, DockerUnavailable
from actors.ports.kube_port import KubeForbidden, KubeInvalid, KubeUnavailable
from actors.runtime.container import RETRY_REASON
from messages.inbound import (
    ContainerGone,
    EmitEvent,
    MirrorObserved,
    Recover,
    StepFailed,
    StepSucceeded,
    SyncContainer,
)
from tests.unit._helpers import Env, barrier, wait_for


@pytest.fixture(autouse=True)
def _stop_actors():
    yield
    pykka.ActorRegistry.stop_all()


@pytest.fixture
def env(tmp_path) -> Env:
    return Env(tmp_path)


def _synced(env: Env, name: str = "web") -> tuple[str, pykka.ActorRef]:
    cid = env.docker.create(name, running=True)
    ref = env.start_actor(cid)
    ref.tell(SyncContainer(reason="test"))
    barrier(ref)
    assert env.mirror(cid) is not None
    return cid, ref


def _request(env: Env, ref: pykka.ActorRef, cid: str, value: str) -> None:
    env.store.client_annotate(cid, value)
    env.observe(ref, cid)


def _failures(env: Env) -> list[StepFailed]:
    return env.reports.of(StepFailed)


def _retry(ref: pykka.ActorRef) -> None:
    """What the router sends when the container's retry is due."""
    ref.tell(Recover(reason=RETRY_REASON))


def _warnings(env: Env, reason: str) -> list[EmitEvent]:
    return [e for e in env.events.of(EmitEvent) if e.type == "Warning" and e.reason == reason]


TRANSIENT = (
    KubeUnavailable(503, "the server is currently unable to handle the request"),
    KubeUnavailable(500, 'Internal error occurred: failed calling webhook "x": connect refused'),
    KubeUnavailable(None, "ReadTimeoutError: read timed out"),
)


@pytest.mark.parametrize("error", TRANSIENT, ids=lambda e: str(e)[:20])
def test_transient_failure_of_the_last_action_write_is_retried_without_a_second_docker_call(
    env: Env, error: Exception
):
    cid, ref = _synced(env)
    env.store.fail_next("patch_status", error)
    _request(env, ref, cid, "stop")
    wait_for(lambda: _failures(env), timeout=5, message="StepFailed reported")
    barrier(ref)
    assert env.annotation(cid) == "stop"  # not consumed without an outcome
    assert env.last_action(cid) is None
    assert env.docker.calls_of("stop") == [cid]

    _retry(ref)
    wait_for(lambda: env.annotation(cid) is None, timeout=5, message="annotation consumed")
    assert env.last_action(cid)["state"] == "Succeeded"
    assert env.docker.calls_of("stop") == [cid]  # the known outcome was recorded again
    wait_for(lambda: env.reports.of(StepSucceeded), timeout=5, message="backoff reset")


def test_transient_failure_of_the_annotation_removal_is_retried(env: Env):
    cid, ref = _synced(env)
    env.store.fail_next("patch_metadata", KubeUnavailable(503, "etcd leader changed"))
    _request(env, ref, cid, "pause")
    wait_for(lambda: _failures(env), timeout=5, message="StepFailed reported")
    barrier(ref)
    assert env.last_action(cid)["action"] == "pause"  # docs/contract.md §4.3: outcome first
    assert env.annotation(cid) == "pause"

    _retry(ref)
    wait_for(lambda: env.annotation(cid) is None, timeout=5, message="annotation consumed")
    assert env.docker.calls_of("pause") == [cid]


def test_persisting_conflicts_on_the_annotation_removal_are_retried(env: Env):
    cid, ref = _synced(env)
    env.store.conflict_next("patch_metadata", n=5)
    _request(env, ref, cid, "pause")
    wait_for(lambda: _failures(env), timeout=5, message="StepFailed reported")
    assert env.annotation(cid) == "pause"
    _retry(ref)
    wait_for(lambda: env.annotation(cid) is None, timeout=5, message="annotation consumed")


def test_finalizer_strip_failure_is_retried_until_the_mirror_is_gone(env: Env):
    cid, ref = _synced(env)
    env.docker.docker_remove_direct(cid)
    env.store.fail_next("patch_metadata", KubeUnavailable(500, "failed calling webhook"))
    ref.tell(ContainerGone())
    wait_for(lambda: _failures(env), timeout=5, message="StepFailed reported")
    assert env.mirror(cid)["metadata"]["finalizers"] == [FINALIZER]
    _retry(ref)
    wait_for(lambda: env.mirror(cid) is None, timeout=5, message="mirror removed")
    wait_for(lambda: env.reports.of(StepSucceeded), timeout=5, message="backoff reset")


def test_forwarded_delete_failing_in_docker_is_retried(env: Env):
    cid, ref = _synced(env)
    env.docker.fail_next("remove", DockerUnavailable("connection reset by peer"), cid)
    env.store.client_delete(cid)
    env.observe(ref, cid)
    wait_for(lambda: _failures(env), timeout=5, message="StepFailed reported")
    assert env.docker.state_of(cid) is not None
    assert env.mirror(cid)["metadata"]["finalizers"] == [FINALIZER]
    _retry(ref)
    wait_for(lambda: env.mirror(cid) is None, timeout=5, message="delete completed")
    assert env.docker.state_of(cid) is None


def test_status_apply_failure_is_retried(env: Env):
    cid, ref = _synced(env)
    env.docker.docker_stop_direct(cid)
    env.store.fail_next("apply_status", KubeUnavailable(429, "too many requests"))
    ref.tell(SyncContainer(reason="die"))
    wait_for(lambda: _failures(env), timeout=5, message="StepFailed reported")
    assert env.mirror(cid)["status"]["status"] == "running"
    _retry(ref)
    wait_for(lambda: env.mirror(cid)["status"]["status"] == "exited", timeout=5, message="synced")


def test_retry_after_of_the_answer_reaches_the_router(env: Env):
    cid, ref = _synced(env)
    busy = KubeUnavailable(429, "too many requests")
    busy.retry_after = 7.0  # type: ignore[attr-defined]
    env.store.fail_next("patch_status", busy)
    _request(env, ref, cid, "stop")
    failed = wait_for(lambda: _failures(env), timeout=5, message="StepFailed reported")
    assert failed[0].retry_after_s == 7.0


# --- outcomes the server refuses -------------------------------------------------------


def test_forbidden_last_action_keeps_the_request_and_warns_once(env: Env):
    cid, ref = _synced(env)
    forbidden = KubeForbidden(403, "containers/status is forbidden")
    forbidden.retryable = False  # type: ignore[attr-defined]
    env.store.fail_next("patch_status", forbidden)
    env.store.fail_next("patch_status", forbidden)
    _request(env, ref, cid, "stop")
    wait_for(lambda: _failures(env), timeout=5, message="first failure")
    _retry(ref)
    wait_for(lambda: len(_failures(env)) == 2, timeout=5, message="second failure")
    assert env.annotation(cid) == "stop"
    assert len(_warnings(env, "SyncFailed")) == 1  # once per failure streak
    _retry(ref)  # permission granted meanwhile
    wait_for(lambda: env.annotation(cid) is None, timeout=5, message="annotation consumed")
    assert env.last_action(cid)["state"] == "Succeeded"
    assert env.docker.calls_of("stop") == [cid]


def test_refused_long_error_is_recorded_shortened(env: Env):
    cid, ref = _synced(env)
    # The first dispatch meets a dead connection: no outcome yet.
    env.docker.fail_next("pause", DockerUnavailable("connection reset"), cid)
    _request(env, ref, cid, "pause")
    wait_for(lambda: _failures(env), timeout=5, message="engine failure reported")
    long_error = "x" * 5000
    env.docker.fail_next("pause", DockerError(long_error, status_code=500), cid)
    env.store.fail_next("patch_status", KubeInvalid(422, "status.lastAction.error: Too long"))
    _retry(ref)
    wait_for(lambda: env.annotation(cid) is None, timeout=5, message="annotation consumed")
    recorded = env.last_action(cid)
    assert recorded["state"] == "Failed"
    assert recorded["error"].startswith("Error response from daemon: xxx")
    assert recorded["error"].endswith("...") and len(recorded["error"]) <= 256


def test_outcome_that_can_never_be_recorded_goes_into_a_warning_event(env: Env):
    cid, ref = _synced(env)
    refused = KubeInvalid(422, 'Container "x" is invalid: status.status: Unsupported value')
    env.store.fail_next("patch_status", refused)
    _request(env, ref, cid, "stop")
    wait_for(lambda: env.annotation(cid) is None, timeout=5, message="request consumed")
    assert env.last_action(cid) is None
    warning = wait_for(
        lambda: _warnings(env, "ActionNotRecorded"), timeout=5, message="Warning Event"
    )[0]
    assert warning.note.startswith("stop succeeded; the outcome could not be written")
    assert "Unsupported value" in warning.note
    barrier(ref)
    assert env.notes("lastAction refused; request consumed, outcome in a Warning Event")


# --- only real mirrors act -------------------------------------------------------------


def test_mirror_named_like_another_containers_name_never_acts_on_it(env: Env):
    ghost = secrets.token_hex(32)
    victim = env.docker.create(ghost, running=True)  # a container *named* like the mirror
    env.store.client_create({"metadata": {"name": ghost}})
    ref = env.start_actor(ghost)
    env.store.client_annotate(ghost, "stop")
    env.observe(ref, ghost)
    recorded = wait_for(lambda: env.last_action(ghost), timeout=5, message="outcome recorded")
    assert recorded["state"] == "Failed"
    assert recorded["error"] == f"Error response from daemon: No such container: {ghost}"
    assert env.docker.state_of(victim) == "running"
    assert env.action_calls() == []


def test_sync_never_copies_another_containers_status(env: Env):
    ghost = secrets.token_hex(32)
    env.docker.create(ghost, running=True)
    env.store.client_create({"metadata": {"name": ghost}})
    ref = env.start_actor(ghost)
    ref.tell(Recover(reason="test"))
    barrier(ref)
    # Not a mirror of any container: treated like a stale mirror, never filled in.
    obj = env.mirror(ghost)
    assert obj is None or "status" not in obj


def test_forwarded_delete_of_a_misnamed_mirror_removes_no_container(env: Env):
    ghost = secrets.token_hex(32)
    victim = env.docker.create(ghost, running=True)
    env.store.client_create({"metadata": {"name": ghost, "finalizers": [FINALIZER]}})
    ref = env.start_actor(ghost)
    env.store.client_delete(ghost)
    obj = env.store.get(ghost)
    ref.tell(
        MirrorObserved(name=ghost, resource_version=obj["metadata"]["resourceVersion"], obj=obj)
    )
    wait_for(lambda: env.mirror(ghost) is None, timeout=5, message="finalizer stripped")
    assert env.docker.state_of(victim) == "running"
    assert env.docker.calls_of("remove") == []


# --- the restart dispatch record --------------------------------------------------------


def test_restart_whose_dispatch_record_cannot_be_written_waits_and_runs_once(env: Env):
    """No restart without its record in the cluster: the request stays and is retried."""
    cid, ref = _synced(env)
    env.store.fail_next("patch_metadata", KubeUnavailable(503, "etcd leader changed"))
    _request(env, ref, cid, "restart")
    wait_for(lambda: _failures(env), timeout=5, message="StepFailed reported")
    barrier(ref)
    assert env.docker.calls_of("restart") == []
    assert env.annotation(cid) == "restart" and env.last_action(cid) is None
    _retry(ref)
    wait_for(lambda: env.annotation(cid) is None, timeout=5, message="request consumed")
    assert (env.last_action(cid)["action"], env.last_action(cid)["state"]) == (
        "restart",
        "Succeeded",
    )
    assert env.docker.calls_of("restart") == [cid]
    assert DISPATCH_ANNOTATION not in (env.mirror(cid)["metadata"].get("annotations") or {})


def test_another_messages_success_does_not_cancel_the_pending_retry(env: Env):
    """Found by the real apiserver: a no-op watch event after a failed finalizer strip
    reported success, the router dropped the retry, and the mirror stayed forever."""
    cid, ref = _synced(env)
    env.docker.docker_remove_direct(cid)
    env.store.fail_next("patch_metadata", KubeUnavailable(500, "failed calling webhook"))
    ref.tell(ContainerGone())
    wait_for(lambda: _failures(env), timeout=5, message="StepFailed reported")
    env.observe(ref, cid)  # nothing to do for this view: succeeds
    barrier(ref)
    assert env.reports.of(StepSucceeded) == []
    _retry(ref)
    wait_for(lambda: env.mirror(cid) is None, timeout=5, message="mirror removed by the retry")
    wait_for(lambda: env.reports.of(StepSucceeded), timeout=5, message="backoff reset")

"""Crash tests for actions: issue 4's acceptance ("the SIGKILL tests kill the process
between each pair of steps ..."), docs/contract.md §4.3/§4.7 and §7 scenario 44, and the
exactly-once restart rule of docs/actions.md.

The service SIGKILLs itself at a fault point (``DOCKMIRROR_FAULTS=POINT=kill``); the test
starts it again without the fault and checks the end state against Docker's own record:
for ``restart``, exactly one Docker ``restart`` event per request. The restart's
dispatch record lives on the Container itself (annotation ``DISPATCH_ANNOTATION``), so what
survives the crash is in the cluster, not in the state directory.
"""

from __future__ import annotations

import signal
import time

import pytest
from kubernetes import client as k8s
from kubernetes.client.rest import ApiException

from actors.domain.names import ACTION_ANNOTATION, DISPATCH_ANNOTATION
from tests.support.service import Service
from tests.support.wait import wait_for

BEFORE_DOCKER = "action.before_docker"
AFTER_DOCKER = "action.after_docker"
AFTER_LAST_ACTION = "action.after_last_action"
AFTER_ANNOTATION_REMOVED = "action.after_annotation_removed"
POINTS = (BEFORE_DOCKER, AFTER_DOCKER, AFTER_LAST_ACTION, AFTER_ANNOTATION_REMOVED)
ACTIONS = ("restart", "stop", "pause")
# Docker's state after each action on a running container.
EXPECTED_STATE = {"restart": "running", "stop": "exited", "pause": "paused"}


# --- helpers ------------------------------------------------------------------------------
def annotation(obj: dict) -> str | None:
    return ((obj.get("metadata") or {}).get("annotations") or {}).get(ACTION_ANNOTATION)


def last_action(obj: dict) -> dict:
    return (obj.get("status") or {}).get("lastAction") or {}


def docker_state(docker_client, container_id: str) -> dict:
    return docker_client.api.inspect_container(container_id)["State"]


def docker_status(docker_client, container_id: str) -> str:
    state = docker_state(docker_client, container_id)
    return "paused" if state.get("Paused") else state["Status"]


def restart_events(docker_client, container_id: str, since: int) -> list[dict]:
    """Docker's own record of ``restart`` events for a container since ``since`` (a finite
    read: ``until`` lies one second ahead, so an event being logged right now is seen)."""
    until = int(time.time()) + 1
    return list(
        docker_client.api.events(
            since=since,
            until=until,
            decode=True,
            filters={"container": container_id, "event": "restart"},
        )
    )


def wait_done(svc: Service, container_id: str, action: str, timeout: float = 40.0) -> dict:
    """Wait until the annotation is gone and ``lastAction`` reports ``action``."""
    obj = svc.wait_mirror(
        container_id,
        lambda m: annotation(m) is None and last_action(m).get("action") == action,
        timeout=timeout,
        message=f"{action} completed (annotation gone, lastAction recorded)",
    )
    la = last_action(obj)
    assert (la["action"], la["state"]) == (action, "Succeeded"), la
    assert "error" not in la, la
    return obj


def dispatch_record(svc: Service, container_id: str) -> str | None:
    """The restart dispatch record on the mirror (JSON text), or None."""
    obj = svc.mirror(container_id) or {}
    return ((obj.get("metadata") or {}).get("annotations") or {}).get(DISPATCH_ANNOTATION)


def verdicts(svc: Service, container_id: str) -> list[str]:
    return [
        e.detail.get("verdict")
        for e in svc.journal()
        if getattr(e, "text", "") == "restart replay judged" and e.container_id == container_id
    ]


def kill_at(service_factory, point: str) -> Service:
    svc = service_factory(start=False)
    svc.start(env={"DOCKMIRROR_FAULTS": f"{point}=kill"})
    return svc


def wait_killed(svc: Service) -> None:
    code = svc.wait_exit(timeout=30)
    assert code == -signal.SIGKILL, f"service exited with {code}, not by SIGKILL"
    assert "fault injection" in svc.log_since_start()


# --- SIGKILL between each pair of steps (issue 4, docs/contract.md §4.7, scenario 44) ---
@pytest.mark.parametrize("action", ACTIONS)
@pytest.mark.parametrize("point", POINTS)
def test_sigkill_at_each_step_completes_once(
    service_factory, run_container, docker_client, point, action
):
    c = run_container(stop_timeout=1)
    svc = kill_at(service_factory, point)
    svc.wait_status(c.id, "running")
    started_before = docker_state(docker_client, c.id)["StartedAt"]
    since = int(time.time()) - 1
    svc.annotate(c.id, action)
    wait_killed(svc)

    # The process died exactly where the fault point says.
    obj = svc.mirror(c.id)
    assert obj is not None
    if point == BEFORE_DOCKER:
        assert annotation(obj) == action
        assert docker_status(docker_client, c.id) == "running"
        assert docker_state(docker_client, c.id)["StartedAt"] == started_before
    elif point == AFTER_DOCKER:  # scenario 44: between the Docker call and the status patch
        assert annotation(obj) == action
        assert last_action(obj) == {}
    elif point == AFTER_LAST_ACTION:
        assert annotation(obj) == action
        assert (last_action(obj)["action"], last_action(obj)["state"]) == (action, "Succeeded")
    else:
        assert annotation(obj) is None
    if point != BEFORE_DOCKER:
        assert docker_status(docker_client, c.id) == EXPECTED_STATE[action]
    if action == "restart":
        # The dispatch record was written before the Docker call and leaves only with
        # the annotation, in the same patch.
        if point == AFTER_ANNOTATION_REMOVED:
            assert dispatch_record(svc, c.id) is None
        else:
            assert dispatch_record(svc, c.id) is not None

    svc.start()  # same state dir, no fault
    wait_done(svc, c.id, action)
    svc.wait_status(c.id, EXPECTED_STATE[action])
    assert docker_status(docker_client, c.id) == EXPECTED_STATE[action]
    if action == "restart":
        assert docker_state(docker_client, c.id)["StartedAt"] != started_before
        events = restart_events(docker_client, c.id, since)
        assert len(events) == 1, f"Docker restarted {len(events)} times: {events}"
        assert dispatch_record(svc, c.id) is None
        calls = [e for e in svc.effects(c.id, "restart") if e.outcome == "ok"]
        assert len(calls) == 1, calls
        if point in (AFTER_DOCKER, AFTER_LAST_ACTION):
            assert verdicts(svc, c.id) == ["already_done"]
        elif point == BEFORE_DOCKER:
            assert verdicts(svc, c.id) == ["run_again"]
        else:  # the annotation and its record were gone: nothing to judge
            assert verdicts(svc, c.id) == []
    assert svc.running


def test_sigkill_after_docker_with_long_grace(service_factory, run_container, docker_client):
    """A 5 s grace: the replay must not wait for (or repeat) a restart that already ran."""
    c = run_container(stop_timeout=5)
    svc = kill_at(service_factory, AFTER_DOCKER)
    svc.wait_status(c.id, "running")
    started_before = docker_state(docker_client, c.id)["StartedAt"]
    since = int(time.time()) - 1
    svc.annotate(c.id, "restart")
    wait_killed(svc)
    assert docker_state(docker_client, c.id)["StartedAt"] != started_before
    svc.start()
    wait_done(svc, c.id, "restart")
    events = restart_events(docker_client, c.id, since)
    assert len(events) == 1, f"Docker restarted {len(events)} times: {events}"
    assert verdicts(svc, c.id) == ["already_done"]


def test_sigkill_during_docker_restart_runs_it_exactly_once(
    service_factory, run_container, docker_client
):
    """The client dies while Docker is inside the restart's grace period.

    The restarted service cannot tell from one look whether the daemon is still stopping
    the container, completed the restart, or abandoned it; it waits until StartedAt moves
    or grace + margin has passed. Measured on this devenv (Docker 20.10, no ``t`` sent, so
    the container's StopTimeout applies): the daemon completes the restart after its
    client died (``kill kill die stop start restart``), and the replay judges it done.
    Had it abandoned it, the replay would run it again. Either way: exactly one
    ``restart`` event.
    """
    # A grace period long enough that a slow machine still kills the service inside it.
    c = run_container(stop_timeout=10)
    svc = service_factory()
    svc.wait_status(c.id, "running")
    started_before = docker_state(docker_client, c.id)["StartedAt"]
    since = int(time.time()) - 1
    svc.annotate(c.id, "restart")
    wait_for(
        lambda: svc.docker_events_seen(c.id, "kill") >= 1,
        timeout=30,
        message="restart in flight (Docker sent SIGTERM)",
    )
    svc.kill()
    assert dispatch_record(svc, c.id) is not None
    assert annotation(svc.mirror(c.id)) == "restart"

    svc.start()
    wait_done(svc, c.id, "restart", timeout=45)
    assert docker_status(docker_client, c.id) == "running"
    assert docker_state(docker_client, c.id)["StartedAt"] != started_before
    events = restart_events(docker_client, c.id, since)
    assert len(events) == 1, f"Docker restarted {len(events)} times: {events}"
    assert verdicts(svc, c.id) in (["run_again"], ["already_done"])
    assert dispatch_record(svc, c.id) is None


# --- actor crash, not process crash ---------------------------------------------------------
@pytest.mark.parametrize("action", ACTIONS)
def test_actor_crash_after_docker_recovers(service_factory, run_container, docker_client, action):
    c = run_container(stop_timeout=1)
    svc = service_factory(env={"DOCKMIRROR_FAULTS": f"{AFTER_DOCKER}=raise"})
    pid = svc.proc.pid
    svc.wait_status(c.id, "running")
    started_before = docker_state(docker_client, c.id)["StartedAt"]
    since = int(time.time()) - 1
    svc.annotate(c.id, action)
    wait_done(svc, c.id, action)
    assert svc.running and svc.proc.pid == pid, "the process must survive an actor crash"
    svc.wait_status(c.id, EXPECTED_STATE[action])
    died = [
        e
        for e in svc.journal()
        if getattr(e, "text", "") == "actor died" and e.container_id == c.id
    ]
    assert len(died) == 1 and "injected fault" in died[0].detail["error"], died
    if action == "restart":
        assert docker_state(docker_client, c.id)["StartedAt"] != started_before
        events = restart_events(docker_client, c.id, since)
        assert len(events) == 1, f"Docker restarted {len(events)} times: {events}"
        assert verdicts(svc, c.id) == ["already_done"]
    assert svc.running


# --- a new request is never swallowed -------------------------------------------------------
def test_second_restart_request_runs_again(service, run_container, docker_client):
    c = run_container(stop_timeout=1)
    service.wait_status(c.id, "running")
    since = int(time.time()) - 1
    la = service.request(c.id, "restart")
    assert (la["action"], la["state"]) == ("restart", "Succeeded")
    la = service.request(c.id, "restart")
    assert (la["action"], la["state"]) == ("restart", "Succeeded")
    events = restart_events(docker_client, c.id, since)
    assert len(events) == 2, f"Docker restarted {len(events)} times: {events}"


def test_new_restart_request_after_a_crash_after_the_removal_runs(
    service_factory, run_container, docker_client, api_client
):
    """Killed right after the annotation removal: the dispatch record left in the same
    patch, so a new request written while the service is down is not mistaken for a
    replay (no judgement at all) and runs.

    In webhook mode a crash leaves the webhook configuration, which refuses every write
    in the namespace (docs/admission.md), so the test removes it first, like an operator
    would; the service registers it again on start. In policy mode (the default on the
    devenv) there is none, and the policy lets a valid value through.
    """
    c = run_container(stop_timeout=1)
    svc = kill_at(service_factory, AFTER_ANNOTATION_REMOVED)
    svc.wait_status(c.id, "running")
    since = int(time.time()) - 1
    svc.annotate(c.id, "restart")
    wait_killed(svc)
    assert dispatch_record(svc, c.id) is None
    try:
        k8s.AdmissionregistrationV1Api(api_client).delete_validating_webhook_configuration(
            f"dockmirror-{svc.namespace}"
        )
    except ApiException as exc:
        if exc.status != 404:
            raise
    # The deletion reaches the admission plugin after a moment.
    wait_for(
        lambda: svc.annotate(c.id, "restart"),
        timeout=30,
        interval=0.2,
        ignore=(ApiException,),
        message="annotation write accepted with the webhook configuration deleted",
    )
    svc.start()
    wait_done(svc, c.id, "restart")
    events = restart_events(docker_client, c.id, since)
    assert len(events) == 2, f"Docker restarted {len(events)} times: {events}"
    assert verdicts(svc, c.id) == []

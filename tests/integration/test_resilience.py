"""Supervision and outages against the real devenv (issue 3 acceptance, docs/contract.md §7 34, 45).

Some tests here stop and restart the devenv's Docker engine or kube-apiserver
(``scripts/devenv stop-docker`` ...). They need a devenv whose components ``up``
started; the devenv refuses to stop an engine it did not start, and the test then
fails with that message rather than skipping.
"""

from __future__ import annotations

import subprocess
import time

import docker
import pytest

from actors.domain.names import ACTION_ANNOTATION
from messages.journal import Note
from tests.support.devenv import DEVENV_SCRIPT, REPO_ROOT
from tests.support.wait import wait_for


def devenv(*args: str) -> None:
    result = subprocess.run(
        [str(DEVENV_SCRIPT), *args], capture_output=True, text=True, cwd=REPO_ROOT, timeout=180
    )
    assert result.returncode == 0, (
        f"scripts/devenv {' '.join(args)} failed:\n{result.stdout}\n{result.stderr}"
    )


@pytest.fixture
def engine_outage():
    """Stop the Docker engine for the test body's outage window; always started again."""
    stopped = []

    def stop():
        devenv("stop-docker")
        stopped.append(True)

    def start():
        devenv("start-docker")
        stopped.clear()

    yield stop, start
    if stopped:
        devenv("start-docker")


@pytest.fixture
def apiserver_outage():
    stopped = []

    def stop():
        devenv("stop-apiserver")
        stopped.append(True)

    def start():
        devenv("start-apiserver")
        stopped.clear()

    yield stop, start
    if stopped:
        devenv("start-apiserver")


#: The router's restart notes for an actor found dead after its on_start raised.
ON_START_FAILURE_NOTES = frozenset(
    {"died in on_start", "found dead on delivery", "found dead by liveness sweep"}
)


def notes(service, text):
    return [e for e in service.journal() if isinstance(e, Note) and text in e.text]


def test_container_actor_that_raises_is_restarted(service_factory, run_container):
    svc = service_factory(env={"DOCKMIRROR_FAULTS": "container.on_receive=raise@3"})
    containers = [run_container() for _ in range(3)]
    for c in containers:
        svc.wait_status(c.id, "running")
    wait_for(lambda: notes(svc, "actor died"), timeout=20, message="a container actor died")
    c = containers[0]
    c.pause()
    svc.wait_status(c.id, "paused")
    assert svc.running


def test_container_actor_on_start_failure_is_noticed(service_factory, run_container):
    """pykka reports on_start failures to nobody: the router must notice by itself."""
    svc = service_factory(env={"DOCKMIRROR_FAULTS": "container.on_start=raise@2"})
    containers = [run_container() for _ in range(3)]
    for c in containers:
        svc.wait_status(c.id, "running", timeout=40)
    # The router meets an actor whose on_start failed in one of three places, whichever
    # comes first (actors/runtime/router.py): telling it its first messages (_start_child), the
    # next delivery (_deliver) or the tick's liveness sweep. Each is a correct outcome.
    # An on_start failure never runs on_failure, so no "ActorFailed" error text is legal.
    wait_for(
        lambda: [
            e
            for e in notes(svc, "restart scheduled")
            if e.detail.get("error") in ON_START_FAILURE_NOTES
        ],
        timeout=20,
        message="restart after an on_start failure",
    )
    assert svc.running


def test_router_crash_is_restarted_by_supervisor(service_factory, run_container):
    svc = service_factory(env={"DOCKMIRROR_FAULTS": "router.on_receive=raise@8"})
    first = run_container()
    svc.wait_status(first.id, "running")
    second = run_container()
    svc.wait_status(second.id, "running", timeout=40)
    wait_for(
        lambda: [e for e in notes(svc, "restarting") if e.detail.get("child") == "router"],
        timeout=20,
        message="supervisor restarted the router",
    )
    assert svc.running


def test_router_on_start_failure_is_noticed(service_factory, run_container):
    svc = service_factory(env={"DOCKMIRROR_FAULTS": "router.on_start=raise@1"})
    c = run_container()
    svc.wait_status(c.id, "running")
    assert [e for e in notes(svc, "restarting") if e.detail.get("child") == "router"]


def test_restart_budget_exhausted_exits_non_zero(service_factory):
    svc = service_factory(
        extra_args=("--restart-budget", "0"),
        env={"DOCKMIRROR_FAULTS": "router.on_start=raise@1"},
        start=False,
    )
    svc.start(wait_ready=False)
    code = svc.wait_exit(timeout=60)
    assert code == 3
    assert "restart budget exhausted" in svc.log_since_start()


def test_sigterm_stops_cleanly_and_keeps_mirrors(service, run_container):
    c = run_container()
    service.wait_status(c.id, "running")
    started = time.monotonic()
    assert service.stop() == 0
    assert time.monotonic() - started < 10
    assert service.mirror(c.id) is not None
    assert service.engine_ready() == ("False", "Stopped")


@pytest.mark.timeout(300)  # an engine stop and start on top of the usual waits
def test_docker_engine_restart_mid_run(service, run_container, docker_client, engine_outage):
    """Engine restart: ConnectFailed while down, mirrors kept; afterwards mirrors match
    Docker and EngineReady=True. Scenario 45: a stop written while the daemon is down runs
    after the reconnect. Scenario 34: pause then unpause written while down: only unpause
    runs, the container never pauses."""
    stop_engine, start_engine = engine_outage
    plain = run_container()
    always = [run_container(restart_policy={"Name": "always"}) for _ in range(2)]
    for c in [plain, *always]:
        service.wait_status(c.id, "running")
    stop_engine()
    wait_for(
        lambda: service.engine_ready() == ("False", "ConnectFailed"),
        timeout=30,
        message="EngineReady=False/ConnectFailed",
    )
    assert service.mirror(plain.id) is not None  # mirrors are kept
    service.annotate(always[0].id, "stop")  # scenario 45
    service.annotate(always[1].id, "pause")  # scenario 34
    service.annotate(always[1].id, "unpause")
    since = int(time.time())
    start_engine()
    wait_for(
        lambda: service.engine_ready() == ("True", "Connected"),
        timeout=60,
        message="EngineReady=True after reconnect",
    )
    la = service.wait_mirror(
        always[0].id,
        lambda m: ACTION_ANNOTATION not in (m["metadata"].get("annotations") or {}),
        timeout=30,
        message="pending stop consumed",
    )["status"]["lastAction"]
    assert (la["action"], la["state"]) == ("stop", "Succeeded")
    la = service.wait_mirror(
        always[1].id,
        lambda m: ACTION_ANNOTATION not in (m["metadata"].get("annotations") or {}),
        timeout=30,
        message="pending unpause consumed",
    )["status"]["lastAction"]
    assert la["action"] == "unpause"
    pauses = list(
        docker_client.api.events(
            since=since,
            until=int(time.time()) + 1,
            decode=True,
            filters={"container": always[1].id, "event": "pause"},
        )
    )
    assert pauses == []
    # Mirrors match Docker for every container of this test.
    for c in [plain, *always]:
        want = docker_client.containers.get(c.id).status
        service.wait_status(c.id, want, timeout=30)


@pytest.mark.timeout(300)  # an apiserver stop and start on top of the usual waits
def test_apiserver_restart_mid_run_loses_no_docker_change(
    service, run_container, docker_client, apiserver_outage
):
    stop_api, start_api = apiserver_outage
    to_stop = run_container(stop_timeout=1)
    to_remove = run_container()
    for c in (to_stop, to_remove):
        service.wait_status(c.id, "running")
    stop_api()
    # Docker changes while the apiserver is away.
    to_stop.stop(timeout=0)
    to_remove.remove(force=True)
    created = run_container()
    start_api()
    service.wait_status(to_stop.id, "exited", timeout=60)
    service.wait_gone(to_remove.id, timeout=60)
    service.wait_status(created.id, "running", timeout=60)
    wait_for(
        lambda: service.engine_ready() == ("True", "Connected"),
        timeout=30,
        message="EngineReady=True",
    )
    assert service.running
    with pytest.raises(docker.errors.NotFound):
        docker_client.containers.get(to_remove.id)

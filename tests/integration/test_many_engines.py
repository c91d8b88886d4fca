"""Many engines, one cluster (issue 11, point 5).

Three extra Docker engines (``scripts/devenv engine-up``), three services, three
namespaces of the one devenv apiserver. Each namespace must mirror only its own
engine, an action must reach only its own engine, and an engine outage must affect
only its own namespace. The main engine gets one labelled container, which must appear
in none of the three namespaces.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator

import docker
import pytest
from kubernetes import client as k8s
from kubernetes.client.rest import ApiException

from tests.conftest import ContainerFactory
from tests.support.devenv import unique_name
from tests.support.engines import (
    QUICK_STOP_SLEEP,
    ExtraEngine,
    engines_down,
    engines_remove,
    engines_up,
)
from tests.support.service import Service
from tests.support.wait import wait_for

ENGINE_NAMES = ("mea", "meb", "mec")
#: Issue 10's bound for noticing a lost engine, plus a margin for a loaded 2-core machine.
OUTAGE_DETECTION_S = 30.0


@pytest.fixture
def extra_engines() -> Iterator[list[ExtraEngine]]:
    """Three fresh extra engines (leftovers of an earlier run are removed first)."""
    engines_remove(*ENGINE_NAMES)
    engines = engines_up(*ENGINE_NAMES)
    try:
        yield engines
    finally:
        engines_remove(*ENGINE_NAMES)


@pytest.fixture
def extra_namespaces(api_client: k8s.ApiClient, request) -> Iterator[Callable[[str], str]]:
    """``make(hint)`` -> a unique namespace name (the service creates it); deleted after."""
    made: list[str] = []

    def make(hint: str) -> str:
        name = unique_name("t", f"{request.node.name[:20]}-{hint}")
        made.append(name)
        return name

    yield make
    core = k8s.CoreV1Api(api_client)
    for name in made:
        try:
            core.delete_namespace(name)
        except ApiException as e:
            if e.status != 404:
                raise


def engine_ids(client: docker.DockerClient) -> set[str]:
    """Every container of the engine, running or not."""
    return {c.id for c in client.containers.list(all=True, ignore_removed=True)}


def mirror_names(svc: Service) -> set[str]:
    return {m["metadata"]["name"] for m in svc.mirrors()}


def docker_running(client: docker.DockerClient, cid: str) -> bool:
    return bool(client.api.inspect_container(cid)["State"]["Running"])


@pytest.mark.timeout(420)
def test_three_engines_three_namespaces(
    extra_engines, extra_namespaces, service_factory, run_container, request
):
    clients = {e.name: e.client() for e in extra_engines}
    factories = {
        n: ContainerFactory(c, unique_name("t", request.node.name, max_len=80))
        for n, c in clients.items()
    }
    try:
        _run(extra_engines, clients, factories, extra_namespaces, service_factory, run_container)
    finally:
        for f in factories.values():
            f.cleanup()
        for c in clients.values():
            c.close()


def _run(engines, clients, factories, extra_namespaces, service_factory, run_container):
    a, b, c = (e.name for e in engines)
    svcs: dict[str, Service] = {
        e.name: service_factory(
            ns=extra_namespaces(e.name), extra_args=("--docker-host", e.docker_host)
        )
        for e in engines
    }

    # --- each namespace mirrors only its own engine ----------------------------------
    shared = f"web-{uuid.uuid4().hex[:6]}"  # the same container name on every engine
    web = {n: factories[n](QUICK_STOP_SLEEP, name=shared) for n in svcs}
    only = {n: factories[n](QUICK_STOP_SLEEP, name=f"only-{n}") for n in svcs}
    stopped = {n: factories[n](QUICK_STOP_SLEEP, create_only=True) for n in svcs}
    on_main = run_container()  # the main engine: mirrored by none of the three
    for n, svc in svcs.items():
        wait_for(
            lambda svc=svc, n=n: mirror_names(svc) == engine_ids(clients[n]),
            timeout=60,
            message=f"namespace {svc.namespace} mirrors exactly engine {n}",
        )
        assert {web[n].id, only[n].id, stopped[n].id} <= mirror_names(svc)
        assert on_main.id not in mirror_names(svc)
        assert svc.wait_status(web[n].id, "running")["status"]["status"] == "running"
    all_ids = [engine_ids(cl) for cl in clients.values()]
    assert not (all_ids[0] & all_ids[1] or all_ids[0] & all_ids[2] or all_ids[1] & all_ids[2])

    # --- an action reaches only its own engine ---------------------------------------
    last = svcs[b].request(web[b].id, "stop")
    assert (last.get("action"), last.get("state")) == ("stop", "Succeeded"), last
    assert not docker_running(clients[b], web[b].id)
    assert svcs[b].effects(web[b].id, "stop"), "the journal names the Docker stop call"
    for n in (a, c):
        assert docker_running(clients[n], web[n].id), f"{shared} on engine {n} was stopped"
        assert svcs[n].mirror(web[n].id)["status"]["status"] == "running"
        assert svcs[n].effects(op="stop") == [], f"service of engine {n} called stop"
    svcs[b].wait_status(web[b].id, "exited")

    last = svcs[a].request(only[a].id, "pause")
    assert (last.get("action"), last.get("state")) == ("pause", "Succeeded"), last
    assert clients[a].api.inspect_container(only[a].id)["State"]["Paused"]
    svcs[a].wait_status(only[a].id, "paused")
    assert svcs[a].effects(only[a].id, "pause")
    for n in (b, c):
        assert not clients[n].api.inspect_container(only[n].id)["State"]["Paused"]
        assert svcs[n].effects(op="pause") == []

    # --- an engine outage affects only its own namespace -----------------------------
    engines_down(c)
    wait_for(
        lambda: svcs[c].engine_ready() == ("False", "ConnectFailed"),
        timeout=OUTAGE_DETECTION_S,
        interval=0.2,
        message=f"EngineReady=False/ConnectFailed in {svcs[c].namespace}",
    )
    for n in (a, b):
        assert svcs[n].engine_ready() == ("True", "Connected"), f"engine {n} affected"
    # A and B keep serving actions while C is down.
    last = svcs[a].request(only[a].id, "unpause")
    assert (last.get("action"), last.get("state")) == ("unpause", "Succeeded"), last
    last = svcs[b].request(web[b].id, "start")
    assert (last.get("action"), last.get("state")) == ("start", "Succeeded"), last
    assert docker_running(clients[b], web[b].id)
    svcs[b].wait_status(web[b].id, "running")
    for n in (a, b):
        assert svcs[n].engine_ready() == ("True", "Connected"), f"engine {n} affected"
    assert svcs[c].engine_ready() == ("False", "ConnectFailed")
    # C's mirrors are kept (stale) while its engine is away.
    assert {web[c].id, only[c].id, stopped[c].id} <= mirror_names(svcs[c])

    # --- the engine comes back: its namespace recovers --------------------------------
    engines_up(c)
    wait_for(
        lambda: svcs[c].engine_ready() == ("True", "Connected"),
        timeout=90,
        interval=0.2,
        message=f"EngineReady=True in {svcs[c].namespace} after the engine returned",
    )
    # The engine's shutdown stopped C's containers; the full sync shows it.
    svcs[c].wait_status(web[c].id, "exited", timeout=60)
    assert mirror_names(svcs[c]) == engine_ids(clients[c])
    last = svcs[c].request(web[c].id, "start")
    assert (last.get("action"), last.get("state")) == ("start", "Succeeded"), last
    assert docker_running(clients[c], web[c].id)
    assert docker_running(clients[a], web[a].id)
    for n in (a, b, c):
        assert svcs[n].engine_ready() == ("True", "Connected")
        assert svcs[n].running

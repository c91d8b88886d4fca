"""Regression for the bug scripts/chaos actor-crash found: a failed router must not let its
replacement start a second actor for a container whose old actor is still busy."""

from __future__ import annotations

import threading

import pykka
import pytest

from actors.infra import faults
from actors.runtime.container import ContainerActor
from actors.runtime.router import RouterActor, RouterSettings
from messages.inbound import EngineReachable, MirrorObserved, Tick
from tests.unit._helpers import Env, FakeClock, FakeEngineStatus, wait_for


@pytest.fixture(autouse=True)
def _stop_actors():
    yield
    pykka.ActorRegistry.stop_all()
    faults.configure("")


def test_failed_router_waits_for_busy_children_before_reporting_death(tmp_path):
    env = Env(tmp_path)
    cid = env.docker.create("a", stop_timeout=1)
    died = threading.Event()
    status = FakeEngineStatus()
    router = RouterActor.start(
        journal=env.journal,
        docker=env.docker,
        store=env.store,
        engine_status=status,
        emit=env.events,
        settings=RouterSettings(max_active=4, idle_timeout_s=60),
        clock=FakeClock(),
        on_death=lambda name, error: died.set(),
    )
    router.tell(EngineReachable())
    wait_for(lambda: status.calls.items, timeout=5, message="ready")
    gate = env.docker.block("stop", cid)
    obj = env.store.client_annotate(cid, "stop")
    router.tell(
        MirrorObserved(name=cid, obj=obj, resource_version=obj["metadata"]["resourceVersion"])
    )
    assert gate.wait_entered(5), "stop in flight in the container actor"
    faults.configure("router.on_receive=raise")
    router.tell(Tick())  # Ticks skip the fault point; any other message fires it
    router.tell(EngineReachable())
    # pykka marks the router dead before on_failure runs, so from here on the failure is
    # being handled. The old child is inside docker stop: no death report may come yet.
    # (Nothing signals "on_failure is waiting", so a quiet spell is the best evidence;
    # it starts after the failure, so a slow machine cannot make it pass vacuously.)
    wait_for(lambda: not router.is_alive(), timeout=5, message="router failed")
    assert not died.wait(0.5), "router reported death while its child was still busy"
    assert len(pykka.ActorRegistry.get_by_class(ContainerActor)) == 1
    gate.release()
    assert died.wait(5), "router reports death once the child stopped"
    assert pykka.ActorRegistry.get_by_class(ContainerActor) == []

"""Issue 10, point 5: a Container whose name is another container's *name* never acts on it.

Docker resolves a reference as an exact ID first, then as an exact name. A hand-made
Container named with 64 hex digits that happen to be the name of a real container
would otherwise start, stop or remove that container, or mirror its status.
"""

from __future__ import annotations

import secrets

from actors.domain.names import ACTION_ANNOTATION, CONTAINERS, FINALIZER, GROUP, VERSION
from tests.support.service import Service
from tests.support.wait import wait_for


def _hand_made(service: Service, name: str, **metadata: object) -> dict:
    return service.api.create_namespaced_custom_object(
        GROUP,
        VERSION,
        service.namespace,
        CONTAINERS,
        {
            "apiVersion": f"{GROUP}/{VERSION}",
            "kind": "Container",
            "metadata": {"name": name, **metadata},
        },
    )


def test_action_on_a_mirror_named_like_another_container_fails_without_touching_it(
    service: Service, run_container, docker_client
):
    ghost = secrets.token_hex(32)
    victim = run_container(name=ghost)  # a real container whose *name* is the ghost ID
    service.wait_status(victim.id, "running")
    _hand_made(service, ghost)
    last = service.request(ghost, "stop")
    assert (last["action"], last["state"]) == ("stop", "Failed")
    assert last["error"] == f"Error response from daemon: No such container: {ghost}"
    assert docker_client.containers.get(victim.id).status == "running"
    assert service.effects(ghost, "stop") == []
    obj = service.mirror(ghost)
    if obj is not None:  # never filled in with the victim's status
        status = obj.get("status") or {}
        assert status.get("name", "") != ghost and status.get("status") != "running"


def test_deleting_a_mirror_named_like_another_container_removes_nothing(
    service: Service, run_container, docker_client
):
    ghost = secrets.token_hex(32)
    victim = run_container(name=ghost)
    service.wait_status(victim.id, "running")
    _hand_made(service, ghost, finalizers=[FINALIZER])
    service.api.delete_namespaced_custom_object(
        GROUP, VERSION, service.namespace, CONTAINERS, ghost
    )
    service.wait_gone(ghost)
    assert docker_client.containers.get(victim.id).status == "running"
    assert service.effects(ghost, "remove") == []
    wait_for(lambda: service.mirror(victim.id) is not None, timeout=5, message="victim mirrored")
    assert ACTION_ANNOTATION not in (service.mirror(victim.id)["metadata"].get("annotations") or {})

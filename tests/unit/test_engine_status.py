"""ContainerNamespace/moby comes back after a client deletes it (docs/contract.md §6.1).

EngineStatus against an in-memory HTTP layer: GET answers 404 for a missing object, the
server-side apply creates it, a merge patch of /status replaces the status.
"""

from __future__ import annotations

from typing import Any

import pytest

from actors.domain.names import CONTAINER_NAMESPACES, MOBY
from actors.ports.kube_port import KubeNotFound, KubeUnavailable, custom_path
from actors.runtime.engine_status import EngineStatus

MOBY_PATH = custom_path("ns", CONTAINER_NAMESPACES, MOBY)


class Store:
    def __init__(self) -> None:
        self.objects: dict[str, dict[str, Any]] = {}
        self.requests: list[tuple[str, str]] = []
        self.fail: list[Exception] = []

    def request(self, method: str, path: str, *, body: Any = None, **_: Any) -> dict[str, Any]:
        self.requests.append((method, path))
        if self.fail:
            raise self.fail.pop(0)
        base = path.removesuffix("/status")
        if method == "GET":
            if path not in self.objects:
                raise KubeNotFound(404, "not found")
            return self.objects[path]
        if method == "PATCH" and path.endswith("/status"):
            if base not in self.objects:
                raise KubeNotFound(404, "not found")
            self.objects[base] = {**self.objects[base], "status": body["status"]}
            return self.objects[base]
        if method == "PATCH":
            self.objects[path] = {**self.objects.get(path, {}), "metadata": body["metadata"]}
            return self.objects[path]
        raise AssertionError(f"unexpected {method} {path}")

    def writes(self) -> list[tuple[str, str]]:
        return [r for r in self.requests if r[0] != "GET"]

    def engine_ready(self) -> tuple[str, str, str] | None:
        for c in (self.objects.get(MOBY_PATH, {}).get("status") or {}).get("conditions") or []:
            if c["type"] == "EngineReady":
                return c["status"], c["reason"], c["message"]
        return None


def connected() -> tuple[Store, EngineStatus]:
    store = Store()
    status = EngineStatus(store, "ns")  # type: ignore[arg-type]
    status.set_ready(True, "Connected", "Container engine synced")
    store.requests.clear()
    return store, status


def test_nothing_to_do_costs_one_read() -> None:
    store, status = connected()
    assert status.ensure_moby() is False
    assert store.requests == [("GET", MOBY_PATH)]


def test_a_deleted_moby_comes_back_with_the_last_condition() -> None:
    store, status = connected()
    del store.objects[MOBY_PATH]  # kubectl delete cns moby
    assert status.ensure_moby() is True
    assert store.writes() == [("PATCH", MOBY_PATH), ("PATCH", f"{MOBY_PATH}/status")]
    assert store.engine_ready() == ("True", "Connected", "Container engine synced")
    store.requests.clear()
    assert status.ensure_moby() is False and store.writes() == []


def test_the_same_ready_write_recreates_a_deleted_moby() -> None:
    """A full sync ends with the same EngineReady as before: it repairs, not skips."""
    store, status = connected()
    del store.objects[MOBY_PATH]
    status.set_ready(True, "Connected", "Container engine synced")
    assert store.engine_ready() == ("True", "Connected", "Container engine synced")


def test_an_edited_condition_is_put_back() -> None:
    store, status = connected()
    store.objects[MOBY_PATH]["status"] = {"conditions": []}
    assert status.ensure_moby() is True
    assert store.engine_ready() == ("True", "Connected", "Container engine synced")


def test_before_any_condition_only_the_object_is_created() -> None:
    store = Store()
    status = EngineStatus(store, "ns")  # type: ignore[arg-type]
    assert status.ensure_moby() is True
    assert store.writes() == [("PATCH", MOBY_PATH)]
    assert status.ensure_moby() is False


def test_a_failure_reaches_the_caller_and_the_next_call_repairs() -> None:
    store, status = connected()
    del store.objects[MOBY_PATH]
    store.fail.append(KubeUnavailable(503, "down"))
    with pytest.raises(KubeUnavailable):
        status.ensure_moby()
    assert status.ensure_moby() is True
    assert store.engine_ready() == ("True", "Connected", "Container engine synced")

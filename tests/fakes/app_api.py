"""``FakeCluster``: an in-memory apiserver for App mode (``AppApi`` and ``MirrorSweeper``).

One store holds the cluster-scoped ``App`` named ``app`` and the namespaced objects of
the four mirrored kinds; two facades speak the ports' interfaces:
``cluster.app_api`` (:class:`actors.ports.app_port.AppApi`) and
``cluster.sweeper(namespace)`` (:class:`actors.ports.app_port.MirrorSweeper`). Faithful
where App mode cares (the apiserver's rules for custom resources):

* one global integer resourceVersion, bumped by every real change; a write that changes
  nothing keeps it and sends no watch event;
* the App is cluster-scoped (no ``metadata.namespace``), created with generation 1;
  ``generation`` moves only when ``spec`` changes, never on ``/status`` writes (the
  status subresource); the CRD's defaults are applied (``spec.namespace`` ``default``,
  ``spec.containerEngine.name`` ``moby``) and ``spec.namespace`` is immutable (422);
* ``/status`` merge patches carrying ``metadata.resourceVersion`` are preconditions
  (stale: 409) and replace ``status.conditions`` whole; conditions are validated like the
  CRD's schema (required fields, status enum, reason pattern: 422);
* a list of a kind whose CRD is not installed answers 404, as does every call on the
  App before its CRD exists; :meth:`FakeCluster.install` installs kinds;
* delete of an object with finalizers sets ``deletionTimestamp``; a metadata patch that
  empties the finalizers of a terminating object removes it; adding a finalizer to a
  terminating object is refused (422);
* the App's watch replays history after the requested resourceVersion (``ADDED``,
  ``MODIFIED``, ``DELETED``) and ends after ``server_timeout_s`` or on ``close()``.

Failures: :meth:`FakeCluster.fail_next` queues an exception for the next calls of one
operation (``get_app``, ``list_app``, ``watch_app``, ``patch_conditions``, ``crd_installed``,
``create_crd``, ``list``, ``get``, ``patch_metadata``, ``delete``); ``calls`` records
every call as ``(op, detail)``. Test helpers (``client_*``) act as other API clients.
"""

from __future__ import annotations

import copy
import re
import threading
import time
import uuid
from collections.abc import Iterator
from typing import Any

from actors.domain.names import (
    APP_API_VERSION,
    APP_CRD_NAME,
    APP_GROUP,
    APP_NAME,
    APP_RUNNING,
    CONTAINER_NAMESPACES,
    CONTAINERS,
    IMAGES,
    VOLUMES,
)
from actors.domain.timefmt import kube_now
from actors.ports.kube_port import (
    KubeConflict,
    KubeError,
    KubeInvalid,
    KubeNotFound,
    KubeUnavailable,
)
from tests.fakes.kube import merge_patch

OPS = (
    "get_app",
    "list_app",
    "watch_app",
    "patch_conditions",
    "crd_installed",
    "create_crd",
    "list",
    "get",
    "patch_metadata",
    "delete",
)
KINDS = (CONTAINERS, VOLUMES, IMAGES, CONTAINER_NAMESPACES)
_REASON = re.compile(r"^[A-Za-z]([A-Za-z0-9_,:]*[A-Za-z0-9_])?$")
_CONDITION_FIELDS = ("type", "status", "lastTransitionTime", "reason", "message")


class FakeCluster:
    """Thread-safe store behind :class:`FakeAppApi` and :class:`FakeSweeper`."""

    def __init__(self, *, kinds: tuple[str, ...] = KINDS, app_crd: bool = True) -> None:
        self._lock = threading.RLock()
        self._cond = threading.Condition(self._lock)
        self._rv = 100
        self.app_crd = app_crd
        self.installed: set[str] = set(kinds)
        self._app: dict[str, Any] | None = None
        self._objects: dict[tuple[str, str, str], dict[str, Any]] = {}
        self._history: list[tuple[int, dict[str, Any]]] = []
        self._faults: dict[str, list[BaseException]] = {}
        self.calls: list[tuple[str, str]] = []
        self.created_crds: list[dict[str, Any]] = []
        self.app_api = FakeAppApi(self)

    def sweeper(self, namespace: str) -> FakeSweeper:
        return FakeSweeper(self, namespace)

    # --- test controls -------------------------------------------------------------------
    def fail_next(self, op: str, exc: BaseException, *, times: int = 1) -> None:
        assert op in OPS, op
        with self._lock:
            self._faults.setdefault(op, []).extend([exc] * times)

    def install(self, *plurals: str) -> None:
        with self._lock:
            self.installed.update(plurals)

    def calls_of(self, op: str) -> list[str]:
        with self._lock:
            return [detail for o, detail in self.calls if o == op]

    @property
    def resource_version(self) -> str:
        with self._lock:
            return str(self._rv)

    # --- test helpers: other API clients ---------------------------------------------------
    def client_create_app(
        self,
        *,
        running: bool = True,
        namespace: str | None = "rancher-desktop",
        engine: str | None = "moby",
        vm_running: bool | None = None,
    ) -> dict[str, Any]:
        """``kubectl create`` of the App; ``vm_running`` also sets its Running condition."""
        spec: dict[str, Any] = {"running": running}
        if namespace is not None:
            spec["namespace"] = namespace
        if engine is not None:
            spec["containerEngine"] = {"name": engine}
        with self._cond:
            self._require_app_crd()
            if self._app is not None:
                raise KubeConflict(409, f'apps "{APP_NAME}" already exists', reason="AlreadyExists")
            app = {
                "apiVersion": APP_API_VERSION,
                "kind": "App",
                "metadata": {
                    "name": APP_NAME,
                    "uid": str(uuid.uuid4()),
                    "creationTimestamp": kube_now(),
                    "generation": 1,
                },
                "spec": _defaulted(spec),
            }
            self._commit_app(app, "ADDED")
        if vm_running is not None:
            self.client_set_running(vm_running)
        return self.app()

    def client_set_running(self, running: bool, *, reason: str = "Running") -> dict[str, Any]:
        """The App's own controller sets its ``Running`` condition (a status write)."""
        with self._cond:
            app = self._get_app()
            new = copy.deepcopy(app)
            conditions = (new.setdefault("status", {})).setdefault("conditions", [])
            status = "True" if running else "False"
            old = next((c for c in conditions if c.get("type") == APP_RUNNING), None)
            if old is None:
                conditions.append(
                    {
                        "type": APP_RUNNING,
                        "status": status,
                        "reason": reason,
                        "message": "",
                        "lastTransitionTime": kube_now(),
                    }
                )
            elif old["status"] != status:
                old.update(status=status, reason=reason, lastTransitionTime=kube_now())
            return self._commit_app(new, "MODIFIED")

    def client_patch_spec(self, spec_patch: dict[str, Any]) -> dict[str, Any]:
        """A merge patch of ``spec`` (``rdd set``): generation moves when spec changes."""
        with self._cond:
            app = self._get_app()
            new = copy.deepcopy(app)
            new["spec"] = _defaulted(merge_patch(app.get("spec") or {}, spec_patch))
            if new["spec"].get("namespace") != app["spec"].get("namespace"):
                raise KubeInvalid(
                    422,
                    f'App.{APP_GROUP} "{APP_NAME}" is invalid: spec.namespace: '
                    'Invalid value: "string": spec.namespace is immutable',
                    reason="Invalid",
                )
            if new["spec"] != app["spec"]:
                new["metadata"]["generation"] = app["metadata"]["generation"] + 1
            return self._commit_app(new, "MODIFIED")

    def client_delete_app(self) -> None:
        with self._cond:
            app = self._get_app()
            self._app = None
            self._bump()
            app["metadata"]["resourceVersion"] = str(self._rv)
            self._history.append((self._rv, {"type": "DELETED", "object": app}))
            self._cond.notify_all()

    def client_add(
        self,
        plural: str,
        name: str,
        namespace: str = "rancher-desktop",
        *,
        finalizers: list[str] | None = None,
        annotations: dict[str, str] | None = None,
    ) -> dict[str, Any]:
        """Create a namespaced object of ``plural`` (a mirror or a hand-made one)."""
        with self._lock:
            self._require_kind(plural)
            key = (plural, namespace, name)
            if key in self._objects:
                raise KubeConflict(409, f'{plural} "{name}" already exists', reason="AlreadyExists")
            meta: dict[str, Any] = {
                "name": name,
                "namespace": namespace,
                "uid": str(uuid.uuid4()),
                "generation": 1,
            }
            if finalizers:
                meta["finalizers"] = list(finalizers)
            if annotations:
                meta["annotations"] = dict(annotations)
            self._bump()
            meta["resourceVersion"] = str(self._rv)
            self._objects[key] = {"metadata": meta}
            return copy.deepcopy(self._objects[key])

    def client_delete(self, plural: str, name: str, namespace: str = "rancher-desktop") -> None:
        with self._lock:
            self._delete(plural, namespace, name)

    # --- reads for assertions -------------------------------------------------------------
    def app(self) -> dict[str, Any]:
        with self._lock:
            return copy.deepcopy(self._get_app())

    def condition(self, kind: str) -> dict[str, Any] | None:
        with self._lock:
            app = self._app or {}
            conditions = (app.get("status") or {}).get("conditions") or []
            found = next((c for c in conditions if c.get("type") == kind), None)
            return copy.deepcopy(found)

    def objects(self, namespace: str | None = None) -> dict[tuple[str, str], dict[str, Any]]:
        """``(plural, name) -> object`` (of ``namespace``, or of every namespace)."""
        with self._lock:
            return {
                (p, n): copy.deepcopy(o)
                for (p, ns, n), o in self._objects.items()
                if namespace is None or ns == namespace
            }

    # --- internals ------------------------------------------------------------------------
    def _enter(self, op: str, detail: str = "") -> None:
        self.calls.append((op, detail))
        faults = self._faults.get(op)
        if faults:
            raise faults.pop(0)

    def _bump(self) -> None:
        self._rv += 1

    def _require_app_crd(self) -> None:
        if not self.app_crd:
            raise KubeNotFound(404, "the server could not find the requested resource")

    def _require_kind(self, plural: str) -> None:
        if plural not in self.installed:
            raise KubeNotFound(404, "the server could not find the requested resource")

    def _get_app(self) -> dict[str, Any]:
        self._require_app_crd()
        if self._app is None:
            raise KubeNotFound(404, f'{APP_CRD_NAME} "{APP_NAME}" not found', reason="NotFound")
        return self._app

    def _commit_app(self, new: dict[str, Any], kind: str) -> dict[str, Any]:
        if self._app is not None and new == self._app:
            return copy.deepcopy(self._app)
        self._bump()
        new["metadata"]["resourceVersion"] = str(self._rv)
        self._app = new
        self._history.append((self._rv, {"type": kind, "object": copy.deepcopy(new)}))
        self._cond.notify_all()
        return copy.deepcopy(new)

    def _delete(self, plural: str, namespace: str, name: str) -> None:
        key = (plural, namespace, name)
        obj = self._objects.get(key)
        if obj is None:
            raise KubeNotFound(404, f'{plural} "{name}" not found', reason="NotFound")
        if obj["metadata"].get("finalizers"):
            if not obj["metadata"].get("deletionTimestamp"):
                obj["metadata"]["deletionTimestamp"] = kube_now()
                self._bump()
                obj["metadata"]["resourceVersion"] = str(self._rv)
            return
        del self._objects[key]
        self._bump()

    # --- AppApi --------------------------------------------------------------------------
    def get_app(self) -> dict[str, Any]:
        with self._lock:
            self._enter("get_app")
            return copy.deepcopy(self._get_app())

    def list_app(self) -> tuple[list[dict[str, Any]], str]:
        with self._lock:
            self._enter("list_app")
            self._require_app_crd()
            items = [copy.deepcopy(self._app)] if self._app is not None else []
            return items, str(self._rv)

    def watch_app(self, resource_version: str, server_timeout_s: int) -> _FakeWatch:
        with self._lock:
            self._enter("watch_app", resource_version)
            self._require_app_crd()
        return _FakeWatch(self, int(resource_version or 0), server_timeout_s)

    def patch_conditions(
        self, conditions: list[dict[str, Any]], *, resource_version: str
    ) -> dict[str, Any]:
        with self._cond:
            self._enter("patch_conditions", resource_version)
            app = self._get_app()
            if resource_version and resource_version != app["metadata"]["resourceVersion"]:
                raise KubeConflict(
                    409,
                    f'Operation cannot be fulfilled on {APP_CRD_NAME} "{APP_NAME}": the '
                    "object has been modified; please apply your changes to the latest version "
                    "and try again",
                    reason="Conflict",
                )
            for condition in conditions:
                _validate_condition(condition)
            new = copy.deepcopy(app)
            new.setdefault("status", {})["conditions"] = copy.deepcopy(conditions)
            return self._commit_app(new, "MODIFIED")

    def crd_installed(self) -> bool:
        with self._lock:
            self._enter("crd_installed")
            return self.app_crd

    def create_crd(self, manifest: dict[str, Any]) -> None:
        with self._lock:
            self._enter("create_crd", manifest["metadata"]["name"])
            if self.app_crd:
                raise KubeConflict(409, f'"{APP_CRD_NAME}" already exists', reason="AlreadyExists")
            self.created_crds.append(copy.deepcopy(manifest))
            self.app_crd = True

    # --- MirrorSweeper ---------------------------------------------------------------------
    def list_kind(self, namespace: str, plural: str) -> list[dict[str, Any]]:
        with self._lock:
            self._enter("list", plural)
            self._require_kind(plural)
            return [
                copy.deepcopy(o)
                for (p, ns, _), o in sorted(self._objects.items())
                if p == plural and ns == namespace
            ]

    def get_kind(self, namespace: str, plural: str, name: str) -> dict[str, Any]:
        with self._lock:
            self._enter("get", f"{plural}/{name}")
            self._require_kind(plural)
            obj = self._objects.get((plural, namespace, name))
            if obj is None:
                raise KubeNotFound(404, f'{plural} "{name}" not found', reason="NotFound")
            return copy.deepcopy(obj)

    def patch_kind_metadata(
        self,
        namespace: str,
        plural: str,
        name: str,
        metadata: dict[str, Any],
        resource_version: str,
    ) -> dict[str, Any]:
        with self._lock:
            self._enter("patch_metadata", f"{plural}/{name}")
            self._require_kind(plural)
            key = (plural, namespace, name)
            obj = self._objects.get(key)
            if obj is None:
                raise KubeNotFound(404, f'{plural} "{name}" not found', reason="NotFound")
            meta = obj["metadata"]
            if resource_version != meta["resourceVersion"]:
                raise KubeConflict(409, f'{plural} "{name}": the object has been modified')
            new_meta = merge_patch(meta, metadata)
            new_meta["resourceVersion"] = meta["resourceVersion"]
            for field in ("finalizers", "annotations"):
                if new_meta.get(field) in ({}, []):
                    new_meta.pop(field)
            added = set(new_meta.get("finalizers") or []) - set(meta.get("finalizers") or [])
            if meta.get("deletionTimestamp") and added:
                raise KubeInvalid(
                    422,
                    "metadata.finalizers: Forbidden: no new finalizers can be added if the "
                    "object is being deleted",
                    reason="Invalid",
                )
            if new_meta == meta:
                return copy.deepcopy(obj)
            self._bump()
            new_meta["resourceVersion"] = str(self._rv)
            obj["metadata"] = new_meta
            if new_meta.get("deletionTimestamp") and not new_meta.get("finalizers"):
                del self._objects[key]
            return copy.deepcopy(obj)

    def delete_kind(self, namespace: str, plural: str, name: str) -> None:
        with self._lock:
            self._enter("delete", f"{plural}/{name}")
            self._require_kind(plural)
            self._delete(plural, namespace, name)


class _FakeWatch:
    """One App watch: history after ``start``, then live events until the timeout."""

    def __init__(self, cluster: FakeCluster, start: int, server_timeout_s: int) -> None:
        self._cluster = cluster
        self._start = start
        self._deadline = time.monotonic() + server_timeout_s
        self._closed = False

    def close(self) -> None:
        with self._cluster._cond:
            self._closed = True
            self._cluster._cond.notify_all()

    def __iter__(self) -> Iterator[dict[str, Any]]:
        cursor = self._start
        cond = self._cluster._cond
        while True:
            with cond:
                while True:
                    if self._closed:
                        return
                    pending = [e for rv, e in self._cluster._history if rv > cursor]
                    if pending:
                        event = copy.deepcopy(pending[0])
                        cursor = int(event["object"]["metadata"]["resourceVersion"])
                        break
                    remaining = self._deadline - time.monotonic()
                    if remaining <= 0:
                        return
                    cond.wait(min(remaining, 0.05))
            yield event


class FakeAppApi:
    """:class:`actors.ports.app_port.AppApi` over a :class:`FakeCluster`."""

    def __init__(self, cluster: FakeCluster) -> None:
        self.cluster = cluster

    def get(self) -> dict[str, Any]:
        return self.cluster.get_app()

    def list(self) -> tuple[list[dict[str, Any]], str]:
        return self.cluster.list_app()

    def watch(
        self, resource_version: str, *, server_timeout_s: int, read_timeout_s: float
    ) -> _FakeWatch:
        return self.cluster.watch_app(resource_version, server_timeout_s)

    def patch_conditions(
        self, conditions: list[dict[str, Any]], *, resource_version: str
    ) -> dict[str, Any]:
        return self.cluster.patch_conditions(conditions, resource_version=resource_version)

    def crd_installed(self) -> bool:
        return self.cluster.crd_installed()

    def create_crd(self, manifest: dict[str, Any]) -> None:
        try:
            self.cluster.create_crd(manifest)
        except KubeConflict:
            pass  # as the port: one created meanwhile is fine

    def probe_served(self) -> None:
        self.list()


class FakeSweeper:
    """:class:`actors.ports.app_port.MirrorSweeper` over a :class:`FakeCluster`."""

    def __init__(self, cluster: FakeCluster, namespace: str) -> None:
        self.cluster = cluster
        self.namespace = namespace

    def list(self, plural: str) -> list[dict[str, Any]]:
        return self.cluster.list_kind(self.namespace, plural)

    def get(self, plural: str, name: str) -> dict[str, Any]:
        return self.cluster.get_kind(self.namespace, plural, name)

    def patch_metadata(
        self, plural: str, name: str, metadata: dict[str, Any], *, resource_version: str
    ) -> dict[str, Any]:
        return self.cluster.patch_kind_metadata(
            self.namespace, plural, name, metadata, resource_version
        )

    def delete(self, plural: str, name: str) -> None:
        self.cluster.delete_kind(self.namespace, plural, name)


def _defaulted(spec: dict[str, Any]) -> dict[str, Any]:
    """The App CRD's defaults (``namespace``, ``containerEngine.name``)."""
    spec = copy.deepcopy(spec)
    spec.setdefault("namespace", "default")
    engine = spec.setdefault("containerEngine", {})
    engine.setdefault("name", "moby")
    return spec


def _validate_condition(condition: dict[str, Any]) -> None:
    missing = [f for f in _CONDITION_FIELDS if f not in condition]
    if missing:
        raise KubeInvalid(
            422, f"status.conditions: Required value: {', '.join(missing)}", reason="Invalid"
        )
    if condition["status"] not in ("True", "False", "Unknown"):
        raise KubeInvalid(
            422, f"status.conditions.status: Unsupported value: {condition['status']!r}"
        )
    if not _REASON.match(str(condition["reason"])):
        raise KubeInvalid(422, f"status.conditions.reason: Invalid value: {condition['reason']!r}")


__all__ = ["FakeAppApi", "FakeCluster", "FakeSweeper", "KubeError", "KubeUnavailable"]

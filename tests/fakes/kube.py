"""``FakeMirrorStore``: an in-memory apiserver for ``Container`` objects (``MirrorStore`` API).

Faithful where the actors care (docs/contract.md §2.6, §3.4, §3.6, §4.5, §5.1; the apiserver's
resourceVersion preconditions, merge patches and server-side apply):

* one global integer resourceVersion, bumped by every real change; a write that changes
  nothing keeps the RV and sends no watch event;
* ``metadata.resourceVersion`` in a merge patch is a precondition (stale → 409);
  merge patches follow RFC 7386 (``None`` deletes, lists are replaced whole);
* ``/status`` writes change only ``status``; ``patch_metadata`` changes only
  annotations, labels, finalizers and ownerReferences (other metadata is ignored);
* ``apply_status`` emulates SSA ownership per top-level status key: keys the engine
  applied before and now leaves out are removed; keys last written by another manager
  (``lastAction``, ``conditions``) stay. Missing object → 404;
* ``apply_metadata`` creates the object (uid, creationTimestamp, generation 1, the mirror
  finalizer) or re-adds the finalizer. On a terminating object it is accepted as long as
  it adds nothing (the finalizer is still there: a no-op); adding the finalizer back to a
  terminating object is rejected with 422 like the apiserver ("no new finalizers can be
  added if the object is being deleted"). The same rule applies to ``patch_metadata``;
* ``delete``: with finalizers → ``deletionTimestamp`` set (RV bump), object stays; a write
  that empties the finalizers of a terminating object removes it (``DELETED`` event);
* ``webhook=True`` runs the real §5.1 decision logic (``actors.domain.webhook_review``) on CREATE
  (``apply_metadata`` of a missing object, ``client_create``) and UPDATE (``apply_metadata``,
  ``patch_metadata``, ``client_annotate``, ``client_strip_finalizer``); never on ``/status``.

Watches replay a history from the requested RV; :meth:`expire_history` makes older RVs
answer ``ERROR`` 410, :meth:`drop_watches` ends open streams, :meth:`send_bookmark` sends a
``BOOKMARK``. Test helpers (``client_*``) act as another API client: they skip injected
faults but pass admission.

Failures: :attr:`unavailable`, :meth:`fail_next` (``times=N``; ``after=True``: the write
is applied, then its answer is lost), :meth:`fail_status` (any HTTP status through the
port's own mapping, with ``Retry-After``), :meth:`time_out_next` and
:meth:`conflict_next`.
"""

from __future__ import annotations

import copy
import functools
import json
import re
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from http import HTTPStatus
from typing import Any, TypeVar

from actors.domain.names import (
    ACTION_ANNOTATION,
    API_VERSION,
    CONTAINERS,
    ENGINE_MANAGER,
    FINALIZER,
    GROUP,
    JSON,
    MERGE_PATCH,
)
from actors.domain.timefmt import kube_now
from actors.domain.webhook_review import _decide
from actors.ports.kube_port import (
    KubeConflict,
    KubeError,
    KubeForbidden,
    KubeInvalid,
    KubeNotFound,
    KubeTimeout,
    KubeUnavailable,
    error_from_status,
)

__all__ = [
    "FakeKubeHttp",
    "FakeMirrorStore",
    "KubeConflict",
    "KubeError",
    "KubeForbidden",
    "KubeInvalid",
    "KubeNotFound",
    "KubeTimeout",
    "KubeUnavailable",
    "merge_patch",
]

T = TypeVar("T")

OPS = (
    "get",
    "list",
    "watch",
    "apply_metadata",
    "apply_status",
    "patch_status",
    "patch_metadata",
    "delete",
)
RESOURCE = f"{CONTAINERS}.{GROUP}"
WEBHOOK_NAME = f"container-mutating.{GROUP}"
PATCHABLE_METADATA = ("annotations", "labels", "finalizers", "ownerReferences")
ACTIONS = ("start", "stop", "pause", "unpause", "restart")
STATES = ("Succeeded", "Failed")
ANNOTATION_FIELD = {"f:metadata": {"f:annotations": {f"f:{ACTION_ANNOTATION}": {}}}}


_STATUSES = {int(s) for s in HTTPStatus}


def _answer_may_be_lost(method: Callable[..., T]) -> Callable[..., T]:
    """Raise a fault queued with ``after=True`` once the call took effect (or failed)."""

    @functools.wraps(method)
    def wrapper(self: FakeMirrorStore, *args: Any, **kwargs: Any) -> T:
        self._after_exc.value = None
        try:
            result = method(self, *args, **kwargs)
        except Exception:
            self._after()  # the error answer was lost as well
            raise
        self._after()
        return result

    return wrapper


def merge_patch(target: Any, patch: Any) -> Any:
    """RFC 7386 JSON merge patch: ``None`` deletes a key, non-objects replace whole."""
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    result = copy.deepcopy(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = merge_patch(result.get(key), value)
    return result


def _quoted_list(values: list[str]) -> str:
    return ", ".join(json.dumps(v) for v in values)


class FakeMirrorStore:
    """Thread-safe fake of :class:`actors.ports.kube_port.MirrorStore` (one lock + Condition)."""

    def __init__(self, namespace: str = "rancher-desktop", *, webhook: bool = False) -> None:
        self.namespace = namespace
        self.webhook = webhook
        self._lock = threading.RLock()
        self._cond = threading.Condition(self._lock)
        self._objects: dict[str, dict[str, Any]] = {}
        # name -> top-level status key -> manager that last wrote it (SSA emulation)
        self._status_owners: dict[str, dict[str, str]] = {}
        self._rv = 1000
        self._history: list[tuple[int, dict[str, Any]]] = []
        self._history_offset = 0  # entries dropped by expire_history()
        self._expired_below = 0
        self._watch_epoch = 0
        self._drop_error = False
        self._bookmark_seq = 0
        self._unavailable = False
        # op -> queued (exception, after): one entry per call
        self._faults: dict[str, list[tuple[BaseException, bool]]] = {}
        self._after_exc = threading.local()
        self.calls: list[tuple[str, str | None]] = []
        self.write_log: list[tuple[str, str, str]] = []

    # --- test controls ------------------------------------------------------------
    @property
    def unavailable(self) -> bool:
        return self._unavailable

    @unavailable.setter
    def unavailable(self, value: bool) -> None:
        """apiserver unreachable: every call raises KubeUnavailable, open watches break."""
        with self._cond:
            self._unavailable = bool(value)
            self._cond.notify_all()

    def fail_next(
        self, op: str, exc: BaseException, *, times: int = 1, after: bool = False
    ) -> None:
        """The next ``times`` calls of ``op`` raise ``exc`` (queued: one per call).

        ``after=True``: the call is applied first, then raises, like an answer lost on
        the way back (a write the server stored, reported as a timeout).
        """
        assert op in OPS, op
        assert not (after and op == "watch"), "a watch has no answer to lose"
        with self._lock:
            self._faults.setdefault(op, []).extend([(exc, after)] * times)

    def fail_status(
        self,
        op: str,
        status: int,
        message: str = "injected error",
        *,
        retry_after: float | None = None,
        times: int = 1,
    ) -> None:
        """The next ``times`` calls of ``op`` get an error answer with ``status``, mapped
        by the real port (e.g. 401 → KubeUnauthorized, 429 → KubeUnavailable)."""
        reason = HTTPStatus(status).phrase.replace(" ", "") if status in _STATUSES else ""
        exc = error_from_status(status, message, reason=reason, retry_after=retry_after)
        self.fail_next(op, exc, times=times)

    def time_out_next(self, op: str, *, times: int = 1, applied: bool = False) -> None:
        """The next ``times`` calls of ``op`` time out; ``applied``: after taking effect."""
        exc = KubeTimeout(None, "ReadTimeoutError: Read timed out. (read timeout=30.0)")
        self.fail_next(op, exc, times=times, after=applied)

    def conflict_next(self, op: str, n: int = 1) -> None:
        """The next ``n`` calls of ``op`` answer 409 Conflict."""
        for _ in range(n):
            self.fail_next(op, KubeConflict(409, "injected conflict", reason="Conflict"))

    def expire_history(self) -> None:
        """Compact: watches from an RV older than the current one get ERROR 410."""
        with self._cond:
            self._history_offset += len(self._history)
            self._history.clear()
            self._expired_below = self._rv
            self._cond.notify_all()

    def drop_watches(self, *, error: bool = False) -> None:
        """End every open watch like a dropped connection (``error``: raise, not end)."""
        with self._cond:
            self._watch_epoch += 1
            self._drop_error = error
            self._cond.notify_all()

    def send_bookmark(self) -> None:
        """Every open watch receives a BOOKMARK carrying the current RV."""
        with self._cond:
            self._bookmark_seq += 1
            self._cond.notify_all()

    @property
    def resource_version(self) -> str:
        with self._lock:
            return str(self._rv)

    def objects(self) -> dict[str, dict[str, Any]]:
        with self._lock:
            return copy.deepcopy(self._objects)

    def calls_of(self, op: str) -> list[str | None]:
        with self._lock:
            return [name for o, name in self.calls if o == op]

    # --- test helpers: another API client -------------------------------------------
    def client_create(self, obj: dict[str, Any], manager: str = "kubectl-create") -> dict[str, Any]:
        """Create like ``kubectl create`` (no mirror finalizer unless given). 409 if it exists."""
        obj = copy.deepcopy(obj)
        meta = obj.setdefault("metadata", {})
        name = meta["name"]
        with self._cond:
            if name in self._objects:
                raise KubeConflict(
                    409, f'{RESOURCE} "{name}" already exists', reason="AlreadyExists"
                )
            obj.setdefault("apiVersion", API_VERSION)
            obj.setdefault("kind", "Container")
            meta["namespace"] = self.namespace
            self._admit("CREATE", None, obj)
            self._stamp_new(meta)
            if ACTION_ANNOTATION in (meta.get("annotations") or {}):
                self._own_annotation(meta, manager, kube_now())
            self._status_owners[name] = {k: manager for k in obj.get("status") or {}}
            return self._commit("client_create", name, None, obj)

    def client_annotate(
        self,
        name: str,
        value: str | None,
        manager: str = "kubectl-annotate",
        at: str | None = None,
    ) -> dict[str, Any]:
        """``kubectl annotate`` the action annotation (``None`` removes it).

        Records a managedFields entry ``{manager, operation: Update, time: at}`` owning
        the annotation, as the apiserver does.
        """
        with self._cond:
            return self._patch_metadata(
                "client_annotate",
                name,
                {"annotations": {ACTION_ANNOTATION: value}},
                None,
                manager,
                at or kube_now(),
            )

    def client_patch_status(
        self, name: str, status_patch: dict[str, Any], manager: str = "container-controller"
    ) -> dict[str, Any]:
        """Another manager's merge patch of ``/status`` (e.g. conditions)."""
        with self._cond:
            return self._patch_status("client_patch_status", name, status_patch, None, manager)

    def client_delete(self, name: str) -> None:
        with self._cond:
            self._delete("client_delete", name)

    def client_strip_finalizer(self, name: str) -> dict[str, Any]:
        """A user removes the mirror finalizer (a terminating object then disappears)."""
        with self._cond:
            obj = self._get(name)
            finalizers = [f for f in obj["metadata"].get("finalizers") or [] if f != FINALIZER]
            return self._patch_metadata(
                "client_strip_finalizer",
                name,
                {"finalizers": finalizers or None},
                None,
                "kubectl-edit",
                kube_now(),
            )

    # --- MirrorStore API: reads ---------------------------------------------------------
    @_answer_may_be_lost
    def get(self, name: str) -> dict[str, Any]:
        with self._cond:
            self._enter("get", name)
            return copy.deepcopy(self._get(name))

    @_answer_may_be_lost
    def list(self) -> tuple[list[dict[str, Any]], str]:
        with self._cond:
            self._enter("list", None)
            items = [copy.deepcopy(self._objects[n]) for n in sorted(self._objects)]
            return items, str(self._rv)

    def watch(
        self, resource_version: str, *, server_timeout_s: int, read_timeout_s: float
    ) -> Iterator[dict[str, Any]]:
        """Raw watch events after ``resource_version`` (a generator, lazy like the real one)."""
        with self._cond:
            self._enter("watch", None)
            epoch = self._watch_epoch
            bookmark_seen = self._bookmark_seq
            initial: list[dict[str, Any]] = []
            if resource_version in (None, "", "0"):
                initial = [
                    {"type": "ADDED", "object": copy.deepcopy(self._objects[n])}
                    for n in sorted(self._objects)
                ]
                cursor = self._history_offset + len(self._history)
            else:
                start = int(resource_version)
                if start < self._expired_below:
                    initial = [self._too_old(start)]
                    cursor = -1
                else:
                    cursor = self._history_offset + next(
                        (i for i, (rv, _) in enumerate(self._history) if rv > start),
                        len(self._history),
                    )
        yield from initial
        if cursor < 0:
            return
        deadline = time.monotonic() + server_timeout_s
        last_read = time.monotonic()
        while True:
            with self._cond:
                while True:
                    if self._unavailable:
                        raise KubeUnavailable(None, "watch stream broke: connection refused")
                    if epoch != self._watch_epoch:
                        if self._drop_error:
                            raise KubeUnavailable(None, "watch stream broke: connection reset")
                        return
                    if cursor < self._history_offset:
                        event = self._too_old(cursor)
                        cursor = -1
                        break
                    index = cursor - self._history_offset
                    if index < len(self._history):
                        event = copy.deepcopy(self._history[index][1])
                        cursor += 1
                        break
                    if bookmark_seen != self._bookmark_seq:
                        bookmark_seen = self._bookmark_seq
                        event = {
                            "type": "BOOKMARK",
                            "object": {
                                "apiVersion": API_VERSION,
                                "kind": "Container",
                                "metadata": {"resourceVersion": str(self._rv)},
                            },
                        }
                        break
                    now = time.monotonic()
                    if now >= deadline:
                        return  # the server's timeoutSeconds: a clean end
                    if now - last_read >= read_timeout_s:
                        raise KubeUnavailable(None, "watch stream broke: read timed out")
                    self._cond.wait(min(0.05, deadline - now))
            last_read = time.monotonic()
            yield event
            if cursor < 0:
                return

    # --- MirrorStore API: writes --------------------------------------------------------
    @_answer_may_be_lost
    def apply_metadata(self, name: str) -> dict[str, Any]:
        with self._cond:
            self._enter("apply_metadata", name)
            old = self._objects.get(name)
            if old is None:
                obj = {
                    "apiVersion": API_VERSION,
                    "kind": "Container",
                    "metadata": {
                        "name": name,
                        "namespace": self.namespace,
                        "finalizers": [FINALIZER],
                    },
                }
                self._admit("CREATE", None, obj)
                self._stamp_new(obj["metadata"])
                self._status_owners[name] = {}
                return self._commit("apply_metadata", name, None, obj)
            new = copy.deepcopy(old)
            finalizers = new["metadata"].setdefault("finalizers", [])
            if FINALIZER not in finalizers:
                finalizers.append(FINALIZER)
            self._check_finalizers(old, new)
            self._admit("UPDATE", old, new)
            return self._commit("apply_metadata", name, old, new)

    @_answer_may_be_lost
    def apply_status(self, name: str, status: dict[str, Any]) -> dict[str, Any]:
        with self._cond:
            self._enter("apply_status", name)
            old = self._get(name)
            owners = self._status_owners.setdefault(name, {})
            new = copy.deepcopy(old)
            current = new.get("status") or {}
            for key, owner in list(owners.items()):
                if owner == ENGINE_MANAGER and key not in status:
                    current.pop(key, None)
                    del owners[key]
            for key, value in status.items():
                current[key] = copy.deepcopy(value)
                owners[key] = ENGINE_MANAGER
            new["status"] = current
            self._validate_status(name, current)
            return self._commit("apply_status", name, old, new)

    @_answer_may_be_lost
    def patch_status(
        self,
        name: str,
        status_patch: dict[str, Any],
        *,
        resource_version: str | None,
        field_manager: str,
    ) -> dict[str, Any]:
        with self._cond:
            self._enter("patch_status", name)
            return self._patch_status(
                "patch_status", name, status_patch, resource_version, field_manager
            )

    @_answer_may_be_lost
    def patch_metadata(
        self,
        name: str,
        metadata_patch: dict[str, Any],
        *,
        resource_version: str | None,
        field_manager: str,
    ) -> dict[str, Any]:
        with self._cond:
            self._enter("patch_metadata", name)
            patch = dict(metadata_patch)
            rv = patch.pop("resourceVersion", None)
            if resource_version is not None:
                rv = resource_version
            return self._patch_metadata(
                "patch_metadata", name, patch, rv, field_manager, kube_now()
            )

    @_answer_may_be_lost
    def delete(self, name: str) -> None:
        with self._cond:
            self._enter("delete", name)
            self._delete("delete", name)

    # --- internals --------------------------------------------------------------------
    def _enter(self, op: str, name: str | None) -> None:
        self.calls.append((op, name))
        if self._unavailable:
            raise KubeUnavailable(None, "MaxRetryError: connection refused")
        faults = self._faults.get(op)
        if faults:
            exc, after = faults.pop(0)
            if not after:
                raise exc
            self._after_exc.value = exc

    def _after(self) -> None:
        """Raise the ``after=True`` fault the current call picked up in :meth:`_enter`."""
        exc = getattr(self._after_exc, "value", None)
        if exc is not None:
            self._after_exc.value = None
            raise exc

    def _get(self, name: str) -> dict[str, Any]:
        obj = self._objects.get(name)
        if obj is None:
            raise KubeNotFound(404, f'{RESOURCE} "{name}" not found', reason="NotFound")
        return obj

    def _too_old(self, rv: int) -> dict[str, Any]:
        return {
            "type": "ERROR",
            "object": {
                "kind": "Status",
                "apiVersion": "v1",
                "metadata": {},
                "status": "Failure",
                "message": f"too old resource version: {rv} ({self._expired_below})",
                "reason": "Expired",
                "code": 410,
            },
        }

    def _stamp_new(self, meta: dict[str, Any]) -> None:
        meta["uid"] = str(uuid.uuid4())
        meta["creationTimestamp"] = kube_now()
        meta["generation"] = 1
        for key in ("resourceVersion", "deletionTimestamp"):
            meta.pop(key, None)

    def _check_precondition(self, name: str, obj: dict[str, Any], rv: str | None) -> None:
        if rv is not None and str(rv) != obj["metadata"]["resourceVersion"]:
            raise KubeConflict(
                409,
                f'Operation cannot be fulfilled on {RESOURCE} "{name}": the object has been '
                "modified; please apply your changes to the latest version and try again",
                reason="Conflict",
            )

    def _check_finalizers(self, old: dict[str, Any], new: dict[str, Any]) -> None:
        if not old["metadata"].get("deletionTimestamp"):
            return
        before = set(old["metadata"].get("finalizers") or [])
        added = [f for f in new["metadata"].get("finalizers") or [] if f not in before]
        if added:
            name = old["metadata"]["name"]
            raise KubeInvalid(
                422,
                f'Container.{GROUP} "{name}" is invalid: '
                "metadata.finalizers: Forbidden: no new finalizers can be added if the object "
                f"is being deleted, found new finalizers []string{{{_quoted_list(added)}}}",
                reason="Invalid",
            )

    def _admit(self, operation: str, old: dict[str, Any] | None, new: dict[str, Any]) -> None:
        if not self.webhook:
            return
        request: dict[str, Any] = {"operation": operation, "object": new}
        if old is not None:
            request["oldObject"] = old
        message = _decide(request)
        if message is not None:
            raise KubeForbidden(
                403,
                f'admission webhook "{WEBHOOK_NAME}" denied the request: {message}',
                reason="Forbidden",
            )

    def _validate_status(self, name: str, status: dict[str, Any]) -> None:
        last = status.get("lastAction")
        if last is None:
            return
        for field, allowed in (("action", ACTIONS), ("state", STATES)):
            value = last.get(field) if isinstance(last, dict) else None
            if value not in allowed:
                raise KubeInvalid(
                    422,
                    f'Container.{GROUP} "{name}" is invalid: '
                    f"status.lastAction.{field}: Unsupported value: {json.dumps(value)}: "
                    f"supported values: {_quoted_list(list(allowed))}",
                    reason="Invalid",
                )

    def _own_annotation(self, meta: dict[str, Any], manager: str, at: str) -> None:
        """The Update that set the annotation takes its ownership from everyone else."""
        self._disown_annotation(meta)
        entries = meta.setdefault("managedFields", [])
        entry = next(
            (e for e in entries if e["manager"] == manager and e["operation"] == "Update"),
            None,
        )
        if entry is None:
            entry = {"manager": manager, "operation": "Update", "apiVersion": API_VERSION}
            entries.append(entry)
        entry["time"] = at
        entry["fieldsType"] = "FieldsV1"
        fields = entry.setdefault("fieldsV1", {})
        fields.setdefault("f:metadata", {}).setdefault("f:annotations", {})[
            f"f:{ACTION_ANNOTATION}"
        ] = {}

    def _disown_annotation(self, meta: dict[str, Any]) -> None:
        entries = meta.get("managedFields") or []
        kept = []
        for entry in entries:
            fields = entry.get("fieldsV1") or {}
            annotations = (fields.get("f:metadata") or {}).get("f:annotations") or {}
            annotations.pop(f"f:{ACTION_ANNOTATION}", None)
            if not annotations:
                (fields.get("f:metadata") or {}).pop("f:annotations", None)
            if not fields.get("f:metadata"):
                fields.pop("f:metadata", None)
            if fields:
                kept.append(entry)
        if kept:
            meta["managedFields"] = kept
        else:
            meta.pop("managedFields", None)

    def _patch_status(
        self,
        op: str,
        name: str,
        status_patch: dict[str, Any],
        rv: str | None,
        manager: str,
    ) -> dict[str, Any]:
        old = self._get(name)
        self._check_precondition(name, old, rv)
        new = copy.deepcopy(old)
        new["status"] = merge_patch(old.get("status") or {}, status_patch)
        self._validate_status(name, new["status"])
        owners = self._status_owners.setdefault(name, {})
        for key, value in status_patch.items():
            if value is None:
                owners.pop(key, None)
            elif (old.get("status") or {}).get(key) != new["status"].get(key):
                owners[key] = manager  # an Update takes ownership of what it changed
        return self._commit(op, name, old, new)

    def _patch_metadata(
        self,
        op: str,
        name: str,
        patch: dict[str, Any],
        rv: str | None,
        manager: str,
        at: str,
    ) -> dict[str, Any]:
        old = self._get(name)
        self._check_precondition(name, old, rv)
        new = copy.deepcopy(old)
        meta = new["metadata"]
        for key in PATCHABLE_METADATA:
            if key in patch:
                merged = merge_patch(meta.get(key), patch[key])
                if merged is None or merged == {} or merged == []:
                    meta.pop(key, None)
                else:
                    meta[key] = merged
        before = (old["metadata"].get("annotations") or {}).get(ACTION_ANNOTATION)
        after = (meta.get("annotations") or {}).get(ACTION_ANNOTATION)
        if after is None and before is not None:
            self._disown_annotation(meta)
        elif after is not None and after != before:
            self._own_annotation(meta, manager, at)
        self._check_finalizers(old, new)
        self._admit("UPDATE", old, new)
        return self._commit(op, name, old, new)

    def _delete(self, op: str, name: str) -> None:
        old = self._get(name)
        if old["metadata"].get("finalizers"):
            new = copy.deepcopy(old)
            new["metadata"].setdefault("deletionTimestamp", kube_now())
            new["metadata"].setdefault("deletionGracePeriodSeconds", 0)
            self._commit(op, name, old, new)
        else:
            self._remove(op, name)

    def _commit(
        self, op: str, name: str, old: dict[str, Any] | None, new: dict[str, Any]
    ) -> dict[str, Any]:
        """Store ``new`` if it differs from ``old`` (bump RV, watch event); return it."""
        if old is not None and new == old:
            self.write_log.append((op, name, old["metadata"]["resourceVersion"]))
            return copy.deepcopy(old)
        meta = new["metadata"]
        if old is not None and meta.get("deletionTimestamp") and not meta.get("finalizers"):
            self._objects[name] = new
            self._remove(op, name)
            return copy.deepcopy(new)
        self._rv += 1
        meta["resourceVersion"] = str(self._rv)
        self._objects[name] = new
        kind = "ADDED" if old is None else "MODIFIED"
        self._history.append((self._rv, {"type": kind, "object": copy.deepcopy(new)}))
        self.write_log.append((op, name, str(self._rv)))
        self._cond.notify_all()
        return copy.deepcopy(new)

    def _remove(self, op: str, name: str) -> None:
        obj = self._objects.pop(name)
        self._status_owners.pop(name, None)
        self._rv += 1
        obj["metadata"]["resourceVersion"] = str(self._rv)
        self._history.append((self._rv, {"type": "DELETED", "object": copy.deepcopy(obj)}))
        self.write_log.append((op, name, str(self._rv)))
        self._cond.notify_all()


# ---------------------------------------------------------------------------------------
# FakeKubeHttp: the apiserver behind KubeHttp.request for Events and webhook configurations


_DNS_SUBDOMAIN = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*")
_QUALIFIED_NAME = re.compile(
    r"([a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*/)?"
    r"[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?"
)
_EVENT_IMMUTABLE = (
    "regarding",
    "related",
    "reason",
    "note",
    "type",
    "action",
    "eventTime",
    "reportingController",
    "reportingInstance",
)
_EVENTS = re.compile(r"/apis/events\.k8s\.io/v1/namespaces/([^/]+)/events(?:/([^/]+))?")
_CORE_EVENTS = re.compile(r"/api/v1/namespaces/([^/]+)/events")
_WEBHOOKS = re.compile(
    r"/apis/admissionregistration\.k8s\.io/v1/validatingwebhookconfigurations(?:/([^/]+))?"
)
_CUSTOM = re.compile(r"/apis/([^/]+)/([^/]+)/namespaces/([^/]+)/([^/]+)")


def _invalid(kind: str, name: str, causes: list[str]) -> KubeInvalid:
    return KubeInvalid(422, f'{kind} "{name}" is invalid: [{", ".join(causes)}]', reason="Invalid")


def _byte_len(value: Any) -> int:
    return len(value.encode("utf-8")) if isinstance(value, str) else 0


class FakeKubeHttp:
    """Thread-safe fake of :class:`actors.ports.kube_port.KubeHttp` (``request`` only)
    serving what the event writer and the webhook registration use, faithful to the
    apiserver (Kubernetes 1.35, ``pkg/apis/core/validation/events.go``, the registry's
    optimistic concurrency):

    * ``events.k8s.io/v1`` Events: POST validates like the apiserver (name a DNS
      subdomain, ``eventTime`` set, ``type`` Normal/Warning, ``reportingController`` a
      qualified name, ``reportingInstance``, ``action`` and ``reason`` set and at most
      128 bytes, ``note`` at most 1,024 bytes, ``regarding.namespace`` set, a ``series``
      with ``count`` >= 2 and ``lastObservedTime``) → 422; an existing name → 409;
      stamps uid, resourceVersion, creationTimestamp. A merge PATCH of a missing Event
      → 404; changing an immutable field (regarding, reason, note, type, action, ...)
      → 422. GET lists with ``fieldSelector`` on ``regarding.name``/``regarding.uid``/
      ``regarding.kind``/``reason``/``type``;
    * ``/api/v1/namespaces/<ns>/events``: the same Events as ``core/v1`` (what ``kubectl
      describe`` reads: ``involvedObject`` = ``regarding``, ``message`` = ``note``,
      ``count`` from the series), selectable on ``involvedObject.name``/``.uid``/
      ``.namespace``/``.kind`` exactly like kubectl's query;
    * ``ValidatingWebhookConfiguration``: POST (409 when it exists), GET, PUT with
      ``metadata.resourceVersion`` required (422 without, 409 when stale; a PUT that
      changes nothing keeps the resourceVersion), DELETE (404 when missing);
    * a dry-run POST of a custom object (``?dryRun=All``) calls :attr:`on_dry_run`
      (default: allowed), which may raise the denial to answer.

    :meth:`fail_next` queues failures for requests matching ``"METHOD path"``;
    :attr:`requests` records ``(method, path, query, body, content_type)``. Setting
    :attr:`hold` to an unset ``threading.Event`` holds every request until it is set (a
    slow apiserver); :attr:`in_flight` and :attr:`max_in_flight` count concurrent ones.
    """

    def __init__(self) -> None:
        self._lock = threading.RLock()
        self._rv = 5000
        self.events: dict[tuple[str, str], dict[str, Any]] = {}
        self.webhooks: dict[str, dict[str, Any]] = {}
        self.requests: list[tuple[str, str, dict[str, Any], Any, str]] = []
        self._faults: list[tuple[str, BaseException]] = []
        self.on_dry_run: Callable[[dict[str, Any]], None] = lambda body: None
        self.hold: threading.Event | None = None
        self.in_flight = 0
        self.max_in_flight = 0

    # --- test controls --------------------------------------------------------------
    def fail_next(self, match: str, exc: BaseException, *, times: int = 1) -> None:
        """The next ``times`` requests whose ``"METHOD path"`` contains ``match`` raise."""
        with self._lock:
            self._faults.extend([(match, exc)] * times)

    def events_of(self, method: str) -> list[tuple[str, Any]]:
        """``(path, body)`` of the Event requests with ``method``."""
        with self._lock:
            return [(p, b) for m, p, _, b, _ in self.requests if m == method and "/events" in p]

    def describe_events(self, namespace: str, name: str, uid: str) -> list[dict[str, Any]]:
        """What ``kubectl describe container/<name>`` lists (its exact field selector)."""
        selector = (
            f"involvedObject.name={name},involvedObject.namespace={namespace},"
            f"involvedObject.kind=Container,involvedObject.uid={uid}"
        )
        body = self.request(
            "GET", f"/api/v1/namespaces/{namespace}/events", query={"fieldSelector": selector}
        )
        return body["items"]

    # --- KubeHttp API -------------------------------------------------------------------
    def request(
        self,
        method: str,
        path: str,
        *,
        query: dict[str, Any] | None = None,
        body: Any = None,
        content_type: str = JSON,
        timeout: Any = None,
    ) -> dict[str, Any]:
        query = dict(query or {})
        with self._lock:
            self.in_flight += 1
            self.max_in_flight = max(self.max_in_flight, self.in_flight)
        try:
            if self.hold is not None:
                self.hold.wait(30.0)  # never hang a test run for good
            return self._answer(method, path, query, body, content_type)
        finally:
            with self._lock:
                self.in_flight -= 1

    def _answer(
        self, method: str, path: str, query: dict[str, Any], body: Any, content_type: str
    ) -> dict[str, Any]:
        with self._lock:
            self.requests.append((method, path, query, copy.deepcopy(body), content_type))
            line = f"{method} {path}"
            for i, (match, exc) in enumerate(self._faults):
                if match in line:
                    del self._faults[i]
                    raise exc
            if m := _EVENTS.fullmatch(path):
                return self._events(method, m.group(1), m.group(2), query, body, content_type)
            if m := _CORE_EVENTS.fullmatch(path):
                if method != "GET":
                    raise KubeInvalid(405, "the fake serves core/v1 Events read-only")
                return self._core_events(m.group(1), query)
            if m := _WEBHOOKS.fullmatch(path):
                return self._webhooks(method, m.group(1), body)
            if _CUSTOM.fullmatch(path) and method == "POST" and query.get("dryRun") == "All":
                self.on_dry_run(copy.deepcopy(body))
                return copy.deepcopy(body)
        raise KubeNotFound(404, f"the server could not find the requested resource ({path})")

    # --- internals ----------------------------------------------------------------------
    def _stamp(self, obj: dict[str, Any]) -> None:
        self._rv += 1
        meta = obj.setdefault("metadata", {})
        meta.setdefault("uid", str(uuid.uuid4()))
        meta.setdefault("creationTimestamp", kube_now())
        meta["resourceVersion"] = str(self._rv)

    def _events(
        self,
        method: str,
        namespace: str,
        name: str | None,
        query: dict[str, Any],
        body: Any,
        content_type: str,
    ) -> dict[str, Any]:
        if method == "POST" and name is None:
            event = copy.deepcopy(body)
            meta = event.setdefault("metadata", {})
            meta.setdefault("namespace", namespace)
            if meta["namespace"] != namespace:
                raise KubeInvalid(
                    400,
                    "the namespace of the provided object does not match the namespace "
                    "sent on the request",
                    reason="BadRequest",
                )
            self._validate_event(event)
            key = (namespace, meta["name"])
            if key in self.events:
                raise KubeConflict(
                    409,
                    f'events.events.k8s.io "{meta["name"]}" already exists',
                    reason="AlreadyExists",
                )
            self._stamp(event)
            self.events[key] = event
            return copy.deepcopy(event)
        if method == "PATCH" and name is not None:
            if content_type != MERGE_PATCH:
                raise KubeInvalid(415, f"the fake accepts {MERGE_PATCH} only")
            old = self.events.get((namespace, name))
            if old is None:
                raise KubeNotFound(
                    404, f'events.events.k8s.io "{name}" not found', reason="NotFound"
                )
            new = merge_patch(old, body)
            changed = [f for f in _EVENT_IMMUTABLE if new.get(f) != old.get(f)]
            if changed:  # the apiserver validates the core/v1 form: its field names
                core = {"regarding": "involvedObject", "note": "message"}
                raise _invalid(
                    "Event",
                    name,
                    [f"{core.get(f, f)}: Invalid value: field is immutable" for f in changed],
                )
            if new.get("series") != old.get("series"):
                self._validate_series(new)
            if new != old:
                self._stamp(new)
                self.events[(namespace, name)] = new
            return copy.deepcopy(new)
        if method == "GET" and name is None:
            selector = _selector(query.get("fieldSelector", ""))
            items = [
                copy.deepcopy(e)
                for (ns, _), e in sorted(self.events.items())
                if ns == namespace and all(_event_field(e, k) == v for k, v in selector.items())
            ]
            return {"apiVersion": "events.k8s.io/v1", "kind": "EventList", "items": items}
        if method == "GET" and name is not None:
            event = self.events.get((namespace, name))
            if event is None:
                raise KubeNotFound(404, f'events.events.k8s.io "{name}" not found')
            return copy.deepcopy(event)
        raise KubeInvalid(405, f"the fake does not serve {method} on events")

    def _core_events(self, namespace: str, query: dict[str, Any]) -> dict[str, Any]:
        selector = _selector(query.get("fieldSelector", ""))
        items = []
        for (ns, _), event in sorted(self.events.items()):
            core = _as_core_event(event)
            if ns == namespace and all(_core_field(core, k) == v for k, v in selector.items()):
                items.append(core)
        return {"apiVersion": "v1", "kind": "EventList", "items": items}

    def _validate_event(self, event: dict[str, Any]) -> None:
        name = event["metadata"].get("name") or ""
        causes = []
        if not (_DNS_SUBDOMAIN.fullmatch(name) and len(name) <= 253):
            causes.append(f"metadata.name: Invalid value: {json.dumps(name)}")
        if not event.get("eventTime"):
            causes.append("eventTime: Required value")
        if event.get("type") not in ("Normal", "Warning"):
            causes.append(f'type: Invalid value: "": has invalid value: {event.get("type")}')
        controller = event.get("reportingController") or ""
        if not controller:
            causes.append("reportingController: Required value")
        elif not _QUALIFIED_NAME.fullmatch(controller) or len(controller.split("/")[-1]) > 63:
            causes.append(f"reportingController: Invalid value: {json.dumps(controller)}")
        for field, limit in (("reportingInstance", 128), ("action", 128), ("reason", 128)):
            if not event.get(field):
                causes.append(f"{field}: Required value")
            elif _byte_len(event[field]) > limit:
                causes.append(f'{field}: Invalid value: "": can have at most {limit} characters')
        if _byte_len(event.get("note")) > 1024:
            causes.append('note: Invalid value: "": can have at most 1024 characters')
        if not (event.get("regarding") or {}).get("namespace") and event["metadata"][
            "namespace"
        ] not in ("default", "kube-system"):
            causes.append('regarding.namespace: Invalid value: "": does not match event.namespace')
        if causes:
            raise _invalid("Event", name, causes)
        if event.get("series") is not None:
            self._validate_series(event)

    @staticmethod
    def _validate_series(event: dict[str, Any]) -> None:
        series = event.get("series")
        if series is None:
            return
        causes = []
        if not isinstance(series.get("count"), int) or series["count"] < 2:
            causes.append('series.count: Invalid value: "": should be at least 2')
        if not series.get("lastObservedTime"):
            causes.append("series.lastObservedTime: Required value")
        if causes:
            raise _invalid("Event", event["metadata"]["name"], causes)

    def _webhooks(self, method: str, name: str | None, body: Any) -> dict[str, Any]:
        resource = "validatingwebhookconfigurations.admissionregistration.k8s.io"
        if method == "POST" and name is None:
            obj = copy.deepcopy(body)
            name = obj["metadata"]["name"]
            if name in self.webhooks:
                raise KubeConflict(
                    409, f'{resource} "{name}" already exists', reason="AlreadyExists"
                )
            self._stamp(obj)
            self.webhooks[name] = obj
            return copy.deepcopy(obj)
        if name is None:
            raise KubeInvalid(405, f"the fake does not serve {method} on the collection")
        current = self.webhooks.get(name)
        if current is None:
            raise KubeNotFound(404, f'{resource} "{name}" not found', reason="NotFound")
        if method == "GET":
            return copy.deepcopy(current)
        if method == "DELETE":
            del self.webhooks[name]
            return {"kind": "Status", "status": "Success"}
        if method == "PUT":
            obj = copy.deepcopy(body)
            rv = (obj.get("metadata") or {}).get("resourceVersion")
            if not rv:
                raise _invalid(
                    "ValidatingWebhookConfiguration",
                    name,
                    [
                        "metadata.resourceVersion: Invalid value: 0x0: "
                        "must be specified for an update"
                    ],
                )
            if rv != current["metadata"]["resourceVersion"]:
                raise KubeConflict(
                    409,
                    f'Operation cannot be fulfilled on {resource} "{name}": the object has been '
                    "modified; please apply your changes to the latest version and try again",
                    reason="Conflict",
                )
            for key in ("uid", "creationTimestamp"):
                obj["metadata"][key] = current["metadata"][key]
            if obj == current:
                return copy.deepcopy(current)  # no change: the resourceVersion stays
            self._stamp(obj)
            self.webhooks[name] = obj
            return copy.deepcopy(obj)
        raise KubeInvalid(405, f"the fake does not serve {method} on {resource}")


def _selector(text: str) -> dict[str, str]:
    """``a=b,c=d`` (the only field selector form the service and kubectl use here)."""
    pairs = [part.split("=", 1) for part in text.split(",") if part]
    return {k: v.removeprefix("=") for k, v in pairs}


def _event_field(event: dict[str, Any], field: str) -> str:
    regarding = event.get("regarding") or {}
    table = {
        "regarding.name": regarding.get("name"),
        "regarding.namespace": regarding.get("namespace"),
        "regarding.uid": regarding.get("uid"),
        "regarding.kind": regarding.get("kind"),
        "reason": event.get("reason"),
        "type": event.get("type"),
        "metadata.name": event["metadata"].get("name"),
    }
    if field not in table:
        raise KubeInvalid(
            400, f'"{field}" is not a known field selector: only "{", ".join(table)}"'
        )
    return str(table[field] or "")


def _as_core_event(event: dict[str, Any]) -> dict[str, Any]:
    """The ``core/v1`` view of an ``events.k8s.io/v1`` Event (the apiserver's conversion)."""
    series = event.get("series")
    return {
        "apiVersion": "v1",
        "kind": "Event",
        "metadata": copy.deepcopy(event["metadata"]),
        "involvedObject": copy.deepcopy(event.get("regarding") or {}),
        "reason": event.get("reason", ""),
        "message": event.get("note", ""),
        "type": event.get("type", ""),
        "action": event.get("action", ""),
        "eventTime": event.get("eventTime"),
        "reportingComponent": event.get("reportingController", ""),
        "reportingInstance": event.get("reportingInstance", ""),
        "source": {},
        "series": copy.deepcopy(series),  # no "count": that is deprecatedCount, unset
    }


def _core_field(core: dict[str, Any], field: str) -> str:
    involved = core["involvedObject"]
    table = {
        "involvedObject.name": involved.get("name"),
        "involvedObject.namespace": involved.get("namespace"),
        "involvedObject.uid": involved.get("uid"),
        "involvedObject.kind": involved.get("kind"),
        "reason": core.get("reason"),
        "type": core.get("type"),
    }
    if field not in table:
        raise KubeInvalid(400, f'"{field}" is not a known field selector')
    return str(table[field] or "")

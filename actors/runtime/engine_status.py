"""Readiness of the mirror: the namespace, ``ContainerNamespace/moby`` and ``EngineReady``.

``kubectl wait --for=condition=EngineReady containernamespace/moby -n <ns>`` returns
once the first full sync finished; the condition turns False with reason
``ConnectFailed`` while Docker is unreachable and ``Stopped`` after a clean shutdown.
(Upstream writes ``ContainerEngineReady`` on its App object; in standalone mode there is
no App, so the condition lives on the ContainerNamespace it creates anyway,
docs/contract.md §6.1. In App mode the ``listener`` forwards every readiness to the App
follower, which writes ``ContainerEngineReady`` on the App as well, §3.1.)

``ContainerNamespace/moby`` has no finalizer, so a client may delete it. It comes back,
carrying the last ``EngineReady`` written, at the next ``EngineReady`` write (the full
sync after every engine (re)connect ends with one; a repeated status checks instead of
skipping) or the next resync (``--resync-interval``, :meth:`EngineStatus.ensure_moby`).

Blocking calls; used from the router's thread and from the supervisor's main thread.
Failures are KubeError families for the caller (the router journals them and the next
full sync or resync tries again).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import Any

from actors.domain.names import (
    API_VERSION,
    APPLY_PATCH,
    CONTAINER_NAMESPACES,
    ENGINE_MANAGER,
    ENGINE_READY,
    MERGE_PATCH,
    MOBY,
)
from actors.domain.timefmt import kube_now
from actors.ports.kube_port import KubeConflict, KubeForbidden, KubeHttp, KubeNotFound, custom_path
from actors.service.startup_checks import StartupCheckError

log = logging.getLogger("dockmirror.engine_status")

CONDITION = ENGINE_READY


class NamespaceMissing(StartupCheckError):
    """The namespace does not exist and this identity may not create it (403)."""


class EngineStatus:
    """Writes the namespace objects and the ``EngineReady`` condition."""

    def __init__(
        self,
        http: KubeHttp,
        namespace: str,
        *,
        listener: Callable[[bool, str, str], None] | None = None,
    ) -> None:
        self.http = http
        self.namespace = namespace
        #: App mode (docs/contract.md §3.1): told every readiness the router reports,
        #: before the write and whether or not it succeeds, so the App's
        #: ``ContainerEngineReady`` follows it. Must not block (it is a ``tell``).
        self.listener = listener
        self._lock = threading.Lock()
        self._last: tuple[str, str, str] | None = None

    def ensure_namespace(self) -> None:
        """Check that the namespace exists; create it when missing and allowed.

        The printed RBAC (docs/permissions.md) grants only ``get`` on the namespace:
        creating namespaces is a cluster-wide power, so an admin creates it first. An
        identity that may create it (an admin's kubeconfig) still gets it created.

        * exists: nothing to do (no create attempted, so no 403 either);
        * missing and the create answers 403: :class:`NamespaceMissing` (the start ends
          with one line saying to create it);
        * the read itself answers 403 (an identity bound to older or hand-made RBAC):
          logged as a WARNING and assumed to exist; if it does not, the first write in
          it fails with "namespace not found", which the start loop reports.

        Main thread, at start. Other failures raise a KubeError family.
        """
        try:
            self.http.request("GET", f"/api/v1/namespaces/{self.namespace}")
            return
        except KubeNotFound:
            pass
        except KubeForbidden as exc:
            log.warning(
                "cannot check that namespace %s exists (%s); assuming it does "
                "(grant get on namespaces/%s: docs/permissions.md)",
                self.namespace,
                exc.message,
                self.namespace,
            )
            return
        try:
            self.http.request(
                "POST",
                "/api/v1/namespaces",
                body={
                    "apiVersion": "v1",
                    "kind": "Namespace",
                    "metadata": {"name": self.namespace},
                },
            )
        except KubeConflict:
            pass  # created concurrently
        except KubeForbidden as exc:
            raise NamespaceMissing(
                f"namespace {self.namespace} does not exist and this identity may not "
                f"create it ({exc.message}): create it first "
                f"(kubectl create namespace {self.namespace})"
            ) from exc

    def apply_moby(self) -> dict[str, Any]:
        """Server-side apply ``ContainerNamespace/moby`` (no finalizer, docs/contract.md §6.1)."""
        body = {
            "apiVersion": API_VERSION,
            "kind": "ContainerNamespace",
            "metadata": {"name": MOBY, "namespace": self.namespace},
        }
        return self.http.request(
            "PATCH",
            custom_path(self.namespace, CONTAINER_NAMESPACES, MOBY),
            query={"fieldManager": ENGINE_MANAGER, "force": "true"},
            body=body,
            content_type=APPLY_PATCH,
        )

    def set_ready(self, ready: bool, reason: str, message: str) -> None:
        """Write ``EngineReady``. When the same status was written last, only check that
        ``ContainerNamespace/moby`` still exists and carries it (:meth:`ensure_moby`)."""
        if self.listener is not None:
            try:
                self.listener(ready, reason, message)
            except Exception:  # a report lost must not fail the write (nor the router)
                log.exception("the readiness listener failed")
        key = ("True" if ready else "False", reason, message[:32000] or reason)
        with self._lock:
            if key == self._last:
                self._repair()
                return
            current, _ = self._read_or_create()
            self._write(current, key)
            self._last = key

    def ensure_moby(self) -> bool:
        """Create ``ContainerNamespace/moby`` again if a client deleted it, and put back the
        ``EngineReady`` last written if it is missing or differs. True if anything was
        written. One GET when all is well. Router thread (the periodic resync)."""
        with self._lock:
            return self._repair()

    # --- under self._lock ---------------------------------------------------------------
    def _read_or_create(self) -> tuple[dict[str, Any], bool]:
        """The stored object, and whether it had to be created (someone deleted it)."""
        path = custom_path(self.namespace, CONTAINER_NAMESPACES, MOBY)
        try:
            return self.http.request("GET", path), False
        except KubeNotFound:
            log.info("ContainerNamespace/moby is missing in %s; creating it", self.namespace)
            return self.apply_moby(), True

    def _repair(self) -> bool:
        current, created = self._read_or_create()
        if self._last is None or _condition_key(current) == self._last:
            return created
        self._write(current, self._last)
        return True

    def _write(self, current: dict[str, Any], key: tuple[str, str, str]) -> None:
        """Merge-patch the condition ``key`` into ``current``'s status; other condition
        types are kept; the transition time moves only when the status changes."""
        conditions = (current.get("status") or {}).get("conditions") or []
        previous = next((c for c in conditions if c.get("type") == CONDITION), None)
        transition = kube_now()
        if previous is not None and previous.get("status") == key[0]:
            transition = previous.get("lastTransitionTime") or transition
        condition = {
            "type": CONDITION,
            "status": key[0],
            "reason": key[1],
            "message": key[2],
            "lastTransitionTime": transition,
        }
        others = [c for c in conditions if c.get("type") != CONDITION]
        self.http.request(
            "PATCH",
            custom_path(self.namespace, CONTAINER_NAMESPACES, MOBY, "status"),
            query={"fieldManager": ENGINE_MANAGER},
            body={"status": {"conditions": [*others, condition]}},
            content_type=MERGE_PATCH,
        )


def _condition_key(obj: dict[str, Any]) -> tuple[str, str, str] | None:
    """(status, reason, message) of the stored ``EngineReady``, or None."""
    for condition in (obj.get("status") or {}).get("conditions") or []:
        if isinstance(condition, dict) and condition.get("type") == CONDITION:
            return (
                str(condition.get("status")),
                str(condition.get("reason")),
                str(condition.get("message")),
            )
    return None

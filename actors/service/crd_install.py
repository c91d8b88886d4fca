"""Install or upgrade the CRDs at start, and wait until their resources are served.

The manifests come from :mod:`actors.domain.crds` (the YAML files shipped with the
package); they reach the apiserver through the Kubernetes port
(:class:`~actors.ports.kube_port.CrdStore`):

1. one server-side apply per CRD, field manager ``INSTALL_MANAGER`` (``dockmirror``),
   ``force``: creates a missing CRD, upgrades an existing one in place (no read, no
   resourceVersion, no conflict loop);
2. each CRD is read until ``Established`` and ``NamesAccepted`` are True;
3. each CRD's resource is listed until the list is served (:func:`wait_served`).

Why step 3: ``Established`` stays True across an upgrade, but the apiserver rebuilds
the resource's storage after a spec change and answers 429 "storage is
(re)initializing" until its watch cache is ready. Clients do not retry 429 on their
own, so "installed" means "served".

Every failure leaves as :class:`CRDInstallError` naming the CRD, chained to the port's
:class:`~actors.ports.kube_port.KubeError` (the supervisor's start loop reads the chain:
401/403 end the start at once, anything else is retried until ``--startup-timeout``).
``timeout`` bounds the whole call. Runs in the supervisor's main thread, at start only;
``--skip-crd-install`` replaces it with ``startup_checks.check_crds_served``.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from typing import Any

from actors.domain.crds import SERVED_PROBE_SELECTOR, all_crds
from actors.domain.names import INSTALL_MANAGER
from actors.ports.kube_port import CrdStore, KubeError, KubeHttp, KubeNotFound, KubeUnavailable

log = logging.getLogger("dockmirror.crds")

#: Answers of the served probe that mean "not yet": 404 (the resource's handler is not
#: registered yet), 429 (storage re-initializing after a spec change) and 503.
NOT_YET_SERVED = (404, 429, 503)
ESTABLISH_POLL_S = 0.2
SERVED_POLL_S = 0.1


class CRDInstallError(RuntimeError):
    """A CRD could not be applied, or did not become established and served in time."""


def install_crds(
    http: KubeHttp,
    *,
    timeout: float = 60.0,
    namespace: str | None = None,
    manifests: Sequence[dict[str, Any]] | None = None,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
) -> None:
    """Apply every CRD (default: :func:`actors.domain.crds.all_crds`), then wait until
    each is established and its resource served; raises :class:`CRDInstallError`.

    ``namespace``: probe the lists in that namespace instead of cluster-wide, so the
    service needs list permission only in its own namespace (docs/permissions.md). The
    namespace need not exist yet: a list in a missing namespace answers 200.
    """
    store = CrdStore(http)
    deadline = clock() + timeout
    manifests = all_crds() if manifests is None else list(manifests)
    for manifest in manifests:
        name = manifest["metadata"]["name"]
        try:
            store.apply(manifest, field_manager=INSTALL_MANAGER)
        except KubeError as exc:
            raise CRDInstallError(f"applying CRD {name} failed: {exc}") from exc
    for manifest in manifests:
        wait_established(store, manifest["metadata"]["name"], deadline, clock=clock, sleep=sleep)
    for manifest in manifests:
        wait_served(store, manifest, deadline, namespace=namespace, clock=clock, sleep=sleep)
    log.info("CRDs applied and served: %s", ", ".join(m["metadata"]["name"] for m in manifests))


def conditions_of(crd: dict[str, Any]) -> dict[str, str | None]:
    """``{type: status}`` of a stored CRD's conditions; total over odd shapes."""
    conditions = (crd.get("status") or {}).get("conditions") or []
    return {
        c["type"]: c.get("status")
        for c in conditions
        if isinstance(c, dict) and isinstance(c.get("type"), str)
    }


def wait_established(
    store: CrdStore,
    name: str,
    deadline: float,
    *,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
) -> None:
    """Read the CRD until ``Established`` and ``NamesAccepted`` are True; on the deadline
    :class:`CRDInstallError` lists its conditions (a name clash shows up there)."""
    while True:
        try:
            crd = store.get(name)
        except KubeError as exc:
            raise CRDInstallError(f"reading CRD {name} failed: {exc}") from exc
        states = conditions_of(crd)
        if states.get("Established") == "True" and states.get("NamesAccepted") == "True":
            return
        if clock() > deadline:
            conditions = (crd.get("status") or {}).get("conditions") or []
            summary = "; ".join(
                f"{c.get('type')}={c.get('status')} ({c.get('reason')}: {c.get('message')})"
                for c in conditions
                if isinstance(c, dict)
            )
            raise CRDInstallError(
                f"CRD {name} not Established/NamesAccepted in time; conditions: {summary or 'none'}"
            )
        sleep(ESTABLISH_POLL_S)


def wait_served(
    store: CrdStore,
    manifest: dict[str, Any],
    deadline: float,
    *,
    namespace: str | None = None,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
) -> None:
    """List the CRD's resource, served by the watch cache, until it answers 200.

    The list carries a label selector that matches nothing: the answer stays empty
    however many objects exist, and the selector keeps the request on the watch cache.
    (A list with ``limit`` or ``resourceVersion=0`` may be delegated to etcd and
    succeed while the cache is still initializing, which would prove nothing.)
    :data:`NOT_YET_SERVED` answers are waited out until the deadline; any other answer
    raises :class:`CRDInstallError` at once. With ``namespace`` the list is namespaced.
    """
    spec = manifest["spec"]
    name = manifest["metadata"]["name"]
    version = next(v["name"] for v in spec["versions"] if v.get("served", True))
    while True:
        try:
            store.list_served(
                spec["group"],
                version,
                spec["names"]["plural"],
                namespace=namespace,
                label_selector=SERVED_PROBE_SELECTOR,
                timeout_s=max(1.0, min(10.0, deadline - clock())),
            )
            return
        except (KubeNotFound, KubeUnavailable) as exc:
            if exc.status not in NOT_YET_SERVED:
                raise CRDInstallError(f"listing {name} failed: {exc}") from exc
            if clock() > deadline:
                raise CRDInstallError(
                    f"CRD {name} is established but its resource is not served in time: "
                    f"last answer {exc}"
                ) from exc
        except KubeError as exc:
            raise CRDInstallError(f"listing {name} failed: {exc}") from exc
        sleep(SERVED_POLL_S)

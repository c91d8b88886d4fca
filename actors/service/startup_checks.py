"""Start-up checks that end the start with one clear line instead of retrying.

With ``--skip-crd-install`` the service writes no CRD: an admin installs them with
``dockmirror crds | kubectl apply -f -``, and the service only checks that the
resources it uses are installed and served (:func:`check_crds_served`). The check
needs no permission beyond the service's Role: it reads the API group's discovery
document (every authenticated user may, through the bootstrap ClusterRole
``system:discovery``) and lists Containers in the namespace (which the watch needs
anyway), so an identity without any CRD access can run the service.

A :class:`StartupCheckError` is a configuration problem the service cannot fix by
waiting: the supervisor exits at once with its message and exit code 2. Any other
failure (a :class:`~actors.ports.kube_port.KubeError` such as 429 "storage is
(re)initializing" right after an admin applied the CRDs, or an unreachable apiserver)
is retried by the supervisor's start loop until ``--startup-timeout``.

Runs in the supervisor's main thread, at start only.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from actors.domain.crds import (
    CONTAINER_CRD_NAME,
    CONTAINER_NAMESPACE_CRD_NAME,
    SERVED_PROBE_SELECTOR,
)
from actors.domain.names import CONTAINER_NAMESPACES, CONTAINERS, GROUP, VERSION
from actors.ports.kube_port import KubeHttp, KubeNotFound, custom_path

#: What an admin runs to install or upgrade the CRDs.
INSTALL_HINT = "dockmirror crds | kubectl apply -f -"

#: Resources (with the subresources the service writes) that must be served, by CRD.
REQUIRED: dict[str, tuple[str, ...]] = {
    CONTAINER_CRD_NAME: (CONTAINERS, f"{CONTAINERS}/status"),
    CONTAINER_NAMESPACE_CRD_NAME: (CONTAINER_NAMESPACES, f"{CONTAINER_NAMESPACES}/status"),
}

#: A CRD applied just before the service starts takes a moment to appear in discovery
#: (establishment); a missing CRD is re-checked for this long before the start ends.
MISSING_GRACE_S = 5.0


class StartupCheckError(Exception):
    """A configuration problem found at start; ``str()`` is the one line to print."""


class CRDNotServed(StartupCheckError):
    """A CRD the service needs is not installed (or is an older version without a
    resource the service writes), and ``--skip-crd-install`` forbids installing it."""


def discovery_path() -> str:
    return f"/apis/{GROUP}/{VERSION}"


def missing_crds(discovery: dict[str, Any] | None) -> list[str]:
    """The CRDs (by name) whose required resources the discovery document lacks.

    ``discovery`` is the decoded ``APIResourceList`` of ``/apis/<group>/<version>``, or
    None when the group version is not served at all (404). Pure and total: any odd
    document counts as listing nothing.
    """
    served: set[str] = set()
    resources = (discovery or {}).get("resources")
    if isinstance(resources, list):
        served = {str(r.get("name")) for r in resources if isinstance(r, dict)}
    return [crd for crd, needed in REQUIRED.items() if not set(needed) <= served]


def not_served_message(missing: list[str]) -> str:
    """The one line for :class:`CRDNotServed`."""
    names = ", ".join(missing)
    return (
        f"CRD {names} not installed or out of date ({GROUP}/{VERSION} must serve "
        f"{', '.join(r for crd in missing for r in REQUIRED[crd])}), and --skip-crd-install "
        f"does not install it: ask an admin to run `{INSTALL_HINT}`"
    )


def check_crds_served(
    http: KubeHttp,
    namespace: str,
    *,
    grace_s: float = MISSING_GRACE_S,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
) -> None:
    """Check that the CRDs are installed and their resources served; write nothing.

    1. Discovery of ``GROUP/VERSION`` (:mod:`actors.domain.names`) must list the
       ``CONTAINERS`` and ``CONTAINER_NAMESPACES`` plurals and their ``/status``; a CRD
       still missing after ``grace_s`` raises
       :class:`CRDNotServed`.
    2. A list of Containers in ``namespace`` with a selector that matches nothing (the
       same probe as the install's, ``actors/service/crd_install.py: wait_served``)
       must answer: after a CRD change the apiserver answers 429 until its cache is
       ready, and that :class:`~actors.ports.kube_port.KubeError` propagates for the
       start loop to retry.

    Raises a :class:`~actors.ports.kube_port.KubeError` family for any other answer (a 403
    names the missing permission in its message).
    """
    deadline = clock() + grace_s
    while True:
        try:
            discovery: dict[str, Any] | None = http.request("GET", discovery_path())
        except KubeNotFound:
            discovery = None
        missing = missing_crds(discovery)
        if not missing:
            break
        if clock() >= deadline:
            raise CRDNotServed(not_served_message(missing))
        sleep(0.25)
    http.request(
        "GET",
        custom_path(namespace, CONTAINERS),
        query={"labelSelector": SERVED_PROBE_SELECTOR},
        timeout=(5.0, 10.0),
    )

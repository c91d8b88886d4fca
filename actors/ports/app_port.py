"""The Kubernetes calls of App mode (``--app``, docs/contract.md §3.1, §3.5).

Two small stores on :class:`~actors.ports.kube_port.KubeHttp`, so every failure leaves as
a :class:`~actors.ports.kube_port.KubeError` family with its retry decision:

* :class:`AppApi`: the cluster-scoped ``App`` named ``app`` (read, list and watch it by
  ``metadata.name`` so RBAC can limit them to that name, write its ``/status``
  conditions with a resourceVersion precondition) and its CRD (present? create);
* :class:`MirrorSweeper`: every object of the four mirrored kinds in one namespace, for
  the cleanup (list, get, metadata merge patch with a resourceVersion precondition,
  delete). A kind whose CRD is not installed answers :class:`KubeNotFound` on list.

Every method is a blocking call in the caller's thread.
"""

from __future__ import annotations

import builtins  # the class's own ``list`` method shadows the builtin in annotations
from typing import Any

from actors.domain.names import (
    APP_API_VERSION,
    APP_CRD_NAME,
    APP_NAME,
    APPLY_PATCH,
    APPS,
    ENGINE_MANAGER,
    INSTALL_MANAGER,
    MERGE_PATCH,
)
from actors.ports.kube_port import (
    KubeConflict,
    KubeHttp,
    KubeNotFound,
    WatchStream,
    custom_path,
)

CRD_PATH = "/apis/apiextensions.k8s.io/v1/customresourcedefinitions"
#: Lists by name: RBAC's resourceNames then applies to list and watch too.
NAME_SELECTOR = f"metadata.name={APP_NAME}"


def app_path(sub: str = "", *, named: bool = True) -> str:
    path = f"/apis/{APP_API_VERSION}/{APPS}"
    if named:
        path += f"/{APP_NAME}"
    return path + (f"/{sub}" if sub else "")


class AppApi:
    """The App object and its CRD. Blocking calls; KubeError families on failure."""

    def __init__(self, http: KubeHttp) -> None:
        self.http = http

    # --- the App -------------------------------------------------------------------
    def get(self) -> dict[str, Any]:
        return self.http.request("GET", app_path())

    def list(self) -> tuple[list[dict[str, Any]], str]:
        """The App (zero or one item) and the list's resourceVersion (the watch's start)."""
        body = self.http.request(
            "GET", app_path(named=False), query={"fieldSelector": NAME_SELECTOR}
        )
        items = [i for i in body.get("items") or [] if isinstance(i, dict)]
        return items, str((body.get("metadata") or {}).get("resourceVersion") or "")

    def watch(
        self, resource_version: str, *, server_timeout_s: int, read_timeout_s: float
    ) -> WatchStream:
        """Watch events of the App from ``resource_version`` (bookmarks requested)."""
        response = self.http.open(
            "GET",
            app_path(named=False),
            query={
                "watch": "1",
                "fieldSelector": NAME_SELECTOR,
                "resourceVersion": resource_version,
                "allowWatchBookmarks": "true",
                "timeoutSeconds": str(server_timeout_s),
            },
            timeout=(5.0, read_timeout_s),
        )
        return WatchStream(response)

    def patch_conditions(
        self, conditions: builtins.list[dict[str, Any]], *, resource_version: str
    ) -> dict[str, Any]:
        """Replace ``status.conditions`` if the App is still at ``resource_version``.

        A merge patch replaces a list whole, so the precondition (409 when someone else
        wrote meanwhile, e.g. the App's own controller) keeps their conditions safe:
        the caller reads again and recomputes.
        """
        return self.http.request(
            "PATCH",
            app_path("status"),
            query={"fieldManager": ENGINE_MANAGER},
            body={
                "metadata": {"resourceVersion": resource_version},
                "status": {"conditions": conditions},
            },
            content_type=MERGE_PATCH,
        )

    # --- its CRD -------------------------------------------------------------------
    def crd_installed(self) -> bool:
        """Whether the App CRD exists (it may not be established yet)."""
        try:
            self.http.request("GET", f"{CRD_PATH}/{APP_CRD_NAME}")
        except KubeNotFound:
            return False
        return True

    def create_crd(self, manifest: dict[str, Any]) -> None:
        """Create the App CRD by a server-side apply without ``force`` (so RBAC can
        authorize the create by name). Between the caller's "is it there?" and this call
        someone may have created it: a 409 (fields owned by another manager with other
        values) leaves theirs as it is; identical fields change nothing."""
        try:
            self.http.request(
                "PATCH",
                f"{CRD_PATH}/{APP_CRD_NAME}",
                query={"fieldManager": INSTALL_MANAGER},
                body=manifest,
                content_type=APPLY_PATCH,
            )
        except KubeConflict:
            pass

    def probe_served(self) -> None:
        """A list of the App by name: raises while the resource is not served yet
        (404 before the CRD is established, 429 while its storage initialises)."""
        self.list()


class MirrorSweeper:
    """Every object of one mirrored kind (by plural) in ``namespace``, for the cleanup."""

    def __init__(self, http: KubeHttp, namespace: str) -> None:
        self.http = http
        self.namespace = namespace

    def _path(self, plural: str, name: str | None = None) -> str:
        return custom_path(self.namespace, plural, name)

    def list(self, plural: str) -> list[dict[str, Any]]:
        """All objects of ``plural``; :class:`KubeNotFound` when the kind is not served."""
        body = self.http.request("GET", self._path(plural), timeout=(5.0, 120.0))
        return [i for i in body.get("items") or [] if isinstance(i, dict)]

    def get(self, plural: str, name: str) -> dict[str, Any]:
        return self.http.request("GET", self._path(plural, name))

    def patch_metadata(
        self, plural: str, name: str, metadata: dict[str, Any], *, resource_version: str
    ) -> dict[str, Any]:
        """Metadata merge patch, conditional on ``resource_version`` (409 when stale)."""
        return self.http.request(
            "PATCH",
            self._path(plural, name),
            query={"fieldManager": ENGINE_MANAGER},
            body={"metadata": {**metadata, "resourceVersion": resource_version}},
            content_type=MERGE_PATCH,
        )

    def delete(self, plural: str, name: str) -> None:
        self.http.request("DELETE", self._path(plural, name))

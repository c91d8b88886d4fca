"""actors/service/crd_install.py against a fake of the apiserver's CRD behaviour.

The fake speaks the port's interface (``KubeHttp.request``) and answers as kube-apiserver
1.35 does: a server-side apply creates or updates a CRD; a CRD becomes Established a
few reads after a change; its resource answers 404 until then and, after a spec change,
429 "storage is (re)initializing" a few times before the list is served. A manual clock
makes every deadline deterministic. tests/integration/test_crds_apiserver.py runs the same
install against the real apiserver.
"""

from __future__ import annotations

import copy
from typing import Any

import pytest

from actors.domain import crds
from actors.domain.names import API_VERSION, APPLY_PATCH, CONTAINERS, GROUP, INSTALL_MANAGER, JSON
from actors.ports.kube_connect import KubeTarget, fatal_message
from actors.ports.kube_port import (
    CRD_PATH,
    KubeError,
    KubeForbidden,
    KubeNotFound,
    KubeUnavailable,
    error_from_status,
)
from actors.service import crd_install
from actors.service.crd_install import CRDInstallError, install_crds

TARGET = KubeTarget("/home/u/.kube/config", "$KUBECONFIG", "https://127.0.0.1:6443")


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += seconds


class FakeCrdApi:
    """CRDs and the lists of their resources, as the apiserver serves them."""

    def __init__(
        self,
        *,
        establish_after: int = 1,
        reinitializing: int = 0,
        names_accepted: bool = True,
    ) -> None:
        self.establish_after = establish_after
        self.reinitializing = reinitializing
        self.names_accepted = names_accepted
        self.stored: dict[str, dict[str, Any]] = {}
        self.reads_since_change: dict[str, int] = {}
        self.pending_429: dict[str, int] = {}
        self.fail: dict[tuple[str, str], KubeError] = {}
        self.calls: list[tuple[str, str, dict[str, Any] | None, str]] = []
        self.rv = 0

    # -- the port's interface --------------------------------------------------------
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
        self.calls.append((method, path, query, content_type))
        for (fail_method, prefix), error in self.fail.items():
            if method == fail_method and path.startswith(prefix):
                raise error
        if path.startswith(CRD_PATH + "/"):
            name = path[len(CRD_PATH) + 1 :]
            if method == "PATCH":
                return self._apply(name, body, query or {}, content_type)
            if method == "GET":
                return self._read(name)
        if method == "GET":
            return self._list(path)
        raise AssertionError(f"unexpected {method} {path}")

    # -- behaviour -------------------------------------------------------------------
    def _apply(
        self, name: str, body: dict[str, Any], query: dict[str, Any], content_type: str
    ) -> dict[str, Any]:
        assert content_type == APPLY_PATCH
        assert query.get("force") == "true" and query.get("fieldManager")
        assert body["metadata"]["name"] == name
        before = self.stored.get(name)
        if before is None or before["spec"] != body["spec"]:
            self.rv += 1
            stored = copy.deepcopy(body)
            stored["metadata"]["resourceVersion"] = str(self.rv)
            self.stored[name] = stored
            self.reads_since_change[name] = 0
            if before is not None:  # storage is rebuilt after a spec change
                self.pending_429[name] = self.reinitializing
        return copy.deepcopy(self.stored[name])

    def _established(self, name: str) -> bool:
        return self.reads_since_change.get(name, 0) >= self.establish_after

    def _read(self, name: str) -> dict[str, Any]:
        if name not in self.stored:
            raise KubeNotFound(404, f'customresourcedefinitions "{name}" not found')
        self.reads_since_change[name] += 1
        established = "True" if self._established(name) else "False"
        accepted = "True" if self.names_accepted else "False"
        obj = copy.deepcopy(self.stored[name])
        obj["status"] = {
            "conditions": [
                {"type": "NamesAccepted", "status": accepted, "reason": "NoConflicts"},
                {"type": "Established", "status": established, "reason": "InitialNamesAccepted"},
            ]
        }
        return obj

    def _list(self, path: str) -> dict[str, Any]:
        parts = path.strip("/").split("/")  # apis/G/V[/namespaces/NS]/PLURAL
        group, plural = parts[1], parts[-1]
        name = f"{plural}.{group}"
        if name not in self.stored or not self._established(name):
            raise KubeNotFound(404, "the server could not find the requested resource")
        if self.pending_429.get(name):
            self.pending_429[name] -= 1
            raise error_from_status(429, "storage is (re)initializing", retry_after=1.0)
        return {"items": []}

    # -- observations ----------------------------------------------------------------
    def applies(self) -> list[str]:
        return [p.rsplit("/", 1)[1] for m, p, _, _ in self.calls if m == "PATCH"]

    def lists(self) -> list[str]:
        return [p for m, p, _, _ in self.calls if m == "GET" and not p.startswith(CRD_PATH)]


def install(api: FakeCrdApi, clock: Clock, **kwargs: Any) -> None:
    install_crds(api, clock=clock, sleep=clock.sleep, **kwargs)  # type: ignore[arg-type]


# --- the fake is faithful where the installer depends on it -------------------------------


def apply(api: FakeCrdApi, manifest: dict[str, Any]) -> None:
    path = f"{CRD_PATH}/{manifest['metadata']['name']}"
    query = {"fieldManager": "m", "force": "true"}
    api.request("PATCH", path, query=query, body=manifest, content_type=APPLY_PATCH)


def test_fake_serves_a_list_only_once_established_and_after_the_429s() -> None:
    api = FakeCrdApi(establish_after=2, reinitializing=1)
    manifest = crds.container_crd()
    path = f"/apis/{API_VERSION}/{CONTAINERS}"
    apply(api, manifest)
    with pytest.raises(KubeNotFound):
        api.request("GET", path)
    api.request("GET", f"{CRD_PATH}/{crds.CONTAINER_CRD_NAME}")
    api.request("GET", f"{CRD_PATH}/{crds.CONTAINER_CRD_NAME}")
    assert api.request("GET", path) == {"items": []}
    manifest["spec"]["names"]["shortNames"] = ["c"]
    apply(api, manifest)
    api.reads_since_change[crds.CONTAINER_CRD_NAME] = 2
    with pytest.raises(KubeUnavailable) as info:
        api.request("GET", path)
    assert info.value.status == 429
    assert api.request("GET", path) == {"items": []}


# --- install ---------------------------------------------------------------------------------


def test_install_applies_every_crd_once_with_the_install_manager() -> None:
    api, clock = FakeCrdApi(), Clock()
    install(api, clock)
    assert api.applies() == crds.crd_names()
    for method, _, query, content_type in api.calls:
        assert method in ("PATCH", "GET")  # no create, no replace, no read-modify-write
        if method == "PATCH":
            assert query == {"fieldManager": INSTALL_MANAGER, "force": "true"}
            assert content_type == APPLY_PATCH
    for name in crds.crd_names():
        stored = {k: v for k, v in api.stored[name].items() if k != "metadata"}
        expected = crds.crd(name)
        assert stored == {k: v for k, v in expected.items() if k != "metadata"}


def test_a_second_install_applies_again_and_changes_nothing() -> None:
    api, clock = FakeCrdApi(), Clock()
    install(api, clock)
    versions = {n: o["metadata"]["resourceVersion"] for n, o in api.stored.items()}
    install(api, clock)
    assert api.applies() == crds.crd_names() * 2
    assert {n: o["metadata"]["resourceVersion"] for n, o in api.stored.items()} == versions


def test_install_waits_until_established() -> None:
    api, clock = FakeCrdApi(establish_after=5), Clock()
    install(api, clock)
    assert all(api.reads_since_change[n] >= 5 for n in crds.crd_names())


def test_install_times_out_naming_the_crd_and_its_conditions() -> None:
    api, clock = FakeCrdApi(establish_after=10**6), Clock()
    with pytest.raises(CRDInstallError, match=r"CRD \S+ not Established/NamesAccepted in time"):
        install(api, clock, timeout=2)
    api, clock = FakeCrdApi(names_accepted=False), Clock()
    with pytest.raises(CRDInstallError, match=r"NamesAccepted=False \(NoConflicts"):
        install(api, clock, timeout=2)


def test_an_upgrade_waits_out_429_until_the_resource_is_served() -> None:
    """After a spec change the apiserver answers 429 until its cache is rebuilt."""
    api, clock = FakeCrdApi(reinitializing=3), Clock()
    old = crds.all_crds()
    for manifest in old:
        del manifest["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["description"]
    install(api, clock, manifests=old)
    install(api, clock)
    assert all(count == 0 for count in api.pending_429.values())
    assert len(api.lists()) == len(old) * (1 + 3 + 1)  # first install, then 3 x 429 + 200


def test_install_probes_in_the_namespace_when_given_else_cluster_wide() -> None:
    """The service passes its namespace: list permission there is enough."""
    api, clock = FakeCrdApi(), Clock()
    install(api, clock, namespace="ns1")
    plurals = sorted(c["spec"]["names"]["plural"] for c in crds.all_crds())
    expected = [f"/apis/{API_VERSION}/namespaces/ns1/{p}" for p in plurals]
    assert sorted(api.lists()) == expected
    api, clock = FakeCrdApi(), Clock()
    install(api, clock)
    assert all("/namespaces/" not in path for path in api.lists())
    selector = {"labelSelector": crds.SERVED_PROBE_SELECTOR}
    assert all(q == selector for m, p, q, _ in api.calls if m == "GET" and p in api.lists())


def test_install_times_out_when_the_resource_is_never_served() -> None:
    api, clock = FakeCrdApi(reinitializing=10**6), Clock()
    install(api, clock)
    crd = crds.container_crd()
    crd["spec"]["names"]["shortNames"] = ["ctr"]
    late = r"containers\S+ is established but .*not served in time.*429"
    with pytest.raises(CRDInstallError, match=late):
        install(api, clock, manifests=[crd], timeout=2)


@pytest.mark.parametrize("status", [404, 503])
def test_install_waits_out_404_and_503_on_the_probe(status: int) -> None:
    api, clock = FakeCrdApi(), Clock()
    answers = iter([error_from_status(status, "not yet"), None])
    real_list = api._list

    def flaky(path: str) -> dict[str, Any]:
        error = next(answers, None)
        if error is not None:
            raise error
        return real_list(path)

    api._list = flaky  # type: ignore[method-assign]
    install(api, clock)


def test_a_list_error_is_reported_at_once() -> None:
    api, clock = FakeCrdApi(), Clock()
    api.fail[("GET", f"/apis/{GROUP}/")] = KubeForbidden(403, "no list")
    with pytest.raises(CRDInstallError, match=r"listing \S+ failed: 403"):
        install(api, clock, timeout=60)
    assert clock.now == 1000.0  # no waiting


def test_a_refused_apply_names_the_crd_and_keeps_the_answer_for_the_start_loop() -> None:
    denial = (
        f'customresourcedefinitions.apiextensions.k8s.io "{CONTAINERS}.{GROUP}"'
        ' is forbidden: User "u" cannot patch resource "customresourcedefinitions" in API '
        'group "apiextensions.k8s.io" at the cluster scope'
    )
    api, clock = FakeCrdApi(), Clock()
    api.fail[("PATCH", CRD_PATH)] = KubeForbidden(403, denial, reason="Forbidden")
    with pytest.raises(CRDInstallError, match=r"^applying CRD \S+ failed: 403") as info:
        install(api, clock)
    message = fatal_message(info.value, TARGET, "ns")
    assert message is not None
    assert message.startswith("missing permission: patch customresourcedefinitions")


def test_a_transport_failure_is_left_to_the_start_loop_to_retry() -> None:
    api, clock = FakeCrdApi(), Clock()
    api.fail[("PATCH", CRD_PATH)] = KubeUnavailable(None, "connection refused")
    with pytest.raises(CRDInstallError) as info:
        install(api, clock)
    assert fatal_message(info.value, TARGET, "ns") is None  # retried, not fatal
    assert isinstance(info.value.__cause__, KubeUnavailable)


def test_conditions_of_is_total() -> None:
    assert crd_install.conditions_of({}) == {}
    assert crd_install.conditions_of({"status": {"conditions": [1, {"type": "A"}]}}) == {"A": None}

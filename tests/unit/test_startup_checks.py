"""Start-up checks: CRDs served under ``--skip-crd-install``, the namespace that may not be
created, and how the supervisor's start ends on them (one line, exit code 2).

No apiserver: a scripted HTTP port answers like the real one (discovery documents as
kube-apiserver 1.35 serves them for these CRDs, KubeError families for errors) and an
injected clock makes the grace period deterministic.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

import supervisor
from actors.domain.names import API_VERSION, CONTAINER_NAMESPACES, CONTAINERS, GROUP
from actors.ports.kube_port import KubeForbidden, KubeNotFound, KubeUnavailable
from actors.runtime.engine_status import EngineStatus, NamespaceMissing
from actors.service import startup_checks
from actors.service.config import load_config
from actors.service.startup_checks import (
    CRDNotServed,
    StartupCheckError,
    check_crds_served,
    discovery_path,
    missing_crds,
)
from supervisor import Config, Supervisor


def resource(name: str) -> dict[str, Any]:
    return {"name": name, "namespaced": True, "kind": "Container", "verbs": ["get"]}


FULL = {
    "kind": "APIResourceList",
    "groupVersion": API_VERSION,
    "resources": [
        resource(n)
        for n in (
            CONTAINERS,
            "containers/status",
            "containercreaterequests",
            "containercreaterequests/status",
            CONTAINER_NAMESPACES,
            f"{CONTAINER_NAMESPACES}/status",
        )
    ],
}


class ScriptedHttp:
    """Answers by path from ``routes``: a dict, an exception, or a callable of the call
    count returning one of those. Unknown paths answer 404 like the apiserver."""

    def __init__(self, routes: dict[str, Any]) -> None:
        self.routes = routes
        self.calls: list[tuple[str, str, dict[str, Any] | None]] = []

    def request(self, method: str, path: str, *, query=None, body=None, **_: Any) -> dict:
        self.calls.append((method, path, query))
        answer = self.routes.get((method, path), self.routes.get(path))
        if callable(answer) and not isinstance(answer, type):
            answer = answer(sum(1 for c in self.calls if c[1] == path))
        if answer is None:
            raise KubeNotFound(404, "the server could not find the requested resource")
        if isinstance(answer, Exception):
            raise answer
        return answer


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += seconds


PROBE = f"/apis/{API_VERSION}/namespaces/ns/{CONTAINERS}"


# -- missing_crds (pure) ---------------------------------------------------------------


def test_full_discovery_misses_nothing() -> None:
    assert missing_crds(FULL) == []


@pytest.mark.parametrize("document", [None, {}, {"resources": None}, {"resources": "x"}, []])
def test_no_or_odd_discovery_misses_both(document: Any) -> None:
    assert missing_crds(document) == [
        f"{CONTAINERS}.{GROUP}",
        f"{CONTAINER_NAMESPACES}.{GROUP}",
    ]


def test_an_old_crd_without_status_subresource_counts_as_missing() -> None:
    old = {
        "resources": [r for r in FULL["resources"] if r["name"] != f"{CONTAINER_NAMESPACES}/status"]
        + ["not a dict"]
    }
    assert missing_crds(old) == [f"{CONTAINER_NAMESPACES}.{GROUP}"]


def test_message_names_the_crd_and_the_install_command() -> None:
    text = startup_checks.not_served_message([f"{CONTAINERS}.{GROUP}"])
    assert f"{CONTAINERS}.{GROUP}" in text
    assert "dockmirror crds | kubectl apply -f -" in text
    assert "\n" not in text


# -- check_crds_served -----------------------------------------------------------------


def test_served_crds_pass_with_a_namespaced_probe_and_no_write() -> None:
    http = ScriptedHttp({discovery_path(): FULL, PROBE: {"items": []}})
    check_crds_served(http, "ns")  # type: ignore[arg-type]
    assert [c[0] for c in http.calls] == ["GET", "GET"]
    assert http.calls[1][1] == PROBE
    assert http.calls[1][2] == {"labelSelector": startup_checks.SERVED_PROBE_SELECTOR}


def test_missing_group_ends_after_the_grace_period() -> None:
    clock = FakeClock()
    http = ScriptedHttp({})
    with pytest.raises(CRDNotServed, match=r"containers\.containers.*dockmirror crds"):
        check_crds_served(http, "ns", grace_s=5.0, clock=clock, sleep=clock.sleep)  # type: ignore[arg-type]
    assert clock.now >= 105.0
    assert all(path == discovery_path() for _, path, _ in http.calls)  # no probe, no write


def test_crd_appearing_within_the_grace_period_passes() -> None:
    clock = FakeClock()
    http = ScriptedHttp(
        {discovery_path(): lambda n: FULL if n >= 3 else None, PROBE: {"items": []}}
    )
    check_crds_served(http, "ns", grace_s=5.0, clock=clock, sleep=clock.sleep)  # type: ignore[arg-type]
    assert http.calls[-1][1] == PROBE


def test_storage_reinitializing_propagates_for_the_start_loop_to_retry() -> None:
    busy = KubeUnavailable(429, "storage is (re)initializing", reason="TooManyRequests")
    http = ScriptedHttp({discovery_path(): FULL, PROBE: busy})
    with pytest.raises(KubeUnavailable) as info:
        check_crds_served(http, "ns")  # type: ignore[arg-type]
    assert not isinstance(info.value, StartupCheckError)


def test_forbidden_probe_is_a_kube_error_naming_the_permission() -> None:
    denied = KubeForbidden(403, f'User "u" cannot list resource "{CONTAINERS}"')
    http = ScriptedHttp({discovery_path(): FULL, PROBE: denied})
    with pytest.raises(KubeForbidden, match="cannot list"):
        check_crds_served(http, "ns")  # type: ignore[arg-type]


# -- EngineStatus.ensure_namespace -----------------------------------------------------

NS_PATH = "/api/v1/namespaces/ns"


def test_existing_namespace_is_only_read() -> None:
    http = ScriptedHttp({NS_PATH: {"metadata": {"name": "ns"}}})
    EngineStatus(http, "ns").ensure_namespace()  # type: ignore[arg-type]
    assert [(m, p) for m, p, _ in http.calls] == [("GET", NS_PATH)]


def test_missing_namespace_is_created_when_allowed() -> None:
    http = ScriptedHttp({("POST", "/api/v1/namespaces"): {}})
    EngineStatus(http, "ns").ensure_namespace()  # type: ignore[arg-type]
    assert [(m, p) for m, p, _ in http.calls] == [("GET", NS_PATH), ("POST", "/api/v1/namespaces")]


def test_missing_namespace_that_may_not_be_created_is_a_startup_error() -> None:
    denied = KubeForbidden(403, 'User "u" cannot create resource "namespaces"')
    http = ScriptedHttp({("POST", "/api/v1/namespaces"): denied})
    with pytest.raises(NamespaceMissing, match=r"kubectl create namespace ns") as info:
        EngineStatus(http, "ns").ensure_namespace()  # type: ignore[arg-type]
    assert "cannot create" in str(info.value)


def test_unreadable_namespace_is_assumed_to_exist_with_a_warning(
    caplog: pytest.LogCaptureFixture,
) -> None:
    http = ScriptedHttp({NS_PATH: KubeForbidden(403, "cannot get namespaces")})
    EngineStatus(http, "ns").ensure_namespace()  # type: ignore[arg-type]
    assert [m for m, _, _ in http.calls] == ["GET"]  # no create attempted
    assert "cannot check that namespace ns exists" in caplog.text


# -- the supervisor's start --------------------------------------------------------------


def make_config(tmp_path: Path, **over: Any) -> Config:
    values: dict[str, Any] = dict(
        namespace="ns",
        kubeconfig=None,
        docker_host=None,
        state_dir=tmp_path,
        trace_file=None,
        trace_max_mb=1,
        trace_backups=1,
        max_active_containers=4,
        idle_timeout=3.0,
        restart_budget=10,
        restart_window=60.0,
        webhook_port=0,
        webhook_recheck=30.0,
        startup_timeout=60.0,
    )
    values.update(over)
    return Config(**values)


def test_skip_crd_install_option_parses() -> None:
    assert load_config(["--skip-crd-install"], {}).skip_crd_install is True
    assert load_config([], {"DOCKMIRROR_SKIP_CRD_INSTALL": "yes"}).skip_crd_install is True
    assert load_config([], {}).skip_crd_install is False


def _supervisor(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    http: ScriptedHttp,
    installed: list[str],
    **over: Any,
) -> Supervisor:
    sup = Supervisor(make_config(tmp_path, **over))
    sup.http = http  # type: ignore[assignment]
    sup.engine_status = EngineStatus(http, "ns")  # type: ignore[arg-type]
    install: Callable[..., None] = lambda *a, **kw: installed.append(kw.get("namespace"))  # noqa: E731
    monkeypatch.setattr(supervisor, "install_crds", install)
    return sup


def test_skip_crd_install_never_installs_and_ends_at_once_when_missing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    clock = FakeClock()
    monkeypatch.setattr(
        supervisor,
        "check_crds_served",
        lambda http, ns: check_crds_served(http, ns, clock=clock, sleep=clock.sleep),
    )
    installed: list[str] = []
    sup = _supervisor(tmp_path, monkeypatch, ScriptedHttp({}), installed, skip_crd_install=True)
    with pytest.raises(SystemExit) as info:
        sup.prepare_kubernetes()
    message = str(info.value.code)
    assert message.startswith(f"dockmirror: CRD {CONTAINERS}.{GROUP}")
    assert "dockmirror crds | kubectl apply -f -" in message
    assert installed == []
    assert clock.now - 100.0 < 60.0  # the grace period, not the 60 s start-up timeout


def test_without_skip_the_crds_are_installed_with_a_namespaced_probe(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    installed: list[str] = []
    http = ScriptedHttp(
        {
            NS_PATH: {},
            (
                "PATCH",
                f"/apis/{API_VERSION}/namespaces/ns/{CONTAINER_NAMESPACES}/moby",
            ): {},
            (
                "GET",
                f"/apis/{API_VERSION}/namespaces/ns/{CONTAINER_NAMESPACES}/moby",
            ): {},
            (
                "PATCH",
                f"/apis/{API_VERSION}/namespaces/ns/{CONTAINER_NAMESPACES}/moby/status",
            ): {},
        }
    )
    sup = _supervisor(tmp_path, monkeypatch, http, installed)
    sup.prepare_kubernetes()
    assert installed == ["ns"]
    assert not any(path == discovery_path() for _, path, _ in http.calls)


def test_namespace_that_may_not_be_created_ends_the_start_with_one_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    http = ScriptedHttp(
        {
            discovery_path(): FULL,
            PROBE: {"items": []},
            ("POST", "/api/v1/namespaces"): KubeForbidden(403, "cannot create namespaces"),
        }
    )
    sup = _supervisor(tmp_path, monkeypatch, http, [], skip_crd_install=True)
    with pytest.raises(SystemExit) as info:
        sup.prepare_kubernetes()
    assert str(info.value.code) == (
        "dockmirror: namespace ns does not exist and this identity may not create it "
        "(cannot create namespaces): create it first (kubectl create namespace ns)"
    )

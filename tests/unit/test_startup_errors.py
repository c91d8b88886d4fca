"""Configuration errors at start: one line, non-zero exit, never a traceback
(actors/ports/kube_connect.py and Supervisor.prepare_kubernetes with faked failing calls)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from kubernetes.client.rest import ApiException
from kubernetes.config.config_exception import ConfigException

import supervisor
from actors.domain.names import CONTAINERS, GROUP
from actors.ports.kube_connect import (
    KubeconfigError,
    KubeTarget,
    fatal_message,
    forbidden_message,
    kubeconfig_path,
    load_client_configuration,
)
from actors.ports.kube_port import KubeUnavailable
from actors.service.config import Config
from actors.service.crd_install import CRDInstallError

TARGET = KubeTarget("/home/u/.kube/config", "$KUBECONFIG", "https://127.0.0.1:6443")
CRD_DENIAL = (
    'customresourcedefinitions.apiextensions.k8s.io is forbidden: User "some-user" cannot '
    'create resource "customresourcedefinitions" in API group "apiextensions.k8s.io" at the '
    "cluster scope"
)

KUBECONFIG = """\
apiVersion: v1
kind: Config
clusters: [{name: c, cluster: {server: "https://127.0.0.1:6443"}}]
users: [{name: u, user: {token: abc}}]
contexts: [{name: x, context: {cluster: c, user: u}}]
current-context: x
"""


def api_exception(status: int, message: str, reason: str) -> ApiException:
    exc = ApiException(status=status, reason=reason)
    exc.body = json.dumps(
        {
            "kind": "Status",
            "status": "Failure",
            "message": message,
            "reason": reason,
            "code": status,
        }
    ).encode()
    return exc


# --- kubeconfig -----------------------------------------------------------------------------
def test_missing_kubeconfig_names_the_path_and_its_source(tmp_path: Path) -> None:
    missing = tmp_path / "nope"
    with pytest.raises(KubeconfigError) as caught:
        load_client_configuration(None, {"KUBECONFIG": str(missing)})
    assert str(caught.value) == (
        f"kubeconfig not found: {missing} (from $KUBECONFIG); pass --kubeconfig PATH or set "
        "KUBECONFIG to a kubeconfig for the cluster"
    )
    assert kubeconfig_path(None, {}) == ("~/.kube/config", "the default location")
    assert kubeconfig_path("/a", {"KUBECONFIG": "/b"}) == ("/a", "--kubeconfig")


def test_unreadable_and_invalid_kubeconfig(tmp_path: Path) -> None:
    with pytest.raises(KubeconfigError, match=r"^cannot read kubeconfig .* Is a directory$"):
        load_client_configuration(str(tmp_path), {})
    bad = tmp_path / "bad"
    bad.write_text("apiVersion: v1\nkind: Config\ncurrent-context: none\n")
    with pytest.raises(KubeconfigError) as caught:
        load_client_configuration(str(bad), {})
    assert str(caught.value).startswith(f"invalid kubeconfig {bad} (from --kubeconfig): ")
    assert "\n" not in str(caught.value)
    garbage = tmp_path / "garbage"
    garbage.write_text("{{{{ not yaml")
    with pytest.raises(KubeconfigError, match=r"^invalid kubeconfig"):
        load_client_configuration(str(garbage), {})


def test_valid_kubeconfig_gives_the_server(tmp_path: Path) -> None:
    good = tmp_path / "config"
    good.write_text(KUBECONFIG)
    configuration, target = load_client_configuration(None, {"KUBECONFIG": f"/nope:{good}"})
    assert configuration.host == "https://127.0.0.1:6443"
    assert target == KubeTarget(f"/nope:{good}", "$KUBECONFIG", "https://127.0.0.1:6443")


# --- answers at start -------------------------------------------------------------------------
def test_403_names_verb_and_resource_and_points_at_rbac() -> None:
    wrapped = CRDInstallError("creating CRD x failed")
    wrapped.__cause__ = api_exception(403, CRD_DENIAL, "Forbidden")
    assert fatal_message(wrapped, TARGET, "ns") == (
        "missing permission: create customresourcedefinitions.apiextensions.k8s.io at the "
        f"cluster scope ({CRD_DENIAL}); apply what `dockmirror rbac --namespace ns --user "
        "some-user` prints"
    )


def test_403_in_a_namespace_for_a_service_account() -> None:
    text = (
        f'{CONTAINERS}.{GROUP} "x" is forbidden: User '
        '"system:serviceaccount:ops:dm" cannot patch resource "containers/status" in API group '
        f'"{GROUP}" in the namespace "rd"'
    )
    message = forbidden_message(text, "rd")
    assert message.startswith(
        f'missing permission: patch {CONTAINERS}.{GROUP}/status in namespace "rd"'
    )
    assert message.endswith("`dockmirror rbac --namespace rd --service-account ops/dm` prints")


def test_403_without_an_rbac_text_is_passed_on() -> None:
    text = "unable to create new content in namespace rd because it is being terminated"
    assert forbidden_message(text, "rd") == (
        f"the apiserver refused a request at start (403 Forbidden): {text}"
    )


def test_401_and_unusable_credentials() -> None:
    message = fatal_message(api_exception(401, "Unauthorized", "Unauthorized"), TARGET, "ns")
    assert message is not None
    assert message.startswith(
        "credentials rejected by the apiserver https://127.0.0.1:6443 (401 Unauthorized): "
        "check the user of the current context in /home/u/.kube/config"
    )
    plugin = fatal_message(ConfigException("exec: process returned 1\nno token"), TARGET, "ns")
    assert plugin is not None and "\n" not in plugin and "exec: process returned 1" in plugin


def test_retryable_answers_are_not_fatal() -> None:
    assert fatal_message(api_exception(503, "x", "ServiceUnavailable"), TARGET, "ns") is None
    assert fatal_message(OSError("connection refused"), TARGET, "ns") is None


# --- the supervisor's start -----------------------------------------------------------------
class FakeEngineStatus:
    def __init__(self, error: Exception | None = None) -> None:
        self.error = error
        self.calls: list[str] = []

    def ensure_namespace(self) -> None:
        self.calls.append("namespace")
        if self.error is not None:
            raise self.error

    def apply_moby(self) -> None:
        self.calls.append("moby")

    def set_ready(self, *args: Any) -> None:
        self.calls.append("ready")


def make_supervisor(tmp_path: Path, timeout: float = 0.0) -> supervisor.Supervisor:
    sup = supervisor.Supervisor(Config(state_dir=tmp_path, startup_timeout=timeout))
    sup.kube_target = TARGET
    sup.http = None  # type: ignore[assignment]
    return sup


def test_prepare_exits_at_once_on_403(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[int] = []

    def install_crds(_client: Any, **_: Any) -> None:
        calls.append(1)
        raise CRDInstallError("creating CRD failed") from api_exception(
            403, CRD_DENIAL, "Forbidden"
        )

    monkeypatch.setattr(supervisor, "install_crds", install_crds)
    sup = make_supervisor(tmp_path, timeout=60.0)
    with pytest.raises(SystemExit) as caught:
        sup.prepare_kubernetes()
    assert calls == [1]  # no retry loop for 60 s
    assert str(caught.value.code).startswith(
        "dockmirror: missing permission: create customresourcedefinitions"
    )


def test_prepare_gives_up_on_an_unreachable_apiserver_after_the_timeout(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(supervisor, "install_crds", lambda _client, **_: None)
    sup = make_supervisor(tmp_path, timeout=0.0)
    sup.engine_status = FakeEngineStatus(KubeUnavailable(None, "MaxRetryError: refused"))
    with pytest.raises(SystemExit) as caught:
        sup.prepare_kubernetes()
    assert caught.value.code == (
        "dockmirror: cannot prepare the Kubernetes API at https://127.0.0.1:6443 (kubeconfig "
        "/home/u/.kube/config) within 0 s (--startup-timeout): MaxRetryError: refused"
    )


def test_main_prints_one_line_and_exits_2_for_a_missing_kubeconfig(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(supervisor.signal, "signal", lambda *args: None)
    code = supervisor.main(
        [
            "--state-dir",
            str(tmp_path / "s"),
            "--kubeconfig",
            str(tmp_path / "none"),
            "--trace-file",
            "-",
        ]
    )
    assert code == supervisor.EXIT_STARTUP
    err = capsys.readouterr().err.splitlines()
    assert err == [
        f"dockmirror: kubeconfig not found: {tmp_path / 'none'} (from --kubeconfig); pass "
        "--kubeconfig PATH or set KUBECONFIG to a kubeconfig for the cluster"
    ]

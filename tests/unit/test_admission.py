"""Admission modes without an apiserver: the policy manifests (pure), mode choice,
the policy's install/check/probe loop with an injected clock, and the webhook start's
clean-up on failure. The CEL itself is evaluated by the real apiserver in
tests/integration/test_admission_policy.py (no CEL library is installed here)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509

from actors.domain.admission_policy import (
    NAMESPACE_POLICY_NAME,
    POLICY_NAME,
    SPEC_IMMUTABLE_MESSAGE,
    binding_name,
    cel_str,
    namespace_binding_name,
    policy_manifests,
)
from actors.domain.names import (
    ACTION_ANNOTATION,
    CONTAINER_NAMESPACES,
    CONTAINERS,
    GROUP,
    INSTALL_MANAGER,
    VERSION,
)
from actors.domain.webhook_review import CREATE_DENIED_MESSAGE, NAMESPACE_DELETE_WARNING
from actors.infra.certs import ensure_certificates
from actors.infra.webhook import WebhookNotCalledError
from actors.ports.kube_port import (
    KubeConflict,
    KubeForbidden,
    KubeNotFound,
    KubeUnavailable,
    custom_path,
)
from actors.service import admission
from actors.service.admission import AdmissionError, PolicyAdmission, WebhookSettings, choose_mode

# --- manifests -------------------------------------------------------------------------


def test_manifests_are_policy_then_binding_for_the_namespace_only() -> None:
    policy, binding, ns_policy, ns_binding = policy_manifests("team-a")
    assert policy["kind"] == "ValidatingAdmissionPolicy"
    assert policy["metadata"]["name"] == POLICY_NAME
    assert binding["kind"] == "ValidatingAdmissionPolicyBinding"
    assert binding["metadata"]["name"] == binding_name("team-a") == "dockmirror-team-a"
    assert binding["spec"] == {
        "policyName": POLICY_NAME,
        "validationActions": ["Deny"],
        "matchResources": {
            "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "team-a"}}
        },
    }
    assert ns_policy["metadata"]["name"] == NAMESPACE_POLICY_NAME
    assert ns_binding["metadata"]["name"] == f"dockmirror-team-a.{CONTAINER_NAMESPACES}"
    assert ns_binding["spec"]["policyName"] == NAMESPACE_POLICY_NAME
    for manifest in (policy, binding, ns_policy, ns_binding):
        assert manifest["apiVersion"] == "admissionregistration.k8s.io/v1"
        assert manifest["metadata"]["labels"] == {"app.kubernetes.io/managed-by": "dockmirror"}


def test_namespace_delete_only_warns_never_denies() -> None:
    """docs/contract.md §5.2: every ContainerNamespace DELETE gets the warning."""
    _, _, ns_policy, ns_binding = policy_manifests("team-a")
    spec = ns_policy["spec"]
    assert spec["failurePolicy"] == "Ignore"
    (rule,) = spec["matchConstraints"]["resourceRules"]
    assert (rule["resources"], rule["operations"]) == ([CONTAINER_NAMESPACES], ["DELETE"])
    (validation,) = spec["validations"]
    assert validation["message"] == NAMESPACE_DELETE_WARNING
    assert "messageExpression" not in validation
    assert ns_binding["spec"]["validationActions"] == ["Warn"]
    assert ns_binding["spec"]["matchResources"] == {
        "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "team-a"}}
    }


def test_binding_names_never_clash_across_namespaces() -> None:
    """Bindings are cluster-scoped: no namespace's warning binding may be named like
    another namespace's Container binding (a namespace name has no dot)."""
    for a, b in [("cns", "x"), (f"x-{CONTAINER_NAMESPACES}", "x"), ("a", "a")]:
        assert namespace_binding_name(b) != binding_name(a)


def test_policy_is_shared_and_deterministic() -> None:
    a, b = policy_manifests("a")[0], policy_manifests("b")[0]
    assert json.dumps(a, sort_keys=True) == json.dumps(b, sort_keys=True)
    json.dumps(policy_manifests("x"))  # plain JSON, ready for kubectl apply


def test_policy_matches_main_resource_create_and_update_only() -> None:
    spec = policy_manifests("ns")[0]["spec"]
    assert spec["failurePolicy"] == "Fail"
    (rule,) = spec["matchConstraints"]["resourceRules"]
    assert rule["resources"] == [CONTAINERS]  # not containers/status
    assert rule["operations"] == ["CREATE", "UPDATE"]
    assert rule["apiGroups"] == [GROUP]
    assert rule["apiVersions"] == [VERSION]


def test_validations_carry_the_contract_texts() -> None:
    create, spec, invalid = policy_manifests("ns")[0]["spec"]["validations"]
    assert create["message"] == CREATE_DENIED_MESSAGE
    assert spec["message"] == SPEC_IMMUTABLE_MESSAGE
    assert invalid["message"].startswith(f"invalid {ACTION_ANNOTATION} annotation ")
    assert invalid["messageExpression"].startswith(f"'invalid {ACTION_ANNOTATION} annotation ' + ")
    for v in (create, spec, invalid):
        assert v["reason"] == "Forbidden"  # 403, like the webhook's denial
    for action in ("start", "stop", "pause", "unpause", "restart"):
        assert f"'{action}'" in invalid["expression"]


def test_cel_str_escapes() -> None:
    assert cel_str("a'b\\c\n") == "'a\\'b\\\\c\\n'"


# --- mode choice -------------------------------------------------------------------------


class ScriptedHttp:
    """Answers requests from a list of (method, path-prefix, answer) in order; an answer
    that is an exception is raised. Records every request."""

    def __init__(self, answers: list[tuple[str, str, Any]]) -> None:
        self.answers = list(answers)
        self.requests: list[tuple[str, str, dict[str, Any] | None]] = []

    def request(self, method: str, path: str, **kw: Any) -> dict[str, Any]:
        self.requests.append((method, path, kw.get("query")))
        want_method, prefix, answer = self.answers.pop(0)
        assert (method, path[: len(prefix)]) == (want_method, prefix)
        if isinstance(answer, Exception):
            raise answer
        return answer


DISCOVERY = "/apis/admissionregistration.k8s.io/v1"


def test_auto_picks_policy_when_served() -> None:
    http = ScriptedHttp(
        [("GET", DISCOVERY, {"resources": [{"name": "validatingadmissionpolicies"}]})]
    )
    assert choose_mode("auto", http) == "policy"  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "answer",
    [
        {"resources": [{"name": "validatingwebhookconfigurations"}]},
        KubeNotFound(404, "not found"),
    ],
)
def test_auto_falls_back_to_webhook(answer: Any) -> None:
    http = ScriptedHttp([("GET", DISCOVERY, answer)])
    assert choose_mode("auto", http) == "webhook"  # type: ignore[arg-type]


def test_auto_discovery_failure_is_one_line() -> None:
    http = ScriptedHttp([("GET", DISCOVERY, KubeUnavailable(503, "down"))])
    with pytest.raises(AdmissionError, match="cannot discover"):
        choose_mode("auto", http)  # type: ignore[arg-type]


def test_explicit_mode_needs_no_discovery() -> None:
    http = ScriptedHttp([])
    assert choose_mode("none", http) == "none"  # type: ignore[arg-type]
    assert http.requests == []


# --- policy mode -----------------------------------------------------------------------------

CONTAINERS_PATH = custom_path("ns", CONTAINERS)
NS_BINDING = f"dockmirror-ns.{CONTAINER_NAMESPACES}"
POLICY_DENIAL = KubeForbidden(
    403,
    f'{CONTAINERS}.{GROUP} "" is forbidden: ValidatingAdmissionPolicy '
    f"'{POLICY_NAME}' with binding 'dockmirror-ns' denied request: {CREATE_DENIED_MESSAGE}",
)


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += seconds


def policy(http: ScriptedHttp, install: bool = True) -> tuple[PolicyAdmission, FakeClock]:
    clock = FakeClock()
    return PolicyAdmission(http, "ns", install, clock=clock, sleep=clock.sleep), clock  # type: ignore[arg-type]


def test_install_applies_both_then_probes_until_denied_by_the_policy() -> None:
    http = ScriptedHttp(
        [
            ("PATCH", f"{DISCOVERY}/validatingadmissionpolicies/{POLICY_NAME}", {}),
            ("PATCH", f"{DISCOVERY}/validatingadmissionpolicybindings/dockmirror-ns", {}),
            ("PATCH", f"{DISCOVERY}/validatingadmissionpolicies/{NAMESPACE_POLICY_NAME}", {}),
            ("PATCH", f"{DISCOVERY}/validatingadmissionpolicybindings/{NS_BINDING}", {}),
            ("POST", CONTAINERS_PATH, {}),  # not loaded yet: the dry run is allowed
            ("POST", CONTAINERS_PATH, KubeForbidden(403, "denied by some other webhook")),
            ("POST", CONTAINERS_PATH, POLICY_DENIAL),
        ]
    )
    p, clock = policy(http)
    p.ensure(timeout=30)
    applies = [r for r in http.requests if r[0] == "PATCH"]
    assert all(q == {"fieldManager": INSTALL_MANAGER, "force": "true"} for _, _, q in applies)
    probes = [r for r in http.requests if r[0] == "POST"]
    assert all(q == {"dryRun": "All"} for _, _, q in probes)
    assert clock.now == pytest.approx(2 * admission.PROBE_INTERVAL_S)


def test_probe_gives_up_at_the_deadline_with_the_last_observation() -> None:
    http = ScriptedHttp([("POST", CONTAINERS_PATH, {})] * 100)
    p, clock = policy(http)
    with pytest.raises(AdmissionError, match="did not take effect within 1 s: a dry-run create"):
        p.wait_effective(timeout=1.0)
    assert 1.0 <= clock.now <= 1.0 + admission.PROBE_INTERVAL_S


def test_install_without_permission_points_to_skip_install() -> None:
    http = ScriptedHttp([("PATCH", DISCOVERY, KubeForbidden(403, "cannot patch"))])
    p, _ = policy(http)
    with pytest.raises(AdmissionError, match="--skip-admission-install") as info:
        p.ensure(timeout=1)
    assert "\n" not in str(info.value)


def test_skip_install_missing_manifest_is_one_clear_line() -> None:
    http = ScriptedHttp(
        [("GET", f"{DISCOVERY}/validatingadmissionpolicies/", KubeNotFound(404, "nf"))]
    )
    p, _ = policy(http, install=False)
    with pytest.raises(AdmissionError, match="is not installed") as info:
        p.ensure(timeout=1)
    assert "dockmirror policy --namespace ns | kubectl apply -f -" in str(info.value)


def test_skip_install_present_only_reads_and_probes() -> None:
    http = ScriptedHttp(
        [
            ("GET", f"{DISCOVERY}/validatingadmissionpolicies/{POLICY_NAME}", {}),
            ("GET", f"{DISCOVERY}/validatingadmissionpolicybindings/dockmirror-ns", {}),
            ("GET", f"{DISCOVERY}/validatingadmissionpolicies/{NAMESPACE_POLICY_NAME}", {}),
            ("GET", f"{DISCOVERY}/validatingadmissionpolicybindings/{NS_BINDING}", {}),
            ("POST", CONTAINERS_PATH, POLICY_DENIAL),
        ]
    )
    p, _ = policy(http, install=False)
    p.ensure(timeout=1)
    assert [m for m, _, _ in http.requests] == ["GET", "GET", "GET", "GET", "POST"]


def test_skip_install_without_the_warning_pair_starts_and_says_so(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """An admin who applied an older `dockmirror policy`: deletes only lose the warning."""
    missing = KubeNotFound(404, "not found")
    http = ScriptedHttp(
        [
            ("GET", f"{DISCOVERY}/validatingadmissionpolicies/{POLICY_NAME}", {}),
            ("GET", f"{DISCOVERY}/validatingadmissionpolicybindings/dockmirror-ns", {}),
            ("GET", f"{DISCOVERY}/validatingadmissionpolicies/{NAMESPACE_POLICY_NAME}", missing),
            ("GET", f"{DISCOVERY}/validatingadmissionpolicybindings/{NS_BINDING}", missing),
            ("POST", CONTAINERS_PATH, POLICY_DENIAL),
        ]
    )
    p, _ = policy(http, install=False)
    with caplog.at_level("WARNING", logger="dockmirror.admission"):
        p.ensure(timeout=1)
    assert (
        sum("ContainerNamespace deletes get no warning" in r.message for r in caplog.records) == 2
    )


# --- webhook mode: failures leave nothing registered -----------------------------------------


class FakeServer:
    def __init__(self, cert: Path, key: Path, port: int = 0, host: str = "") -> None:
        self.port = port or 4443
        self.stopped = False

    def start(self) -> None:
        pass

    def stop(self) -> None:
        self.stopped = True


class FakeRegistration:
    last: FakeRegistration

    def __init__(self, api: Any, namespace: str, port: int, ca: bytes, **kw: Any) -> None:
        self.name = f"dockmirror-{namespace}"
        self.url = kw.get("url") or f"https://127.0.0.1:{port}/x"
        self.registered = False
        self.deleted = False
        self.fail_register: Exception | None = None
        self.fail_probe: Exception | None = None
        self.fail_delete: Exception | None = None
        FakeRegistration.last = self
        for key, value in FakeRegistration.plan.items():
            setattr(self, key, value)

    plan: dict[str, Any] = {}

    def register(self) -> None:
        if self.fail_register:
            raise self.fail_register
        self.registered = True

    def wait_until_called(self, timeout: float) -> None:
        if self.fail_probe:
            raise self.fail_probe

    def delete(self) -> None:
        if self.fail_delete:
            raise self.fail_delete
        self.deleted = True


@pytest.fixture
def fake_webhook(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(admission, "WebhookServer", FakeServer)
    monkeypatch.setattr(admission, "WebhookRegistration", FakeRegistration)
    FakeRegistration.plan = {}


def test_unreachable_webhook_is_removed_and_reported(fake_webhook: None, tmp_path: Path) -> None:
    FakeRegistration.plan = {"fail_probe": WebhookNotCalledError("HTTP 500: connection refused")}
    settings = WebhookSettings(tmp_path, url="https://127.0.0.1:1/x")
    with pytest.raises(AdmissionError) as info:
        admission.start_webhook(None, "ns", settings, timeout=1)  # type: ignore[arg-type]
    reg = FakeRegistration.last
    assert reg.registered and reg.deleted
    assert str(info.value).startswith(
        "the API server cannot reach the admission webhook at https://127.0.0.1:1/x: "
    )
    assert str(info.value).endswith("use --admission policy or --webhook-url")


def test_failed_registration_is_removed_and_reported(fake_webhook: None, tmp_path: Path) -> None:
    FakeRegistration.plan = {"fail_register": KubeConflict(409, "could not register: 409 twice")}
    with pytest.raises(AdmissionError, match="cannot register ValidatingWebhookConfiguration"):
        admission.start_webhook(None, "ns", WebhookSettings(tmp_path), timeout=1)  # type: ignore[arg-type]
    assert FakeRegistration.last.deleted  # a half-done replace must not stay


def test_failed_removal_names_the_leftover(fake_webhook: None, tmp_path: Path) -> None:
    FakeRegistration.plan = {
        "fail_probe": WebhookNotCalledError("timeout"),
        "fail_delete": KubeUnavailable(None, "apiserver gone"),
    }
    with pytest.raises(AdmissionError) as info:
        admission.start_webhook(None, "ns", WebhookSettings(tmp_path), timeout=1)  # type: ignore[arg-type]
    assert "kubectl delete validatingwebhookconfiguration dockmirror-ns" in str(info.value)


def test_webhook_settings_add_url_host_to_certificate(tmp_path: Path) -> None:
    settings = WebhookSettings(tmp_path, host="10.1.2.3", url="https://tunnel.example:8443/v")
    assert list(settings.cert_hosts) == ["10.1.2.3", "tunnel.example"]
    bundle = ensure_certificates(tmp_path, hosts=settings.cert_hosts)
    cert = x509.load_pem_x509_certificate(bundle.cert_path.read_bytes())
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert "tunnel.example" in san.get_values_for_type(x509.DNSName)
    assert [str(ip) for ip in san.get_values_for_type(x509.IPAddress)] == ["127.0.0.1", "10.1.2.3"]
    # The same hosts again: reused; a new host: regenerated.
    assert not ensure_certificates(tmp_path, hosts=settings.cert_hosts).renewed
    assert ensure_certificates(tmp_path, hosts=["other.example"]).renewed

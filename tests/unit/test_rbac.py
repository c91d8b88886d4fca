"""``actors.domain.rbac.rbac_manifests``: shape, subjects, admission modes, CRD install, and the
claim the docs make: the policy mode (with the admission objects pre-installed) has
strictly less power over admission configuration than the webhook mode.

That the rules are *enough* is proven against the real apiserver by
tests/integration/test_least_privilege.py.
"""

from __future__ import annotations

import copy
import json
from typing import Any

import pytest

from actors.domain import admission_policy, rbac
from actors.domain.names import (
    CONTAINER_CREATE_REQUESTS,
    CONTAINER_NAMESPACES,
    CONTAINERS,
    GROUP,
    IMAGES,
    VOLUMES,
)
from actors.domain.rbac import rbac_manifests
from actors.infra.webhook import WebhookRegistration

NS = "rancher-desktop"
WRITE_VERBS = {"create", "update", "patch", "delete", "deletecollection", "*"}


def manifests(**over: Any) -> list[dict[str, Any]]:
    args: dict[str, Any] = dict(
        namespace=NS,
        user="alice",
        service_account=None,
        admission="webhook",
        skip_crd_install=False,
    )
    args.update(over)
    return rbac_manifests(**args)


def by_kind(items: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    kinds = [m["kind"] for m in items]
    assert len(kinds) == len(set(kinds)), kinds
    return {m["kind"]: m for m in items}


def grants(items: list[dict[str, Any]]) -> set[tuple[str, str, str, str]]:
    """Every (group, resource, verb, name or "*") the manifests grant."""
    out = set()
    for m in items:
        if m["kind"] not in ("Role", "ClusterRole"):
            continue
        for rule in m["rules"]:
            for group in rule["apiGroups"]:
                for res in rule["resources"]:
                    for verb in rule["verbs"]:
                        for name in rule.get("resourceNames") or ["*"]:
                            out.add((group, res, verb, name))
    return out


def admission_write_power(items: list[dict[str, Any]]) -> set[tuple[str, str, str, str]]:
    return {g for g in grants(items) if g[0] == rbac.ADMISSION_GROUP and g[2] in WRITE_VERBS}


ALL_MODES = [
    dict(admission=mode, skip_crd_install=skip, admission_install=install)
    for mode in rbac.ADMISSION_MODES
    for skip in (False, True)
    for install in ((True, False) if mode == "policy" else (True,))
]


# -- shape -------------------------------------------------------------------------------


@pytest.mark.parametrize("mode", ALL_MODES, ids=lambda m: "-".join(map(str, m.values())))
def test_every_output_is_well_formed_and_json(mode: dict[str, Any]) -> None:
    items = manifests(**mode)
    assert json.loads(json.dumps(items)) == items  # plain data for kubectl apply -f -
    kinds = [m["kind"] for m in items]
    # A role always precedes its binding.
    for role, binding in (("ClusterRole", "ClusterRoleBinding"), ("Role", "RoleBinding")):
        if role in kinds:
            assert kinds.index(role) < kinds.index(binding)
        else:
            assert binding not in kinds
    for m in items:
        assert m["apiVersion"] == "rbac.authorization.k8s.io/v1"
        assert m["metadata"]["labels"] == {"app.kubernetes.io/name": "dockmirror"}
        namespaced = m["kind"] in ("Role", "RoleBinding")
        assert ("namespace" in m["metadata"]) == namespaced
        if namespaced:
            assert m["metadata"]["namespace"] == NS
        if m["kind"].endswith("Binding"):
            role = by_kind(items)[m["roleRef"]["kind"]]
            assert m["roleRef"]["name"] == role["metadata"]["name"]
            assert m["roleRef"]["apiGroup"] == "rbac.authorization.k8s.io"
        else:
            assert m["rules"], "no empty roles"
            for rule in m["rules"]:
                assert set(rule) <= {"apiGroups", "resources", "verbs", "resourceNames"}
                assert rule["verbs"] and rule["resources"] and rule["apiGroups"]
                # RBAC cannot limit a plain create by name: such a rule would never match.
                assert not (rule.get("resourceNames") and rule["verbs"] == ["create"])
                assert "*" not in rule["verbs"] + rule["resources"] + rule["apiGroups"]


def test_calls_do_not_share_state() -> None:
    first = manifests()
    kept = copy.deepcopy(first)
    first[0]["rules"].clear()
    first[-1]["subjects"][0]["name"] = "mallory"
    assert manifests() == kept


def test_cluster_scoped_names_are_per_namespace() -> None:
    a = by_kind(manifests(namespace="ns-a"))
    b = by_kind(manifests(namespace="ns-b"))
    assert a["ClusterRole"]["metadata"]["name"] == "dockmirror-ns-a"
    assert b["ClusterRole"]["metadata"]["name"] == "dockmirror-ns-b"
    assert a["Role"]["metadata"]["name"] == b["Role"]["metadata"]["name"] == "dockmirror"


# -- subjects ----------------------------------------------------------------------------


def test_user_subject_in_both_bindings() -> None:
    kinds = by_kind(manifests(user="alice"))
    expected = [{"kind": "User", "apiGroup": "rbac.authorization.k8s.io", "name": "alice"}]
    assert kinds["RoleBinding"]["subjects"] == expected
    assert kinds["ClusterRoleBinding"]["subjects"] == expected


def test_service_account_subject_in_both_bindings() -> None:
    kinds = by_kind(manifests(user=None, service_account="infra/dockmirror"))
    expected = [{"kind": "ServiceAccount", "name": "dockmirror", "namespace": "infra"}]
    assert kinds["RoleBinding"]["subjects"] == expected
    assert kinds["ClusterRoleBinding"]["subjects"] == expected


@pytest.mark.parametrize(
    ("user", "sa", "match"),
    [
        (None, None, "exactly one"),
        ("alice", "ns/sa", "exactly one"),
        ("  ", None, "empty"),
        (None, "no-slash", "NAMESPACE/NAME"),
        (None, "/name", "NAMESPACE/NAME"),
        (None, "ns/", "NAMESPACE/NAME"),
        (None, "Upper/name", "NAMESPACE/NAME"),
    ],
)
def test_bad_subjects_are_one_line_errors(user: Any, sa: Any, match: str) -> None:
    with pytest.raises(ValueError, match=match) as info:
        manifests(user=user, service_account=sa)
    assert "\n" not in str(info.value)


@pytest.mark.parametrize(
    ("over", "match"),
    [
        (dict(namespace="Bad_NS"), "namespace"),
        (dict(namespace=""), "namespace"),
        (dict(namespace="a" * 64), "namespace"),
        (dict(admission="callback"), "admission mode"),
        (dict(admission="webhook", admission_install=False), "only to the policy mode"),
        (dict(admission="none", admission_install=False), "only to the policy mode"),
    ],
)
def test_bad_options_are_one_line_errors(over: dict[str, Any], match: str) -> None:
    with pytest.raises(ValueError, match=match):
        manifests(**over)


# -- what each mode grants ----------------------------------------------------------------


def namespaced(items: list[dict[str, Any]]) -> set[tuple[str, str, str, str]]:
    return grants([m for m in items if m["kind"] == "Role"])


def cluster(items: list[dict[str, Any]]) -> set[tuple[str, str, str, str]]:
    return grants([m for m in items if m["kind"] == "ClusterRole"])


G = GROUP
A = rbac.ADMISSION_GROUP
CRD = "apiextensions.k8s.io"
CRD_NAMES = [
    f"{CONTAINERS}.{GROUP}",
    f"{CONTAINER_CREATE_REQUESTS}.{GROUP}",
    f"{CONTAINER_NAMESPACES}.{GROUP}",
    f"{IMAGES}.{GROUP}",
    f"{VOLUMES}.{GROUP}",
]


def test_the_mirror_and_action_path_is_granted_in_the_namespace_only() -> None:
    role = namespaced(manifests(skip_crd_install=True, admission="none"))
    for plural in (CONTAINERS, IMAGES, VOLUMES):
        for verb in ("get", "list", "watch", "create", "patch", "delete"):
            assert (G, plural, verb, "*") in role
        assert (G, f"{plural}/status", "patch", "*") in role
        assert (G, plural, "update", "*") not in role  # every write is a patch
    for verb in ("get", "create", "patch"):
        assert (G, CONTAINER_NAMESPACES, verb, "moby") in role
    assert (G, f"{CONTAINER_NAMESPACES}/status", "patch", "moby") in role
    assert {("events.k8s.io", "events", v, "*") for v in ("create", "patch")} <= role
    assert {
        ("coordination.k8s.io", "leases", v, "*") for v in ("get", "create", "update", "patch")
    } <= role
    assert ("", "namespaces", "get", NS) in role
    assert not any(g[1] == "namespaces" and g[2] != "get" for g in role)
    assert not any(g[1] == "containercreaterequests" for g in role)


def test_none_mode_with_skip_needs_no_cluster_role() -> None:
    kinds = [m["kind"] for m in manifests(admission="none", skip_crd_install=True)]
    assert kinds == ["Role", "RoleBinding"]


def test_crd_install_grants_named_crd_writes_and_the_namespaced_probe() -> None:
    items = manifests(admission="none", skip_crd_install=False)
    # Server-side apply creates or upgrades a CRD; both are authorized with its name.
    assert cluster(items) == {
        (CRD, "customresourcedefinitions", verb, name)
        for verb in ("get", "create", "patch")
        for name in CRD_NAMES
    }
    role = namespaced(items)
    assert (G, "containercreaterequests", "list", "*") in role
    assert (G, CONTAINER_NAMESPACES, "list", "*") in role


def test_skip_crd_install_grants_nothing_on_crds() -> None:
    for mode in ALL_MODES:
        if mode["skip_crd_install"]:
            items = manifests(**mode)
            assert not any(g[0] == CRD for g in grants(items)), mode
            assert not any(g[1] == "containercreaterequests" for g in grants(items))


def test_skip_crd_install_changes_only_crd_related_rules() -> None:
    for mode in rbac.ADMISSION_MODES:
        full, skipped = (
            grants(manifests(admission=mode, skip_crd_install=s)) for s in (False, True)
        )
        extra = full - skipped
        assert skipped < full
        assert all(
            g[0] == CRD
            or g[1] == "containercreaterequests"
            or g[:3] == (G, CONTAINER_NAMESPACES, "list")
            for g in extra
        ), extra


def test_webhook_mode_grants_its_named_configuration() -> None:
    name = WebhookRegistration(None, NS, 1, b"").name  # type: ignore[arg-type]
    assert rbac.webhook_configuration_name(NS) == name
    items = manifests(admission="webhook", skip_crd_install=True)
    assert cluster(items) == {(A, "validatingwebhookconfigurations", "create", "*")} | {
        (A, "validatingwebhookconfigurations", verb, name)
        for verb in ("get", "update", "patch", "delete")
    }


def test_policy_mode_grants_the_named_policy_and_binding() -> None:
    items = manifests(admission="policy", skip_crd_install=True)
    # The names the service applies (actors/domain/admission_policy.py), not copies of them:
    # Container validation and the ContainerNamespace delete warning, each with a binding.
    manifests_applied = admission_policy.policy_manifests(NS)
    policies = [m["metadata"]["name"] for m in manifests_applied if m["kind"].endswith("Policy")]
    bindings = [m["metadata"]["name"] for m in manifests_applied if m["kind"].endswith("Binding")]
    assert policies == [rbac.POLICY_NAME, admission_policy.NAMESPACE_POLICY_NAME]
    assert bindings == [rbac.policy_binding_name(NS), admission_policy.namespace_binding_name(NS)]
    expected = {
        (A, "validatingadmissionpolicies", "create", "*"),
        (A, "validatingadmissionpolicybindings", "create", "*"),
    }
    for verb in ("get", "patch", "update"):
        expected |= {(A, "validatingadmissionpolicies", verb, name) for name in policies}
        expected |= {(A, "validatingadmissionpolicybindings", verb, name) for name in bindings}
    assert cluster(items) == expected
    assert not any(g[1] == "validatingwebhookconfigurations" for g in grants(items))


def test_policy_mode_without_install_only_reads_the_named_objects() -> None:
    items = manifests(admission="policy", skip_crd_install=True, admission_install=False)
    assert cluster(items) == {
        (A, "validatingadmissionpolicies", "get", rbac.POLICY_NAME),
        (A, "validatingadmissionpolicies", "get", admission_policy.NAMESPACE_POLICY_NAME),
        (A, "validatingadmissionpolicybindings", "get", rbac.policy_binding_name(NS)),
        (
            A,
            "validatingadmissionpolicybindings",
            "get",
            admission_policy.namespace_binding_name(NS),
        ),
    }


def test_none_mode_grants_nothing_on_admission() -> None:
    for skip in (False, True):
        assert not any(
            g[0] == A for g in grants(manifests(admission="none", skip_crd_install=skip))
        )


@pytest.mark.parametrize("skip", [False, True])
def test_policy_without_install_is_a_strict_subset_of_webhook_in_admission_write_power(
    skip: bool,
) -> None:
    policy = manifests(admission="policy", skip_crd_install=skip, admission_install=False)
    webhook = manifests(admission="webhook", skip_crd_install=skip)
    none = manifests(admission="none", skip_crd_install=skip)
    assert admission_write_power(policy) < admission_write_power(webhook)
    assert admission_write_power(policy) == admission_write_power(none) == set()
    # ... and everything else is the same in all three modes: only admission differs.
    rest = lambda items: {g for g in grants(items) if g[0] != A}  # noqa: E731
    assert rest(policy) == rest(webhook) == rest(none)


def test_admission_grants_are_cluster_scoped_and_named_where_rbac_allows() -> None:
    for mode in ALL_MODES:
        items = manifests(**mode)
        assert not any(g[0] == A for g in namespaced(items))
        for group, _, verb, name in cluster(items):
            if group == A and verb != "create":
                assert name != "*", (mode, verb)

"""``rbac_manifests(app=True)``: what ``--app`` adds (docs/permissions.md, "App mode").

That these rules are enough is proven against the real apiserver by
tests/integration/test_app_mode.py (``test_app_mode_under_the_printed_rbac``).
"""

from __future__ import annotations

from typing import Any

import pytest

from actors.domain.names import (
    APP_CRD_NAME,
    APP_GROUP,
    CONTAINER_NAMESPACES,
    GROUP,
    IMAGES,
    VOLUMES,
)
from actors.domain.rbac import rbac_manifests

NS = "rancher-desktop"


def grants(**over: Any) -> set[tuple[str, str, str, str, str]]:
    """(role kind, group, resource, verb, name or "*") of the manifests."""
    args: dict[str, Any] = dict(
        namespace=NS, user="alice", service_account=None, admission="policy", skip_crd_install=False
    )
    args.update(over)
    out = set()
    for m in rbac_manifests(**args):
        if m["kind"] not in ("Role", "ClusterRole"):
            continue
        for rule in m["rules"]:
            for group in rule["apiGroups"]:
                for res in rule["resources"]:
                    for verb in rule["verbs"]:
                        for name in rule.get("resourceNames") or ["*"]:
                            out.add((m["kind"], group, res, verb, name))
    return out


APP = APP_GROUP
CRDS = "apiextensions.k8s.io"
APP_CRD = APP_CRD_NAME


@pytest.mark.parametrize("skip_crd_install", [False, True])
@pytest.mark.parametrize("admission", ["policy", "webhook", "none"])
def test_app_adds_exactly_the_app_and_cleanup_rules(admission: str, skip_crd_install: bool) -> None:
    base = grants(admission=admission, skip_crd_install=skip_crd_install)
    added = grants(admission=admission, skip_crd_install=skip_crd_install, app=True) - base
    expected = {
        ("ClusterRole", APP, "apps", "get", "app"),
        ("ClusterRole", APP, "apps", "list", "app"),
        ("ClusterRole", APP, "apps", "watch", "app"),
        ("ClusterRole", APP, "apps/status", "patch", "app"),
    }
    for resource in (CONTAINER_NAMESPACES, IMAGES, VOLUMES):
        for verb in ("get", "list", "patch", "delete"):
            expected.add(("Role", GROUP, resource, verb, "*"))
    if not skip_crd_install:
        for verb in ("get", "create", "patch"):
            expected.add(("ClusterRole", CRDS, "customresourcedefinitions", verb, APP_CRD))
    assert added == expected - base


def test_the_app_crd_rules_name_it() -> None:
    app = grants(app=True)
    crd_grants = {g for g in app - grants() if g[1] == CRDS}
    assert crd_grants == {
        ("ClusterRole", CRDS, "customresourcedefinitions", verb, APP_CRD)
        for verb in ("get", "create", "patch")
    }
    skipped = grants(app=True, skip_crd_install=True)
    assert not {g for g in skipped if g[1] == CRDS}


def test_without_app_nothing_of_it_is_granted() -> None:
    for grant in grants():
        assert grant[1] != APP
        assert not (grant[2] == CONTAINER_NAMESPACES and grant[3] == "delete")
    # Images and Volumes: only what their mirrors need (the Role's mirror rules), the
    # same whether or not --app adds its cleanup.
    mirror_verbs = ("get", "list", "watch", "create", "patch", "delete")
    assert {g for g in grants() if g[2] in (IMAGES, VOLUMES)} == {
        ("Role", GROUP, resource, verb, "*")
        for resource in (IMAGES, VOLUMES)
        for verb in mirror_verbs
    }

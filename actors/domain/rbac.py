"""The RBAC objects dockmirror needs, as manifests for ``kubectl apply -f -`` (pure).

:func:`rbac_manifests` is the single source of truth for the service's permissions;
``docs/permissions.md`` explains every rule, and
``tests/integration/test_least_privilege.py`` runs the real service under exactly these
rules (a fresh user bound only to this output, ``--skip-crd-install``) through the whole
mirror and action path and checks that nothing answered 403.

Every rule maps to a call the service makes:

* ``actors/ports/kube_port.py`` ``MirrorStore`` (``Container``, ``Image`` and ``Volume``
  mirrors: list and watch, get, server-side apply that creates, apply and merge patch of
  ``/status``, metadata merge patch, delete);
* ``actors/runtime/engine_status.py`` (namespace check, ``ContainerNamespace/moby`` apply, its
  ``EngineReady`` condition);
* ``actors/runtime/event_writer.py`` (``events.k8s.io/v1`` Events: create, merge patch of a series);
* ``actors/service/crd_install.py`` (CRD server-side apply, its "served" probe) unless
  ``skip_crd_install``;
  with it, ``actors/service/startup_checks.py`` uses only discovery, which every authenticated
  user may read, and a list of Containers, which the watch needs anyway;
* the admission mode: the ValidatingAdmissionPolicy and its binding (``policy``) or the
  ValidatingWebhookConfiguration of ``actors/infra/webhook.py`` (``webhook``); the webhook's
  "is it called" probe is a dry-run create of a Container, covered by ``create``;
* leader election: a ``coordination.k8s.io`` Lease in the namespace;
* App mode (``--app`` only, :func:`app_cluster_rules`, :func:`app_namespaced_rules`):
  ``actors/ports/app_port.py`` reads, lists and watches the cluster-scoped App ``app``,
  patches its ``/status`` (``ContainerEngineReady``), reads the App CRD and creates it
  when missing (not with ``skip_crd_install``), and the cleanup lists, reads, patches
  (finalizer) and deletes every object of the four mirrored kinds in the namespace.

Where RBAC allows it (get, update, patch, delete; and for a server-side apply that
creates a named object, create) a rule is limited by ``resourceNames``. A create by
POST cannot be: the name is not part of the authorization check.

Deliberately not granted: ``namespaces`` create (cluster-wide power to make namespaces);
the namespace must exist before the service starts, and the service only reads it.
"""

from __future__ import annotations

import re
from typing import Any

from actors.domain import admission_policy, crds
from actors.domain.names import (
    APP_CRD_NAME,
    APP_GROUP,
    APP_NAME,
    APPS,
    CONTAINER_NAMESPACES,
    CONTAINERS,
    GROUP,
    IMAGES,
    MOBY,
    VOLUMES,
)

RBAC_API_VERSION = "rbac.authorization.k8s.io/v1"
RBAC_GROUP = "rbac.authorization.k8s.io"
ADMISSION_GROUP = "admissionregistration.k8s.io"
ADMISSION_MODES = ("policy", "webhook", "none")

# The cluster-scoped ValidatingAdmissionPolicy (one for every dockmirror namespace) and
# each namespace's binding: the names come from the module that makes them.
POLICY_NAME = admission_policy.POLICY_NAME

#: The label every object made here carries (``kubectl get ... -l`` finds them).
LABELS = {"app.kubernetes.io/name": "dockmirror"}

_DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
_DNS_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")


def policy_binding_name(namespace: str) -> str:
    """The ValidatingAdmissionPolicyBinding of ``namespace``."""
    return admission_policy.binding_name(namespace)


def webhook_configuration_name(namespace: str) -> str:
    """``actors/infra/webhook.py`` ``WebhookRegistration.name`` (a unit test keeps them equal)."""
    return f"dockmirror-{namespace}"


def cluster_role_name(namespace: str) -> str:
    """Cluster-scoped objects are named per namespace: one service per namespace may run."""
    return f"dockmirror-{namespace}"


ROLE_NAME = "dockmirror"


def _rule(
    group: str, resources: list[str], verbs: list[str], names: list[str] | None = None
) -> dict[str, Any]:
    rule: dict[str, Any] = {"apiGroups": [group], "resources": resources, "verbs": verbs}
    if names:
        rule["resourceNames"] = names
    return rule


def app_namespaced_rules() -> list[dict[str, Any]]:
    """``--app``: the cleanup of the four kinds (docs/contract.md §3.5). Every object of
    each kind goes, hand-made ones included, so no ``resourceNames``; Containers are
    covered by the Role's first rule already."""
    return [
        _rule(GROUP, [CONTAINER_NAMESPACES, IMAGES, VOLUMES], ["get", "list", "patch", "delete"]),
    ]


def app_cluster_rules(*, skip_crd_install: bool) -> list[dict[str, Any]]:
    """``--app``: the App ``app`` (list and watch are by ``metadata.name``, so
    ``resourceNames`` limits them too) and, unless ``skip_crd_install``, its CRD."""
    rules = [
        _rule(APP_GROUP, [APPS], ["get", "list", "watch"], [APP_NAME]),
        _rule(APP_GROUP, [f"{APPS}/status"], ["patch"], [APP_NAME]),
    ]
    if not skip_crd_install:
        # Read to see whether it is installed; created when missing by a server-side
        # apply (authorized as patch and, for a missing object, create, both by name).
        rules.append(
            _rule(
                "apiextensions.k8s.io",
                ["customresourcedefinitions"],
                ["get", "create", "patch"],
                [APP_CRD_NAME],
            )
        )
    return rules


def namespaced_rules(
    namespace: str, *, skip_crd_install: bool, app: bool = False
) -> list[dict[str, Any]]:
    """The Role's rules in ``namespace`` (the same for every admission mode)."""
    rules = [
        # MirrorStore: list + watch (kube-watch, full sync, resync), get (actions),
        # create (server-side apply of a new mirror; the webhook probe's dry-run create),
        # patch (apply of metadata/finalizer, annotation removal), delete (stale mirrors).
        _rule(GROUP, [CONTAINERS], ["get", "list", "watch", "create", "patch", "delete"]),
        # Server-side apply of the mirrored status; merge patch of lastAction.
        _rule(GROUP, [f"{CONTAINERS}/status"], ["patch"]),
        # Image and Volume mirrors (docs/contract.md §6.2, §6.3) the same way, without
        # actions; their names are hashes of Docker's, unknown in advance.
        _rule(GROUP, [IMAGES, VOLUMES], ["get", "list", "watch", "create", "patch", "delete"]),
        _rule(GROUP, [f"{IMAGES}/status", f"{VOLUMES}/status"], ["patch"]),
        # ContainerNamespace/moby: read and server-side apply (which creates it once);
        # its status carries EngineReady.
        _rule(GROUP, [CONTAINER_NAMESPACES], ["get", "create", "patch"], [MOBY]),
        _rule(GROUP, [f"{CONTAINER_NAMESPACES}/status"], ["patch"], [MOBY]),
        # Events about mirrors; patch updates a series' count. Names are generated.
        _rule("events.k8s.io", ["events"], ["create", "patch"]),
        # Leader election: one Lease per namespace.
        _rule("coordination.k8s.io", ["leases"], ["get", "create", "update", "patch"]),
        # The start-up check that the namespace exists (a Role may grant this: the
        # request's namespace is the namespace's own name).
        _rule("", ["namespaces"], ["get"], [namespace]),
    ]
    if not skip_crd_install:
        # The install's "served" probe lists each installed resource in the namespace;
        # Containers are covered above.
        plurals = [c["spec"]["names"]["plural"] for c in crds.all_crds()]
        rules.append(_rule(GROUP, [p for p in plurals if p != CONTAINERS], ["list"]))
    if app:
        rules += app_namespaced_rules()
    return rules


def cluster_rules(
    namespace: str,
    *,
    admission: str,
    skip_crd_install: bool,
    admission_install: bool,
    app: bool = False,
) -> list[dict[str, Any]]:
    """The ClusterRole's rules (cluster-scoped objects only); may be empty."""
    rules: list[dict[str, Any]] = []
    if not skip_crd_install:
        # One server-side apply per CRD (a create when missing, authorized with its
        # name) and reads of its conditions: every verb is limited to our CRDs.
        rules.append(
            _rule(
                "apiextensions.k8s.io",
                ["customresourcedefinitions"],
                ["get", "create", "patch"],
                crds.crd_names(),
            )
        )
    if admission == "policy":
        # Two policies, each with this namespace's binding: Container validation (§5.1)
        # and the ContainerNamespace delete warning (§5.2).
        policies = [POLICY_NAME, admission_policy.NAMESPACE_POLICY_NAME]
        bindings = [
            policy_binding_name(namespace),
            admission_policy.namespace_binding_name(namespace),
        ]
        if admission_install:
            rules += [
                _rule(
                    ADMISSION_GROUP,
                    ["validatingadmissionpolicies", "validatingadmissionpolicybindings"],
                    ["create"],
                ),
                _rule(
                    ADMISSION_GROUP,
                    ["validatingadmissionpolicies"],
                    ["get", "patch", "update"],
                    policies,
                ),
                _rule(
                    ADMISSION_GROUP,
                    ["validatingadmissionpolicybindings"],
                    ["get", "patch", "update"],
                    bindings,
                ),
            ]
        else:
            rules += [
                _rule(ADMISSION_GROUP, ["validatingadmissionpolicies"], ["get"], policies),
                _rule(ADMISSION_GROUP, ["validatingadmissionpolicybindings"], ["get"], bindings),
            ]
    elif admission == "webhook":
        rules += [
            _rule(ADMISSION_GROUP, ["validatingwebhookconfigurations"], ["create"]),
            _rule(
                ADMISSION_GROUP,
                ["validatingwebhookconfigurations"],
                ["get", "update", "patch", "delete"],
                [webhook_configuration_name(namespace)],
            ),
        ]
    if app:
        rules += app_cluster_rules(skip_crd_install=skip_crd_install)
    return rules


def _subject(user: str | None, service_account: str | None) -> dict[str, Any]:
    if (user is None) == (service_account is None):
        raise ValueError("give exactly one of a user or a service account (NAMESPACE/NAME)")
    if user is not None:
        if not user.strip():
            raise ValueError("the user name is empty")
        return {"kind": "User", "apiGroup": RBAC_GROUP, "name": user}
    assert service_account is not None
    sa_namespace, sep, sa_name = service_account.partition("/")
    if not sep or not _DNS_LABEL.match(sa_namespace) or not _DNS_SUBDOMAIN.match(sa_name):
        raise ValueError(
            f"service account {service_account!r} is not NAMESPACE/NAME "
            "(a namespace name, a slash, a service account name)"
        )
    return {"kind": "ServiceAccount", "name": sa_name, "namespace": sa_namespace}


def _metadata(name: str, namespace: str | None = None) -> dict[str, Any]:
    meta: dict[str, Any] = {"name": name, "labels": dict(LABELS)}
    if namespace is not None:
        meta["namespace"] = namespace
    return meta


def rbac_manifests(
    *,
    namespace: str,
    user: str | None,
    service_account: str | None,
    admission: str,
    skip_crd_install: bool,
    admission_install: bool = True,
    app: bool = False,
) -> list[dict]:
    """The ClusterRole/Role and bindings the service needs in `namespace` for the
    `admission` mode ("policy", "webhook" or "none"), for a user or a service account
    ("NS/NAME"), ready for `kubectl apply -f -`. Pure.

    ``admission_install=False`` is the policy mode's ``--skip-admission-install``: an
    admin installed the policy and binding, the service only reads them. Order: roles
    before their bindings; the ClusterRole and its binding are left out when the mode
    needs no cluster-scoped permission (``none`` with ``skip_crd_install``). ``app``:
    the service runs with ``--app`` (the App's rules; ``namespace`` must be the App's
    ``spec.namespace``).

    Raises ValueError (one line, for the CLI to print) for an invalid namespace, mode,
    subject, or ``admission_install=False`` outside the policy mode.
    """
    if not _DNS_LABEL.match(namespace) or len(namespace) > 63:
        raise ValueError(f"namespace {namespace!r} is not a valid namespace name")
    if admission not in ADMISSION_MODES:
        raise ValueError(f"admission mode {admission!r} is not one of {', '.join(ADMISSION_MODES)}")
    if not admission_install and admission != "policy":
        raise ValueError(
            "skipping the admission install applies only to the policy mode "
            f"(the {admission} mode has nothing an admin could install in advance)"
        )
    subject = _subject(user, service_account)
    manifests: list[dict[str, Any]] = []
    cluster = cluster_rules(
        namespace,
        admission=admission,
        skip_crd_install=skip_crd_install,
        admission_install=admission_install,
        app=app,
    )
    if cluster:
        name = cluster_role_name(namespace)
        manifests += [
            {
                "apiVersion": RBAC_API_VERSION,
                "kind": "ClusterRole",
                "metadata": _metadata(name),
                "rules": cluster,
            },
            {
                "apiVersion": RBAC_API_VERSION,
                "kind": "ClusterRoleBinding",
                "metadata": _metadata(name),
                "roleRef": {"apiGroup": RBAC_GROUP, "kind": "ClusterRole", "name": name},
                "subjects": [dict(subject)],
            },
        ]
    manifests += [
        {
            "apiVersion": RBAC_API_VERSION,
            "kind": "Role",
            "metadata": _metadata(ROLE_NAME, namespace),
            "rules": namespaced_rules(namespace, skip_crd_install=skip_crd_install, app=app),
        },
        {
            "apiVersion": RBAC_API_VERSION,
            "kind": "RoleBinding",
            "metadata": _metadata(ROLE_NAME, namespace),
            "roleRef": {"apiGroup": RBAC_GROUP, "kind": "Role", "name": ROLE_NAME},
            "subjects": [dict(subject)],
        },
    ]
    return manifests

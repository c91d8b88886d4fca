"""Connecting to the apiserver at start: the kubeconfig, and failures explained in one line.

At start a user meets configuration errors, not transient ones, and each must end the
start with one line that says what to fix (``main`` prints it, exit code 2):

* no kubeconfig, an unreadable or invalid one (:func:`load_client_configuration`);
* credentials the apiserver rejects (401), or a client that cannot produce any
  (an exec plugin failing): :func:`fatal_message`;
* a 403: the apiserver's own text names the user, verb and resource (``User "x" cannot
  create resource "namespaces" in API group "" at the cluster scope``); it is passed on
  with a pointer to ``dockmirror rbac`` (:func:`forbidden_message`);
* an apiserver that stays unreachable for ``--startup-timeout`` seconds
  (:func:`unreachable_message`); everything retryable is retried until then.

Pure functions apart from the file reads of :func:`load_client_configuration`; main
thread, at start.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from kubernetes import client as k8s_client
from kubernetes import config as k8s_config
from kubernetes.client.rest import ApiException
from kubernetes.config.config_exception import ConfigException

from actors.ports.kube_port import KubeError, KubeForbidden, KubeUnauthorized, translate

DEFAULT_KUBECONFIG = "~/.kube/config"

#: The RBAC authorizer's denial: ``User "u" cannot VERB resource "R" in API group "G"``
#: followed by ``in the namespace "NS"`` or ``at the cluster scope``; a subresource
#: reads ``resource "R/S"``.
_DENIAL = re.compile(
    r'(?P<who>User|Group|ServiceAccount) "(?P<user>[^"]*)" cannot (?P<verb>\S+) '
    r'resource "(?P<resource>[^"]*)"(?: in API group "(?P<group>[^"]*)")?'
    r'(?: in the namespace "(?P<namespace>[^"]*)"| (?P<cluster>at the cluster scope))?'
)


class KubeconfigError(Exception):
    """The kubeconfig is missing, unreadable or invalid; ``str`` is the one line to show."""


@dataclass(frozen=True)
class KubeTarget:
    """Where we connect: for messages (which file, which server)."""

    kubeconfig: str
    source: str
    server: str


def kubeconfig_path(option: str | None, env: Mapping[str, str]) -> tuple[str, str]:
    """(path or ``:``-separated list, where it came from): option, $KUBECONFIG, default."""
    if option:
        return option, "--kubeconfig"
    if env.get("KUBECONFIG"):
        return env["KUBECONFIG"], "$KUBECONFIG"
    return DEFAULT_KUBECONFIG, "the default location"


def load_client_configuration(
    option: str | None, env: Mapping[str, str] | None = None
) -> tuple[k8s_client.Configuration, KubeTarget]:
    """Load the kubeconfig's current context into a fresh client ``Configuration``.

    Raises :class:`KubeconfigError` (one line naming the file) when no listed file
    exists, one cannot be read, or the client library rejects its content.
    """
    env = os.environ if env is None else env
    path, source = kubeconfig_path(option, env)
    files = [Path(p).expanduser() for p in path.split(os.pathsep) if p]
    existing = [f for f in files if f.exists()]
    if not existing:
        raise KubeconfigError(
            f"kubeconfig not found: {path} (from {source}); pass --kubeconfig PATH or set "
            "KUBECONFIG to a kubeconfig for the cluster"
        )
    for file in existing:
        try:
            with open(file, "rb"):
                pass
        except OSError as exc:
            raise KubeconfigError(
                f"cannot read kubeconfig {file} (from {source}): {exc.strerror or exc}"
            ) from None
    configuration = k8s_client.Configuration()
    try:
        k8s_config.load_kube_config(
            config_file=os.pathsep.join(str(f) for f in existing),
            client_configuration=configuration,
        )
    except (ConfigException, ValueError, TypeError, OSError) as exc:
        raise KubeconfigError(
            f"invalid kubeconfig {path} (from {source}): {one_line(exc)}"
        ) from None
    except Exception as exc:  # e.g. yaml.YAMLError: the file is not YAML at all
        raise KubeconfigError(
            f"invalid kubeconfig {path} (from {source}): {type(exc).__name__}: {one_line(exc)}"
        ) from None
    return configuration, KubeTarget(path, source, str(configuration.host))


def one_line(value: object) -> str:
    """Whitespace (newlines included) collapsed: every message here is one line."""
    return " ".join(str(value).split())


def kube_error_in(exc: BaseException) -> KubeError | None:
    """The first apiserver answer in ``exc``'s chain, as a port error family (or None).

    Callers at start wrap the port's errors (``CRDInstallError`` from a
    ``KubeError``); the chain (``__cause__``, then ``__context__``) finds the answer.
    """
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, KubeError):
            return current
        if isinstance(current, ApiException | ConfigException):
            return translate(current)
        current = current.__cause__ or current.__context__
    return None


def fatal_message(exc: BaseException, target: KubeTarget, namespace: str) -> str | None:
    """The one-line message when ``exc`` cannot be fixed by waiting (401, 403), else None."""
    error = kube_error_in(exc)
    if isinstance(error, KubeUnauthorized):
        answer = f"{error.status} Unauthorized" if error.status else one_line(error.message)
        return (
            f"credentials rejected by the apiserver {target.server} ({answer}): check the "
            f"user of the current context in {target.kubeconfig} (expired token or "
            "certificate, or a certificate from another cluster's CA?)"
        )
    if isinstance(error, KubeForbidden):
        return forbidden_message(one_line(error.message), namespace)
    return None


def forbidden_message(message: str, namespace: str) -> str:
    """A 403 at start as a missing permission, naming verb and resource when known."""
    match = _DENIAL.search(message)
    if match is None:
        return f"the apiserver refused a request at start (403 Forbidden): {message}"
    resource = match["resource"]
    group = match["group"]
    if group:  # kubectl's spelling: customresourcedefinitions.apiextensions.k8s.io
        base, slash, sub = resource.partition("/")
        resource = f"{base}.{group}{slash}{sub}"
    where = f'in namespace "{match["namespace"]}"' if match["namespace"] else "at the cluster scope"
    return (
        f"missing permission: {match['verb']} {resource} {where} ({message}); apply what "
        f"`dockmirror rbac {rbac_identity(match['user'], namespace)}` prints"
    )


def rbac_identity(user: str, namespace: str) -> str:
    """``dockmirror rbac`` arguments for the denied identity."""
    prefix = "system:serviceaccount:"
    if user.startswith(prefix) and user.count(":") == 3:
        sa_namespace, name = user[len(prefix) :].split(":")
        return f"--namespace {namespace} --service-account {sa_namespace}/{name}"
    return f"--namespace {namespace} --user {user}"


def unreachable_message(exc: BaseException, target: KubeTarget, timeout_s: float) -> str:
    """The apiserver did not answer usefully for ``--startup-timeout`` seconds."""
    return (
        f"cannot prepare the Kubernetes API at {target.server} (kubeconfig {target.kubeconfig}) "
        f"within {timeout_s:g} s (--startup-timeout): {one_line(exc)}"
    )

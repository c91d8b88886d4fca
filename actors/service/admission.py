"""Admission at start: choose the mode, install or check it, prove it is effective.

Runs in the supervisor's main thread before any reader starts (docs/admission.md).
Every failure leaves as :class:`AdmissionError`, whose text is the one line the service
prints before it exits with code 2 (``supervisor.main``); nothing is left behind that
blocks Container writes:

* ``policy``: server-side apply of :func:`actors.domain.admission_policy.policy_manifests`
  (or, with ``--skip-admission-install``, a check that an admin applied them), then a
  dry-run probe until the apiserver denies it with the policy. The manifests stay at a
  clean stop: the policy keeps rejecting invalid values while the service is down.
* ``webhook``: :func:`start_webhook` starts the HTTPS server, registers the
  configuration and probes it; if registering or the probe fails, it deletes what it
  registered and stops the server before raising.
* ``none``: nothing is registered.
"""

from __future__ import annotations

import logging
import secrets
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from actors.domain.admission_policy import (
    API_VERSION,
    POLICY_NAME,
    binding_name,
    policy_manifests,
    warning_manifests,
)
from actors.domain.names import ACTION_ANNOTATION, APPLY_PATCH, CONTAINERS, INSTALL_MANAGER
from actors.domain.names import API_VERSION as CONTAINER_API_VERSION
from actors.domain.webhook_review import CREATE_DENIED_MESSAGE
from actors.infra.certs import ensure_certificates
from actors.infra.webhook import WebhookNotCalledError, WebhookRegistration, WebhookServer
from actors.ports.kube_port import (
    KubeError,
    KubeForbidden,
    KubeHttp,
    KubeNotFound,
    dry_run_create,
)

log = logging.getLogger("dockmirror.admission")

MODES = ("auto", "policy", "webhook", "none")
FIELD_MANAGER = INSTALL_MANAGER
_ADMISSION_PATH = f"/apis/{API_VERSION}"
PROBE_INTERVAL_S = 0.2


class AdmissionError(Exception):
    """Admission could not be set up; ``str()`` is the one line shown to the user."""


def serves_policies(http: KubeHttp) -> bool:
    """Discovery: does the apiserver serve ``admissionregistration.k8s.io/v1``
    ``validatingadmissionpolicies`` (GA in Kubernetes 1.30)? Raises KubeError."""
    try:
        body = http.request("GET", _ADMISSION_PATH)
    except KubeNotFound:
        return False
    return any(
        isinstance(r, dict) and r.get("name") == "validatingadmissionpolicies"
        for r in body.get("resources") or []
    )


def choose_mode(requested: str, http: KubeHttp) -> str:
    """Resolve ``auto`` by discovery; log the mode in use. Raises AdmissionError."""
    if requested not in MODES:
        raise AdmissionError(f"unknown admission mode {requested!r}; use one of {MODES}")
    if requested != "auto":
        log.info("admission mode %s (as configured)", requested)
        return requested
    try:
        mode = "policy" if serves_policies(http) else "webhook"
    except KubeError as exc:
        raise AdmissionError(
            f"cannot discover the admission APIs of the API server: {exc}"
        ) from exc
    log.info(
        "admission mode %s (auto: the API server %s ValidatingAdmissionPolicy)",
        mode,
        "serves" if mode == "policy" else "does not serve",
    )
    return mode


# --- policy mode -------------------------------------------------------------------------


def _manifest_path(manifest: dict[str, Any]) -> str:
    plural = {
        "ValidatingAdmissionPolicy": "validatingadmissionpolicies",
        "ValidatingAdmissionPolicyBinding": "validatingadmissionpolicybindings",
    }[manifest["kind"]]
    return f"{_ADMISSION_PATH}/{plural}/{manifest['metadata']['name']}"


def _probe_object(namespace: str) -> dict[str, Any]:
    return {
        "apiVersion": CONTAINER_API_VERSION,
        "kind": "Container",
        "metadata": {
            "generateName": "dockmirror-admission-probe-",
            "namespace": namespace,
            "labels": {"dockmirror.rancherdesktop.io/probe": secrets.token_hex(8)},
            "annotations": {ACTION_ANNOTATION: "start"},
        },
    }


@dataclass
class PolicyAdmission:
    """Installs (or checks) the policy and this namespace's binding; main thread."""

    http: KubeHttp
    namespace: str
    install: bool = True
    clock: Callable[[], float] = time.monotonic
    sleep: Callable[[float], None] = time.sleep

    def ensure(self, timeout: float) -> None:
        """Apply or check the manifests, then wait until they deny. Raises AdmissionError."""
        if self.install:
            self.apply()
        else:
            self.check_installed()
        self.wait_effective(timeout)

    def apply(self) -> None:
        """Server-side apply (field manager ``dockmirror``, force) of both manifests."""
        for manifest in policy_manifests(self.namespace):
            try:
                self.http.request(
                    "PATCH",
                    _manifest_path(manifest),
                    query={"fieldManager": FIELD_MANAGER, "force": "true"},
                    body=manifest,
                    content_type=APPLY_PATCH,
                )
            except KubeForbidden as exc:
                raise AdmissionError(
                    f"no permission to apply {manifest['kind']} {manifest['metadata']['name']}"
                    f" ({exc.message}); have an admin run `dockmirror policy --namespace "
                    f"{self.namespace} | kubectl apply -f -` and start with "
                    "--skip-admission-install"
                ) from exc
            except KubeError as exc:
                raise AdmissionError(
                    f"cannot apply {manifest['kind']} {manifest['metadata']['name']}: {exc}"
                ) from exc
            log.info("applied %s %s", manifest["kind"], manifest["metadata"]["name"])

    def check_installed(self) -> None:
        """``--skip-admission-install``: the objects must exist (an admin applied them).

        The ContainerNamespace warning pair (docs/contract.md §5.2) only warns, so its
        absence (an admin who applied an older ``dockmirror policy``) is logged, not fatal.
        """
        optional = {m["metadata"]["name"] for m in warning_manifests(self.namespace)}
        for manifest in policy_manifests(self.namespace):
            what = f"{manifest['kind']} {manifest['metadata']['name']}"
            try:
                self.http.request("GET", _manifest_path(manifest))
            except KubeNotFound as exc:
                if manifest["metadata"]["name"] in optional:
                    log.warning(
                        "%s is not installed: ContainerNamespace deletes get no warning; "
                        "apply `dockmirror policy --namespace %s | kubectl apply -f -`",
                        what,
                        self.namespace,
                    )
                    continue
                raise AdmissionError(
                    f"{what} is not installed (--skip-admission-install); apply it with "
                    f"`dockmirror policy --namespace {self.namespace} | kubectl apply -f -`"
                ) from exc
            except KubeForbidden:
                # Reading admission objects is a privilege of its own; the probe below
                # proves the policy works without it.
                log.info("cannot read %s; relying on the probe", what)
                return
            except KubeError as exc:
                raise AdmissionError(f"cannot read {what}: {exc}") from exc

    def wait_effective(self, timeout: float) -> None:
        """Dry-run CREATE a Container with the action annotation until the apiserver
        denies it with this policy and binding (new policies take a moment to load)."""
        deadline = self.clock() + timeout
        binding = binding_name(self.namespace)
        last = "no attempt made"
        while True:
            try:
                dry_run_create(self.http, self.namespace, CONTAINERS, _probe_object(self.namespace))
                last = "a dry-run create with the action annotation was allowed"
            except KubeForbidden as exc:
                text = exc.message
                if (
                    f"ValidatingAdmissionPolicy '{POLICY_NAME}'" in text
                    and f"binding '{binding}'" in text
                    and text.endswith(CREATE_DENIED_MESSAGE)
                ):
                    log.info("ValidatingAdmissionPolicy %s is effective", POLICY_NAME)
                    return
                last = f"denied by something else: {text[:300]}"
            except KubeError as exc:
                last = str(exc)[:300]
            if self.clock() >= deadline:
                raise AdmissionError(
                    f"ValidatingAdmissionPolicy {POLICY_NAME} with binding {binding} did not "
                    f"take effect within {timeout:.0f} s: {last}"
                )
            self.sleep(PROBE_INTERVAL_S)


def remove_stale_webhook(http: KubeHttp, namespace: str) -> None:
    """Delete our webhook configuration left by a crashed webhook-mode run: with nothing
    answering it, its ``failurePolicy: Fail`` would block every Container write. Best
    effort (policy mode with an admin-installed policy may lack the permission): a
    failure is logged, never raised. Main thread, at start."""
    registration = WebhookRegistration(http, namespace, 0, b"")
    try:
        registration.delete()
    except KubeForbidden:
        # Least privilege (docs/permissions.md): policy mode is not granted access to
        # webhook configurations, so this check is skipped, not an error.
        log.info(
            "no access to validatingwebhookconfigurations: the check for one left by an "
            "earlier webhook-mode run is skipped (kubectl delete "
            "validatingwebhookconfiguration %s removes it if it exists)",
            registration.name,
        )
    except KubeError as exc:
        log.warning("could not check for a leftover %s: %s", registration.name, exc)


# --- webhook mode --------------------------------------------------------------------------


@dataclass
class WebhookSettings:
    state_dir: Path
    port: int = 0
    host: str = "127.0.0.1"
    url: str | None = None

    @property
    def cert_hosts(self) -> Sequence[str]:
        """Extra SANs: the listening host and the host of ``--webhook-url``."""
        hosts = [self.host]
        if self.url:
            url_host = urlsplit(self.url).hostname
            if url_host:
                hosts.append(url_host)
        return hosts


def start_webhook(
    http: KubeHttp, namespace: str, settings: WebhookSettings, timeout: float
) -> tuple[WebhookServer, WebhookRegistration]:
    """Start the server, register and probe. On any failure the configuration is
    deleted and the server stopped before :class:`AdmissionError` is raised."""
    try:
        bundle = ensure_certificates(settings.state_dir, hosts=settings.cert_hosts)
        server = WebhookServer(
            bundle.cert_path, bundle.key_path, port=settings.port, host=settings.host
        )
        server.start()
    except Exception as exc:
        raise AdmissionError(
            f"cannot start the admission webhook server on {settings.host}:{settings.port}: {exc}"
        ) from exc
    registration = WebhookRegistration(
        http,
        namespace,
        server.port,
        bundle.ca_pem,
        server=server,
        host=settings.host,
        url=settings.url,
    )
    try:
        try:
            registration.register()
        except KubeError as exc:
            raise AdmissionError(
                f"cannot register ValidatingWebhookConfiguration {registration.name}: {exc}"
            ) from exc
        try:
            registration.wait_until_called(timeout=timeout)
        except WebhookNotCalledError as exc:
            raise AdmissionError(
                f"the API server cannot reach the admission webhook at {registration.url}: "
                f"{exc}; use --admission policy or --webhook-url"
            ) from exc
    except AdmissionError as failure:
        try:
            registration.delete()
        except KubeError as exc:  # the line the user sees must say what is left behind
            server.stop()
            raise AdmissionError(
                f"{failure}; ValidatingWebhookConfiguration {registration.name} could not "
                f"be removed ({exc}): delete it with "
                f"`kubectl delete validatingwebhookconfiguration {registration.name}`"
            ) from exc
        server.stop()
        raise
    return server, registration

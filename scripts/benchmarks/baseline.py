"""The baseline: the action protocol as one straight, single-threaded loop.

Run: ``PYTHONPATH=scripts:. python -m benchmarks.baseline --namespace NS`` (the bench
starts it). No actors, no journal, no restart ledger, no mirroring: it lists and
watches the ``Container`` objects of one namespace and, for each object that carries
the action annotation, does what upstream's reconciler does (docs/contract.md §4.3-§4.5), one
action at a time, in the watch thread:

1. Docker call with the contract's pre-checks (``actors.runtime.actions.dispatch``);
2. ``status.lastAction`` as a JSON merge patch to ``/status`` with the object's
   resourceVersion (5 conflict attempts; later attempts GET the object again);
3. annotation removal, a merge patch with resourceVersion built on the status patch's
   response, only while the annotation still holds the value that ran.

It uses the same thin ports as the service (``DockerPort``, ``MirrorStore``), so the
comparison measures the architecture, not the HTTP clients. It does not create
mirrors: the bench runs dockmirror first on the same namespace, stops it, then runs
this (docs/performance.md). To pay the same admission cost as the service (the
client's annotation write and the removal are UPDATEs that pass admission), it sets up
the same admission as the service: ``--admission policy`` (default) applies the
service's ValidatingAdmissionPolicy and binding, ``--admission webhook`` registers the
service's validating webhook, served by a server thread (the only other thread),
``--admission none`` (or ``--no-webhook``) skips admission. ``--admission-only`` sets
up the admission and then only waits for SIGTERM: the bench's floor measurements
(``benchmarks.floor``) pay the mode's admission with nobody acting on the annotations.

Stale watch events (the echo of its own lastAction write still shows the annotation)
are skipped by resourceVersion: an event no newer than the last object it wrote for
that name is ignored.
"""

from __future__ import annotations

import argparse
import logging
import signal
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from kubernetes import config as k8s_config

from actors.domain.names import ACTION_ANNOTATION, ACTIONS_MANAGER
from actors.domain.timefmt import kube_now
from actors.ports.docker_port import DockerPort, DockerUnavailable
from actors.ports.kube_port import (
    KubeConflict,
    KubeError,
    KubeHttp,
    KubeNotFound,
    MirrorStore,
    annotation_of,
    is_terminating,
    resource_version_of,
)
from actors.runtime.actions import CONTAINER_ID, dispatch, is_valid_action, last_action
from actors.runtime.actions import not_a_container_error as not_a_mirror

log = logging.getLogger("bench.baseline")
CONFLICT_ATTEMPTS = 5


def _rv(obj: dict[str, Any]) -> int:
    try:
        return int(resource_version_of(obj) or 0)
    except ValueError:
        return 0


class Baseline:
    def __init__(self, store: MirrorStore, docker: DockerPort) -> None:
        self.store = store
        self.docker = docker
        self.written: dict[str, int] = {}  # name -> resourceVersion of our newest write
        self.actions = 0

    # --- docs/contract.md §4.5 ----------------------------------------------------------------
    def patch_last_action(self, obj: dict[str, Any], record: dict[str, Any]) -> dict | None:
        return self._conditional(
            obj,
            lambda base: self.store.patch_status(
                base["metadata"]["name"],
                {"lastAction": record},
                resource_version=resource_version_of(base),
                field_manager=ACTIONS_MANAGER,
            ),
        )

    def remove_annotation_if_still(self, base: dict[str, Any], value: str) -> dict | None:
        return self._conditional(
            base,
            lambda obj: self.store.patch_metadata(
                obj["metadata"]["name"],
                {"annotations": {ACTION_ANNOTATION: None}},
                resource_version=resource_version_of(obj),
                field_manager=ACTIONS_MANAGER,
            ),
            still=lambda obj: annotation_of(obj) == value,
        )

    def _conditional(
        self,
        base: dict[str, Any],
        write: Callable[[dict[str, Any]], dict],
        still: Callable[[dict[str, Any]], bool] = lambda obj: True,
    ) -> dict | None:
        """client-go's conflict retry: write on ``base``; on 409 re-read and retry (5x,
        10 ms apart); NotFound or a precondition that no longer holds ends it."""
        name = base["metadata"]["name"]
        for attempt in range(CONFLICT_ATTEMPTS):
            if not still(base):
                return None
            try:
                return write(base)
            except KubeNotFound:
                return None
            except KubeConflict:
                if attempt == CONFLICT_ATTEMPTS - 1:
                    raise
                time.sleep(0.01)
                try:
                    base = self.store.get(name)
                except KubeNotFound:
                    return None
        return None

    # --- docs/contract.md §4.3 ------------------------------------------------------------------
    def handle(self, obj: dict[str, Any]) -> None:
        name = (obj.get("metadata") or {}).get("name") or ""
        value = annotation_of(obj)
        if value is None or is_terminating(obj):
            return
        if _rv(obj) <= self.written.get(name, 0):
            return  # an echo of a state we already moved past
        if not is_valid_action(value):
            self._note(self.remove_annotation_if_still(obj, value))
            return
        observed_at = kube_now()
        if CONTAINER_ID.match(name):
            error = dispatch(self.docker, value, name)
        else:
            error = not_a_mirror(name)
        record = last_action(value, error, observed_at, kube_now())
        fresh = self.patch_last_action(obj, record)
        self.actions += 1
        if fresh is None:
            return
        self._note(fresh)
        self._note(self.remove_annotation_if_still(fresh, value))

    def _note(self, obj: dict[str, Any] | None) -> None:
        if obj:
            name = obj["metadata"]["name"]
            self.written[name] = max(self.written.get(name, 0), _rv(obj))

    def _safe_handle(self, obj: dict[str, Any]) -> None:
        try:
            self.handle(obj)
        except DockerUnavailable as exc:  # the annotation stays; the relist retries it
            log.warning("docker unavailable: %s", exc)
            time.sleep(1.0)
            raise
        except KubeError as exc:
            log.warning("action on %s not completed: %s", obj["metadata"]["name"][:12], exc)

    # --- list + watch -----------------------------------------------------------------
    def run_forever(self) -> None:
        while True:
            try:
                items, rv = self.store.list()
                for obj in items:
                    self._safe_handle(obj)
                stream = self.store.watch(rv, server_timeout_s=300, read_timeout_s=330)
                for event in stream:
                    kind, obj = event.get("type"), event.get("object") or {}
                    if kind in ("ADDED", "MODIFIED"):
                        self._safe_handle(obj)
                    elif kind == "ERROR":
                        break  # e.g. 410 Gone: relist
            except (KubeError, DockerUnavailable) as exc:
                log.warning("relisting after: %s", exc)
                time.sleep(0.5)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--namespace", required=True)
    parser.add_argument("--kubeconfig", default=None)
    parser.add_argument("--docker-host", default=None)
    parser.add_argument("--state-dir", default=None, help="webhook TLS files (default: tmp)")
    parser.add_argument("--admission", choices=("policy", "webhook", "none"), default="policy")
    parser.add_argument("--no-webhook", action="store_true", help="same as --admission none")
    parser.add_argument(
        "--admission-only", action="store_true", help="set up admission, act on nothing"
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    # SIGTERM ends the loop through SystemExit, so the finally below unregisters.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))

    api_client = k8s_config.new_client_from_config(config_file=args.kubeconfig)
    store = MirrorStore(KubeHttp(api_client), args.namespace)
    docker = DockerPort(args.docker_host)
    webhook = registration = None
    try:
        mode = "none" if args.no_webhook else args.admission
        if mode == "policy":
            from actors.service.admission import PolicyAdmission

            PolicyAdmission(store.http, args.namespace).ensure(timeout=30.0)
        elif mode == "webhook":
            from actors.infra.certs import ensure_certificates
            from actors.infra.webhook import WebhookRegistration, WebhookServer

            state_dir = Path(args.state_dir or tempfile.mkdtemp(prefix="bench-baseline-"))
            bundle = ensure_certificates(state_dir)
            webhook = WebhookServer(bundle.cert_path, bundle.key_path)
            webhook.start()
            registration = WebhookRegistration(
                store.http, args.namespace, webhook.port, bundle.ca_pem, server=webhook
            )
            registration.register()
            registration.wait_until_called(timeout=30.0)
        if args.admission_only:
            log.info("baseline admission only (%s): namespace %s", mode, args.namespace)
            signal.pause()  # until SIGTERM
        log.info("baseline running: namespace %s", args.namespace)
        Baseline(store, docker).run_forever()
    except KeyboardInterrupt:
        pass
    finally:
        if registration is not None:
            try:
                registration.delete()
            except Exception as exc:
                log.warning("webhook configuration not deleted: %s", exc)
        if webhook is not None:
            webhook.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())

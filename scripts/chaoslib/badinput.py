"""``bad-input``: a catalogue of malformed objects, annotations and admission requests,
each with its expected, clear outcome (docs/reliability.md lists them)."""

from __future__ import annotations

import contextlib
import http.client
import json
import random
import socket
import ssl
import time
import uuid
from collections.abc import Callable
from typing import Any
from urllib.parse import urlparse

from kubernetes import client as k8s
from kubernetes.client.rest import ApiException

from actors.domain.names import ACTION_ANNOTATION as ACTION
from actors.domain.names import CONTAINERS, FINALIZER, GROUP, JSON, VERSION
from messages.journal import Received
from scripts.chaoslib.harness import (
    Driver,
    Env,
    Observer,
    OutcomeWatch,
    RestartCounter,
    docker_cli,
    log,
    settle_and_check,
)
from scripts.chaoslib.invariants import Result, annotations_of
from tests.support.service import Service

HOLD = "chaos.dockmirror.io/hold"
ACTION_EVENTS = {"start", "stop", "pause", "unpause", "restart", "kill", "die"}


class CaseFailed(AssertionError):
    pass


def _expect(cond: bool, why: str) -> None:
    if not cond:
        raise CaseFailed(why)


def _until(pred: Callable[[], Any], timeout: float, why: str, interval: float = 0.2) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        with contextlib.suppress(ApiException):
            value = pred()
            if value:
                return value
        if time.monotonic() > deadline:
            raise CaseFailed(f"timed out ({timeout:.0f}s): {why}")
        time.sleep(interval)


class Catalogue:
    def __init__(self, env: Env, svc: Service, quick: bool) -> None:
        self.quick = quick
        self.env = env
        self.svc = svc
        self.api = env.api
        self.ns = env.namespace

    # --- helpers ---------------------------------------------------------------------
    def patch(self, name: str, body: dict[str, Any], status: bool = False) -> dict[str, Any]:
        fn = (
            self.api.patch_namespaced_custom_object_status
            if status
            else self.api.patch_namespaced_custom_object
        )
        return fn(GROUP, VERSION, self.ns, CONTAINERS, name, body)

    def annotate(self, name: str, value: Any) -> dict[str, Any]:
        return self.patch(name, {"metadata": {"annotations": {ACTION: value}}})

    def settled(self, name: str) -> None:
        """Return once the service has fully handled every earlier change of this mirror.

        Patches a marker label and waits until the container's actor *starts* handling
        the watch echo of that patch: its mailbox is FIFO, so everything observed before
        (the input under test) has been handled by then. A positive signal in place of a
        fixed "nothing happened within N seconds" window.
        """
        marker = uuid.uuid4().hex[:12]
        obj = self.patch(name, {"metadata": {"labels": {"dockmirror.chaos/marker": marker}}})
        rv = int(obj["metadata"]["resourceVersion"])

        def echo_received() -> bool:
            for entry in self.svc.journal():
                if (
                    isinstance(entry, Received)
                    and entry.container_id == name
                    and entry.msg_kind == "mirror_observed"
                    and int((entry.msg.get("obj") or {}).get("resourceVersion") or 0) >= rv
                ):
                    return True
            return False

        _until(echo_received, 30, "the service observed the marker patch")

    def denied(self, fn: Callable[[], Any], needle: str) -> str:
        try:
            fn()
        except ApiException as exc:
            body = exc.body.decode() if isinstance(exc.body, bytes) else str(exc.body)
            _expect(needle in body, f"rejected ({exc.status}) without {needle!r}: {body[:300]}")
            return f"{exc.status}"
        raise CaseFailed(f"accepted; expected a rejection containing {needle!r}")

    def fresh_container(self, running: bool = True) -> str:
        cid = self.env.container("bad-input", start=running)
        want = "running" if running else "created"
        _until(
            lambda: (self.svc.mirror(cid) or {}).get("status", {}).get("status") == want,
            30,
            f"mirror of {cid[:12]} {want}",
        )
        return cid

    def action_events(self, cid: str, since: float) -> list[str]:
        evs = self.env.docker.api.events(
            since=since, until=time.time(), decode=True, filters={"container": cid}
        )
        return [e["Action"] for e in evs if e.get("Action") in ACTION_EVENTS]

    def create_raw(self, name: str, annotations: dict[str, str] | None = None) -> dict[str, Any]:
        body = {
            "apiVersion": f"{GROUP}/{VERSION}",
            "kind": "Container",
            "metadata": {"name": name, "annotations": annotations or {}},
        }
        return self.api.create_namespaced_custom_object(GROUP, VERSION, self.ns, CONTAINERS, body)

    def delete_raw(self, name: str) -> None:
        with contextlib.suppress(ApiException):
            self.patch(name, {"metadata": {"finalizers": None}})
        with contextlib.suppress(ApiException):
            self.api.delete_namespaced_custom_object(GROUP, VERSION, self.ns, CONTAINERS, name)

    # --- cases -------------------------------------------------------------------------
    def webhook_denies_invalid_values(self) -> str:
        cid = self.fresh_container()
        for value in ("bogus", "", "Start", " stop", "stop\n", "restart;rm -rf /"):
            self.denied(
                lambda v=value: self.annotate(cid, v),
                f"invalid {ACTION} annotation",
            )
        obj = self.svc.mirror(cid) or {}
        _expect("lastAction" not in obj.get("status", {}), "lastAction appeared")
        return "6 values denied by the webhook; no lastAction"

    def create_with_annotation(self) -> str:
        for value in ("start", ""):
            self.denied(
                lambda v=value: self.create_raw(
                    f"chaos-create-{random.randrange(1 << 30)}", {ACTION: v}
                ),
                "annotation is not allowed on create",
            )
        return "CREATE with the annotation (valid and empty) denied"

    def invalid_while_webhook_missing(self) -> str:
        cid = self.fresh_container()
        adm = k8s.AdmissionregistrationV1Api(self.env.api_client)
        vwc = f"dockmirror-{self.ns}"
        done = []
        values = ("bogus", "x" * 4000) if self.quick else ("bogus", "", "STOP", "x" * 4000)
        for value in values:
            since = time.time()

            def sneak_in(v: str = value) -> bool:
                # The service re-registers within 2 s and the apiserver's webhook cache
                # lags both the delete and the re-registration: delete, try, repeat.
                with contextlib.suppress(ApiException):
                    adm.delete_validating_webhook_configuration(vwc)
                time.sleep(0.3)
                try:
                    self.annotate(cid, v)
                except ApiException:
                    return False
                return True

            _until(sneak_in, 30, f"write {value[:10]!r} accepted while the webhook is away")
            obj = _until(
                lambda: (lambda o: o if ACTION not in annotations_of(o) else None)(
                    self.svc.mirror(cid) or {ACTION: 1}
                ),
                20,
                f"invalid {value[:10]!r} dropped",
            )
            _expect("lastAction" not in obj.get("status", {}), f"lastAction after {value[:10]!r}")
            evs = self.action_events(cid, since)
            _expect(not evs, f"Docker was called for {value[:10]!r}: {evs}")
            _expect(obj["status"]["status"] == "running", "container state changed")
            # The service re-registers within --webhook-recheck (2 s): denied again.
            _until(lambda: adm.read_validating_webhook_configuration(vwc), 15, "re-registration")
            _until(lambda: self._is_denied(cid), 20, "webhook active again after re-registration")
            done.append(value[:10] or '""')
        return f"dropped without Docker call or lastAction: {', '.join(done)}"

    def _is_denied(self, cid: str) -> bool:
        try:
            self.annotate(cid, "bogus-probe")
        except ApiException as exc:
            return exc.status in (400, 403) and b"invalid" in (
                exc.body if isinstance(exc.body, bytes) else str(exc.body).encode()
            )
        # Slipped through before the cache caught up: the service drops it.
        return False

    def non_id_names(self) -> str:
        victim = self.fresh_container()
        names = {
            "chaos-not-an-id": "is not a mirror of a Docker container",
            victim[:12]: "is not a mirror of a Docker container",  # an ID prefix
        }
        made = []
        try:
            for name, needle in names.items():
                self.create_raw(name)
                made.append(name)
                self.annotate(name, "stop")
                obj = _until(
                    lambda n=name: (lambda o: o if ACTION not in annotations_of(o) else None)(
                        self.svc.mirror(n) or {ACTION: 1}
                    ),
                    20,
                    f"annotation on {name} consumed",
                )
                la = obj.get("status", {}).get("lastAction") or {}
                _expect(
                    la.get("state") == "Failed" and needle in (la.get("error") or ""),
                    f"{name}: lastAction {la}",
                )
            state = self.env.docker.api.inspect_container(victim)["State"]["Status"]
            _expect(state == "running", f"Docker resolved the ID prefix: victim is {state}")
            # A 64-hex name of no container: Docker's "No such container", or the stale
            # mirror is deleted first (both are clear outcomes).
            ghost = "f" * 64
            self.create_raw(ghost)
            made.append(ghost)
            with contextlib.suppress(ApiException):
                self.annotate(ghost, "start")
            obj = _until(
                lambda: (
                    (lambda o: o or {"gone": True})(self.svc.mirror(ghost))
                    if ACTION not in annotations_of(self.svc.mirror(ghost) or {})
                    else None
                ),
                20,
                "ghost annotation consumed or mirror deleted",
            )
            if not obj.get("gone"):
                la = obj.get("status", {}).get("lastAction") or {}
                _expect(
                    la.get("state") == "Failed" and "No such container" in la.get("error", ""),
                    f"ghost lastAction {la}",
                )
        finally:
            for name in made:
                self.delete_raw(name)
        return (
            "non-ID name and ID prefix: Failed 'not a mirror', victim untouched; ghost ID handled"
        )

    def garbage_status(self) -> str:
        cid = self.fresh_container()
        for body, what in (
            ({"status": {"status": "zombie"}}, "status enum"),
            ({"status": {"pid": "abc"}}, "pid type"),
            ({"status": {"lastAction": {"action": "explode", "state": "Bad"}}}, "lastAction enum"),
        ):
            self.denied(lambda b=body: self.patch(cid, b, status=True), "Invalid")
            _ = what
        # Valid but wrong: repaired at the container's next Docker event.
        self.patch(cid, {"status": {"status": "exited", "exitCode": 99}}, status=True)
        docker_cli(self.env, "pause", cid)
        _until(
            lambda: (self.svc.mirror(cid) or {}).get("status", {}).get("status") == "paused",
            20,
            "wrong status repaired after docker pause",
        )
        docker_cli(self.env, "unpause", cid)
        _until(
            lambda: (self.svc.mirror(cid) or {}).get("status", {}).get("status") == "running",
            20,
            "status running after docker unpause",
        )
        return "schema garbage rejected (422); a wrong valid status repaired by the next event"

    def webhook_garbage(self) -> str:
        adm = k8s.AdmissionregistrationV1Api(self.env.api_client)
        vwc = _until(
            lambda: adm.read_validating_webhook_configuration(f"dockmirror-{self.ns}"), 15, "vwc"
        )
        url = urlparse(vwc.webhooks[0].client_config.url)
        host, port, path = url.hostname, url.port, url.path
        ctx = ssl.create_default_context()
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE

        def post(body: bytes, headers: dict[str, str] | None = None) -> int:
            conn = http.client.HTTPSConnection(host, port, context=ctx, timeout=10)
            try:
                conn.putrequest("POST", path)
                for k, v in (headers or {"Content-Length": str(len(body))}).items():
                    conn.putheader(k, v)
                conn.endheaders()
                if body:
                    conn.send(body)
                return conn.getresponse().status
            finally:
                conn.close()

        review = {"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview"}
        cases = [
            (b"not json at all", None, 400),
            (b"[]", None, 400),
            (b"\xff\xfe\x00garbage", None, 400),
            (json.dumps({**review, "kind": "Nope", "request": {}}).encode(), None, 400),
            (json.dumps(review).encode(), None, 400),
            (json.dumps({**review, "request": {"operation": "UPDATE"}}).encode(), None, 400),
            (b"{}", {"Transfer-Encoding": "chunked"}, 400),
            (b"", {"Content-Length": str(64 * 1024 * 1024)}, 413),
        ]
        for body, headers, want in cases:
            got = post(body, headers)
            _expect(got == want, f"POST {body[:20]!r} {headers}: HTTP {got}, expected {want}")
        # Garbage instead of a TLS handshake must not wedge the server.
        with socket.create_connection((host, port), timeout=5) as raw:
            raw.sendall(b"\x16\x03\x01\x00\x05hello" + bytes(range(256)))
            with contextlib.suppress(OSError):
                raw.recv(100)
        # A well-formed review with an invalid value is a 200 with a 403 denial.
        good = {
            **review,
            "request": {
                "uid": "chaos",
                "operation": "UPDATE",
                "object": {"metadata": {"annotations": {ACTION: "bogus"}}},
                "oldObject": {"metadata": {}},
            },
        }
        conn = http.client.HTTPSConnection(host, port, context=ctx, timeout=10)
        conn.request("POST", path, body=json.dumps(good), headers={"Content-Type": JSON})
        resp = json.loads(conn.getresponse().read())
        conn.close()
        _expect(
            resp["response"]["allowed"] is False and resp["response"]["status"]["code"] == 403,
            f"valid review answered {resp}",
        )
        conn = http.client.HTTPSConnection(host, port, context=ctx, timeout=10)
        conn.request("GET", "/healthz")
        _expect(conn.getresponse().status == 200, "healthz after garbage")
        conn.close()
        return f"{len(cases)} malformed POSTs -> 400/413, TLS garbage survived, denial 403"

    def terminating_mirror(self) -> str:
        cid = self.fresh_container()
        obj = self.svc.mirror(cid)
        assert obj is not None
        fins = [*obj["metadata"].get("finalizers", []), HOLD]
        self.patch(cid, {"metadata": {"finalizers": fins}})
        self.api.delete_namespaced_custom_object(GROUP, VERSION, self.ns, CONTAINERS, cid)
        # Deletion wins: the service force-removes the container and strips its finalizer.
        _until(
            lambda: (
                FINALIZER
                not in ((self.svc.mirror(cid) or {}).get("metadata", {}).get("finalizers") or [])
            ),
            30,
            "delete forwarded",
        )
        self.annotate(cid, "stop")
        self.settled(cid)
        obj = self.svc.mirror(cid) or {}
        try:
            _expect(
                annotations_of(obj).get(ACTION) == "stop",
                "annotation on terminating mirror touched",
            )
            _expect("lastAction" not in obj.get("status", {}), "lastAction on terminating mirror")
            gone = not self.env.docker.api.containers(all=True, filters={"id": cid})
            _expect(gone, "Docker container not removed by the delete")
        finally:
            self.patch(cid, {"metadata": {"finalizers": None}})
        _until(
            lambda: self.svc.mirror(cid) is None, 15, "terminating mirror gone after hold removed"
        )
        return "annotation ignored (kept, no lastAction); container removed; mirror gone"

    def unknown_annotation_key(self) -> str:
        cid = self.fresh_container()
        self.patch(
            cid, {"metadata": {"annotations": {f"{ACTION}s": "stop", "random/junk": "\x00?"}}}
        )
        self.settled(cid)
        obj = self.svc.mirror(cid) or {}
        _expect("lastAction" not in obj.get("status", {}), "lastAction for an unknown key")
        state = self.env.docker.api.inspect_container(cid)["State"]["Status"]
        _expect(state == "running", f"container {state} after an unknown key")
        return "other annotation keys ignored"


def bad_input(env: Env, quick: bool, rng: random.Random) -> Result:
    result = Result("bad-input")
    svc = env.service("bad-input", webhook_recheck=2)
    from scripts.chaoslib.campaigns import _start, _teardown

    _start(svc)
    cat = Catalogue(env, svc, quick)
    cases = [
        cat.webhook_denies_invalid_values,
        cat.create_with_annotation,
        cat.invalid_while_webhook_missing,
        cat.non_id_names,
        cat.garbage_status,
        cat.webhook_garbage,
        cat.terminating_mirror,
        cat.unknown_annotation_key,
    ]
    outcomes: dict[str, str] = {}
    for case in cases:
        name = case.__name__
        try:
            outcomes[name] = "ok: " + case()
        except Exception as exc:
            outcomes[name] = f"FAILED: {type(exc).__name__}: {exc}"
            result.fail("case", [f"{name}: {type(exc).__name__}: {exc}"])
        log(f"bad-input: {name}: {outcomes[name]}")
    # The service must still work: a few valid requests on fresh containers, then the
    # invariants.
    ids = [env.container("bad-input") for _ in range(4)]
    with (
        Observer(env) as obs,
        RestartCounter(env) as restarts,
        OutcomeWatch(env) as watch,
    ):
        driver = Driver(env, obs, ids, budget=20, seed=rng.random()).start()
        driver.wait_budget(120)
        driver.finish()
        settle_and_check(env, result, driver, restarts, watch, strict=True)
    result.figures.update(cases=len(cases), outcomes=outcomes, trace=str(svc.workdir))
    result.minimums = {"cases": len(cases), "requested": 20, "completed": 20}
    _teardown(env, "bad-input", svc, result)
    return result

"""Shared machinery: the run's environment, the service process, a mirror observer, the
request workers, Docker's restart-event counter and the end-of-campaign check.

Everything created here is labelled ``dockmirror.chaos=<run id>`` and removed by
:meth:`Env.cleanup` (also on failure and Ctrl-C).
"""

from __future__ import annotations

import contextlib
import random
import subprocess
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import docker
from kubernetes import client as k8s
from kubernetes import config as k8s_config
from kubernetes.client.rest import ApiException

from scripts.chaoslib.invariants import (
    ACTION,
    Book,
    Result,
    annotations_of,
    last_action_problems,
    outcome_problem,
    persistent_mismatches,
    restart_problems,
    status_mismatches,
    stuck_annotations,
)
from tests.support.devenv import Devenv, start_devenv
from tests.support.service import GROUP, VERSION, Service

LABEL = "dockmirror.chaos"
IMAGE = "busybox:local"
WEIGHTS = {"start": 3, "stop": 2, "pause": 2, "unpause": 2, "restart": 1}


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


class Env:
    """One chaos run: devenv clients, run id, namespace ``chaos-<id>``, work directory."""

    def __init__(self, workdir: Path | None = None, run_id: str | None = None) -> None:
        self.run_id = run_id or uuid.uuid4().hex[:8]
        self.namespace = f"chaos-{self.run_id}"
        self.label = f"{LABEL}={self.run_id}"
        self.workdir = workdir or Path("/tmp") / f"dockmirror-chaos-{self.run_id}"
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.devenv: Devenv = start_devenv()
        self.api_client = k8s_config.new_client_from_config(config_file=str(self.devenv.kubeconfig))
        self.api = k8s.CustomObjectsApi(self.api_client)
        self.core = k8s.CoreV1Api(self.api_client)
        self.docker = docker.DockerClient(base_url=self.devenv.docker_host, timeout=60)
        self.core.create_namespace(k8s.V1Namespace(metadata=k8s.V1ObjectMeta(name=self.namespace)))
        self.services: list[Service] = []

    # --- service ---------------------------------------------------------------------
    def service(
        self, name: str, env: dict[str, str] | None = None, webhook_recheck: float = 30
    ) -> Service:
        svc = Service(
            self.devenv,
            self.api_client,
            self.namespace,
            self.workdir / name,
            extra_args=("--webhook-recheck", str(webhook_recheck)),
            env=env,
        )
        self.services.append(svc)
        return svc

    # --- containers --------------------------------------------------------------------
    def container(self, campaign: str, *, restart_always: bool = False, start: bool = True) -> str:
        """A busybox ``sleep`` container (StopTimeout 1 s, no network) labelled for this run."""
        api = self.docker.api
        host_config = api.create_host_config(
            network_mode="none",
            restart_policy={"Name": "always"} if restart_always else None,
        )
        created = api.create_container(
            IMAGE,
            ["sleep", "3600"],
            labels={LABEL: self.run_id, f"{LABEL}.campaign": campaign},
            stop_timeout=1,
            host_config=host_config,
        )
        if start:
            api.start(created["Id"])
        return created["Id"]

    def docker_states(self) -> dict[str, str]:
        return {c["Id"]: c["State"] for c in self.docker.api.containers(all=True)}

    def mirrors(self) -> dict[str, dict[str, Any]]:
        items = self.api.list_namespaced_custom_object(
            GROUP, VERSION, self.namespace, "containers"
        )["items"]
        return {o["metadata"]["name"]: o for o in items}

    def remove_containers(self, campaign: str | None = None) -> None:
        label = f"{LABEL}.campaign={campaign}" if campaign else self.label
        for c in self.docker.api.containers(all=True, filters={"label": [self.label, label]}):
            with contextlib.suppress(docker.errors.NotFound, docker.errors.APIError):
                self.docker.api.remove_container(c["Id"], force=True)

    def stop_services(self) -> None:
        for svc in self.services:
            if not svc.running:
                continue
            try:
                svc.stop()
            except Exception:
                svc.kill()

    def cleanup(self) -> None:
        """Stop every service, remove our containers, webhook config and namespace."""
        self.stop_services()
        with contextlib.suppress(Exception):
            self.remove_containers()
        with contextlib.suppress(Exception):
            k8s.AdmissionregistrationV1Api(self.api_client).delete_validating_webhook_configuration(
                f"dockmirror-{self.namespace}"
            )
        # Hand-made objects may carry extra finalizers; strip them so nothing lingers.
        with contextlib.suppress(Exception):
            for name, obj in self.mirrors().items():
                if obj["metadata"].get("finalizers"):
                    self.api.patch_namespaced_custom_object(
                        GROUP,
                        VERSION,
                        self.namespace,
                        "containers",
                        name,
                        {"metadata": {"finalizers": None}},
                    )
        with contextlib.suppress(Exception):
            self.core.delete_namespace(self.namespace)
        with contextlib.suppress(Exception):
            self.docker.close()
            self.api_client.close()


def rss_mb(svc: Service) -> float | None:
    if svc.proc is None:
        return None
    try:
        for line in Path(f"/proc/{svc.proc.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return round(int(line.split()[1]) / 1024, 1)
    except OSError:
        return None
    return None


class Observer:
    """Lists the namespace's mirrors every ``interval`` s; workers wait on its snapshots."""

    def __init__(self, env: Env, interval: float = 0.2) -> None:
        self.env = env
        self.interval = interval
        self.cond = threading.Condition()
        self.snapshot: dict[str, dict[str, Any]] = {}
        self.started_at = 0.0  # when the list that produced ``snapshot`` was sent
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="observer", daemon=True)

    def __enter__(self) -> Observer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=10)

    def _run(self) -> None:
        while not self._stop.is_set():
            t0 = time.time()
            try:
                snap = self.env.mirrors()
            except Exception:
                self._stop.wait(0.5)
                continue
            with self.cond:
                self.snapshot, self.started_at = snap, t0
                self.cond.notify_all()
            self._stop.wait(self.interval)

    def wait(
        self, predicate: Callable[[dict[str, dict[str, Any]]], Any], after: float, timeout: float
    ) -> Any:
        """First value of ``predicate(snapshot)`` truthy on a snapshot listed after ``after``."""
        deadline = time.monotonic() + timeout
        with self.cond:
            while True:
                if self.started_at > after:
                    value = predicate(self.snapshot)
                    if value:
                        return value
                left = deadline - time.monotonic()
                if left <= 0:
                    return None
                self.cond.wait(min(left, 1.0))


class RestartCounter:
    """Counts Docker ``restart`` events of this run's containers.

    The daemon keeps only the last 256 events for ``since`` reads, so a finite read at the
    end of a long campaign would miss most of them. A streaming subscriber (filtered on
    the daemon side) sees every event live; a finite ``events(since, until)`` read at the
    end fills any gap (e.g. while the stream reconnected) and both are merged by
    (container, timeNano).
    """

    def __init__(self, env: Env) -> None:
        self.env = env
        self.since = time.time() - 1
        self.seen: set[tuple[str, int]] = set()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._stream: Any = None
        self._thread = threading.Thread(target=self._run, name="restart-events", daemon=True)
        self._filters = {"event": "restart", "label": env.label}

    def __enter__(self) -> RestartCounter:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        with contextlib.suppress(Exception):
            self._stream.close()
        self._thread.join(timeout=5)

    def _add(self, ev: dict[str, Any]) -> None:
        with self._lock:
            self.seen.add((ev.get("id") or ev["Actor"]["ID"], int(ev.get("timeNano", 0))))

    def _run(self) -> None:
        since = self.since
        while not self._stop.is_set():
            client = None
            try:
                # Inside the try: creating the client negotiates the API version, which
                # fails while the engine is stopped (engine campaign); the thread must
                # survive that and reconnect, or every later restart goes uncounted.
                client = docker.APIClient(base_url=self.env.devenv.docker_host, timeout=None)
                self._stream = client.events(since=since, filters=self._filters, decode=True)
                for ev in self._stream:
                    self._add(ev)
                    since = max(since, ev.get("time", since))
            except Exception:
                pass  # engine restarting (engine campaign): reconnect from the last event
            finally:
                if client is not None:
                    client.close()
            self._stop.wait(0.5)

    def counts(self, container_ids: set[str]) -> Counter:
        with contextlib.suppress(Exception):
            for ev in self.env.docker.api.events(
                since=self.since, until=time.time(), filters=self._filters, decode=True
            ):
                self._add(ev)
        with self._lock:
            return Counter(cid for cid, _ in self.seen if cid in container_ids)


class Driver:
    """Per-container request workers: write an action, sometimes overwrite it, wait until
    the annotation is consumed, check the outcome, repeat."""

    def __init__(
        self,
        env: Env,
        observer: Observer,
        containers: list[str],
        *,
        budget: int | None = None,
        overwrite_p: float = 0.15,
        weights: dict[str, int] | None = None,
        consume_timeout: float = 120.0,
        seed: int | None = None,
    ) -> None:
        self.env = env
        self.observer = observer
        self.containers = containers
        self.book = Book()
        self.budget = budget
        self.overwrite_p = overwrite_p
        self.weights = weights or WEIGHTS
        self.consume_timeout = consume_timeout
        self.rng = random.Random(seed)
        self.problems: list[str] = []
        self.write_errors = 0
        self.stop = threading.Event()
        self.issued = 0
        self._lock = threading.Lock()
        self._threads = [
            threading.Thread(target=self._worker, args=(cid,), name=f"w-{cid[:8]}", daemon=True)
            for cid in containers
        ]

    def start(self) -> Driver:
        for t in self._threads:
            t.start()
        return self

    def finish(self, timeout: float = 180.0) -> None:
        """Stop issuing requests; wait for in-flight ones (they stay tracked)."""
        self.stop.set()
        deadline = time.monotonic() + timeout
        for t in self._threads:
            t.join(timeout=max(0.1, deadline - time.monotonic()))

    def wait_budget(self, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not any(t.is_alive() for t in self._threads):
                return True
            time.sleep(0.2)
        return False

    def _take(self) -> bool:
        with self._lock:
            if self.stop.is_set():
                return False
            if self.budget is not None and self.issued >= self.budget:
                return False
            self.issued += 1
            return True

    def _choose(self, exclude: tuple[str, ...] = ()) -> str:
        with self._lock:
            names = [a for a in self.weights if a not in exclude]
            return self.rng.choices(names, [self.weights[a] for a in names])[0]

    def write(self, cid: str, value: str, record: bool = True, deadline_s: float = 120.0) -> float:
        """Write the annotation (retrying while the service/webhook/apiserver is away).

        Returns the time the successful write returned; records it in the book.
        """
        deadline = time.monotonic() + deadline_s
        not_found_deadline = time.monotonic() + 30
        while True:
            try:
                self.env.api.patch_namespaced_custom_object(
                    GROUP,
                    VERSION,
                    self.env.namespace,
                    "containers",
                    cid,
                    {"metadata": {"annotations": {ACTION: value}}},
                )
                break
            except Exception as exc:
                with self._lock:
                    self.write_errors += 1
                # 404: the mirror of a just-created container may not exist yet.
                gone = isinstance(exc, ApiException) and exc.status == 404
                if gone and time.monotonic() > not_found_deadline:
                    raise
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.2)
        now = time.time()
        if record:
            with self._lock:
                self.book.record(cid, value, now)
        return now

    def _worker(self, cid: str) -> None:
        rng = random.Random(self.rng.random())
        while self._take():
            value = self._choose()
            try:
                written = self.write(cid, value)
                if value != "restart" and rng.random() < self.overwrite_p:
                    time.sleep(rng.uniform(0, 0.3))
                    second = self._choose(exclude=("restart", value))
                    written = self.write(cid, second)
                    with self._lock:
                        self.book.overwritten += 1
                    value = second
            except Exception as exc:
                with self._lock:
                    self.problems.append(f"{cid[:12]}: could not write {value!r}: {exc}")
                return
            obj = self.observer.wait(
                lambda snap, cid=cid: _consumed(snap, cid),
                after=written,
                timeout=self.consume_timeout,
            )
            if obj is None:
                with self._lock:
                    self.problems.append(
                        f"{cid[:12]}: {value!r} not consumed within {self.consume_timeout:.0f}s"
                    )
                return
            la = (obj.get("status") or {}).get("lastAction")
            req = self.book.last(cid)
            assert req is not None
            why = outcome_problem(req, la, None, strict=False)
            with self._lock:
                self.book.completed += 1
                if why:
                    self.problems.append(f"{cid[:12]}: at consumption: {why}")
                if (
                    value == "restart"
                    and la
                    and la.get("action") == "restart"
                    and la.get("state") == "Succeeded"
                ):
                    self.book.restarts_succeeded[cid] += 1


def _consumed(snap: dict[str, dict[str, Any]], cid: str) -> dict[str, Any] | None:
    obj = snap.get(cid)
    if obj is not None and ACTION not in annotations_of(obj):
        return obj
    return None


def settle_and_check(
    env: Env,
    result: Result,
    driver: Driver,
    restarts: RestartCounter,
    *,
    strict: bool,
    quiesce_timeout: float = 90.0,
    exclude_stuck: set[str] = frozenset(),
) -> None:
    """Quiescence, then the four invariants; fills ``result.figures`` and failures."""
    ours = set(driver.containers)
    book = driver.book
    # 1. every annotation consumed
    deadline = time.monotonic() + quiesce_timeout
    stuck: list[str] = []
    while True:
        try:
            mirrors = env.mirrors()
        except Exception:
            mirrors = None
        if mirrors is not None:
            stuck = stuck_annotations(mirrors, exclude=set(exclude_stuck))
            if not stuck:
                break
        if time.monotonic() > deadline:
            break
        time.sleep(0.5)
    # 3. status == Docker's state, mirrors exactly for Docker's containers
    snapshots: list[tuple[dict[str, str], dict[str, str]]] = []
    deadline = time.monotonic() + 45
    mismatches: dict[str, str] = {}
    while True:
        try:
            docker_states = env.docker_states()
            mirrors = env.mirrors()
        except Exception:  # a side briefly unreachable: try again until the deadline
            if time.monotonic() > deadline + 60:
                raise
            time.sleep(1.0)
            continue
        mirror_states = {n: (o.get("status") or {}).get("status") for n, o in mirrors.items()}
        snapshots = [*snapshots[-2:], (docker_states, mirror_states)]
        if not status_mismatches(docker_states, mirror_states):
            mismatches = {}
            break
        if time.monotonic() > deadline and len(snapshots) >= 3:
            mismatches = persistent_mismatches(snapshots)
            break
        time.sleep(1.0)
    # 2. lastAction is the outcome of the last request (on the final snapshot)
    outcome = last_action_problems(
        book, {k: v for k, v in mirrors.items() if k in ours}, docker_states, strict=strict
    )
    # 4. exactly one Docker restart per Succeeded restart request
    seen = restarts.counts(ours)
    rproblems, doubles, missing = restart_problems(book.restarts_succeeded, seen)

    result.figures.update(
        requested=book.requested,
        completed=book.completed,
        overwritten=book.overwritten,
        stuck=len(stuck),
        outcome_errors=len(outcome) + len(driver.problems),
        mismatches=len(mismatches),
        restarts_requested=sum(book.restarts_succeeded.values()),
        double_restarts=doubles,
        missing_restarts=missing,
        write_retries=driver.write_errors,
    )
    result.fail("stuck annotation", stuck)
    result.fail("driver", driver.problems)
    result.fail("lastAction", outcome)
    result.fail("status", [f"{cid[:12]}: {why}" for cid, why in sorted(mismatches.items())])
    result.fail("restart count", rproblems)


def docker_cli(env: Env, *args: str, timeout: float = 30) -> int:
    """Run the docker CLI against the devenv engine; returns its exit code."""
    try:
        return subprocess.run(
            ["docker", "-H", env.devenv.docker_host, *args],
            capture_output=True,
            timeout=timeout,
        ).returncode
    except subprocess.TimeoutExpired:
        return -1

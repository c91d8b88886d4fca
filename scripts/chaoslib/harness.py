"""Shared machinery: the run's environment, the Docker engine under attack, the service
process, a mirror observer, the request workers, Docker's restart-event counter and the
end-of-campaign check.

Everything created here is labelled ``dockmirror.chaos=<run id>`` and removed by
:meth:`Env.cleanup` (also on failure and Ctrl-C).
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import random
import re
import subprocess
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import docker
import requests
from kubernetes import client as k8s
from kubernetes import config as k8s_config
from kubernetes import watch as k8s_watch
from kubernetes.client.rest import ApiException

from actors.domain.names import ACTION_ANNOTATION as ACTION
from actors.domain.names import CONTAINERS, GROUP, VERSION
from actors.infra import faults
from scripts.chaoslib.invariants import (
    Book,
    Matching,
    OutcomeRecord,
    RacerError,
    Request,
    Result,
    annotations_of,
    docker_view_from_inspect,
    docker_view_from_list,
    exit_problem,
    harness_view,
    identity_problems,
    last_action_problems,
    match_outcomes,
    mirror_view,
    model_state,
    outcome_problem,
    persistent_mismatches,
    racer_problems,
    restart_problems,
    status_mismatches,
    stuck_problems,
)
from tests.support.devenv import DEVENV_SCRIPT, Devenv, parse_env, start_devenv
from tests.support.service import Service

LABEL = "dockmirror.chaos"
IMAGE = "busybox:local"
WEIGHTS = {"start": 3, "stop": 2, "pause": 2, "unpause": 2, "restart": 1}
# Written with every request next to the action annotation: a unique id that tells the
# racer whether its own (possibly failed) write landed and which request a later write
# replaced. The service ignores other annotation keys.
REQUEST_ID = "chaos.dockmirror.io/request"


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


# --- the Docker engine under attack -------------------------------------------------------
#: An extra engine's name, as ``scripts/devenv engine-up`` accepts it.
ENGINE_NAME = re.compile(r"[a-z0-9][a-z0-9-]{0,15}")


def run_devenv(*args: str, timeout: float = 300) -> str:
    """Run ``scripts/devenv ARGS`` and return its stdout; raises RuntimeError with its
    output when it fails or times out (a refusal, e.g. ``stop-docker`` of an engine
    devenv did not start, is a failure)."""
    try:
        res = subprocess.run(
            [str(DEVENV_SCRIPT), *args], capture_output=True, text=True, timeout=timeout
        )
    except subprocess.TimeoutExpired as exc:
        raise RuntimeError(f"scripts/devenv {' '.join(args)} timed out ({timeout:.0f}s)") from exc
    if res.returncode != 0:
        out = (res.stderr.strip() or res.stdout.strip())[-600:]
        raise RuntimeError(f"scripts/devenv {' '.join(args)} exited {res.returncode}: {out}")
    return res.stdout


class DockerEngine:
    """The Docker engine a chaos run attacks and may restart: the devenv's main engine
    (``name`` None, the default) or the extra engine ``name`` of ``scripts/devenv``
    (``scripts/chaos --engine NAME``), which nobody else uses.

    Every stop, start, restart and SIGSTOP/SIGCONT of dockerd by the harness goes
    through this object, so it acts on the selected engine only: the main engine with
    ``scripts/devenv stop-docker``/``start-docker`` (devenv refuses when it did not
    start that engine), an extra engine with ``engine-down``/``engine-up NAME``.
    ``devenv`` runs a devenv command and returns its stdout (injectable for tests).
    """

    def __init__(
        self,
        repo_root: Path,
        name: str | None = None,
        docker_host: str = "",
        devenv: Callable[..., str] = run_devenv,
    ) -> None:
        if name is not None and not ENGINE_NAME.fullmatch(name):
            raise ValueError(f"bad engine name {name!r}: 1-16 characters a-z, 0-9 and '-'")
        self.repo_root = repo_root
        self.name = name
        self.docker_host = docker_host
        self._devenv = devenv

    def __str__(self) -> str:
        return f"extra engine {self.name!r}" if self.name else "the devenv's main engine"

    def prepare(self) -> str:
        """For an extra engine: start it (idempotent; ``engine-up`` imports
        ``busybox:local`` like ``up`` does when it is missing) and learn its
        DOCKER_HOST. Returns the DOCKER_HOST."""
        if self.name is not None:
            self._devenv("engine-up", self.name)
            env = parse_env(self._devenv("engine-env", self.name))
            self.docker_host = env["DOCKER_HOST"]
        return self.docker_host

    @property
    def state_dir(self) -> Path:
        """Where devenv keeps this engine's pidfile (docs/dev-environment.md, Files)."""
        base = self.repo_root / ".devenv"
        return base / "engines" / self.name if self.name else base

    def owned(self) -> bool:
        """True when the harness may stop and restart this engine: an extra engine
        always (devenv started it for this checkout), the main engine only when this
        checkout's devenv started it (``.devenv/docker.owner`` is ``devenv``)."""
        if self.name is not None:
            return True
        try:
            return (self.state_dir / "docker.owner").read_text().strip() == "devenv"
        except OSError:
            return False

    def stop(self) -> None:
        cmd = ("engine-down", self.name) if self.name else ("stop-docker",)
        log(f"engine: scripts/devenv {' '.join(cmd)}")
        self._devenv(*cmd)

    def start(self) -> None:
        cmd = ("engine-up", self.name) if self.name else ("start-docker",)
        log(f"engine: scripts/devenv {' '.join(cmd)}")
        self._devenv(*cmd)

    def restart(self) -> None:
        self.stop()
        self.start()

    def dockerd_pid(self) -> int:
        """This engine's dockerd pid, checked in /proc to be a ``dockerd`` (and, for an
        extra engine, the one with this engine's data root): never signal a stranger."""
        pid_file = self.state_dir / "dockerd.pid"
        try:
            pid = int(pid_file.read_text().split()[0])
            comm = Path(f"/proc/{pid}/comm").read_text().strip()
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
        except (OSError, ValueError, IndexError) as exc:
            raise RuntimeError(f"no running dockerd of {self} ({pid_file}): {exc}") from exc
        if comm != "dockerd":
            raise RuntimeError(f"{pid_file} names pid {pid}, which is {comm!r}, not dockerd")
        if self.name is not None and f"--data-root {self.state_dir / 'data'}" not in cmdline:
            raise RuntimeError(f"pid {pid} is a dockerd, but not the one of {self}")
        return pid


# --- removal that survives a stuck engine -------------------------------------------------
#: How long one removal pass may take before the harness restarts the engine (Docker
#: 20.10 can leave a container in ``Restarting`` so that no ``rm -f`` ever returns).
REMOVE_DEADLINE_S = 60.0
#: Per-call timeout of the teardown's Docker client: a hung call is retried, not waited out.
REMOVE_CALL_TIMEOUT_S = 15.0
REMOVE_POLL_S = 1.0


@dataclass
class Removal:
    """What one removal of the harness's containers did (:func:`remove_containers`)."""

    removed: int = 0
    #: containers still there at the end: ``<id12> (<state>)``
    left: list[str] = field(default_factory=list)
    engine_restarts: int = 0
    #: what went wrong on the way (a pass that timed out, a restart that failed)
    notes: list[str] = field(default_factory=list)


def remove_pass(
    connect: Callable[[], Any],
    filters: dict[str, Any],
    *,
    deadline_s: float = REMOVE_DEADLINE_S,
    poll_s: float = REMOVE_POLL_S,
    clock: Callable[[], float] = time.monotonic,
    wait: Callable[[float], Any] = time.sleep,
) -> tuple[int, dict[str, str], str]:
    """Force-remove every container matching ``filters`` until none is listed or
    ``deadline_s`` has passed. ``connect()`` returns a Docker ``APIClient`` (called again
    after a failed call: creating one negotiates the API version, which fails while the
    engine is away). Between passes it polls every ``poll_s``; each call is bounded by
    the client's own timeout, and a container whose removal timed out is tried after
    the others.

    Returns (removed, left, last_error): how many of the containers listed at some point
    are gone, the ones still listed at the deadline (id -> state; the last listing, or
    every container ever listed when no listing succeeded at the end), and the last
    error seen ("" if none).
    """
    clients: list[Any] = []

    def connect_once() -> Any:
        clients.append(connect())
        return clients[-1]

    try:
        return _remove_pass(connect_once, filters, deadline_s, poll_s, clock, wait)
    finally:
        for client in clients:
            with contextlib.suppress(Exception):
                client.close()


def _remove_pass(
    connect: Callable[[], Any],
    filters: dict[str, Any],
    deadline_s: float,
    poll_s: float,
    clock: Callable[[], float],
    wait: Callable[[float], Any],
) -> tuple[int, dict[str, str], str]:
    deadline = clock() + deadline_s
    api: Any = None
    seen: dict[str, str] = {}
    left: dict[str, str] | None = None
    last_error = ""
    relist_now = False  # every call of the last pass answered: list again at once, once
    hung: set[str] = set()
    while True:
        try:
            if api is None:
                api = connect()
            listed = api.containers(all=True, filters=filters)
            left = {c["Id"]: c.get("State") or "?" for c in listed}
            seen.update(left)
        except Exception as exc:  # engine away or hung: try again until the deadline
            last_error = f"list: {type(exc).__name__}: {exc}"[:300]
            api = None
            left = None
        if left == {}:
            return len(seen), {}, last_error
        clean = left is not None and not relist_now
        # Containers whose removal hung before go last: one stuck container must not
        # keep the others from being removed.
        for cid in sorted(left or {}, key=lambda c: c in hung):
            if clock() > deadline:
                clean = False
                break
            try:
                api.remove_container(cid, force=True)
            except docker.errors.NotFound:
                pass  # gone already (the service removed it, or a previous call did)
            except docker.errors.APIError as exc:
                # 409 "removal ... already in progress": the next listing tells.
                last_error = f"rm {cid[:12]}: {exc}"[:300]
                clean = False
            except requests.exceptions.Timeout as exc:  # this container's removal hangs
                last_error = f"rm {cid[:12]}: {type(exc).__name__}: {exc}"[:300]
                hung.add(cid)
                clean = False
            except Exception as exc:  # a dropped connection: the engine went away
                last_error = f"rm {cid[:12]}: {type(exc).__name__}: {exc}"[:300]
                api = None
                clean = False
                break
        if clock() > deadline:
            remaining = left if left is not None else dict(seen)
            return len(seen) - len(remaining), remaining, last_error
        relist_now = clean
        if not relist_now:
            wait(poll_s)


def remove_containers(
    connect: Callable[[], Any],
    filters: dict[str, Any],
    engine: DockerEngine,
    *,
    deadline_s: float = REMOVE_DEADLINE_S,
    poll_s: float = REMOVE_POLL_S,
    clock: Callable[[], float] = time.monotonic,
    wait: Callable[[float], Any] = time.sleep,
) -> Removal:
    """Remove every container matching ``filters`` (:func:`remove_pass`); if some are
    still there at the deadline, restart the engine, when the harness owns it
    (:meth:`DockerEngine.owned`), and remove again. Never raises: what happened is in
    the returned :class:`Removal` and in the log."""
    report = Removal()

    def one_pass() -> dict[str, str]:
        removed, left, error = remove_pass(
            connect, filters, deadline_s=deadline_s, poll_s=poll_s, clock=clock, wait=wait
        )
        report.removed += removed
        if left:
            what = ", ".join(f"{cid[:12]} ({state})" for cid, state in sorted(left.items()))
            note = f"{len(left)} container(s) not removed within {deadline_s:.0f}s: {what}"
            report.notes.append(f"{note}; last error: {error}" if error else note)
            log(f"teardown: {report.notes[-1]}")
        return left

    left = one_pass()
    if left:
        if engine.owned():
            log(f"teardown: restarting {engine} to remove them")
            try:
                engine.restart()
                report.engine_restarts += 1
                report.notes.append(f"restarted {engine}")
            except Exception as exc:
                report.notes.append(f"restart of {engine} failed: {exc}"[:400])
                log(f"teardown: {report.notes[-1]}")
            left = one_pass()
            if not left and report.engine_restarts:
                log(f"teardown: removed after the restart of {engine}")
        else:
            report.notes.append(f"{engine} was not started by devenv: not restarted")
            log(f"teardown: {report.notes[-1]}")
    report.left = [f"{cid[:12]} ({state})" for cid, state in sorted(left.items())]
    return report


def record_removal(result: Result, removal: Removal) -> None:
    """Put a teardown's removal into the campaign's result: the engine restarts as the
    figure ``engine_restarts_in_teardown`` and notes (not a failure: the invariants were
    checked before), containers that are still there as a failure of ``teardown``."""
    figure = "engine_restarts_in_teardown"
    result.figures[figure] = result.figures.get(figure, 0) + removal.engine_restarts
    for note in removal.notes:
        result.note(f"teardown: {note}")
    if removal.left:
        restarted = " even after an engine restart" if removal.engine_restarts else ""
        result.fail("teardown", [f"not removed{restarted}: {', '.join(removal.left)}"])


class Env:
    """One chaos run: devenv clients, the Docker engine under attack (``engine``: the
    devenv's main engine, or an extra engine with ``engine_name``), run id, namespace
    ``chaos-<id>``, work directory."""

    def __init__(
        self,
        workdir: Path | None = None,
        run_id: str | None = None,
        engine_name: str | None = None,
    ) -> None:
        self.run_id = run_id or uuid.uuid4().hex[:8]
        self.namespace = f"chaos-{self.run_id}"
        self.label = f"{LABEL}={self.run_id}"
        self.workdir = workdir or Path("/tmp") / f"dockmirror-chaos-{self.run_id}"
        self.workdir.mkdir(parents=True, exist_ok=True)
        devenv = start_devenv()
        self.engine = DockerEngine(devenv.repo_root, engine_name, devenv.docker_host)
        # The service under test, the docker CLI racers and the restart counter all use
        # ``devenv.docker_host``: the selected engine's.
        self.devenv: Devenv = dataclasses.replace(devenv, docker_host=self.engine.prepare())
        self.api_client = k8s_config.new_client_from_config(config_file=str(self.devenv.kubeconfig))
        self.api = k8s.CustomObjectsApi(self.api_client)
        self.core = k8s.CoreV1Api(self.api_client)
        self.docker = docker.DockerClient(base_url=self.devenv.docker_host, timeout=60)
        self._check_image()
        self.core.create_namespace(k8s.V1Namespace(metadata=k8s.V1ObjectMeta(name=self.namespace)))
        self.services: list[TrackedService] = []

    # --- service ---------------------------------------------------------------------
    def service(
        self, name: str, env: dict[str, str] | None = None, webhook_recheck: float = 30
    ) -> TrackedService:
        # Planted bugs only where a self-test asks for them, never inherited by accident.
        env = {"DOCKMIRROR_BUGS": "", **(env or {})}
        svc = TrackedService(
            self.devenv,
            self.api_client,
            self.namespace,
            self.workdir / name,
            # The campaigns' invariants (bad-input's webhook cases) assume webhook mode,
            # the default before --admission existed (docs/admission.md). One instance per
            # campaign: a Lease would only add its 15 s wait after every SIGKILL of the
            # sigkill campaign (tests/integration/test_leader_election.py covers election).
            extra_args=(
                "--admission",
                "webhook",
                "--webhook-recheck",
                str(webhook_recheck),
                "--no-leader-elect",
            ),
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

    def docker_views(self, ours: set[str]) -> dict[str, dict[str, Any]]:
        """Every container on the engine -> the fields its mirror must carry: all fields
        (from inspect) for this campaign's containers, status and labels for others."""
        views = {c["Id"]: docker_view_from_list(c) for c in self.docker.api.containers(all=True)}
        for cid in sorted(ours & set(views)):
            try:
                views[cid] = docker_view_from_inspect(self.docker.api.inspect_container(cid))
            except docker.errors.NotFound:
                views.pop(cid, None)  # removed between the list and the inspect
        return views

    def mirrors(self) -> dict[str, dict[str, Any]]:
        items = self.api.list_namespaced_custom_object(GROUP, VERSION, self.namespace, CONTAINERS)[
            "items"
        ]
        return {o["metadata"]["name"]: o for o in items}

    def _check_image(self) -> None:
        """``busybox:local`` must be on the selected engine; ``engine-up`` (or ``up``)
        imports it when missing, so run that once more before giving up."""
        try:
            self.docker.api.inspect_image(IMAGE)
            return
        except docker.errors.ImageNotFound:
            pass
        log(f"{IMAGE} missing on {self.engine}: importing it with scripts/devenv")
        run_devenv(*(("engine-up", self.engine.name) if self.engine.name else ("up",)))
        self.docker.api.inspect_image(IMAGE)  # raises ImageNotFound if still missing

    def remove_containers(self, campaign: str | None = None) -> Removal:
        """Force-remove this run's containers (of ``campaign``, or all), restarting the
        engine if one cannot be removed in time (:func:`remove_containers`). Never
        raises."""
        label = f"{LABEL}.campaign={campaign}" if campaign else self.label

        def connect() -> docker.APIClient:
            return docker.APIClient(base_url=self.devenv.docker_host, timeout=REMOVE_CALL_TIMEOUT_S)

        return remove_containers(connect, {"label": [self.label, label]}, self.engine)

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
        with contextlib.suppress(Exception):
            self.stop_services()
        removal = self.remove_containers()
        if removal.left:
            log(f"cleanup: containers left on {self.engine}: {', '.join(removal.left)}")
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
                        CONTAINERS,
                        name,
                        {"metadata": {"finalizers": None}},
                    )
        with contextlib.suppress(Exception):
            self.core.delete_namespace(self.namespace)
        with contextlib.suppress(Exception):
            self.docker.close()
            self.api_client.close()


@dataclass(frozen=True)
class Exit:
    """How one service process ended."""

    pid: int
    code: int | None
    killed: bool  # SIGKILLed by the harness
    stopped: bool  # SIGTERMed by the harness
    kill_fault_armed: bool  # DOCKMIRROR_FAULTS had a kill point: it may kill itself
    note: str = ""

    def problem(self) -> str | None:
        why = exit_problem(
            self.code,
            killed=self.killed,
            stopped=self.stopped,
            kill_fault_armed=self.kill_fault_armed,
        )
        if self.note:
            why = f"{self.note}; {why}" if why else self.note
        return f"pid {self.pid}: {why}" if why else None


class TrackedService(Service):
    """A :class:`Service` that remembers how each of its processes ended, so that an exit
    the harness did not cause (exit code 3 of the restart budget, a crash, a SIGKILL
    without an armed kill fault) fails the campaign instead of being restarted silently.

    Runs on the campaign's thread; not thread-safe (one controller per service).
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.exits: list[Exit] = []
        self._killed = self._stopped = self._kill_fault = False
        self._note = ""
        self._noted_pid: int | None = None

    def start(self, *, env: dict[str, str] | None = None, wait_ready: bool = True) -> Service:
        self._record_exit()
        spec = {**self.env, **(env or {})}.get("DOCKMIRROR_FAULTS", "")
        rules, _ = faults.parse(spec)
        self._kill_fault = any(rule.mode == "kill" for rule in rules.values())
        self._killed = self._stopped = False
        self._note = ""
        return super().start(env=env, wait_ready=wait_ready)

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self._killed = True
        super().kill()
        self._record_exit()

    def stop(self, timeout: float = 20.0) -> int:
        if self.proc is not None and self.proc.poll() is None:
            self._stopped = True
        try:
            return super().stop(timeout)
        except AssertionError:
            self._note = f"did not stop within {timeout:.0f}s after SIGTERM (killed)"
            raise
        finally:
            self._record_exit()

    def _record_exit(self) -> None:
        proc = self.proc
        if proc is None or proc.poll() is None or self._noted_pid == proc.pid:
            return
        self._noted_pid = proc.pid
        self.exits.append(
            Exit(
                proc.pid,
                proc.returncode,
                self._killed,
                self._stopped,
                self._kill_fault,
                self._note,
            )
        )

    def unexpected_exits(self) -> list[str]:
        """Problems of every ended process (including one that ended just now)."""
        self._record_exit()
        return [why for e in self.exits if (why := e.problem())]


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
    (container, timeNano): an event replayed by a reconnect (``since`` has whole-second
    precision) or read again at the end is the same daemon record, with the same
    ``timeNano``. The daemon keeps events in memory only, so after an engine restart
    neither source can return an event of the previous daemon twice.
    """

    def __init__(self, env: Env) -> None:
        self.env = env
        self.since = time.time() - 1
        # (container, timeNano) -> where it was first seen: "live" or "final"
        self.seen: dict[tuple[str, int], str] = {}
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

    def _add(self, ev: dict[str, Any], source: str = "live") -> None:
        key = (ev.get("id") or ev["Actor"]["ID"], int(ev.get("timeNano", 0)))
        with self._lock:
            self.seen.setdefault(key, source)

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
                self._add(ev, "final")
        with self._lock:
            return Counter(cid for cid, _ in self.seen if cid in container_ids)

    def events_of(self, container_id: str) -> list[dict[str, Any]]:
        """The restart events counted for one container (for the harness view)."""
        with self._lock:
            return [
                {"timeNano": t, "source": src}
                for (cid, t), src in sorted(self.seen.items())
                if cid == container_id
            ]


class OutcomeWatch:
    """Sees every resourceVersion of the run namespace's Containers and keeps, per
    container, each distinct ``status.lastAction`` in the order it appeared.

    Why a watch: a request that is overwritten while in flight, or a crash replay, can
    replace one ``lastAction`` with the next within milliseconds, so polling the list
    misses records; the watch delivers every change of every object in order. It
    resumes from the last resourceVersion (bookmarks keep that fresh) after a broken
    stream. Only a ``410 Gone`` (the apiserver restarted, or the resume point left its
    watch cache) forces a relist, and the skipped range is recorded as a *gap*: a
    request whose outcome may lie in it is reported as unverified, never as completed.

    Runs its own thread; :meth:`snapshot` and :meth:`caught_up` are thread-safe.
    """

    def __init__(self, env: Env) -> None:
        self.env = env
        self.records: dict[str, list[OutcomeRecord]] = {}
        self.gaps: list[tuple[int, int]] = []
        self.errors = 0
        self._last: dict[str, Any] = {}
        self._seen_rv: dict[str, int] = {}
        self._rv: str | None = None
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._ready = threading.Event()
        self._watch: k8s_watch.Watch | None = None
        self._thread = threading.Thread(target=self._run, name="outcome-watch", daemon=True)

    def __enter__(self) -> OutcomeWatch:
        self._thread.start()
        # The first list must be in place before any request is written.
        if not self._ready.wait(60):
            raise RuntimeError("outcome watch: could not list the Containers within 60 s")
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self._watch is not None:
            self._watch.stop()
        self._thread.join(timeout=10)

    def _see(self, obj: dict[str, Any], relisted: bool = False) -> None:
        """Record ``obj``'s lastAction if it differs from the last one seen. Equal
        consecutive values are one record: the racer never repeats a container's
        previous value, so two outcomes in a row never share an action."""
        meta = obj.get("metadata") or {}
        name, rv = meta.get("name"), int(meta.get("resourceVersion") or 0)
        la = (obj.get("status") or {}).get("lastAction")
        ann = annotations_of(obj)
        with self._lock:
            self._seen_rv[name] = max(rv, self._seen_rv.get(name, 0))
            if la and la != self._last.get(name):
                record = OutcomeRecord(rv, la, ann.get(REQUEST_ID) or "", ann.get(ACTION), relisted)
                self.records.setdefault(name, []).append(record)
            self._last[name] = la

    def _relist(self, gap_from: int | None) -> None:
        listed = self.env.api.list_namespaced_custom_object(
            GROUP, VERSION, self.env.namespace, CONTAINERS
        )
        list_rv = listed["metadata"]["resourceVersion"]
        for obj in listed["items"]:
            self._see(obj, relisted=gap_from is not None)
        with self._lock:
            if gap_from is not None:
                self.gaps.append((gap_from, int(list_rv)))
            self._rv = list_rv
        self._ready.set()

    def _run(self) -> None:
        gap_from: int | None = None
        while not self._stop.is_set():
            try:
                if self._rv is None:
                    self._relist(gap_from)
                    gap_from = None
                self._watch = k8s_watch.Watch()
                for ev in self._watch.stream(
                    self.env.api.list_namespaced_custom_object,
                    GROUP,
                    VERSION,
                    self.env.namespace,
                    CONTAINERS,
                    resource_version=self._rv,
                    allow_watch_bookmarks=True,
                    timeout_seconds=30,
                    _request_timeout=(5, 45),
                ):
                    obj = ev["raw_object"]
                    if ev["type"] in ("ADDED", "MODIFIED"):
                        self._see(obj)
                    self._rv = obj["metadata"]["resourceVersion"]
                    if self._stop.is_set():
                        break
            except ApiException as exc:
                self.errors += 1
                if exc.status == 410:
                    gap_from, self._rv = int(self._rv or 0), None
                self._stop.wait(0.5)
            except Exception:
                self.errors += 1  # stream broken (apiserver restart): resume from _rv
                self._stop.wait(0.5)

    def caught_up(self, mirrors: dict[str, dict[str, Any]], timeout: float = 30) -> bool:
        """Wait until the watch has seen every object at least at the version listed."""
        want = {n: int(o["metadata"]["resourceVersion"]) for n, o in mirrors.items()}
        deadline = time.monotonic() + timeout
        while True:
            with self._lock:
                if all(self._seen_rv.get(n, 0) >= rv for n, rv in want.items()):
                    return True
            if time.monotonic() > deadline:
                return False
            self._stop.wait(0.2)

    def snapshot(self) -> tuple[dict[str, list[OutcomeRecord]], list[tuple[int, int]]]:
        with self._lock:
            return {k: list(v) for k, v in self.records.items()}, list(self.gaps)


class RacerErrors:
    """Exceptions of the harness's client threads, counted and classified (thread-safe)."""

    def __init__(self) -> None:
        self.errors: list[RacerError] = []
        self._lock = threading.Lock()

    def add(self, thread: str, exc: BaseException, expected: bool) -> None:
        with self._lock:
            self.errors.append(RacerError(thread, f"{type(exc).__name__}: {exc}"[:300], expected))

    def guarded(
        self,
        name: str,
        fn: Callable[[], None],
        expected: tuple[type[BaseException], ...] = (),
    ) -> threading.Thread:
        """A daemon thread running ``fn`` until it returns; an exception that escapes it
        is recorded as unexpected (the thread's job stopped half-way)."""

        def run() -> None:
            try:
                fn()
            except expected as exc:
                self.add(name, exc, expected=True)
            except Exception as exc:
                self.add(name, exc, expected=False)

        return threading.Thread(target=run, name=name, daemon=True)


class WriteFailed(RuntimeError):
    """A request could not be written before its deadline."""


class Driver:
    """Per-container request workers: write an action, sometimes overwrite it, wait until
    the annotation is consumed, repeat.

    Every write carries a fresh :data:`REQUEST_ID` and a resourceVersion precondition on
    the object the racer just read, so the racer knows exactly what the slot held when
    its write landed (the replaced request is marked in the book) and, after an
    ambiguous failure (timeout, reset, 5xx), whether its write landed at all. A value
    never repeats the container's previous request (nor, for an overwrite, the value it
    replaces): consecutive ``lastAction`` records then always differ, so a skipped
    outcome write cannot hide behind an identical older record.
    """

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
        racers: RacerErrors | None = None,
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
        self.racers = racers or RacerErrors()
        self.write_errors = 0
        self.conflicts = 0
        self.stop = threading.Event()
        self.issued = 0
        self._lock = threading.Lock()
        states = env.docker_states()
        self.initial = {cid: states.get(cid) for cid in containers}
        self._threads = [
            self.racers.guarded(f"w-{cid[:8]}", lambda cid=cid: self._worker(cid))
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

    def _choose(self, exclude: tuple[str | None, ...] = ()) -> str:
        with self._lock:
            names = [a for a in self.weights if a not in exclude]
            return self.rng.choices(names, [self.weights[a] for a in names])[0]

    def _get(self, cid: str) -> dict[str, Any]:
        return self.env.api.get_namespaced_custom_object(
            GROUP, VERSION, self.env.namespace, CONTAINERS, cid
        )

    def write(self, cid: str, value: str, deadline_s: float = 120.0) -> Request:
        """Write ``value`` as a new request (retrying while the service, its webhook or
        the apiserver is away) and record it in the book; raises WriteFailed.

        Runs on the container's worker thread. Read, then patch with the read object's
        resourceVersion: if the read showed an action annotation, the request it
        belongs to (by its marker) is the one this write replaced. Any error other than
        a conflict may hide a write that landed, so the marker is read back.
        """
        rid = uuid.uuid4().hex[:16]
        deadline = time.monotonic() + deadline_s
        not_found_deadline = time.monotonic() + 30
        # When the first patch that may have landed was sent: a lower bound of the write
        # (a 409 is a definite "not written", so the next attempt's time replaces it).
        sent_at: float | None = None
        while True:
            if time.monotonic() > deadline:
                raise WriteFailed(f"not written within {deadline_s:.0f}s")
            try:
                obj = self._get(cid)
            except Exception as exc:
                self._write_error(exc, not_found_deadline)
                continue
            meta = obj["metadata"]
            ann = annotations_of(obj)
            held = ann.get(REQUEST_ID) if ACTION in ann else None
            rv = int(meta["resourceVersion"])
            body = {
                "metadata": {
                    "resourceVersion": meta["resourceVersion"],
                    "annotations": {ACTION: value, REQUEST_ID: rid},
                }
            }
            if sent_at is None:
                sent_at = time.time()
            try:
                out = self.env.api.patch_namespaced_custom_object(
                    GROUP, VERSION, self.env.namespace, CONTAINERS, cid, body
                )
                write_rv = int(out["metadata"]["resourceVersion"])
            except ApiException as exc:
                if exc.status == 409:
                    with self._lock:
                        self.conflicts += 1
                    sent_at = None
                    continue
                self._write_error(exc, not_found_deadline)
                if not self._landed(cid, rid, deadline):
                    continue
                write_rv = rv + 1  # landed after ``rv``: a lower bound is enough
            except Exception as exc:
                self._write_error(exc, not_found_deadline)
                if not self._landed(cid, rid, deadline):
                    continue
                write_rv = rv + 1
            now = time.time()
            with self._lock:
                if held is not None:
                    self.book.mark_replaced(held)
                return self.book.record(cid, value, now, rid, write_rv, sent_at=sent_at)

    def _landed(self, cid: str, rid: str, deadline: float) -> bool:
        """After an ambiguous failure: did the write with marker ``rid`` land?"""
        while time.monotonic() < deadline:
            try:
                return annotations_of(self._get(cid)).get(REQUEST_ID) == rid
            except ApiException as exc:
                if exc.status == 404:
                    return False  # no object, so no write landed
                time.sleep(0.2)
            except Exception:
                time.sleep(0.2)
        raise WriteFailed("could not read back an ambiguous write before the deadline")

    def _write_error(self, exc: Exception, not_found_deadline: float) -> None:
        with self._lock:
            self.write_errors += 1
        # 404: the mirror of a just-created container may not exist yet.
        gone = isinstance(exc, ApiException) and exc.status == 404
        if gone and time.monotonic() > not_found_deadline:
            raise WriteFailed(f"mirror not found for 30 s: {exc.reason}") from exc
        time.sleep(0.2)

    def _worker(self, cid: str) -> None:
        rng = random.Random(self.rng.random())
        previous: str | None = None  # value of the previous cycle's final request
        while self._take():
            value = self._choose(exclude=(previous,))
            try:
                final = self.write(cid, value)
                if value != "restart" and rng.random() < self.overwrite_p:
                    # Jitter, not synchronization: overwrite at a random moment, possibly
                    # while the first value is being dispatched.
                    self.stop.wait(rng.uniform(0, 0.3))
                    second = self._choose(exclude=("restart", value, previous))
                    final = self.write(cid, second)
            except WriteFailed as exc:
                with self._lock:
                    self.problems.append(f"{cid[:12]}: could not write {value!r}: {exc}")
                return
            previous = final.value
            obj = self.observer.wait(
                lambda snap, rid=final.request_id: _consumed(snap, cid, rid),
                after=final.written_at,
                timeout=self.consume_timeout,
            )
            if obj is None:
                with self._lock:
                    self.problems.append(
                        f"{cid[:12]}: {final.value!r} not consumed within "
                        f"{self.consume_timeout:.0f}s"
                    )
                return
            # A second, independent look at the outcome (the list, not the watch).
            la = (obj.get("status") or {}).get("lastAction")
            why = outcome_problem(final, la, None, strict=False)
            with self._lock:
                self.book.completed += 1
                if why:
                    self.problems.append(f"{cid[:12]}: at consumption: {why}")


def _consumed(snap: dict[str, dict[str, Any]], cid: str, rid: str) -> dict[str, Any] | None:
    obj = snap.get(cid)
    if obj is None:
        return None
    ann = annotations_of(obj)
    if ACTION not in ann and ann.get(REQUEST_ID) == rid:
        return obj
    return None


def settle_and_check(
    env: Env,
    result: Result,
    driver: Driver,
    restarts: RestartCounter,
    outcomes: OutcomeWatch,
    *,
    strict: bool,
    quiesce_timeout: float = 90.0,
    mirror_timeout: float = 45.0,
    exclude_stuck: set[str] = frozenset(),
    allow_gaps: bool = False,
) -> None:
    """Quiescence, then the invariants; fills ``result.figures`` and failures.

    Runs on the campaign's thread after ``driver.finish()``. A side that cannot be
    reached until a deadline fails the check; it never makes an invariant pass.
    """
    ours = set(driver.containers)
    book = driver.book
    # 1. every annotation consumed, with the evidence checked: a failed listing or one
    # without the mirrors of our containers is a failure, not "nothing stuck".
    deadline = time.monotonic() + quiesce_timeout
    while True:
        try:
            listed: dict[str, dict[str, Any]] | None = env.mirrors()
            list_error = ""
        except Exception as exc:
            listed, list_error = None, f"{type(exc).__name__}: {exc}"[:200]
        stuck = stuck_problems(listed, ours, exclude=set(exclude_stuck), list_error=list_error)
        if not stuck or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    # 3. mirrors match Docker (status, pid, exit code, name, labels); mirrors exist
    # exactly for Docker's containers.
    snapshots: list[tuple[dict[str, Any], dict[str, Any]]] = []
    deadline = time.monotonic() + mirror_timeout
    mismatches: dict[str, str] = {}
    snapshot_error = ""
    mirrors: dict[str, dict[str, Any]] = {}
    docker_views: dict[str, dict[str, Any]] = {}
    while True:
        try:
            docker_views = env.docker_views(ours)
            mirrors = env.mirrors()
        except Exception as exc:  # a side briefly unreachable: try again until the deadline
            snapshot_error = f"{type(exc).__name__}: {exc}"[:200]
            if time.monotonic() > deadline + 60:
                result.fail("status", [f"no Docker/mirror snapshot: {snapshot_error}"])
                break
            time.sleep(1.0)
            continue
        mirror_views = {n: mirror_view(o) for n, o in mirrors.items()}
        snapshots = [*snapshots[-2:], (docker_views, mirror_views)]
        if not status_mismatches(docker_views, mirror_views):
            mismatches = {}
            break
        if time.monotonic() > deadline and len(snapshots) >= 3:
            mismatches = persistent_mismatches(snapshots)
            break
        time.sleep(1.0)
    docker_states = {cid: v.get("status") for cid, v in docker_views.items()}
    # 2. every request ends with its own outcome or was replaced in the slot
    if not outcomes.caught_up(mirrors):
        result.fail("request outcome", ["the outcome watch did not catch up within 30 s"])
    records, gaps = outcomes.snapshot()
    totals = Counter()
    restarts_answered = Counter()
    per_request: list[str] = []
    matchings: dict[str, Matching] = {}
    for cid in sorted(book.requests):
        m = matchings[cid] = match_outcomes(
            book.requests[cid],
            records.get(cid, []),
            gaps=gaps,
            initial_state=model_state(driver.initial.get(cid)),
            final_docker_state=docker_states.get(cid),
            strict=strict,
        )
        totals.update(
            completed=len(m.completed),
            overwritten=len(m.overwritten),
            unverified=len(m.unverified),
            lost=len(m.lost),
            replays=m.replays,
        )
        book.restarts_succeeded[cid] = m.restarts_succeeded
        restarts_answered[cid] = m.restarts_answered + m.restarts_unanswered
        per_request += [f"{cid[:12]}: {p}" for p in m.problems]
    outcome = last_action_problems(
        book, {k: v for k, v in mirrors.items() if k in ours}, docker_states, strict=strict
    )
    # 4. exactly one Docker restart per Succeeded restart request
    seen = restarts.counts(ours)
    rproblems, doubles, missing = restart_problems(
        +book.restarts_succeeded, seen, +restarts_answered
    )
    racer_errors = driver.racers.errors
    status_problems = [f"{cid[:12]}: {why}" for cid, why in sorted(mismatches.items())]
    failing = (driver.problems, per_request, outcome, rproblems, stuck, status_problems)
    views = write_harness_views(
        env.workdir / result.name,
        {
            cid: harness_view(
                cid,
                book.requests.get(cid, []),
                records.get(cid, []),
                gaps,
                matchings.get(cid) or Matching(),
                restarts.events_of(cid),
                restarts_succeeded=book.restarts_succeeded.get(cid, 0),
                restarts_bound=restarts_answered.get(cid, 0),
                problems=mine,
            )
            for cid in sorted(ours)
            if (mine := _problems_of(cid, *failing))
        },
    )
    driver_problems, per_request, outcome, rproblems, stuck, status_problems = (
        _with_views(problems, views) for problems in failing
    )

    result.figures.update(
        requested=book.requested,
        completed=totals["completed"],
        overwritten=totals["overwritten"],
        lost=totals["lost"],
        unverified=totals["unverified"],
        replaced=sum(r.replaced for reqs in book.requests.values() for r in reqs),
        outcome_replays=totals["replays"],
        consumed_seen=book.completed,
        stuck=len(stuck),
        outcome_errors=len(outcome) + len(driver.problems) + len(per_request),
        mismatches=len(mismatches),
        restarts_requested=sum(book.restarts_succeeded.values()),
        double_restarts=doubles,
        missing_restarts=missing,
        write_retries=driver.write_errors,
        write_conflicts=driver.conflicts,
        watch_gaps=len(gaps),
        racer_errors=len(racer_errors),
    )
    result.fail("stuck annotation", stuck)
    result.fail("driver", driver_problems)
    result.fail("request outcome", per_request)
    result.fail(
        "identity",
        identity_problems(
            book.requested, totals["completed"], totals["overwritten"], totals["unverified"]
        ),
    )
    if totals["unverified"] and not allow_gaps:
        result.fail(
            "watch gap",
            [
                f"{totals['unverified']} request(s) unverifiable: the harness's watch "
                f"lost events ({len(gaps)} relist(s)) in a campaign that expects none"
            ],
        )
    result.fail("lastAction", outcome)
    result.fail("status", status_problems)
    result.fail("restart count", rproblems)
    result.fail("racer", racer_problems(racer_errors))


def _problems_of(container_id: str, *lists: list[str]) -> list[str]:
    """The problems naming this container (they start with its 12-digit prefix)."""
    prefix = f"{container_id[:12]}:"
    return [p for problems in lists for p in problems if p.startswith(prefix)]


def write_harness_views(directory: Path, views: dict[str, dict[str, Any]]) -> dict[str, Path]:
    """Write each failing container's harness view as ``harness-view-<id12>.json`` into
    the campaign's directory (next to the service's journal); returns id -> path. A
    write that fails costs the view, never the verdict."""
    paths: dict[str, Path] = {}
    for cid, view in views.items():
        path = directory / f"harness-view-{cid[:12]}.json"
        try:
            directory.mkdir(parents=True, exist_ok=True)
            path.write_text(json.dumps(view, indent=1, sort_keys=True, default=str) + "\n")
        except OSError as exc:
            log(f"could not write {path}: {exc}")
            continue
        paths[cid] = path
    return paths


def _with_views(problems: list[str], views: dict[str, Path]) -> list[str]:
    """Each problem naming a container with a written view, with that view's path."""
    by_prefix = {f"{cid[:12]}:": path for cid, path in views.items()}
    return [
        f"{p} [harness view: {by_prefix[p[:13]]}]" if p[:13] in by_prefix else p for p in problems
    ]


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

"""Devenv plumbing for the bench: containers, service processes, a watching client.

Everything the bench creates carries the run id: containers are labelled
``dockmirror.bench=<id>`` (``--network none``), namespaces are ``bench-<id>`` and
``bench-<id>-sync``. :class:`Cleanup` removes all of it (also after Ctrl-C or a
failure): processes, webhook configurations, containers, finalizers, namespaces.
"""

from __future__ import annotations

import concurrent.futures as cf
import contextlib
import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import docker
from kubernetes import client as k8s
from kubernetes import config as k8s_config
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import connect

from actors.domain.names import ACTION_ANNOTATION, CONTAINER_NAMESPACES, CONTAINERS, MERGE_PATCH
from actors.ports.kube_port import KubeError, KubeHttp, KubeNotFound, MirrorStore, custom_path
from benchmarks import cost

REPO_ROOT = Path(__file__).resolve().parents[2]
LABEL = "dockmirror.bench"
IMAGE = "busybox:local"


def devenv_env() -> dict[str, str]:
    """KUBECONFIG and DOCKER_HOST from ``scripts/devenv env`` (the devenv must be up)."""
    out = subprocess.run(
        [str(REPO_ROOT / "scripts" / "devenv"), "env"],
        capture_output=True,
        text=True,
        check=True,
        cwd=REPO_ROOT,
    ).stdout
    env = {}
    for line in out.splitlines():
        m = re.fullmatch(r"export (\w+)=(.*)", line.strip())
        if m:
            env[m.group(1)] = m.group(2).strip("'\"")
    return env


# --- Docker ---------------------------------------------------------------------------
class Containers:
    """Creates and removes the bench's containers with the low-level API."""

    def __init__(self, docker_host: str, run_id: str, workers: int = 6) -> None:
        self.api = docker.APIClient(base_url=docker_host, version="auto", timeout=120)
        self.run_id = run_id
        self.workers = workers

    def create(
        self,
        count: int,
        *,
        start: bool,
        role: str,
        stop_timeout: int | None = None,
        command: list[str] | None = None,
    ) -> list[str]:
        """``count`` busybox containers, network none; by default ``sleep`` (PID 1 ignores
        SIGTERM)."""

        def one(_: int) -> str:
            cid = self.api.create_container(
                IMAGE,
                command=command or ["sleep", "86400"],
                labels={LABEL: self.run_id, f"{LABEL}.role": role},
                host_config=self.api.create_host_config(network_mode="none"),
                stop_timeout=stop_timeout,
            )["Id"]
            if start:
                self.api.start(cid)
            return cid

        with cf.ThreadPoolExecutor(self.workers) as pool:
            return list(pool.map(one, range(count)))

    def ensure_running(self, ids: Iterable[str]) -> None:
        """Start stopped ones and unpause paused ones (reset before a phase)."""

        def one(cid: str) -> None:
            state = self.api.inspect_container(cid)["State"]
            if state.get("Paused"):
                self.api.unpause(cid)
            elif not state.get("Running"):
                self.api.start(cid)

        with cf.ThreadPoolExecutor(self.workers) as pool:
            list(pool.map(one, ids))

    def remove_ids(self, ids: Iterable[str]) -> None:
        def one(cid: str) -> None:
            with contextlib.suppress(docker.errors.NotFound):
                self.api.remove_container(cid, force=True)

        with cf.ThreadPoolExecutor(self.workers) as pool:
            list(pool.map(one, ids))

    def remove_all(self) -> int:
        ids = [
            c["Id"]
            for c in self.api.containers(all=True, filters={"label": f"{LABEL}={self.run_id}"})
        ]
        self.remove_ids(ids)
        return len(ids)


# --- processes --------------------------------------------------------------------------
class Process:
    """``python supervisor.py`` (ours) or the baseline as a child process."""

    def __init__(self, kind: str, namespace: str, workdir: Path, env: dict[str, str]) -> None:
        self.kind = kind
        self.namespace = namespace
        self.workdir = workdir
        self.env = env
        self.proc: subprocess.Popen[bytes] | None = None
        self.log_file = workdir / f"{kind}-{namespace}.log"
        self.started_at = 0.0
        workdir.mkdir(parents=True, exist_ok=True)

    def argv(self, extra: tuple[str, ...]) -> list[str]:
        kube, dock = self.env["KUBECONFIG"], self.env["DOCKER_HOST"]
        state = self.workdir / f"state-{self.kind}-{self.namespace}"
        common = ["--namespace", self.namespace, "--kubeconfig", kube, "--docker-host", dock]
        if self.kind == "ours":
            # The journal stays on (default: <state-dir>/trace.jsonl): it is part of ours.
            return [
                sys.executable,
                str(REPO_ROOT / "supervisor.py"),
                *common,
                "--state-dir",
                str(state),
                "--http-address",
                "127.0.0.1:0",  # a free port: runs must not collide on the default
                *extra,
            ]
        return [
            sys.executable,
            "-m",
            "benchmarks.baseline",
            *common,
            "--state-dir",
            str(state),
            *extra,
        ]

    def start(self, *extra: str, prefix: tuple[str, ...] = ()) -> Process:
        env = {**os.environ, **self.env, "PYTHONUNBUFFERED": "1"}
        env["PYTHONPATH"] = os.pathsep.join(
            [str(REPO_ROOT / "scripts"), str(REPO_ROOT), env.get("PYTHONPATH", "")]
        ).rstrip(os.pathsep)
        self._offset = self.log_file.stat().st_size if self.log_file.exists() else 0
        self.started_at = time.monotonic()
        with open(self.log_file, "ab") as log:
            self.proc = subprocess.Popen(
                [*prefix, *self.argv(extra)],
                stdout=log,
                stderr=subprocess.STDOUT,
                env=env,
                cwd=REPO_ROOT,
                start_new_session=True,  # Ctrl-C on the bench does not hit it first
            )
        return self

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def log_text(self) -> str:
        if not self.log_file.exists():
            return ""
        with open(self.log_file, "rb") as fh:
            fh.seek(self._offset)
            return fh.read().decode("utf-8", "replace")

    def alive(self) -> bool:
        if self.proc is None or self.proc.poll() is not None:
            code = None if self.proc is None else self.proc.returncode
            raise RuntimeError(
                f"{self.kind} exited ({code}); log {self.log_file}:\n{self.log_text()[-3000:]}"
            )
        return True

    def http_port(self) -> int:
        """Ours: the --http-address port it picked (``127.0.0.1:0``), from its log."""
        found = re.search(r"probes and metrics on http://127\.0\.0\.1:(\d+)", self.log_text())
        if found is None:
            raise RuntimeError(f"{self.kind}: no endpoint address in {self.log_file}")
        return int(found.group(1))

    def wait_log(self, text: str, timeout: float = 120.0) -> None:
        wait_for(lambda: self.alive() and text in self.log_text(), timeout, f"{self.kind}: {text}")

    def stop(self, timeout: float = 30.0) -> None:
        """SIGTERM (clean shutdown: the webhook configuration is deleted), then SIGKILL."""
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


def wait_for(pred: Callable[[], Any], timeout: float, what: str, interval: float = 0.05) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = pred()
        if value:
            return value
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout:.0f}s waiting for {what}")
        time.sleep(interval)


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process so far (``/proc/<pid>/stat``, parsed by
    :func:`benchmarks.cost.cpu_seconds`)."""
    stat = Path(f"/proc/{pid}/stat").read_text()
    return cost.cpu_seconds(stat, os.sysconf("SC_CLK_TCK"))


def proc_status(pid: int) -> dict[str, str]:
    out = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        out[key] = value.strip()
    return out


# --- log followers ----------------------------------------------------------------------------
class LogFollowers:
    """WebSocket followers of ours' log stream (``/passthrough/engine/logs/<id>``), one
    client thread each, counting the frames they receive."""

    def __init__(self, port: int, ids: list[str]) -> None:
        self.urls = [f"ws://127.0.0.1:{port}/passthrough/engine/logs/{cid}?tail=1" for cid in ids]
        self.lock = threading.Lock()
        self.frames = 0
        self.first = threading.Semaphore(0)
        self.conns: list[Any] = []
        self.errors: list[str] = []
        self.threads = [
            threading.Thread(target=self._follow, args=(url,), name="bench-follow", daemon=True)
            for url in self.urls
        ]

    def _follow(self, url: str) -> None:
        try:
            with connect(url, open_timeout=30, close_timeout=5) as ws:
                with self.lock:
                    self.conns.append(ws)
                first = True
                for _ in ws:
                    with self.lock:
                        self.frames += 1
                    if first:
                        first = False
                        self.first.release()
        except ConnectionClosed:
            pass
        except Exception as exc:
            with self.lock:
                self.errors.append(f"{type(exc).__name__}: {exc}")
            self.first.release()

    def start(self, timeout: float = 60.0) -> None:
        """Connect all; returns once each has received its first frame."""
        for thread in self.threads:
            thread.start()
        deadline = time.monotonic() + timeout
        for _ in self.threads:
            if not self.first.acquire(timeout=max(0.0, deadline - time.monotonic())):
                raise TimeoutError("log followers did not all receive a first frame")
        if self.errors:
            raise RuntimeError(f"log followers failed: {self.errors[:3]}")

    def count(self) -> int:
        with self.lock:
            return self.frames

    def close(self) -> None:
        with self.lock:
            conns = list(self.conns)
        for ws in conns:
            with contextlib.suppress(Exception):
                ws.close()
        for thread in self.threads:
            thread.join(timeout=10)


# --- Kubernetes -----------------------------------------------------------------------------
class Kube:
    def __init__(self, kubeconfig: str) -> None:
        self.api_client = k8s_config.new_client_from_config(config_file=kubeconfig)
        self.http = KubeHttp(self.api_client, request_timeout=(5.0, 60.0))

    def store(self, namespace: str) -> MirrorStore:
        return MirrorStore(self.http, namespace)

    def engine_ready(self, namespace: str) -> tuple[str, str] | None:
        try:
            obj = self.http.request("GET", custom_path(namespace, CONTAINER_NAMESPACES, "moby"))
        except KubeError:
            return None
        for cond in (obj.get("status") or {}).get("conditions") or []:
            if cond.get("type") == "EngineReady":
                return cond.get("status"), cond.get("reason")
        return None

    def count(self, namespace: str) -> int:
        try:
            return len(self.store(namespace).list()[0])
        except KubeNotFound:
            return 0

    def annotate(self, namespace: str, name: str, value: str | None) -> dict[str, Any]:
        return self.store(namespace).patch_metadata(
            name,
            {"annotations": {ACTION_ANNOTATION: value}},
            resource_version=None,
            field_manager="bench-client",
        )

    def cleanup_namespace(self, namespace: str, workers: int = 8) -> None:
        """Strip finalizers (nothing runs to do it) and delete the namespace."""
        for kind in ("validatingwebhookconfigurations", "validatingadmissionpolicybindings"):
            with contextlib.suppress(KubeError):
                self.http.request(
                    "DELETE",
                    f"/apis/admissionregistration.k8s.io/v1/{kind}/dockmirror-{namespace}",
                )
        for plural in (CONTAINERS, CONTAINER_NAMESPACES):
            try:
                items = self.http.request("GET", custom_path(namespace, plural)).get("items")
            except KubeError:
                continue
            names = [i["metadata"]["name"] for i in items or [] if i["metadata"].get("finalizers")]

            def strip(name: str, plural: str = plural) -> None:
                with contextlib.suppress(KubeError):
                    self.http.request(
                        "PATCH",
                        custom_path(namespace, plural, name),
                        body={"metadata": {"finalizers": None}},
                        content_type=MERGE_PATCH,
                    )

            with cf.ThreadPoolExecutor(workers) as pool:
                list(pool.map(strip, names))
            # The devenv has no namespace controller (docs/dev-environment.md): delete the
            # objects themselves, the namespace only goes to Terminating.
            with contextlib.suppress(KubeError):
                self.http.request("DELETE", custom_path(namespace, plural))
        core = k8s.CoreV1Api(self.api_client)
        with contextlib.suppress(Exception):
            core.delete_collection_namespaced_event(namespace)
        with contextlib.suppress(Exception):
            core.delete_namespace(namespace)


# --- the watching client ------------------------------------------------------------------
@dataclass
class Expectation:
    name: str
    after_rv: int
    predicate: Callable[[dict[str, Any]], bool]
    done: threading.Event = field(default_factory=threading.Event)
    t_done: float = 0.0
    obj: dict[str, Any] | None = None
    callback: Callable[[Expectation], None] | None = None


def _rv(obj: dict[str, Any]) -> int:
    try:
        return int((obj.get("metadata") or {}).get("resourceVersion") or 0)
    except ValueError:
        return 0


class Watcher:
    """One watch on a namespace's Containers; waits for predicates on newer objects.

    Each object is stamped with the monotonic time its event arrived, so a predicate met
    before :meth:`expect` was called (fast service, slow client) still gets the right time.
    """

    def __init__(self, kube: Kube, namespace: str) -> None:
        self.store = kube.store(namespace)
        self.lock = threading.Lock()
        self.latest: dict[str, tuple[dict[str, Any], float]] = {}
        self.waiting: dict[str, list[Expectation]] = {}
        self.stream = None
        self.stopped = False
        self.error: BaseException | None = None
        items, rv = self.store.list()
        now = time.monotonic()
        for obj in items:
            self.latest[obj["metadata"]["name"]] = (obj, now)
        self.rv = rv
        self.thread = threading.Thread(target=self._run, name="bench-watch", daemon=True)
        self.thread.start()

    def _run(self) -> None:
        while not self.stopped:
            try:
                self.stream = self.store.watch(self.rv, server_timeout_s=600, read_timeout_s=660)
                for event in self.stream:
                    t = time.monotonic()
                    obj = event.get("object") or {}
                    rv = (obj.get("metadata") or {}).get("resourceVersion")
                    if rv:
                        self.rv = rv
                    if event.get("type") in ("ADDED", "MODIFIED"):
                        self._observe(obj, t)
                    elif event.get("type") == "ERROR":
                        raise RuntimeError(f"watch error: {obj}")
            except Exception as exc:
                if self.stopped:
                    return
                self.error = exc
                return

    def _observe(self, obj: dict[str, Any], t: float) -> None:
        name = obj["metadata"]["name"]
        fired = []
        with self.lock:
            old = self.latest.get(name)
            if old is not None and _rv(old[0]) >= _rv(obj):
                return
            self.latest[name] = (obj, t)
            pending = self.waiting.get(name)
            if pending:
                for exp in list(pending):
                    if _rv(obj) > exp.after_rv and exp.predicate(obj):
                        exp.t_done, exp.obj = t, obj
                        pending.remove(exp)
                        fired.append(exp)
        for exp in fired:
            exp.done.set()
            if exp.callback is not None:
                exp.callback(exp)

    def get(self, name: str) -> dict[str, Any] | None:
        with self.lock:
            entry = self.latest.get(name)
        return None if entry is None else entry[0]

    def expect(
        self,
        name: str,
        predicate: Callable[[dict[str, Any]], bool],
        after_rv: int | str = 0,
        callback: Callable[[Expectation], None] | None = None,
    ) -> Expectation:
        exp = Expectation(name, int(after_rv or 0), predicate, callback=callback)
        with self.lock:
            entry = self.latest.get(name)
            if entry is not None and _rv(entry[0]) > exp.after_rv and predicate(entry[0]):
                exp.t_done, exp.obj = entry[1], entry[0]
                exp.done.set()
            else:
                self.waiting.setdefault(name, []).append(exp)
        if exp.done.is_set() and callback is not None:
            callback(exp)
        return exp

    def wait(self, exp: Expectation, timeout: float) -> float:
        """Wait for an expectation; returns its completion time (monotonic)."""
        deadline = time.monotonic() + timeout
        while not exp.done.wait(0.2):
            if self.error is not None:
                raise RuntimeError(f"watch failed: {self.error}")
            if time.monotonic() > deadline:
                raise TimeoutError(f"{exp.name[:12]}: condition not seen within {timeout}s")
        return exp.t_done

    def close(self) -> None:
        self.stopped = True
        if self.stream is not None:
            self.stream.close()


def no_annotation(obj: dict[str, Any]) -> bool:
    return ACTION_ANNOTATION not in ((obj.get("metadata") or {}).get("annotations") or {})


def status_is(value: str) -> Callable[[dict[str, Any]], bool]:
    return lambda obj: (obj.get("status") or {}).get("status") == value


def last_action_differs(old: Any, action: str) -> Callable[[dict[str, Any]], bool]:
    def pred(obj: dict[str, Any]) -> bool:
        la = (obj.get("status") or {}).get("lastAction")
        return bool(la) and la != old and la.get("action") == action

    return pred

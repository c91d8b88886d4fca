"""Run the real service (``python supervisor.py``) as a child process for integration tests.

Each :class:`Service` has its own namespace, state directory, trace file and log file.
``start()`` returns once ``EngineReady`` is True *for this run* (the supervisor logs
``dockmirror running`` only after writing False/Syncing, so a True seen after that line
belongs to this run). ``kill()`` is a SIGKILL, for crash tests; ``restart()`` starts the
same configuration again (same state dir).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import urllib3
from kubernetes import client as k8s
from kubernetes.client.rest import ApiException

from actors.domain.names import (
    ACTION_ANNOTATION,
    CONTAINER_NAMESPACES,
    CONTAINERS,
    GROUP,
    MOBY,
    VERSION,
)
from messages.journal import Effect, Entry, Note, Received, decode_entry
from tests.support.devenv import REPO_ROOT, Devenv
from tests.support.wait import wait_for

T = TypeVar("T")


TRANSIENT_RETRY_S = 30.0


class TransientKubeError(Exception):
    """The apiserver could not answer yet (see :func:`retry_transient`)."""


def is_object_not_found(exc: ApiException, name: str) -> bool:
    """True for a 404 about the object ``name``, not about an unregistered resource.

    Until the CRD handler is registered (just after an apiserver start) a GET answers
    404 "the server could not find the requested resource", which says nothing about
    the object.
    """
    if exc.status != 404:
        return False
    try:
        details = (json.loads(exc.body or "{}").get("details")) or {}
    except ValueError:
        return False
    return details.get("name") == name


def retry_transient(call: Callable[[], T], timeout: float = TRANSIENT_RETRY_S) -> T:
    """Run ``call``, retrying 429/5xx, a resource-level 404 and dropped connections."""

    def attempt() -> tuple[T]:
        try:
            return (call(),)
        except ApiException as exc:
            if exc.status in (0, 404, 429) or exc.status >= 500:
                raise TransientKubeError(f"{exc.status} {exc.reason}: {exc.body}") from exc
            raise
        except urllib3.exceptions.HTTPError as exc:
            raise TransientKubeError(repr(exc)) from exc

    return wait_for(
        attempt,
        timeout=timeout,
        interval=0.2,
        message="an answer from the apiserver",
        ignore=(TransientKubeError,),
    )[0]


class Service:
    """One ``python supervisor.py`` child process and its files."""

    def __init__(
        self,
        devenv: Devenv,
        api_client: k8s.ApiClient,
        namespace: str,
        workdir: Path,
        *,
        extra_args: tuple[str, ...] = (),
        env: dict[str, str] | None = None,
    ) -> None:
        self.devenv = devenv
        self.api = k8s.CustomObjectsApi(api_client)
        self.namespace = namespace
        self.workdir = workdir
        self.state_dir = workdir / "state"
        self.trace_file = workdir / "trace.jsonl"
        self.log_file = workdir / "service.log"
        self.extra_args = extra_args
        self.env = dict(env or {})
        self.proc: subprocess.Popen[bytes] | None = None
        self._log_offset = 0
        workdir.mkdir(parents=True, exist_ok=True)

    # --- process control ----------------------------------------------------------
    def start(self, *, env: dict[str, str] | None = None, wait_ready: bool = True) -> Service:
        assert self.proc is None or self.proc.poll() is not None, "already running"
        self._log_offset = self.log_file.stat().st_size if self.log_file.exists() else 0
        child_env = {**os.environ, **self.devenv.env(), **self.env, **(env or {})}
        child_env.setdefault("PYTHONUNBUFFERED", "1")
        with open(self.log_file, "ab") as log:
            self.proc = subprocess.Popen(
                [
                    sys.executable,
                    str(REPO_ROOT / "supervisor.py"),
                    "--namespace",
                    self.namespace,
                    "--kubeconfig",
                    str(self.devenv.kubeconfig),
                    "--docker-host",
                    self.devenv.docker_host,
                    "--state-dir",
                    str(self.state_dir),
                    "--trace-file",
                    str(self.trace_file),
                    "--idle-timeout",
                    "3",
                    # Several services run at once (and other worktrees' on the same host):
                    # a free port each instead of the fixed default; extra_args may override.
                    "--http-address",
                    "127.0.0.1:0",
                    *self.extra_args,
                ],
                stdout=log,
                stderr=subprocess.STDOUT,
                env=child_env,
                cwd=REPO_ROOT,
            )
        if wait_ready:
            self.wait_ready()
        return self

    def wait_ready(self, timeout: float = 90.0) -> None:
        wait_for(
            lambda: self._check_alive() and "dockmirror running" in self.log_since_start(),
            timeout=timeout,
            message=f"service start (log {self.log_file})",
        )
        wait_for(
            lambda: self._check_alive() and self.engine_ready() == ("True", "Connected"),
            timeout=timeout,
            message="EngineReady=True",
        )

    def _check_alive(self) -> bool:
        assert self.proc is not None
        code = self.proc.poll()
        if code is not None:
            raise AssertionError(
                f"service exited with {code}; log tail:\n{self.log_since_start()[-4000:]}"
            )
        return True

    def stop(self, timeout: float = 20.0) -> int:
        """SIGTERM and wait; returns the exit code."""
        if self.proc is None or self.proc.poll() is not None:
            return self.proc.returncode if self.proc else 0
        self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            raise AssertionError(f"service did not stop within {timeout}s after SIGTERM") from None

    def kill(self) -> None:
        """SIGKILL the whole process (crash test)."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()

    def wait_exit(self, timeout: float = 30.0) -> int:
        assert self.proc is not None
        return self.proc.wait(timeout=timeout)

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    # --- observations -----------------------------------------------------------------
    def log_since_start(self) -> str:
        if not self.log_file.exists():
            return ""
        with open(self.log_file, "rb") as handle:
            handle.seek(self._log_offset)
            return handle.read().decode("utf-8", "replace")

    def log_text(self) -> str:
        return self.log_file.read_text("utf-8", "replace") if self.log_file.exists() else ""

    def journal(self) -> list[Entry]:
        entries: list[Entry] = []
        for path in sorted(self.workdir.glob("trace.jsonl*"), reverse=True):
            for line in path.read_bytes().splitlines():
                try:
                    entries.append(decode_entry(line))
                except Exception:
                    continue
        entries.sort(key=lambda e: (e.run, e.seq))
        return entries

    def effects(self, container_id: str | None = None, op: str | None = None) -> list[Effect]:
        """Effect entries of the journal, optionally for one container and one op."""
        return [
            e
            for e in self.journal()
            if isinstance(e, Effect)
            and (container_id is None or e.container_id == container_id)
            and (op is None or e.op == op)
        ]

    def notes(self, container_id: str, text: str) -> list[Note]:
        """Note entries of the journal for one container with exactly ``text``."""
        return [
            e
            for e in self.journal()
            if isinstance(e, Note) and e.container_id == container_id and e.text == text
        ]

    def docker_events_seen(self, container_id: str, action: str) -> int:
        """How many Docker events of ``action`` the events reader forwarded for a container."""
        return sum(
            1
            for e in self.journal()
            if isinstance(e, Received)
            and e.actor == "docker-events"
            and e.container_id == container_id
            and e.msg.get("action") == action
        )

    def engine_ready(self) -> tuple[str, str] | None:
        try:
            obj = self.api.get_namespaced_custom_object(
                GROUP, VERSION, self.namespace, CONTAINER_NAMESPACES, MOBY
            )
        except ApiException:
            return None
        for cond in (obj.get("status") or {}).get("conditions") or []:
            if cond.get("type") == "EngineReady":
                return cond.get("status"), cond.get("reason")
        return None

    # --- Container objects ---------------------------------------------------------------
    def mirror(self, container_id: str) -> dict[str, Any] | None:
        """The Container object, or None when the apiserver says it does not exist.

        Transient answers (429 "storage is (re)initializing", 5xx, a 404 from a resource
        handler not registered yet, a dropped connection), as seen right after an
        apiserver restart, are retried for up to :data:`TRANSIENT_RETRY_S` seconds.
        """

        def get() -> dict[str, Any] | None:
            try:
                return self.api.get_namespaced_custom_object(
                    GROUP, VERSION, self.namespace, CONTAINERS, container_id
                )
            except ApiException as exc:
                if is_object_not_found(exc, container_id):
                    return None
                raise

        return retry_transient(get)

    def mirrors(self) -> list[dict[str, Any]]:
        return retry_transient(
            lambda: self.api.list_namespaced_custom_object(
                GROUP, VERSION, self.namespace, CONTAINERS
            )["items"]
        )

    def wait_mirror(
        self,
        container_id: str,
        predicate=lambda m: True,
        timeout: float = 30.0,
        message: str = "mirror",
    ) -> dict[str, Any]:
        def check() -> dict[str, Any] | None:
            obj = self.mirror(container_id)
            return obj if obj is not None and predicate(obj) else None

        return wait_for(check, timeout=timeout, message=f"{message} of {container_id[:12]}")

    def wait_status(self, container_id: str, status: str, timeout: float = 30.0) -> dict[str, Any]:
        return self.wait_mirror(
            container_id,
            lambda m: (m.get("status") or {}).get("status") == status,
            timeout=timeout,
            message=f"status.status={status}",
        )

    def wait_gone(self, container_id: str, timeout: float = 30.0) -> None:
        wait_for(
            lambda: self.mirror(container_id) is None,
            timeout=timeout,
            message=f"mirror {container_id[:12]} deleted",
        )

    def annotate(self, container_id: str, value: str | None) -> dict[str, Any]:
        """Write the action annotation like a GUI (JSON merge patch on metadata)."""
        return self.api.patch_namespaced_custom_object(
            GROUP,
            VERSION,
            self.namespace,
            CONTAINERS,
            container_id,
            {"metadata": {"annotations": {ACTION_ANNOTATION: value}}},
        )

    def request(self, container_id: str, action: str, timeout: float = 30.0) -> dict[str, Any]:
        """Request an action and wait until the annotation is gone; returns lastAction."""
        self.annotate(container_id, action)
        obj = self.wait_mirror(
            container_id,
            lambda m: ACTION_ANNOTATION not in ((m.get("metadata") or {}).get("annotations") or {}),
            timeout=timeout,
            message=f"annotation {action} consumed",
        )
        return (obj.get("status") or {}).get("lastAction") or {}

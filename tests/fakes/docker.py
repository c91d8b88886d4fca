"""``FakeDocker``: an in-memory Docker 20.10 engine (API 1.41) behind ``DockerPort``'s API.

Faithful where the actors care (moby's answers as docker-py raises them, docs/contract.md §4.4):

* redundant ``start`` (running) and ``stop`` (exited/created/dead) succeed like a
  ``304 Not Modified``: no state change, no event;
* ``start`` on paused → 409 ``cannot start a paused container, try unpause instead``;
  ``start``/``restart`` on dead → 409 ``container is marked for removal and cannot be started``;
* ``pause`` on not running / paused / restarting → 409; ``unpause`` on not paused → 500;
* a paused container inspects as ``Running=true, Paused=true, Status="paused"``;
* unknown references → :class:`DockerNotFound` ``No such container: <ref>``. References
  resolve like Docker: full ID, then name, then a unique ID prefix.

Choices (documented, from reading moby 20.10 ``daemon/{stop,kill,restart}.go``):

* ``stop`` of a paused container: the stop signal is sent and the container is resumed
  so it can receive it (kill.go ``unpause = container.Paused``). Events: ``kill``,
  ``unpause``, ``die``, ``stop``; it ends ``exited``.
* ``restart`` of a paused container: ``IsRunning()`` is true, so it is stopped as above
  and started again. Events: ``kill unpause die stop start restart``; it ends ``running``.
* The exit code after a stop is 143 (process honoured SIGTERM) unless the container was
  created with ``ignores_sigterm=True``: then 137 (SIGKILL after the grace period).

Test controls: :attr:`unavailable`, :attr:`hung` (a ``SIGSTOP``ped dockerd: every call
raises :class:`DockerTimeout` as when its bound ran out, open event streams stay open
but silent), :meth:`fail_next` (also ``times=N`` and ``after=True``: the call takes
effect, then its answer is lost), :meth:`fail_status` (the port's own mapping of an
error status, with ``Retry-After``), :meth:`time_out_next`, :meth:`block` (a
:class:`Gate` that holds one call in flight, ``ping`` included), :attr:`calls`,
:attr:`stop_timeouts`, :meth:`events_of`, and ``docker_*_direct`` helpers for
out-of-band CLI changes (no call log, no faults, no gates).
"""

from __future__ import annotations

import copy
import functools
import itertools
import secrets
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

from actors.ports.docker_port import (
    DockerError,
    DockerNotFound,
    DockerTimeout,
    DockerUnavailable,
    error_from_status,
)

try:  # a teammate's realistic inspect payload; fall back to a minimal shape
    from tests.support.samples import INSPECT_RUNNING as _TEMPLATE
except ImportError:  # pragma: no cover
    _TEMPLATE = None

__all__ = [
    "DockerError",
    "DockerNotFound",
    "DockerTimeout",
    "DockerUnavailable",
    "FakeDocker",
    "FakeEventStream",
    "Gate",
]

T = TypeVar("T")

ZERO_TIME = "0001-01-01T00:00:00Z"
IMAGE_ID = "sha256:beae173ccac6ad749f76713cf4440fe3d21d1043fe616dfbe30775815d1d0f6a"
OPS = (
    "ping",
    "version",
    "system_time_ns",
    "list_ids",
    "inspect",
    "start",
    "stop",
    "pause",
    "unpause",
    "restart",
    "remove",
    "events",
)
STATES = ("created", "running", "paused", "exited", "dead", "restarting")


def rfc3339_ns(ns: int) -> str:
    """Docker's RFC 3339 text with nanoseconds (``...T00:00:00.123456789Z``)."""
    secs, frac = divmod(ns, 1_000_000_000)
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(secs)) + f".{frac:09d}Z"


def _parse_since(value: str | int | float | None) -> int | None:
    """``"<seconds>.<nanoseconds>"`` (as DockerPort sends) or a number → Unix ns."""
    if value is None:
        return None
    if isinstance(value, int):
        return value * 1_000_000_000
    if isinstance(value, float):
        return int(value * 1_000_000_000)
    secs, _, frac = str(value).partition(".")
    return int(secs) * 1_000_000_000 + int((frac or "0")[:9].ljust(9, "0"))


def _answer_may_be_lost(method: Callable[..., T]) -> Callable[..., T]:
    """Raise a fault queued with ``after=True`` once the call took effect (or failed)."""

    @functools.wraps(method)
    def wrapper(self: FakeDocker, *args: Any, **kwargs: Any) -> T:
        self._after_exc.value = None
        try:
            result = method(self, *args, **kwargs)
        except Exception:
            self._after()  # the error answer was lost as well
            raise
        self._after()
        return result

    return wrapper


class Gate:
    """Holds one matching call in flight until :meth:`release`.

    ``entered`` is set when the call reaches the gate. ``release(exc)`` lets it go on,
    or makes it raise ``exc`` instead of finishing (e.g. the connection dropped).
    """

    def __init__(self, op: str, container_id: str | None) -> None:
        self.op = op
        self.container_id = container_id
        self.entered = threading.Event()
        self._released = threading.Event()
        self._exc: BaseException | None = None

    def wait_entered(self, timeout: float = 5.0) -> bool:
        return self.entered.wait(timeout)

    def release(self, exc: BaseException | None = None) -> None:
        self._exc = exc
        self._released.set()

    @property
    def released(self) -> bool:
        return self._released.is_set()

    def _pass(self, timeout: float) -> None:
        self.entered.set()
        if not self._released.wait(timeout):
            raise AssertionError(f"gate for {self.op} never released")
        if self._exc is not None:
            raise self._exc


class _Container:
    def __init__(self, cid: str, name: str, created_ns: int) -> None:
        self.id = cid
        self.name = name
        self.created = rfc3339_ns(created_ns)
        self.status = "created"
        self.pid = 0
        self.exit_code = 0
        self.started_at = ZERO_TIME
        self.finished_at = ZERO_TIME
        self.labels: dict[str, str] = {}
        self.ports: dict[str, Any] = {}
        self.stop_timeout: int | None = None
        self.ignores_sigterm = False
        self.restart_count = 0
        self.oom_killed = False
        self.error = ""

    @property
    def running(self) -> bool:
        """Docker's ``State.Running``: true for running, paused and restarting."""
        return self.status in ("running", "paused", "restarting")


class FakeEventStream:
    """Iterable of Docker 29-shaped event dicts; ``close()`` from any thread ends it."""

    def __init__(self, docker: FakeDocker, since_ns: int | None, until_ns: int | None) -> None:
        self._docker = docker
        self._until = until_ns
        self._closed = False
        with docker._cond:
            self._epoch = docker._stream_epoch
            if since_ns is None:
                self._cursor = len(docker._events)
            else:
                self._cursor = next(
                    (i for i, e in enumerate(docker._events) if e["timeNano"] >= since_ns),
                    len(docker._events),
                )
            docker._streams.append(self)

    def __iter__(self) -> Iterator[dict[str, Any]]:
        d = self._docker
        try:
            while True:
                with d._cond:
                    while True:
                        if self._closed or d._unavailable or d._stream_epoch != self._epoch:
                            return
                        if self._cursor < len(d._events) and not d._hung:
                            event = d._events[self._cursor]
                            if self._until is not None and event["timeNano"] > self._until:
                                return
                            self._cursor += 1
                            break
                        now = time.time_ns()
                        if self._until is not None and now >= self._until:
                            return
                        wait = 0.05 if self._until is None else (self._until - now) / 1e9
                        d._cond.wait(min(wait, 0.05))
                yield copy.deepcopy(event)
        finally:
            with d._cond:
                if self in d._streams:
                    d._streams.remove(self)

    def close(self) -> None:
        with self._docker._cond:
            self._closed = True
            self._docker._cond.notify_all()


class FakeDocker:
    """Thread-safe fake of :class:`actors.ports.docker_port.DockerPort` (one lock)."""

    def __init__(self, base_url: str = "unix:///var/run/docker.sock") -> None:
        self._base_url = base_url
        self._lock = threading.RLock()
        self._cond = threading.Condition(self._lock)
        self._containers: dict[str, _Container] = {}
        self._events: list[dict[str, Any]] = []
        self._streams: list[FakeEventStream] = []
        self._stream_epoch = 0
        self._last_ns = 0
        self._pids = itertools.count(4000)
        self._unavailable = False
        self._hung = False
        # op -> queued (container_id or None, exception, after): one entry per call
        self._faults: dict[str, list[tuple[str | None, BaseException, bool]]] = {}
        self._gates: list[Gate] = []
        self.calls: list[tuple[str, str | None]] = []
        #: ``stop_timeout_s`` of every stop/restart call: (op, container_id, value)
        self.stop_timeouts: list[tuple[str, str, float | None]] = []
        self.reset_count = 0
        self.gate_timeout_s = 30.0
        self._after_exc = threading.local()

    # --- test controls -----------------------------------------------------------
    @property
    def unavailable(self) -> bool:
        return self._unavailable

    @unavailable.setter
    def unavailable(self, value: bool) -> None:
        """Engine down: every call raises DockerUnavailable; open event streams end."""
        with self._cond:
            self._unavailable = bool(value)
            if value:
                self._stream_epoch += 1
            self._cond.notify_all()

    @property
    def hung(self) -> bool:
        return self._hung

    @hung.setter
    def hung(self, value: bool) -> None:
        """Engine alive but not answering (``kill -STOP`` of dockerd): every call raises
        DockerTimeout at once (the fake skips the wait for the call's bound); open event
        streams neither end nor deliver until it answers again."""
        with self._cond:
            self._hung = bool(value)
            self._cond.notify_all()

    def fail_next(
        self,
        op: str,
        exc: BaseException,
        container_id: str | None = None,
        *,
        times: int = 1,
        after: bool = False,
    ) -> None:
        """The next ``times`` calls of ``op`` (for ``container_id``, if given) raise ``exc``.

        ``after=True``: each call takes effect first and then raises, like an answer
        lost on the way back (``DockerTimeout`` after the engine carried the call out).
        """
        assert op in OPS, op
        with self._lock:
            self._faults.setdefault(op, []).extend([(container_id, exc, after)] * times)

    def fail_status(
        self,
        op: str,
        status: int,
        message: str = "injected error",
        *,
        retry_after: float | None = None,
        container_id: str | None = None,
        times: int = 1,
    ) -> None:
        """The next ``times`` calls of ``op`` get an error answer with ``status``, built
        by the port's own mapping (404 → DockerNotFound, else DockerError)."""
        exc = error_from_status(status, message, retry_after=retry_after)
        self.fail_next(op, exc, container_id, times=times)

    def time_out_next(
        self,
        op: str,
        container_id: str | None = None,
        *,
        times: int = 1,
        applied: bool = False,
    ) -> None:
        """The next ``times`` calls of ``op`` time out; ``applied``: after taking effect."""
        exc = DockerTimeout("UnixHTTPConnectionPool(host='localhost', port=None): Read timed out.")
        self.fail_next(op, exc, container_id, times=times, after=applied)

    def block(self, op: str, container_id: str | None = None) -> Gate:
        """Hold the next call of ``op`` in flight until the returned gate is released.

        ``stop``/``restart`` of a running container reach the gate after the ``kill``
        event (SIGTERM sent, grace period running), like the real daemon.
        """
        assert op in OPS, op
        gate = Gate(op, container_id)
        with self._lock:
            self._gates.append(gate)
        return gate

    def drop_event_streams(self) -> None:
        """End every open event stream (connection dropped) without going unavailable."""
        with self._cond:
            self._stream_epoch += 1
            self._cond.notify_all()

    def calls_of(self, op: str) -> list[str | None]:
        with self._lock:
            return [cid for o, cid in self.calls if o == op]

    def events_of(self, container_id: str) -> list[str]:
        """Actions of every event so far for one container, in order."""
        with self._lock:
            return [e["Action"] for e in self._events if e["Actor"]["ID"] == container_id]

    def all_events(self) -> list[dict[str, Any]]:
        with self._lock:
            return copy.deepcopy(self._events)

    def state_of(self, container_id: str) -> str | None:
        with self._lock:
            c = self._containers.get(container_id)
            return c.status if c else None

    # --- out-of-band helpers (docker CLI) ------------------------------------------
    def create(
        self,
        name: str = "x",
        running: bool = True,
        labels: dict[str, str] | None = None,
        ports: dict[str, Any] | None = None,
        *,
        stop_timeout: int | None = None,
        ignores_sigterm: bool = False,
        container_id: str | None = None,
    ) -> str:
        """``docker create`` (+ ``start`` if running). ``ports`` is the inspect
        ``NetworkSettings.Ports`` dict, reported while running or paused."""
        with self._cond:
            if any(c.name == name for c in self._containers.values()):
                raise DockerError(
                    f'Conflict. The container name "/{name}" is already in use', status_code=409
                )
            cid = container_id or secrets.token_hex(32)
            c = _Container(cid, name, self._now())
            c.labels = dict(labels or {})
            c.ports = copy.deepcopy(ports or {})
            c.stop_timeout = stop_timeout
            c.ignores_sigterm = ignores_sigterm
            self._containers[cid] = c
            self._emit(c, "create")
            if running:
                self._do_start(c)
            return cid

    def docker_start_direct(self, ref: str) -> None:
        with self._cond:
            self._start_checked(self._resolve(ref))

    def docker_stop_direct(self, ref: str) -> None:
        with self._cond:
            c = self._resolve(ref)
            if c.running:
                self._emit(c, "kill", signal="15")
                self._finish_stop(c)

    def docker_pause_direct(self, ref: str) -> None:
        with self._cond:
            self._pause_checked(self._resolve(ref))

    def docker_unpause_direct(self, ref: str) -> None:
        with self._cond:
            self._unpause_checked(self._resolve(ref))

    def docker_restart_direct(self, ref: str) -> None:
        with self._cond:
            c = self._resolve(ref)
            if c.running:
                self._emit(c, "kill", signal="15")
                self._finish_stop(c)
            self._start_checked(c)
            self._emit(c, "restart")

    def docker_remove_direct(self, ref: str) -> None:
        with self._cond:
            self._do_remove(self._resolve(ref))

    def docker_exit_direct(self, ref: str, exit_code: int = 0) -> None:
        """The main process exits by itself (``die`` only, no ``stop``)."""
        with self._cond:
            c = self._resolve(ref)
            if c.running:
                self._die(c, exit_code)

    def set_state_direct(self, ref: str, status: str) -> None:
        """Force a state (e.g. ``dead``, ``restarting``) without events."""
        assert status in STATES, status
        with self._cond:
            c = self._resolve(ref)
            c.status = status
            c.pid = next(self._pids) if c.running else 0

    # --- DockerPort API: engine ------------------------------------------------------
    @property
    def base_url(self) -> str:
        return self._base_url

    def reset(self) -> None:
        with self._lock:
            self.reset_count += 1

    @_answer_may_be_lost
    def ping(self) -> None:
        self._enter("ping", None)
        self._gate("ping", None)

    @_answer_may_be_lost
    def version(self) -> dict[str, Any]:
        self._enter("version", None)
        return {
            "Version": "20.10.24+dfsg1",
            "ApiVersion": "1.41",
            "MinAPIVersion": "1.12",
            "Os": "linux",
            "Arch": "amd64",
            "KernelVersion": "6.1.0",
        }

    @_answer_may_be_lost
    def system_time_ns(self) -> int:
        self._enter("system_time_ns", None)
        with self._lock:
            return max(time.time_ns(), self._last_ns)

    # --- DockerPort API: containers ------------------------------------------------
    @_answer_may_be_lost
    def list_ids(self) -> list[str]:
        self._enter("list_ids", None)
        with self._lock:
            return list(self._containers)

    @_answer_may_be_lost
    def inspect(self, container_id: str) -> dict[str, Any]:
        self._enter("inspect", container_id)
        with self._lock:
            return self._inspect(self._resolve(container_id))

    @_answer_may_be_lost
    def start(self, container_id: str) -> None:
        self._enter("start", container_id)
        self._gate("start", container_id)
        with self._cond:
            self._start_checked(self._resolve(container_id))

    @_answer_may_be_lost
    def stop(self, container_id: str, *, stop_timeout_s: float | None = None) -> None:
        self._enter("stop", container_id)
        with self._lock:
            self.stop_timeouts.append(("stop", container_id, stop_timeout_s))
        with self._cond:
            c = self._resolve(container_id)
            if not c.running:
                return  # 304 Not Modified
            self._emit(c, "kill", signal="15")
        self._gate("stop", container_id)  # grace period in flight
        with self._cond:
            c = self._resolve(container_id)
            if c.running:
                self._finish_stop(c)

    @_answer_may_be_lost
    def pause(self, container_id: str) -> None:
        self._enter("pause", container_id)
        self._gate("pause", container_id)
        with self._cond:
            self._pause_checked(self._resolve(container_id))

    @_answer_may_be_lost
    def unpause(self, container_id: str) -> None:
        self._enter("unpause", container_id)
        self._gate("unpause", container_id)
        with self._cond:
            self._unpause_checked(self._resolve(container_id))

    @_answer_may_be_lost
    def restart(self, container_id: str, *, stop_timeout_s: float | None = None) -> None:
        self._enter("restart", container_id)
        with self._lock:
            self.stop_timeouts.append(("restart", container_id, stop_timeout_s))
        with self._cond:
            c = self._resolve(container_id)
            was_running = c.running
            if was_running:
                self._emit(c, "kill", signal="15")
        self._gate("restart", container_id)
        with self._cond:
            c = self._resolve(container_id)
            if was_running and c.running:
                self._finish_stop(c)
            self._start_checked(c)
            self._emit(c, "restart")

    @_answer_may_be_lost
    def remove(self, container_id: str) -> None:
        self._enter("remove", container_id)
        self._gate("remove", container_id)
        with self._cond:
            self._do_remove(self._resolve(container_id))

    def events(self, *, since: str | None = None, until: str | None = None) -> FakeEventStream:
        self._enter("events", None)
        return FakeEventStream(self, _parse_since(since), _parse_since(until))

    # --- internals -------------------------------------------------------------------
    def _enter(self, op: str, ref: str | None) -> None:
        """Log the call, then apply the engine switches and injected faults.

        A fault queued with ``after=True`` is moved to :attr:`_pending_after` of this
        thread and raised by :meth:`_after` once the call took effect.
        """
        with self._lock:
            self.calls.append((op, ref))
            if self._unavailable:
                raise DockerUnavailable(
                    "Error while fetching server API version: ('Connection aborted.', "
                    "FileNotFoundError(2, 'No such file or directory'))"
                )
            if self._hung:
                raise DockerTimeout(
                    "UnixHTTPConnectionPool(host='localhost', port=None): Read timed out."
                )
            faults = self._faults.get(op) or []
            for i, (cid, exc, after) in enumerate(faults):
                if cid is None or cid == ref:
                    del faults[i]
                    if after:
                        self._after_exc.value = exc
                        break
                    raise exc

    def _after(self) -> None:
        """Raise the ``after=True`` fault the current call picked up in :meth:`_enter`."""
        exc = getattr(self._after_exc, "value", None)
        if exc is not None:
            self._after_exc.value = None
            raise exc

    def _gate(self, op: str, ref: str) -> None:
        with self._lock:
            gate = next(
                (
                    g
                    for g in self._gates
                    if g.op == op and g.container_id in (None, ref) and not g.entered.is_set()
                ),
                None,
            )
            if gate is not None:
                self._gates.remove(gate)
        if gate is not None:
            gate._pass(self.gate_timeout_s)
        if self._unavailable:
            raise DockerUnavailable("connection dropped while the call was in flight")

    def _now(self) -> int:
        """Wall clock, strictly increasing (StartedAt and timeNano never repeat)."""
        self._last_ns = max(time.time_ns(), self._last_ns + 1)
        return self._last_ns

    def _resolve(self, ref: str) -> _Container:
        c = self._containers.get(ref)
        if c is None:
            c = next((x for x in self._containers.values() if x.name == ref.lstrip("/")), None)
        if c is None and ref:
            matches = [x for x in self._containers.values() if x.id.startswith(ref)]
            c = matches[0] if len(matches) == 1 else None
        if c is None:
            raise DockerNotFound(f"No such container: {ref}", status_code=404)
        return c

    def _emit(self, c: _Container, action: str, **attrs: str) -> None:
        ns = self._now()
        attributes = {**c.labels, "image": "busybox", "name": c.name, **attrs}
        self._events.append(
            {
                "Type": "container",
                "Action": action,
                "Actor": {"ID": c.id, "Attributes": attributes},
                "scope": "local",
                "time": ns // 1_000_000_000,
                "timeNano": ns,
            }
        )
        self._cond.notify_all()

    def _do_start(self, c: _Container) -> None:
        c.status = "running"
        c.pid = next(self._pids)
        c.exit_code = 0
        c.error = ""
        c.started_at = rfc3339_ns(self._now())
        self._emit(c, "start")

    def _start_checked(self, c: _Container) -> None:
        if c.status == "paused":
            raise DockerError(
                "cannot start a paused container, try unpause instead", status_code=409
            )
        if c.running:
            return  # 304 Not Modified
        if c.status == "dead":
            raise DockerError(
                "container is marked for removal and cannot be started", status_code=409
            )
        self._do_start(c)

    def _die(self, c: _Container, exit_code: int) -> None:
        c.status = "exited"
        c.pid = 0
        c.exit_code = exit_code
        c.finished_at = rfc3339_ns(self._now())
        self._emit(c, "die", exitCode=str(exit_code))

    def _finish_stop(self, c: _Container) -> None:
        """After the stop signal: resume if paused, then die and stop."""
        if c.status == "paused":
            c.status = "running"
            self._emit(c, "unpause")
        if c.ignores_sigterm:
            self._emit(c, "kill", signal="9")
        self._die(c, 137 if c.ignores_sigterm else 143)
        self._emit(c, "stop")

    def _pause_checked(self, c: _Container) -> None:
        if c.status == "paused":
            raise DockerError(f"Container {c.id} is already paused", status_code=409)
        if c.status == "restarting":
            raise DockerError(
                f"Container {c.id} is restarting, wait until the container is running",
                status_code=409,
            )
        if not c.running:
            raise DockerError(f"Container {c.id} is not running", status_code=409)
        c.status = "paused"
        self._emit(c, "pause")

    def _unpause_checked(self, c: _Container) -> None:
        if c.status != "paused":
            raise DockerError(f"Container {c.id} is not paused", status_code=500)
        c.status = "running"
        self._emit(c, "unpause")

    def _do_remove(self, c: _Container) -> None:
        if c.running:
            self._emit(c, "kill", signal="9")
            self._die(c, 137)
        del self._containers[c.id]
        self._emit(c, "destroy")

    def _inspect(self, c: _Container) -> dict[str, Any]:
        base: dict[str, Any] = copy.deepcopy(_TEMPLATE) if _TEMPLATE else {}
        base.update(
            {
                "Id": c.id,
                "Created": c.created,
                "Name": "/" + c.name,
                "Path": base.get("Path", "sleep"),
                "Args": base.get("Args", ["inf"]),
                "Image": base.get("Image", IMAGE_ID),
                "RestartCount": c.restart_count,
            }
        )
        config = dict(base.get("Config") or {"Image": "busybox", "Cmd": ["sleep", "inf"]})
        config["Hostname"] = c.id[:12]
        config["Labels"] = dict(c.labels)
        config.pop("StopTimeout", None)
        if c.stop_timeout is not None:
            config["StopTimeout"] = c.stop_timeout
        base["Config"] = config
        network = dict(base.get("NetworkSettings") or {})
        # Docker reports no port bindings for a container that is not running.
        network["Ports"] = copy.deepcopy(c.ports) if c.running else {}
        base["NetworkSettings"] = network
        base["State"] = {
            "Status": c.status,
            "Running": c.running,
            "Paused": c.status == "paused",
            "Restarting": c.status == "restarting",
            "OOMKilled": c.oom_killed,
            "Dead": c.status == "dead",
            "Pid": c.pid if c.running else 0,
            "ExitCode": c.exit_code,
            "Error": c.error,
            "StartedAt": c.started_at,
            "FinishedAt": c.finished_at,
        }
        return base

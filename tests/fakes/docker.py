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
    DockerInUse,
    DockerNotFound,
    DockerTimeout,
    DockerUnavailable,
    error_from_status,
)

try:  # a teammate's realistic inspect payloads; fall back to a minimal shape
    from tests.support.samples import IMAGE_INSPECT as _IMAGE_TEMPLATE
    from tests.support.samples import INSPECT_RUNNING as _TEMPLATE
except ImportError:  # pragma: no cover
    _TEMPLATE = None
    _IMAGE_TEMPLATE = None

__all__ = [
    "DockerError",
    "DockerInUse",
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
    "list_images",
    "inspect_image",
    "remove_image",
    "list_volumes",
    "inspect_volume",
    "remove_volume",
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
        #: ``Image`` of inspect (the image ID) and ``Config.Image`` (the reference given)
        self.image_id = IMAGE_ID
        self.image_ref = "busybox"
        #: named volumes it mounts: Docker refuses to remove them while it exists
        self.volumes: list[str] = []

    @property
    def running(self) -> bool:
        """Docker's ``State.Running``: true for running, paused and restarting."""
        return self.status in ("running", "paused", "restarting")


class _Image:
    def __init__(self, image_id: str, created_ns: int, parent: str = "") -> None:
        self.id = image_id
        self.tags: list[str] = []
        self.digests: list[str] = []
        self.parent = parent
        self.created = rfc3339_ns(created_ns)
        self.created_s = created_ns // 1_000_000_000
        self.labels: dict[str, str] = {}
        self.size = 1984172
        self.architecture = "amd64"
        self.os = "linux"


class _Volume:
    def __init__(self, name: str, created_at: str) -> None:
        self.name = name
        self.driver = "local"
        self.labels: dict[str, str] = {}
        self.options: dict[str, str] = {}
        self.created_at = created_at
        self.mountpoint = f"/var/lib/docker/volumes/{name}/_data"
        self.scope = "local"


def normalize_tag(ref: str) -> str:
    """``name`` → ``name:latest`` like Docker's familiar references (no registry prefix)."""
    last = ref.rsplit("/", 1)[-1]
    return ref if ":" in last or "@" in ref else f"{ref}:latest"


def short_id(image_or_container_id: str) -> str:
    """Docker's ``stringid.TruncateID``: 12 hex digits without ``sha256:``."""
    return image_or_container_id.split(":", 1)[-1][:12]


class FakeEventStream:
    """Iterable of Docker 29-shaped event dicts; ``close()`` from any thread ends it."""

    def __init__(
        self,
        docker: FakeDocker,
        since_ns: int | None,
        until_ns: int | None,
        types: tuple[str, ...] = ("container",),
    ) -> None:
        self._docker = docker
        self._until = until_ns
        self._types = frozenset(types)
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
                            if event["Type"] not in self._types:
                                continue  # the engine's ``type`` filter
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
        self._images: dict[str, _Image] = {}
        self._volumes: dict[str, _Volume] = {}
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
        image: str | None = None,
        volumes: list[str] | None = None,
    ) -> str:
        """``docker create`` (+ ``start`` if running). ``ports`` is the inspect
        ``NetworkSettings.Ports`` dict, reported while running or paused.

        ``image``: a reference to an image of this fake (404 ``No such image`` otherwise,
        as ``docker create`` without a registry); without it the container uses the
        built-in busybox ID, which is no image of the fake. ``volumes``: named volumes
        to mount, created if missing; Docker sends a volume ``create`` event for each,
        existing or not."""
        with self._cond:
            if any(c.name == name for c in self._containers.values()):
                raise DockerError(
                    f'Conflict. The container name "/{name}" is already in use', status_code=409
                )
            resolved = self._resolve_image(image) if image is not None else None
            cid = container_id or secrets.token_hex(32)
            c = _Container(cid, name, self._now())
            if resolved is not None:
                c.image_id, c.image_ref = resolved.id, image or ""
            for volume in volumes or []:
                self._volume_create(volume)
                c.volumes.append(volume)
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

    def events(
        self,
        *,
        since: str | None = None,
        until: str | None = None,
        types: tuple[str, ...] = ("container",),
    ) -> FakeEventStream:
        self._enter("events", None)
        return FakeEventStream(self, _parse_since(since), _parse_since(until), types)

    # --- DockerPort API: images ------------------------------------------------------
    @_answer_may_be_lost
    def list_images(self) -> list[dict[str, Any]]:
        """``GET /images/json?all=1`` as API 1.41 answers it (placeholders for images
        without any reference)."""
        self._enter("list_images", None)
        with self._lock:
            return [self._image_summary(i) for i in self._images.values()]

    @_answer_may_be_lost
    def inspect_image(self, ref: str) -> dict[str, Any]:
        self._enter("inspect_image", ref)
        with self._lock:
            image = self._find_image(ref)
            if image is None:
                raise DockerNotFound(f"no such image: {ref}: No such image: {ref}", status_code=404)
            return self._image_inspect(image)

    @_answer_may_be_lost
    def remove_image(self, ref: str) -> None:
        """``DELETE /images/{ref}?force=0&noprune=1`` (what the port sends)."""
        self._enter("remove_image", ref)
        self._gate("remove_image", ref)
        with self._cond:
            self._image_delete(ref, force=False, prune=False)

    # --- DockerPort API: volumes -----------------------------------------------------
    @_answer_may_be_lost
    def list_volumes(self) -> list[dict[str, Any]]:
        self._enter("list_volumes", None)
        with self._lock:
            return [self._volume_inspect(v) for v in self._volumes.values()]

    @_answer_may_be_lost
    def inspect_volume(self, name: str) -> dict[str, Any]:
        self._enter("inspect_volume", name)
        with self._lock:
            return self._volume_inspect(self._resolve_volume(name))

    @_answer_may_be_lost
    def remove_volume(self, name: str) -> None:
        """``DELETE /volumes/{name}?force=1`` (what the port sends): with ``force`` moby
        answers 204 for a volume that does not exist (volume_routes.go)."""
        self._enter("remove_volume", name)
        self._gate("remove_volume", name)
        with self._cond:
            if name in self._volumes:
                self._volume_remove(name)

    # --- out-of-band helpers: images and volumes (docker CLI) ------------------------
    def docker_import_direct(
        self,
        tag: str | None = None,
        *,
        labels: dict[str, str] | None = None,
        image_id: str | None = None,
        parent: str = "",
    ) -> str:
        """``docker import - [tag]``: a new image; events ``tag`` (when tagged) then
        ``import``, in that order as moby sends them. Returns the image ID."""
        with self._cond:
            image = _Image(image_id or "sha256:" + secrets.token_hex(32), self._now(), parent)
            image.labels = dict(labels or {})
            self._images[image.id] = image
            if tag is not None:
                self._add_tag(image, tag)
                self._emit_image(image, "tag", normalize_tag(tag))
            self._emit_image(image, "import")
            return image.id

    def docker_load_direct(
        self, tags: list[str], *, image_id: str | None = None, labels: dict[str, str] | None = None
    ) -> str:
        """``docker load``: the image (new, or the one with ``image_id``) gets ``tags``
        (moved from other images without an event of theirs); one ``load`` event only."""
        with self._cond:
            image = self._images.get(image_id or "")
            if image is None:
                image = _Image(image_id or "sha256:" + secrets.token_hex(32), self._now())
                image.labels = dict(labels or {})
                self._images[image.id] = image
            for tag in tags:
                self._add_tag(image, tag)
            self._emit_image(image, "load")
            return image.id

    def docker_pull_direct(self, ref: str, *, image_id: str | None = None) -> str:
        """``docker pull ref`` from a registry that serves ``image_id`` (new by default);
        the ``pull`` event names the reference, not the ID, as moby's does."""
        with self._cond:
            image = self._images.get(image_id or "")
            if image is None:
                image = _Image(image_id or "sha256:" + secrets.token_hex(32), self._now())
                self._images[image.id] = image
            tag = normalize_tag(ref)
            self._add_tag(image, tag)
            name = tag.rsplit(":", 1)[0]
            digest = f"{name}@sha256:{image.id.split(':', 1)[-1]}"
            if digest not in image.digests:
                image.digests.append(digest)
            self._emit_object("image", "pull", tag, {"name": tag})
            return image.id

    def docker_tag_direct(self, ref: str, tag: str) -> None:
        """``docker tag ref tag``; a tag another image had moves without an event of its."""
        with self._cond:
            image = self._resolve_image(ref)
            self._add_tag(image, tag)
            self._emit_image(image, "tag", normalize_tag(tag))

    def docker_commit_direct(self, container_ref: str, tag: str) -> str:
        """``docker commit``: a child image of the container's image, tagged ``tag``."""
        with self._cond:
            c = self._resolve(container_ref)
            parent = c.image_id if c.image_id in self._images else ""
            image = _Image("sha256:" + secrets.token_hex(32), self._now(), parent)
            # the container's configuration, whose labels merge its image's and its own
            source = self._images.get(c.image_id)
            image.labels = {**(source.labels if source else {}), **c.labels}
            self._images[image.id] = image
            self._add_tag(image, tag)
            self._emit_image(image, "tag", normalize_tag(tag))
            self._emit(c, "commit", imageID=image.id, imageRef=normalize_tag(tag))
            return image.id

    def docker_rmi_direct(self, ref: str, *, force: bool = False, prune: bool = True) -> None:
        """``docker image rm [--force] [--no-prune] ref`` (the CLI prunes by default)."""
        with self._cond:
            self._image_delete(ref, force=force, prune=prune)

    def docker_volume_create_direct(
        self,
        name: str,
        *,
        labels: dict[str, str] | None = None,
        options: dict[str, str] | None = None,
        created_at: str | None = None,
    ) -> None:
        """``docker volume create``; ``created_at`` replaces Docker's ``CreatedAt`` text
        (e.g. with garbage, to test its mapping)."""
        with self._cond:
            volume = self._volume_create(name)
            volume.labels = dict(labels or volume.labels)
            volume.options = dict(options or volume.options)
            if created_at is not None:
                volume.created_at = created_at

    def docker_volume_rm_direct(self, name: str) -> None:
        with self._cond:
            self._volume_remove(name)

    def image_ids(self) -> list[str]:
        with self._lock:
            return list(self._images)

    def tags_of(self, image_id: str) -> list[str] | None:
        with self._lock:
            image = self._images.get(image_id)
            return list(image.tags) if image else None

    def volume_names(self) -> list[str]:
        with self._lock:
            return list(self._volumes)

    def image_events(self) -> list[tuple[str, str, str]]:
        """``(Action, Actor.ID, Attributes.name)`` of every image event so far."""
        with self._lock:
            return [
                (e["Action"], e["Actor"]["ID"], e["Actor"]["Attributes"].get("name", ""))
                for e in self._events
                if e["Type"] == "image"
            ]

    def volume_events(self) -> list[tuple[str, str]]:
        with self._lock:
            return [(e["Action"], e["Actor"]["ID"]) for e in self._events if e["Type"] == "volume"]

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
        attributes = {**c.labels, "image": c.image_ref, "name": c.name, **attrs}
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

    def _emit_object(self, kind: str, action: str, actor_id: str, attrs: dict[str, str]) -> None:
        ns = self._now()
        self._events.append(
            {
                "Type": kind,
                "Action": action,
                "Actor": {"ID": actor_id, "Attributes": dict(attrs)},
                "scope": "local",
                "time": ns // 1_000_000_000,
                "timeNano": ns,
            }
        )
        self._cond.notify_all()

    def _emit_image(self, image: _Image, action: str, name: str | None = None) -> None:
        """moby's ``LogImageEvent(imageID, refName, action)``: the image's labels plus
        ``name`` (the new tag for ``tag``, else the image ID itself)."""
        self._emit_object("image", action, image.id, {**image.labels, "name": name or image.id})

    # --- images: moby 20.10 daemon/images/image_delete.go --------------------------------
    def _find_image(self, ref: str) -> _Image | None:
        """Full ID (with or without ``sha256:``), then a tag, then a unique ID prefix."""
        if not ref:
            return None
        image = self._images.get(ref) or self._images.get(f"sha256:{ref}")
        if image is not None:
            return image
        tag = normalize_tag(ref)
        image = next((i for i in self._images.values() if tag in i.tags), None)
        if image is not None:
            return image
        hex_ref = ref.split(":", 1)[1] if ref.startswith("sha256:") else ref
        matches = [i for i in self._images.values() if i.id[7:].startswith(hex_ref)]
        return matches[0] if len(matches) == 1 and len(hex_ref) >= 1 else None

    def _resolve_image(self, ref: str) -> _Image:
        image = self._find_image(ref)
        if image is None:
            raise DockerNotFound(f"No such image: {ref}", status_code=404)
        return image

    def _is_id_ref(self, image: _Image, ref: str) -> bool:
        hex_ref = ref.split(":", 1)[1] if ref.startswith("sha256:") else ref
        return normalize_tag(ref) not in image.tags and image.id[7:].startswith(hex_ref)

    def _add_tag(self, image: _Image, tag: str) -> None:
        """Point ``tag`` at ``image``, taking it from whichever image had it."""
        tag = normalize_tag(tag)
        for other in self._images.values():
            if other is not image and tag in other.tags:
                other.tags.remove(tag)
        if tag not in image.tags:
            image.tags.append(tag)

    def _users(self, image: _Image, *, running: bool | None = None) -> list[_Container]:
        return [
            c
            for c in self._containers.values()
            if c.image_id == image.id and (running is None or c.running == running)
        ]

    def _children(self, image: _Image) -> list[_Image]:
        return [i for i in self._images.values() if i.parent == image.id]

    def _conflict(self, image: _Image, *, hard_only: bool, skip_references: bool = False):
        """``checkImageDeleteConflict``: (hard, used, message) of the first conflict, or None."""
        if self._children(image):
            return True, False, "image has dependent child images"
        running = self._users(image, running=True)
        if running:
            return True, True, f"image is being used by running container {short_id(running[0].id)}"
        if hard_only:
            return None
        if (image.tags or image.digests) and not skip_references:
            return False, False, "image is referenced in multiple repositories"
        stopped = self._users(image, running=False)
        if stopped:
            return (
                False,
                True,
                f"image is being used by stopped container {short_id(stopped[0].id)}",
            )
        return None

    @staticmethod
    def _conflict_error(image: _Image, conflict: tuple[bool, bool, str]) -> DockerInUse:
        hard, _used, message = conflict
        forced = "cannot be forced" if hard else "must be forced"
        return DockerInUse(
            f"conflict: unable to delete {short_id(image.id)} ({forced}) - {message}"
        )

    def _untag(self, image: _Image, tag: str) -> None:
        image.tags.remove(tag)
        self._emit_image(image, "untag")

    def _image_delete(self, ref: str, *, force: bool, prune: bool) -> None:
        """``ImageService.ImageDelete`` for the cases the fake models (tags, no digests)."""
        image = self._resolve_image(ref)
        quiet = False
        if not self._is_id_ref(image, ref):
            tag = normalize_tag(ref)
            single = len(image.tags) == 1
            if not force and single:
                users = self._users(image)
                if users:
                    raise DockerInUse(
                        f'conflict: unable to remove repository reference "{ref}" (must force) '
                        f"- container {short_id(users[0].id)} is using its referenced image "
                        f"{short_id(image.id)}"
                    )
            self._untag(image, tag)
            repo = tag.rsplit(":", 1)[0]
            if not any(t.rsplit(":", 1)[0] == repo for t in image.tags):
                # moby drops the repository's digest references with its last tag (no event)
                image.digests = [d for d in image.digests if d.split("@", 1)[0] != repo]
            if image.tags or image.digests:
                return  # other references remain: the untag was the whole removal
            quiet = True
        elif len(image.tags) == 1:
            conflict = self._conflict(image, hard_only=force, skip_references=True)
            if conflict is not None:
                raise self._conflict_error(image, conflict)
            self._untag(image, image.tags[0])
        self._image_delete_helper(image, force=force, prune=prune, quiet=quiet)

    def _image_delete_helper(self, image: _Image, *, force: bool, prune: bool, quiet: bool) -> None:
        conflict = self._conflict(image, hard_only=force)
        if conflict is not None:
            dangling = not image.tags and not image.digests and not self._children(image)
            if quiet and (not dangling or conflict[1]):
                return  # moby ignores the conflict after removing a tag by name
            raise self._conflict_error(image, conflict)
        for tag in list(image.tags):
            self._untag(image, tag)
        del self._images[image.id]
        # logged after the image is gone: moby finds no labels to add
        self._emit_object("image", "delete", image.id, {"name": image.id})
        parent = self._images.get(image.parent)
        if prune and parent is not None:
            # moby prunes the parent unforced and quietly: any conflict just stops it.
            self._image_delete_helper(parent, force=False, prune=True, quiet=True)

    def _image_summary(self, image: _Image) -> dict[str, Any]:
        placeholder = not image.tags and not image.digests
        return {
            "Containers": -1,
            "Created": image.created_s,
            "Id": image.id,
            "Labels": dict(image.labels) or None,
            "ParentId": image.parent,
            "RepoDigests": ["<none>@<none>"] if placeholder else (list(image.digests) or None),
            "RepoTags": ["<none>:<none>"] if placeholder else list(image.tags),
            "SharedSize": -1,
            "Size": image.size,
            "VirtualSize": image.size,
        }

    def _image_inspect(self, image: _Image) -> dict[str, Any]:
        base: dict[str, Any] = copy.deepcopy(_IMAGE_TEMPLATE) if _IMAGE_TEMPLATE else {}
        config = dict(base.get("Config") or {})
        config["Labels"] = dict(image.labels) or None
        base.update(
            {
                "Id": image.id,
                "RepoTags": list(image.tags),
                "RepoDigests": list(image.digests),
                "Parent": image.parent,
                "Created": image.created,
                "Config": config,
                "Architecture": image.architecture,
                "Os": image.os,
                "Size": image.size,
                "VirtualSize": image.size,
            }
        )
        return base

    # --- volumes: moby 20.10 volume/service ----------------------------------------------
    def _volume_create(self, name: str) -> _Volume:
        """Create (or find) a volume; Docker sends ``create`` either way."""
        volume = self._volumes.get(name)
        if volume is None:
            created = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(self._now() // 10**9))
            volume = self._volumes[name] = _Volume(name, created)
        self._emit_object("volume", "create", name, {"driver": volume.driver})
        return volume

    def _resolve_volume(self, name: str) -> _Volume:
        volume = self._volumes.get(name)
        if volume is None:
            raise DockerNotFound(f"get {name}: no such volume", status_code=404)
        return volume

    def _volume_remove(self, name: str) -> None:
        volume = self._resolve_volume(name)
        users = [c.id for c in self._containers.values() if name in c.volumes]
        if users:
            raise DockerInUse(f"remove {name}: volume is in use - [{', '.join(users)}]")
        del self._volumes[name]
        self._emit_object("volume", "destroy", name, {"driver": volume.driver})

    @staticmethod
    def _volume_inspect(volume: _Volume) -> dict[str, Any]:
        return {
            "CreatedAt": volume.created_at,
            "Driver": volume.driver,
            "Labels": dict(volume.labels) or None,
            "Mountpoint": volume.mountpoint,
            "Name": volume.name,
            "Options": dict(volume.options) or None,
            "Scope": volume.scope,
        }

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
                "Image": c.image_id,
                "RestartCount": c.restart_count,
            }
        )
        config = dict(base.get("Config") or {"Cmd": ["sleep", "inf"]})
        config["Image"] = c.image_ref
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

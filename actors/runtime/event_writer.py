"""The event writer actor: Kubernetes Events for condition changes and action outcomes.

Why an actor of its own: an Event is a side note, not part of the action protocol; a
container actor tells this actor and goes on, so a slow or failing events API never
delays an action. The actor decides in its pykka thread and writes on a few worker
threads (:class:`EventWriterActor`); a failed write is journaled and dropped (Events
are best effort, as in client-go's recorder).

Every Event regards its Container by name, uid and resourceVersion (as client-go's
``GetReference`` does), so ``kubectl describe container/<id>`` lists it. Repeats are
aggregated into series by client-go's rules (:mod:`actors.domain.event_series`): the
resourceVersion is part of the series key, so real transitions never fold, while a
step that fails the same way against the same object version again and again costs
one Event and a few count updates. Bounds: :class:`EmitGate` drops Events while the
writer is more than :data:`MAX_QUEUED` behind, and the series cache holds at most
:data:`~actors.domain.event_series.MAX_TRACKED` keys, so memory stays bounded under any
load.
"""

from __future__ import annotations

import functools
import queue
import socket
import threading
import time
import uuid
from collections.abc import Callable
from typing import Any

from actors.domain.event_series import (
    EventKey,
    Regarding,
    Series,
    SeriesBook,
    event_manifest,
    reporting_instance,
    write_now,
)
from actors.domain.timefmt import micro_time_from_ns
from actors.infra.journal import Journal
from actors.ports.kube_port import EventStore, KubeHttp, KubeNotFound
from actors.ports.port_errors import PortError
from actors.runtime._base import JournaledActor
from messages.inbound import EmitEvent, Tick

MAX_QUEUED = 1000  # client-go's maxQueuedEvents: beyond this backlog, Events are dropped
WRITE_WORKERS = 8  # client-go's recordWorkers: Events written in parallel


class EmitGate:
    """Tells the event writer an Event unless its mailbox already holds :data:`MAX_QUEUED`.

    Why: Events are best effort, but their writes compete with the action protocol's
    for the apiserver. When the writer falls behind (a burst, a slow apiserver) an
    unbounded mailbox would grow without limit and deliver Events minutes late;
    client-go's recorder drops them in the same situation. Called from container-actor
    threads; the counters are guarded by a lock. The supervisor reports drops.
    """

    def __init__(self, limit: int = MAX_QUEUED) -> None:
        self.limit = limit
        self._lock = threading.Lock()
        self.dropped = 0

    def tell(self, ref: Any, message: EmitEvent) -> bool:
        """``ref.tell(message)`` unless backlogged; False (and counted) when dropped."""
        if ref.actor_inbox.qsize() >= self.limit:
            with self._lock:
                self.dropped += 1
            return False
        ref.tell(message)
        return True


class _Workers:
    """``count`` daemon threads running jobs from a queue, started on first use.

    Daemon threads, like the actors' own: a write stuck in an unreachable apiserver
    (up to the request timeout) must not hold the process at exit, which a
    ``ThreadPoolExecutor``'s joined threads would.
    """

    def __init__(self, count: int, name: str) -> None:
        self._jobs: queue.SimpleQueue[Callable[[], None] | None] = queue.SimpleQueue()
        self._count = count
        self._name = name
        self._threads: list[threading.Thread] = []
        self._stopped = False

    def submit(self, job: Callable[[], None]) -> bool:
        """Queue ``job``; False once stopped (the job is not run)."""
        if self._stopped:
            return False
        if not self._threads:
            for i in range(self._count):
                thread = threading.Thread(target=self._loop, name=f"{self._name}-{i}", daemon=True)
                thread.start()
                self._threads.append(thread)
        self._jobs.put(job)
        return True

    def stop(self) -> None:
        """Jobs not started are dropped; running ones finish on their own."""
        self._stopped = True
        for _ in self._threads:
            self._jobs.put(None)

    def _loop(self) -> None:
        while (job := self._jobs.get()) is not None:
            if not self._stopped:
                job()


class EventWriterActor(JournaledActor):
    """Creates ``events.k8s.io/v1`` Events regarding Container mirrors.

    Threads: decisions (which Event, which series count) are made in the actor's thread;
    the writes run on :data:`WRITE_WORKERS` worker threads (client-go's
    ``recordWorkers``), so a burst (a full sync's condition changes, chatty containers)
    is written in parallel and an action's outcome is not stuck behind hundreds of
    sequential writes. The series cache is shared by both, under one lock. While every
    worker is busy the actor waits for a free one, so the backlog stays in the mailbox,
    where :class:`EmitGate` bounds it. A failed write is journaled (with the message that
    caused it) and dropped.
    """

    actor_kind = "events"

    def __init__(
        self,
        *,
        journal: Journal,
        http: KubeHttp,
        namespace: str,
        on_death: Callable[[str, str], None] | None = None,
        clock_ns: Callable[[], int] = time.time_ns,
        shutting_down: threading.Event | None = None,
        workers: int = WRITE_WORKERS,
        run: Callable[[Callable[[], None]], None] | None = None,
    ) -> None:
        """``run(job)`` runs a write; by default on a pool of ``workers`` threads (tests
        pass ``run=lambda job: job()`` to write synchronously in the caller's thread)."""
        super().__init__(journal=journal, name="events", on_death=on_death)
        # Set by the supervisor at shutdown: queued Events are dropped (best effort)
        # so the stop message behind them is reached at once.
        self.shutting_down = shutting_down or threading.Event()
        self.events = EventStore(http, namespace)
        self.namespace = namespace
        self.instance = reporting_instance(socket.gethostname())
        self.clock_ns = clock_ns
        self.series = SeriesBook()
        self._lock = threading.Lock()  # guards self.series (actor thread and workers)
        self._pool: _Workers | None = None
        self._slots = threading.BoundedSemaphore(workers)
        if run is None:
            self._pool = _Workers(workers, "event-write")
            run = self._submit
        self._run = run

    def handlers(self) -> dict[type, Callable[[Any], None]]:
        return {EmitEvent: self._on_emit, Tick: self._on_tick}

    def on_stop(self) -> None:
        """Actor thread: writes not started yet are dropped (best effort); running ones
        finish on their own (daemon threads, bounded by the request timeout)."""
        if self._pool is not None:
            self._pool.stop()

    def _submit(self, job: Callable[[], None]) -> None:
        """Actor thread: hand ``job`` to a free worker, waiting while all are busy."""
        self._slots.acquire()

        def slot() -> None:
            try:
                job()
            except Exception:  # a bug must not leak the slot or kill the worker silently
                self.log.exception("event write failed")
            finally:
                self._slots.release()

        if self._pool is None or not self._pool.submit(slot):
            self._slots.release()  # stopping: the write is dropped

    def _on_tick(self, message: Tick) -> None:
        """Write series counts that are due (refresh or finish), then forget finished
        series (client-go's ``finishSeries``): the cache holds the last minutes' Events."""
        now_ns = self.clock_ns()
        with self._lock:
            due = self.series.due(now_ns)
            for _, series in due:
                series.writing = True
            self.series.expire(now_ns)
        for key, series in due:
            self._run(functools.partial(self._write_series, key, series, message.msg_id))

    def _on_emit(self, message: EmitEvent) -> None:
        if self.shutting_down.is_set():
            return
        now_ns = self.clock_ns()
        key = EventKey(
            Regarding(message.container_id, message.uid, message.resource_version),
            message.type,
            message.reason,
            message.action,
            message.note,
        )
        with self._lock:
            series = self.series.observe(key, now_ns)
            if series is None:
                name = f"{key.regarding.name[:40]}.{uuid.uuid4().hex[:16]}"
                series = self.series.reserve(key, name, now_ns)
                job = functools.partial(self._create, key, series, now_ns, message.msg_id)
            elif write_now(series):
                series.writing = True
                job = functools.partial(self._write_series, key, series, message.msg_id)
            else:
                return
        self._run(job)

    def _create(self, key: EventKey, series: Series, now_ns: int, cause: str) -> None:
        """Worker thread: create the Event; then write the repeats that came meanwhile."""
        body = event_manifest(
            key,
            name=series.event_name,
            namespace=self.namespace,
            event_time=micro_time_from_ns(now_ns),
            instance=self.instance,
        )
        try:
            self.effect(
                "kube",
                "create_event",
                self.events.create,
                body,
                detail={"reason": key.reason, "action": key.action},
                caused_by=cause,
            )
        except PortError as exc:  # a KubeError family, or Fenced once leadership is lost
            self.log.debug("event dropped: %s", exc)
            with self._lock:
                self.series.forget(key, series)
            return
        with self._lock:
            follow = self.series.confirm(key, series) and write_now(series)
            if follow:
                series.writing = True
        if follow:
            self._write_series(key, series, cause)

    def _write_series(self, key: EventKey, series: Series, cause: str) -> None:
        """Worker thread: write the series' count (``series.writing`` is set)."""
        with self._lock:
            count, last_ns = series.count, series.last_ns
        try:
            self.effect(
                "kube",
                "update_event_series",
                self.events.patch_series,
                series.event_name,
                count,
                micro_time_from_ns(last_ns),
                detail={"count": count},
                caused_by=cause,
            )
        except KubeNotFound:
            with self._lock:  # expired (--event-ttl): the next one starts anew
                series.writing = False
                self.series.forget(key, series)
            return
        except PortError as exc:  # a KubeError family, or Fenced once leadership is lost
            self.log.debug("event series update dropped: %s", exc)
            with self._lock:
                series.writing = False
            return
        with self._lock:
            series.writing = False
            self.series.written(series, count, self.clock_ns())

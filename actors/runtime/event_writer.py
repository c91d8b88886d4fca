"""The event writer actor: Kubernetes Events for condition changes and action outcomes.

Why an actor of its own: an Event is a side note, not part of the action protocol; a
container actor tells this actor and goes on, so a slow or failing events API never
delays an action. Runs in its own pykka thread; a failed write is journaled and
dropped (Events are best effort, as in client-go's recorder).

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
from actors.ports.kube_port import EventStore, KubeError, KubeHttp, KubeNotFound
from actors.runtime._base import JournaledActor
from messages.inbound import EmitEvent, Tick

MAX_QUEUED = 1000  # client-go's maxQueuedEvents: beyond this backlog, Events are dropped


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


class EventWriterActor(JournaledActor):
    """Creates ``events.k8s.io/v1`` Events regarding Container mirrors."""

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
    ) -> None:
        super().__init__(journal=journal, name="events", on_death=on_death)
        # Set by the supervisor at shutdown: queued Events are dropped (best effort)
        # so the stop message behind them is reached at once.
        self.shutting_down = shutting_down or threading.Event()
        self.events = EventStore(http, namespace)
        self.namespace = namespace
        self.instance = reporting_instance(socket.gethostname())
        self.clock_ns = clock_ns
        self.series = SeriesBook()

    def handlers(self) -> dict[type, Callable[[Any], None]]:
        return {EmitEvent: self._on_emit, Tick: self._on_tick}

    def _on_tick(self, message: Tick) -> None:
        """Write series counts that are due (refresh or finish), then forget finished
        series (client-go's ``finishSeries``): the cache holds the last minutes' Events."""
        now_ns = self.clock_ns()
        for key, series in self.series.due(now_ns):
            self._write_series(key, series, now_ns)
        self.series.expire(now_ns)

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
        series = self.series.observe(key, now_ns)
        if series is None:
            self._create(key, now_ns)
        elif write_now(series):
            self._write_series(key, series, now_ns)

    def _create(self, key: EventKey, now_ns: int) -> None:
        name = f"{key.regarding.name[:40]}.{uuid.uuid4().hex[:16]}"
        body = event_manifest(
            key,
            name=name,
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
            )
        except KubeError as exc:
            self.log.debug("event dropped: %s", exc)
            return
        self.series.created(key, name, now_ns)

    def _write_series(self, key: EventKey, series: Series, now_ns: int) -> None:
        count = series.count
        try:
            self.effect(
                "kube",
                "update_event_series",
                self.events.patch_series,
                series.event_name,
                count,
                micro_time_from_ns(series.last_ns),
                detail={"count": count},
            )
        except KubeNotFound:
            self.series.forget(key)  # expired (--event-ttl): the next one starts anew
            return
        except KubeError as exc:
            self.log.debug("event series update dropped: %s", exc)
            return
        self.series.written(series, count, now_ns)

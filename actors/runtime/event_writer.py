"""The event writer actor: Kubernetes Events for condition changes and action outcomes.

Why an actor of its own: an Event is a side note, not part of the action protocol; a
container actor tells this actor and goes on, so a slow or failing events API never
delays an action. Runs in its own pykka thread; a failed write is journaled and
dropped (Events are best effort, as in client-go's recorder).

Repeats are aggregated into a series, as client-go's ``tools/events`` recorder does:
the first occurrence of an event (same container, type, reason, action and note)
creates an Event; repeats within :data:`SERIES_WINDOW_S` only count, and the count is
written to ``series`` at most every :data:`SERIES_UPDATE_S` seconds. A container that
is paused and unpaused a thousand times therefore costs a handful of writes instead of
three thousand (the apiserver is the shared bottleneck on a desktop). Series whose
window has closed are forgotten, and :class:`EmitGate` drops Events while the writer
is more than :data:`MAX_QUEUED` behind, so memory stays bounded under any load.
"""

from __future__ import annotations

import socket
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from actors.domain.timefmt import micro_time_from_ns
from actors.infra.journal import Journal
from actors.ports.kube_port import API_VERSION, KubeError, KubeHttp, KubeNotFound
from actors.runtime._base import JournaledActor
from messages.inbound import EmitEvent, Tick

SERIES_WINDOW_S = 360.0  # client-go: an isomorphic event within 6 minutes joins the series
# How stale a series count may be in the apiserver. client-go refreshes series only
# every 30 minutes; 30 s cost one PATCH per active series every 30 s, which in the soak
# was 85 % of the writer's writes and left it saturated (see docs/reliability.md).
SERIES_UPDATE_S = 300.0
MAX_TRACKED = 4096  # bound the aggregation cache (oldest entries are forgotten)
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


@dataclass
class _Series:
    name: str
    count: int
    first_ns: int
    last_ns: int
    written_ns: int
    written_count: int


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
        self.http = http
        self.namespace = namespace
        self.instance = f"dockmirror-{socket.gethostname()}"[:128]
        self.clock_ns = clock_ns
        self.series: dict[tuple[str, ...], _Series] = {}

    def handlers(self) -> dict[type, Callable[[Any], None]]:
        return {EmitEvent: self._on_emit, Tick: self._on_tick}

    def _on_tick(self, message: Tick) -> None:
        """Write series counts that changed and have been quiet for a while; forget
        series whose window closed and whose count is written (client-go's
        ``finishSeries``), so the cache holds only the last six minutes' events."""
        now_ns = self.clock_ns()
        for key, series in list(self.series.items()):
            if (
                series.count > series.written_count
                and (now_ns - series.written_ns) / 1e9 >= SERIES_UPDATE_S
            ):
                self._write_series(series, key)
            elif (
                series.count == series.written_count
                and (now_ns - series.last_ns) / 1e9 > SERIES_WINDOW_S
            ):
                del self.series[key]

    def _on_emit(self, message: EmitEvent) -> None:
        if self.shutting_down.is_set():
            return
        now_ns = self.clock_ns()
        key = (
            message.container_id,
            message.type,
            message.reason,
            message.action,
            message.note,
            message.reporting_controller,
        )
        series = self.series.get(key)
        if series is not None and (now_ns - series.last_ns) / 1e9 <= SERIES_WINDOW_S:
            series.count += 1
            series.last_ns = now_ns
            if (now_ns - series.written_ns) / 1e9 >= SERIES_UPDATE_S:
                self._write_series(series, key)
            return
        self._create(message, key, now_ns)

    def _create(self, message: EmitEvent, key: tuple[str, ...], now_ns: int) -> None:
        name = f"{message.container_id[:40]}.{uuid.uuid4().hex[:16]}"
        body = {
            "apiVersion": "events.k8s.io/v1",
            "kind": "Event",
            "metadata": {"name": name, "namespace": self.namespace},
            "eventTime": micro_time_from_ns(now_ns),
            "reportingController": message.reporting_controller,
            "reportingInstance": self.instance,
            "action": message.action,
            "reason": message.reason,
            "type": message.type,
            "note": message.note[:1000],
            "regarding": {
                "apiVersion": API_VERSION,
                "kind": "Container",
                "name": message.container_id,
                "namespace": self.namespace,
            },
        }
        try:
            self.effect(
                "kube",
                "create_event",
                self.http.request,
                "POST",
                self._path(),
                body=body,
                detail={"reason": message.reason, "action": message.action},
            )
        except KubeError as exc:
            self.log.debug("event dropped: %s", exc)
            return
        if len(self.series) >= MAX_TRACKED:
            oldest = min(self.series, key=lambda k: self.series[k].last_ns)
            del self.series[oldest]
        self.series[key] = _Series(name, 1, now_ns, now_ns, now_ns, 1)

    def _write_series(self, series: _Series, key: tuple[str, ...]) -> None:
        body = {
            "series": {
                "count": series.count,
                "lastObservedTime": micro_time_from_ns(series.last_ns),
            }
        }
        try:
            self.effect(
                "kube",
                "update_event_series",
                self.http.request,
                "PATCH",
                f"{self._path()}/{series.name}",
                body=body,
                content_type="application/merge-patch+json",
                detail={"count": series.count},
            )
            series.written_ns = series.last_ns
            series.written_count = series.count
        except KubeNotFound:
            del self.series[key]  # expired (events have a TTL): the next one starts anew
        except KubeError as exc:
            self.log.debug("event series update dropped: %s", exc)

    def _path(self) -> str:
        return f"/apis/events.k8s.io/v1/namespaces/{self.namespace}/events"

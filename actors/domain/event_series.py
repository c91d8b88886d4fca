"""Which Kubernetes Events to write, and when: client-go's ``events.k8s.io`` series, pure.

The rules are those of client-go's ``tools/events`` broadcaster (``recordToSink``,
``finishSeries``, ``refreshExistingEventSeries``):

* Events are *isomorphic* when their key is equal; the key holds the regarding object's
  name, **uid and resourceVersion**, the type, reason and action (client-go's
  ``getKey``; the reporting controller and instance are one per writer here). Because
  the resourceVersion is in the key, two real transitions of an object (pause, unpause,
  pause again) never fold: each changed the object, so each regards another version.
  We also key on the note, which client-go does not: it can only make folding rarer.
* The first Event of a key is created. An isomorphic one within
  :data:`SERIES_WINDOW_S` of the last joins its series: the first repeat writes
  ``series`` (count 2) at once, so a repeat is visible within seconds; later repeats
  only count, and the count is written :data:`SERIES_UPDATE_S` after the previous write
  or when the series finishes (no repeat for :data:`SERIES_WINDOW_S`), whichever comes
  first. A finished series whose count is written is forgotten.
* At most :data:`MAX_TRACKED` keys are remembered (the least recently seen is forgotten
  first), so memory stays bounded under any flood; forgetting only means the next
  repeat creates a new Event.

Pure: no I/O, no threads, no clock of its own (every call takes ``now_ns``). The event
writer actor (:mod:`actors.runtime.event_writer`) does the writes this decides.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from actors.domain.names import API_VERSION, EVENT_REPORTING_CONTROLLER

#: client-go's ``finishTime``: an isomorphic Event within 6 minutes joins the series.
SERIES_WINDOW_S = 360.0
#: How stale a written series count (3 and more) may be. client-go refreshes every 30
#: minutes; 30 s cost one PATCH per active series every 30 s, which in the soak was
#: 85 % of the writer's writes (docs/reliability.md).
SERIES_UPDATE_S = 300.0
#: Keys remembered at most (the aggregation cache).
MAX_TRACKED = 4096

#: The apiserver's limits on an Event (``pkg/apis/core/validation/events.go``), in bytes.
NOTE_LIMIT = 1024
ACTION_LIMIT = REASON_LIMIT = REPORTING_INSTANCE_LIMIT = 128


@dataclass(frozen=True)
class Regarding:
    """The object an Event is about: name, and uid and resourceVersion when known.

    Without the uid, ``kubectl describe`` cannot find the Event: it lists Events with
    ``involvedObject.uid=<the object's uid>``.
    """

    name: str
    uid: str = ""
    resource_version: str = ""
    kind: str = "Container"
    api_version: str = API_VERSION


@dataclass(frozen=True)
class EventKey:
    """When two Events are the same Event seen again (see the module docstring)."""

    regarding: Regarding
    type: str
    reason: str
    action: str
    note: str


@dataclass
class Series:
    """What is known about one key's Event in the apiserver.

    ``created`` is False while the Event's create is in flight; ``writing`` is True while
    a write of its count is: repeats meanwhile only count, so one key never has two
    writes on the wire at once.
    """

    event_name: str
    count: int
    last_ns: int
    written_count: int
    written_ns: int
    created: bool = True
    writing: bool = False


class SeriesBook:
    """The aggregation cache: one :class:`Series` per key seen within the window."""

    def __init__(
        self,
        *,
        window_s: float = SERIES_WINDOW_S,
        update_s: float = SERIES_UPDATE_S,
        max_tracked: int = MAX_TRACKED,
    ) -> None:
        self.window_ns = int(window_s * 1e9)
        self.update_ns = int(update_s * 1e9)
        self.max_tracked = max_tracked
        self._series: dict[EventKey, Series] = {}

    def __len__(self) -> int:
        return len(self._series)

    def get(self, key: EventKey) -> Series | None:
        return self._series.get(key)

    def observe(self, key: EventKey, now_ns: int) -> Series | None:
        """An Event of ``key`` happened. None: create a new Event (then :meth:`created`).
        Otherwise the series it joined, its count already raised; write it now when
        :func:`write_now` says so."""
        series = self._series.get(key)
        if series is None or now_ns - series.last_ns > self.window_ns:
            return None
        series.count += 1
        series.last_ns = now_ns
        return series

    def reserve(self, key: EventKey, event_name: str, now_ns: int) -> Series:
        """The Event of a new key is being created: remember it (forgetting the least
        recently seen key beyond :attr:`max_tracked`) so that repeats meanwhile count
        into it. :meth:`confirm` once created, :meth:`forget` if the create failed."""
        if key not in self._series and len(self._series) >= self.max_tracked:
            oldest = min(self._series, key=lambda k: self._series[k].last_ns)
            del self._series[oldest]
        series = Series(event_name, 1, now_ns, 1, now_ns, created=False)
        self._series[key] = series
        return series

    def confirm(self, key: EventKey, series: Series) -> bool:
        """``series``' Event was created; False when it is no longer remembered."""
        if self._series.get(key) is not series:
            return False
        series.created = True
        return True

    def created(self, key: EventKey, event_name: str, now_ns: int) -> None:
        """The Event of a new key was created (:meth:`reserve` and :meth:`confirm`)."""
        self.confirm(key, self.reserve(key, event_name, now_ns))

    def written(self, series: Series, count: int, now_ns: int) -> None:
        """``count`` was written to the series (a later repeat may have raised it since)."""
        series.written_count = max(series.written_count, count)
        series.written_ns = now_ns

    def forget(self, key: EventKey, series: Series | None = None) -> None:
        """Forget ``key`` (only if it still stands for ``series``, when given)."""
        if series is None or self._series.get(key) is series:
            self._series.pop(key, None)

    def due(self, now_ns: int) -> list[tuple[EventKey, Series]]:
        """Series whose unwritten count is due: refreshed after :attr:`update_ns`, or
        finished (no repeat within the window: client-go's ``finishSeries`` writes the
        final count)."""
        return [
            (key, series)
            for key, series in self._series.items()
            if series.created
            and not series.writing
            and series.count > series.written_count
            and (
                now_ns - series.written_ns >= self.update_ns
                or now_ns - series.last_ns > self.window_ns
            )
        ]

    def expire(self, now_ns: int) -> None:
        """Forget finished series whose count is written."""
        for key, series in list(self._series.items()):
            if (
                series.created
                and not series.writing
                and series.count == series.written_count
                and now_ns - series.last_ns > self.window_ns
            ):
                del self._series[key]


def write_now(series: Series) -> bool:
    """The first repeat of an Event is written at once (count 2), as client-go does, so
    it is visible within seconds; a failed write is tried again at the next repeat. Not
    while the Event's create or another write is in flight (it follows them)."""
    return (
        series.created
        and not series.writing
        and series.written_count < 2
        and series.count > series.written_count
    )


def truncate_utf8(text: str, limit: int) -> str:
    """``text`` cut to at most ``limit`` UTF-8 bytes, never inside a character (the
    apiserver counts bytes; 1,000 characters of a non-ASCII error text can exceed 1,024)."""
    encoded = text.encode("utf-8")
    if len(encoded) <= limit:
        return text
    return encoded[:limit].decode("utf-8", "ignore")


def reporting_instance(hostname: str) -> str:
    """client-go's ``reportingController + "-" + hostname``, within the 128-byte limit."""
    return truncate_utf8(f"{EVENT_REPORTING_CONTROLLER}-{hostname}", REPORTING_INSTANCE_LIMIT)


def event_manifest(
    key: EventKey, *, name: str, namespace: str, event_time: str, instance: str
) -> dict[str, Any]:
    """The ``events.k8s.io/v1`` Event for a new key (what client-go's ``makeEvent`` and
    ``GetReference`` produce), within the apiserver's size limits."""
    regarding: dict[str, Any] = {
        "apiVersion": key.regarding.api_version,
        "kind": key.regarding.kind,
        "name": key.regarding.name,
        "namespace": namespace,
    }
    if key.regarding.uid:
        regarding["uid"] = key.regarding.uid
    if key.regarding.resource_version:
        regarding["resourceVersion"] = key.regarding.resource_version
    return {
        "apiVersion": "events.k8s.io/v1",
        "kind": "Event",
        "metadata": {"name": name, "namespace": namespace},
        "eventTime": event_time,
        "reportingController": EVENT_REPORTING_CONTROLLER,
        "reportingInstance": instance,
        "action": truncate_utf8(key.action, ACTION_LIMIT),
        "reason": truncate_utf8(key.reason, REASON_LIMIT),
        "type": key.type,
        "note": truncate_utf8(key.note, NOTE_LIMIT),
        "regarding": regarding,
    }

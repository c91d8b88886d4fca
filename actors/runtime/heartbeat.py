"""When to ping the Docker engine while its event stream is open (pure, clock injected).

Why a heartbeat: the event stream has no read timeout (hours without an event are
normal), so a hung engine - process alive, not answering, e.g. ``kill -STOP`` of
dockerd - leaves the stream silent instead of broken. The events reader therefore pings
the engine every :data:`HEARTBEAT_INTERVAL_S` while the stream is open; one ping that
fails within its bound means the engine is lost (docs/contract.md §3.2 treats a failed 5 s ping
the same way when connecting).

Bound on noticing a hang (issue 10: ``EngineReady`` False within 15 s): the engine
stops right after a successful ping; the next ping is due :data:`HEARTBEAT_INTERVAL_S`
later, starts at the next supervisor ``Tick`` (:data:`TICK_INTERVAL_S`) and fails after
:data:`~actors.ports.docker_port.PING_TIMEOUT_S`: :data:`WORST_CASE_DETECTION_S` seconds.

Not thread-safe by itself: the events reader calls it under its state lock.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from actors.ports.docker_port import PING_TIMEOUT_S

#: Seconds between heartbeat pings while the event stream is open. A ping is a few
#: hundred bytes on a local socket; every 3 s keeps the bound below well under 15 s.
HEARTBEAT_INTERVAL_S = 3.0
#: The supervisor ticks the reader once a second (supervisor.py ``run``).
TICK_INTERVAL_S = 1.0
#: Longest time from an engine hang to the failed ping that reports it.
WORST_CASE_DETECTION_S = HEARTBEAT_INTERVAL_S + TICK_INTERVAL_S + PING_TIMEOUT_S


class Heartbeat:
    """Schedules pings while a stream is watched; ``clock`` is monotonic seconds."""

    def __init__(
        self,
        *,
        interval_s: float = HEARTBEAT_INTERVAL_S,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.interval_s = interval_s
        self._clock = clock
        self._next: float | None = None  # None: no stream open, nothing to watch

    @property
    def watching(self) -> bool:
        return self._next is not None

    def watch(self) -> None:
        """A stream was opened (the engine just answered): first ping one interval later."""
        self._next = self._clock() + self.interval_s

    def unwatch(self) -> None:
        """The stream ended or the engine was declared lost: no pings until reconnected."""
        self._next = None

    def due(self) -> bool:
        """True when a ping should be sent now."""
        return self._next is not None and self._clock() >= self._next

    def pinged(self) -> None:
        """A ping was started: the next one is one interval from now."""
        if self._next is not None:
            self._next = self._clock() + self.interval_s

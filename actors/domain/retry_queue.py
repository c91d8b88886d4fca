"""Per-item retry with exponential backoff: pure, clock-free, no threads.

Why: a failed step for one object (a Docker call, a ``lastAction`` write, an
annotation removal, a forwarded delete, a finalizer strip, a status apply) must be
retried on its own until it succeeds or the object is gone, without waiting for some
later event and without resyncing everything. This is client-go's workqueue
``ItemExponentialFailureRateLimiter`` plus its delaying queue, reduced to data:

* :class:`ItemBackoff` counts consecutive failures per item; the n-th failure waits
  ``base * 2**(n-1)`` seconds, capped; :meth:`ItemBackoff.forget` resets an item after
  a success.
* :class:`RetryQueue` remembers when each failed item is due again (the sooner of two
  schedules wins) and hands out the due ones.

The owner (the router, in its own actor thread) passes ``now`` from its injected clock
to every call, so both are unit-tested with plain numbers. Neither is thread-safe; the
owner's actor thread is the only caller.
"""

from __future__ import annotations

import heapq
from collections.abc import Hashable
from dataclasses import dataclass, field

#: First retry after a few milliseconds (a conflict or a dropped connection usually
#: clears at once), doubling to five minutes: a permanently failing object costs one
#: attempt per five minutes, never a loop.
DEFAULT_BASE_S = 0.005
DEFAULT_CAP_S = 300.0


@dataclass
class ItemBackoff:
    """Consecutive failures per item -> the next delay (client-go's item limiter)."""

    base_s: float = DEFAULT_BASE_S
    cap_s: float = DEFAULT_CAP_S
    _failures: dict[Hashable, int] = field(default_factory=dict)

    def when(self, item: Hashable) -> float:
        """Count one more failure of ``item`` and return how long to wait before retrying."""
        failures = self._failures.get(item, 0)
        self._failures[item] = failures + 1
        # Cap the exponent too: 2**1000 would overflow a float long before the cap applies.
        return min(self.cap_s, self.base_s * (2 ** min(failures, 64)))

    def failures(self, item: Hashable) -> int:
        return self._failures.get(item, 0)

    def forget(self, item: Hashable) -> None:
        """``item`` succeeded: its next failure starts again at ``base_s``."""
        self._failures.pop(item, None)


@dataclass
class RetryQueue:
    """Failed items and when each is due again. ``now`` is the owner's monotonic clock."""

    backoff: ItemBackoff = field(default_factory=ItemBackoff)
    _due: dict[Hashable, float] = field(default_factory=dict)
    _heap: list[tuple[float, int, Hashable]] = field(default_factory=list)
    _seq: int = 0

    def failed(self, item: Hashable, now: float, *, not_before_s: float = 0.0) -> float:
        """Schedule ``item`` after one more failure; return the delay chosen.

        ``not_before_s`` is a server's ``Retry-After``: the delay is at least that. An
        item whose retry is already pending keeps it and its backoff: the failures of
        messages that were queued before that retry is due are one failure, not many
        (one retry redoes all of them), as client-go's workqueue dedups a queued item.
        """
        due = self._due.get(item)
        if due is not None:
            return max(0.0, due - now)
        delay = max(self.backoff.when(item), not_before_s)
        self.schedule(item, now + delay)
        return delay

    def schedule(self, item: Hashable, due: float) -> None:
        """Make ``item`` due at ``due`` unless it is already due sooner."""
        current = self._due.get(item)
        if current is not None and current <= due:
            return
        self._due[item] = due
        self._seq += 1
        heapq.heappush(self._heap, (due, self._seq, item))

    def succeeded(self, item: Hashable) -> None:
        """``item`` succeeded: reset its backoff and drop a pending retry."""
        self.backoff.forget(item)
        self._due.pop(item, None)

    def pending(self, item: Hashable) -> bool:
        return item in self._due

    def pop_due(self, now: float) -> list[Hashable]:
        """Items due at ``now`` (removed from the queue; their backoff is kept)."""
        due: list[Hashable] = []
        while self._heap and self._heap[0][0] <= now:
            when, _, item = heapq.heappop(self._heap)
            if self._due.get(item) == when:  # else superseded by a sooner schedule
                del self._due[item]
                due.append(item)
        return due

    def next_due(self) -> float | None:
        """The earliest due time, or None when nothing waits."""
        while self._heap and self._due.get(self._heap[0][2]) != self._heap[0][0]:
            heapq.heappop(self._heap)  # stale entry
        return self._heap[0][0] if self._heap else None

    def __len__(self) -> int:
        return len(self._due)

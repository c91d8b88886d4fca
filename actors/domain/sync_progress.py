"""Log lines of a full sync: progress while it runs, one line when it is done.

A large engine (thousands of containers) takes a while to sync at start; without these
lines the log says nothing between ``dockmirror running`` and the first action. The
router owns one :class:`SyncProgress` and calls it from its own thread: ``started``
when a full sync lists the engine, ``report`` on every Tick (a line at most every
``interval_s``), ``done`` when EngineReady turns True, ``abandoned`` when the engine is
lost mid-sync. Pure (the clock is passed in) and total: calls out of order return None.
"""

from __future__ import annotations

from dataclasses import dataclass

#: Seconds between progress lines; a sync that finishes sooner logs only its done line.
PROGRESS_INTERVAL_S = 5.0


@dataclass
class _Run:
    label: str
    total: int
    started: float
    last_report: float


class SyncProgress:
    """Formats the progress of the current full sync (see module docstring)."""

    def __init__(self, interval_s: float = PROGRESS_INTERVAL_S) -> None:
        self.interval_s = interval_s
        self.syncs = 0
        self._run: _Run | None = None

    def started(self, total: int, now: float) -> None:
        """A full sync listed ``total`` containers; the first is the "initial sync"."""
        label = "initial sync" if self.syncs == 0 else "full sync"
        self.syncs += 1
        self._run = _Run(label, total, now, now)

    def report(self, remaining: int, now: float) -> str | None:
        """``initial sync: 430/1000 containers`` once per interval while running."""
        run = self._run
        if run is None or now - run.last_report < self.interval_s:
            return None
        run.last_report = now
        synced = max(0, run.total - remaining)
        return f"{run.label}: {synced}/{run.total} containers"

    def done(self, now: float) -> str | None:
        """``initial sync done: 1000 containers in 12.3 s``, once per sync."""
        run, self._run = self._run, None
        if run is None:
            return None
        return f"{run.label} done: {run.total} containers in {now - run.started:.1f} s"

    def abandoned(self) -> None:
        """The engine was lost mid-sync; the reconnect's sync starts a new run."""
        self._run = None

"""Opt-in heap growth report for leak hunting: ``DOCKMIRROR_TRACEMALLOC=<seconds>``.

With the variable set, the supervisor starts :mod:`tracemalloc` before anything else
and, every ``<seconds>``, logs the allocation sites whose live size grew most since the
first report (the baseline). Off by default: tracing costs CPU and memory on every
allocation. Runs on the supervisor's main thread; a failure to snapshot is logged and
never stops the service.
"""

from __future__ import annotations

import linecache
import logging
import os
import time
import tracemalloc

log = logging.getLogger("dockmirror.heap")

ENV_VAR = "DOCKMIRROR_TRACEMALLOC"
FRAMES = 12
TOP = 12
_IGNORED = (
    tracemalloc.Filter(False, tracemalloc.__file__),
    # Formatting a report fills linecache: without this the report reports itself.
    tracemalloc.Filter(False, linecache.__file__),
    tracemalloc.Filter(False, "<frozen importlib._bootstrap>"),
    tracemalloc.Filter(False, "<frozen importlib._bootstrap_external>"),
    tracemalloc.Filter(False, "<unknown>"),
)


class HeapGrowthReporter:
    """Logs the top allocation sites by growth against a baseline snapshot."""

    def __init__(self, interval_s: float, *, top: int = TOP) -> None:
        self.interval_s = interval_s
        self.top = top
        self._baseline: tracemalloc.Snapshot | None = None
        self._last = 0.0

    @classmethod
    def from_env(cls) -> HeapGrowthReporter | None:
        """A started reporter when ``DOCKMIRROR_TRACEMALLOC`` holds a positive number."""
        raw = os.environ.get(ENV_VAR, "").strip()
        if not raw:
            return None
        try:
            interval = float(raw)
        except ValueError:
            log.warning("%s=%r is not a number of seconds; heap report off", ENV_VAR, raw)
            return None
        if interval <= 0:
            return None
        tracemalloc.start(FRAMES)
        reporter = cls(interval)
        reporter._last = time.monotonic()
        log.info("heap report every %.0f s (tracemalloc, %d frames)", interval, FRAMES)
        return reporter

    def maybe_report(self) -> None:
        """Take a snapshot when the interval has passed; the first one is the baseline."""
        if time.monotonic() - self._last < self.interval_s:
            return
        self._last = time.monotonic()
        try:
            self._report()
        except Exception:
            log.exception("heap report failed")

    def _report(self) -> None:
        snapshot = tracemalloc.take_snapshot().filter_traces(_IGNORED)
        if self._baseline is None:
            self._baseline = snapshot
            current, peak = tracemalloc.get_traced_memory()
            log.info("heap baseline: %.1f MB traced (peak %.1f MB)", current / 1e6, peak / 1e6)
            return
        stats = snapshot.compare_to(self._baseline, "traceback")
        total = sum(s.size_diff for s in stats)
        lines = [f"heap growth since baseline: {total / 1e6:+.2f} MB traced; top sites:"]
        for stat in sorted(stats, key=lambda s: s.size_diff, reverse=True)[: self.top]:
            if stat.size_diff <= 0:
                break
            lines.append(
                f"  {stat.size_diff / 1e3:+.1f} kB in {stat.count_diff:+d} blocks"
                f" (now {stat.size / 1e3:.1f} kB)"
            )
            lines.extend(f"      {line}" for line in stat.traceback.format(most_recent_first=True))
        log.info("\n".join(lines))

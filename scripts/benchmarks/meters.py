"""Reading the cost of a window: process CPU from /proc, request counts from /metrics.

Runs in the bench's threads (the meter's methods are called from the throughput loop's
client threads and the watch thread, hence the lock). A reading that fails (a process
gone, ``/metrics`` unreadable) leaves that figure None instead of failing the run: the
key then shows ``-`` and the run's other keys stay valid. The arithmetic is in
:mod:`benchmarks.cost`.
"""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path

from benchmarks import cost
from benchmarks.harness import REPO_ROOT, Kube

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def read_stat(pid: int | None) -> str | None:
    """``/proc/<pid>/stat`` or None (no pid, process gone)."""
    if pid is None:
        return None
    try:
        return Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None


def apiserver_pid(repo_root: Path = REPO_ROOT) -> int | None:
    """The devenv apiserver's pid (``.devenv/apiserver.pid``) if that process is an
    ``apiserver`` binary; None otherwise (the bench then has no apiserver CPU)."""
    try:
        pid = int((repo_root / ".devenv" / "apiserver.pid").read_text().strip())
        exe = os.readlink(f"/proc/{pid}/exe").removesuffix(" (deleted)")
    except (OSError, ValueError):
        return None
    return pid if os.path.basename(exe) == "apiserver" else None


def fetch_metrics(kube: Kube) -> tuple[str | None, float]:
    """The apiserver's ``/metrics`` text (Prometheus format, None on any failure) and
    the monotonic time its answer began: the server gathers the counters before it
    sends the headers, so that is when the snapshot was taken (the body of about 2 MB
    follows)."""
    try:
        response = kube.http.open("GET", "/metrics", timeout=(5.0, 30.0))
        at = time.monotonic()
        try:
            return response.data.decode("utf-8", "replace"), at
        finally:
            response.release_conn()
    except Exception:
        return None, time.monotonic()


def cpu_between(before: str | None, after: str | None) -> float | None:
    if before is None or after is None:
        return None
    try:
        return cost.cpu_delta(before, after, CLOCK_TICKS)
    except ValueError:
        return None


class CostMeter:
    """CPU of one process and of the apiserver, and our requests, over one window.

    ``Bench.throughput`` calls :meth:`start` once the window is in its steady state
    (every container has a request in flight, as many as at its end) and :meth:`stop`
    at its end; :meth:`action_done` and :meth:`client_write` record when each action
    completed and each client annotation write returned, so that each reading's span
    counts its own actions (:class:`benchmarks.cost.Window`).
    """

    def __init__(self, kube: Kube, pid: int | None, api_pid: int | None) -> None:
        self.kube = kube
        self.pid = pid
        self.api_pid = api_pid
        self.lock = threading.Lock()
        self.done: list[float] = []
        self.writes: list[float] = []
        self.t0 = self.t1 = self.m0 = self.m1 = 0.0
        self.text0: str | None = None
        self.text1: str | None = None
        self.stats0: tuple[str | None, str | None] = (None, None)
        self.stats1: tuple[str | None, str | None] = (None, None)

    def start(self) -> None:
        """Read /metrics, then both CPU counters: the CPU span starts after the fetch."""
        self.text0, self.m0 = fetch_metrics(self.kube)
        self.t0 = time.monotonic()
        self.stats0 = (read_stat(self.pid), read_stat(self.api_pid))

    def stop(self) -> None:
        """CPU counters first, then /metrics (its cost stays out of the CPU span)."""
        self.stats1 = (read_stat(self.pid), read_stat(self.api_pid))
        self.t1 = time.monotonic()
        self.text1, self.m1 = fetch_metrics(self.kube)

    def action_done(self, t: float) -> None:
        with self.lock:
            self.done.append(t)

    def client_write(self, t: float) -> None:
        with self.lock:
            self.writes.append(t)

    def window(self) -> cost.Window:
        """The readings as a :class:`benchmarks.cost.Window` (after :meth:`stop`)."""
        requests = None
        if self.text0 is not None and self.text1 is not None:
            requests = cost.delta_by_verb(
                cost.request_counts(self.text0), cost.request_counts(self.text1)
            )
        with self.lock:
            done, writes = list(self.done), list(self.writes)
        return cost.Window(
            seconds=self.t1 - self.t0,
            actions=cost.count_between(done, self.t0, self.t1),
            service_cpu_s=cpu_between(self.stats0[0], self.stats1[0]),
            apiserver_cpu_s=cpu_between(self.stats0[1], self.stats1[1]),
            requests_s=self.m1 - self.m0,
            actions_requests=cost.count_between(done, self.m0, self.m1),
            client_writes=cost.count_between(writes, self.m0, self.m1),
            requests=requests,
        )

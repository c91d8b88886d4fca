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


def fetch_metrics(kube: Kube) -> str | None:
    """The apiserver's ``/metrics`` text (Prometheus format) or None on any failure."""
    try:
        response = kube.http.open("GET", "/metrics", timeout=(5.0, 30.0))
        try:
            return response.data.decode("utf-8", "replace")
        finally:
            response.release_conn()
    except Exception:
        return None


def cpu_between(before: str | None, after: str | None) -> float | None:
    if before is None or after is None:
        return None
    try:
        return cost.cpu_delta(before, after, CLOCK_TICKS)
    except ValueError:
        return None


#: Quiet time at both ends: the last actions' status applies and Events trail them.
TRAILING_S = 1.0


class CostMeter:
    """CPU of one process and of the apiserver, and our requests, over one throughput run.

    ``Bench.throughput`` calls :meth:`start` before its first request and :meth:`stop`
    once every request is drained; :meth:`action_done` and :meth:`client_write` count
    the actions and the client's writes (:class:`benchmarks.cost.Window`).
    """

    def __init__(self, kube: Kube, pid: int | None, api_pid: int | None) -> None:
        self.kube = kube
        self.pid = pid
        self.api_pid = api_pid
        self.lock = threading.Lock()
        self.actions = 0
        self.writes = 0
        self.rate: float | None = None
        self.t0 = self.t1 = 0.0
        self.text0: str | None = None
        self.text1: str | None = None
        self.stats0: tuple[str | None, str | None] = (None, None)
        self.stats1: tuple[str | None, str | None] = (None, None)

    def start(self) -> None:
        """After :data:`TRAILING_S` (the previous scenario's last writes): /metrics,
        then both CPU counters (the fetch's cost stays out)."""
        time.sleep(TRAILING_S)
        self.text0 = fetch_metrics(self.kube)
        self.t0 = time.monotonic()
        self.stats0 = (read_stat(self.pid), read_stat(self.api_pid))

    def stop(self, rate: float) -> None:
        """After the drain and :data:`TRAILING_S`: CPU counters, then /metrics.
        ``rate``: the scenario's completed actions per second in its window."""
        time.sleep(TRAILING_S)
        self.stats1 = (read_stat(self.pid), read_stat(self.api_pid))
        self.t1 = time.monotonic()
        self.text1 = fetch_metrics(self.kube)
        self.rate = rate

    def action_done(self) -> None:
        with self.lock:
            self.actions += 1

    def client_write(self) -> None:
        with self.lock:
            self.writes += 1

    def window(self) -> cost.Window:
        """The readings as a :class:`benchmarks.cost.Window` (after :meth:`stop`)."""
        requests = None
        if self.text0 is not None and self.text1 is not None:
            requests = cost.delta_by_verb(
                cost.request_counts(self.text0), cost.request_counts(self.text1)
            )
        with self.lock:
            actions, writes = self.actions, self.writes
        return cost.Window(
            seconds=self.t1 - self.t0,
            actions=actions,
            client_writes=writes,
            service_cpu_s=cpu_between(self.stats0[0], self.stats1[0]),
            apiserver_cpu_s=cpu_between(self.stats0[1], self.stats1[1]),
            requests=requests,
            rate=self.rate,
        )

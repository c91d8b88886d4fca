"""Pure computations of the floor and cost keys (issue 14 points 1 and 2).

No devenv, no I/O: parsing ``/proc/<pid>/stat`` and Prometheus text, deltas, the cost of
one measurement window and the result records of the new keys. Unit-tested in
tests/unit/test_bench_cost.py; the I/O around it is in :mod:`benchmarks.meters` and
:mod:`benchmarks.floor`, the method in docs/performance.md ("Floor and cost").

Every record has the shape of :func:`benchmarks.stats.result` (``ratio = ours /
baseline``); the ``kube_requests_per_action`` records add ``by_verb``
(``{"ours": {verb: n}, "baseline": {verb: n}}``), the same requests split by verb.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from actors.domain.names import GROUP
from benchmarks import stats

#: Admission modes in the order ``--admission both`` runs them. The first one runs every
#: old scenario; the new keys name their mode: none for policy, ``_webhook`` for webhook.
MODES: tuple[str, ...] = ("policy", "webhook")

#: The new keys of issue 14 (without the mode suffix), in table order.
FLOOR_KEYS: tuple[str, ...] = (
    "floor_action_latency_p50",
    "floor_action_latency_p99",
    "docker_parallel_stop_s",
    "apiserver_write_rate",
    "service_cpu_ms_per_action",
    "apiserver_cpu_ms_per_action",
    "kube_requests_per_action",
    "throughput_per_cpu_s",
)

#: API groups whose requests count as ours: the mirrors, their Events, the leader Lease.
#: ``apiserver_request_total`` has no namespace label; on the devenv the bench and the
#: process under test are the only clients of these groups (the apiserver's own
#: identity Lease renewals, one every 10 s, are the exception, and are noise).
OUR_GROUPS: frozenset[str] = frozenset({GROUP, "events.k8s.io", "coordination.k8s.io"})
WRITE_VERBS: frozenset[str] = frozenset(
    {"POST", "PUT", "PATCH", "APPLY", "DELETE", "DELETECOLLECTION"}
)


def suffix(mode: str) -> str:
    """The new keys' suffix for ``mode``: ``""`` for policy (the service's choice on the
    devenv), ``_<mode>`` otherwise, whichever modes the run has."""
    return "" if mode == "policy" else f"_{mode}"


def required_keys(modes: Iterable[str]) -> list[str]:
    """Every key ``scripts/bench --json`` must write when it runs ``modes``."""
    keys = list(stats.SCENARIOS)
    for mode in modes:
        keys += [k + suffix(mode) for k in FLOOR_KEYS]
    return keys


# --- /proc/<pid>/stat -------------------------------------------------------------------------
def cpu_seconds(stat_text: str, clock_ticks: int) -> float:
    """User + system CPU seconds of a process from its ``/proc/<pid>/stat`` line.

    Fields 14 (utime) and 15 (stime), in clock ticks (``SC_CLK_TCK``); they cover every
    thread of the process. The command name (field 2) may hold spaces and parentheses,
    so fields are counted after its last ``)``. Raises ValueError on a malformed line.
    """
    end = stat_text.rfind(")")
    if end < 0 or clock_ticks <= 0:
        raise ValueError(f"not a /proc/<pid>/stat line: {stat_text[:80]!r}")
    rest = stat_text[end + 1 :].split()
    if len(rest) < 13:
        raise ValueError(f"/proc/<pid>/stat line too short: {stat_text[:80]!r}")
    # rest[0] is field 3 (state): field n is rest[n - 3].
    return (int(rest[11]) + int(rest[12])) / clock_ticks


def cpu_delta(before: str, after: str, clock_ticks: int) -> float:
    """CPU seconds a process spent between two ``/proc/<pid>/stat`` readings."""
    delta = cpu_seconds(after, clock_ticks) - cpu_seconds(before, clock_ticks)
    if delta < 0:
        raise ValueError("CPU time went backwards: not the same process")
    return delta


# --- Prometheus text -------------------------------------------------------------------------
_SAMPLE = re.compile(r"^([A-Za-z_:][A-Za-z0-9_:]*)(?:\{(.*)\})?\s+(\S+)")
_LABEL = re.compile(r'([A-Za-z_][A-Za-z0-9_]*)="((?:[^"\\]|\\.)*)"')


def request_counts(
    text: str,
    groups: frozenset[str] = OUR_GROUPS,
    metric: str = "apiserver_request_total",
) -> dict[str, float]:
    """``apiserver_request_total`` summed by verb over the requests on ``groups``.

    Lines of other metrics, comments and samples of other groups are skipped; a value
    that is not a number is skipped too (the text comes from a live server).
    """
    counts: dict[str, float] = {}
    prefix = metric + "{"
    for line in text.splitlines():
        if not line.startswith(prefix):
            continue
        m = _SAMPLE.match(line)
        if m is None or m.group(1) != metric:
            continue
        labels = dict(_LABEL.findall(m.group(2) or ""))
        if labels.get("group") not in groups:
            continue
        try:
            value = float(m.group(3))
        except ValueError:
            continue
        verb = labels.get("verb", "")
        counts[verb] = counts.get(verb, 0.0) + value
    return counts


def delta_by_verb(before: Mapping[str, float], after: Mapping[str, float]) -> dict[str, float]:
    """Requests per verb between two readings; verbs without requests are left out.

    A counter that went down (apiserver restarted in between) counts from zero.
    """
    out = {}
    for verb, value in after.items():
        old = before.get(verb, 0.0)
        delta = value - old if value >= old else value
        if delta > 0:
            out[verb] = delta
    return dict(sorted(out.items()))


# --- one measurement window --------------------------------------------------------------------
@dataclass(frozen=True)
class Window:
    """What a :class:`benchmarks.meters.CostMeter` saw over one throughput run.

    The run starts and ends idle (the scenario drains every request), so its totals
    hold whole actions only: a window cut while requests are in flight would charge
    their partial work to the completed ones. The CPU counters are read inside the
    ``/metrics`` readings, whose own cost stays out of the CPU figures.
    """

    seconds: float  # from the first request to the end of the drain
    actions: int  # every action completed (all of them, the drain's too)
    client_writes: int  # the bench client's annotation writes
    service_cpu_s: float | None
    apiserver_cpu_s: float | None
    #: Delta by verb, every client; None when ``/metrics`` could not be read.
    requests: dict[str, float] | None = None
    #: Completed actions per second in the scenario's window (its steady state).
    rate: float | None = None


@dataclass(frozen=True)
class Cost:
    service_cpu_ms_per_action: float | None
    apiserver_cpu_ms_per_action: float | None
    kube_requests_per_action: float | None
    by_verb: dict[str, float]
    throughput_per_cpu_s: float | None
    write_rate: float | None  # writes on our groups per second in the window, client's too


def _per(value: float | None, count: int, scale: float = 1.0) -> float | None:
    return None if value is None or count <= 0 else value * scale / count


def cost_of(w: Window) -> Cost:
    """Per-action figures of a run.

    Requests per action are the process's own: the bench client's annotation writes
    (merge patches, one per requested action) are taken out of ``PATCH``. Throughput
    per CPU second is actions / (service + apiserver CPU seconds). The write rate is
    every write (the client's too) per action times the window's action rate.
    """
    by_verb: dict[str, float] = {}
    requests = write_rate = None
    if w.requests is not None and w.actions > 0:
        own = dict(w.requests)
        if own.get("PATCH"):
            own["PATCH"] = max(0.0, own["PATCH"] - w.client_writes)
        own = {verb: n for verb, n in own.items() if n > 0}
        by_verb = {verb: round(n / w.actions, 3) for verb, n in own.items()}
        requests = sum(own.values()) / w.actions
        if w.rate is not None:
            writes = sum(n for verb, n in w.requests.items() if verb in WRITE_VERBS)
            write_rate = writes / w.actions * w.rate
    cpu = None
    if w.service_cpu_s is not None and w.apiserver_cpu_s is not None:
        cpu = w.service_cpu_s + w.apiserver_cpu_s
    return Cost(
        service_cpu_ms_per_action=_per(w.service_cpu_s, w.actions, 1000.0),
        apiserver_cpu_ms_per_action=_per(w.apiserver_cpu_s, w.actions, 1000.0),
        kube_requests_per_action=requests,
        by_verb=by_verb,
        throughput_per_cpu_s=None if not cpu else w.actions / cpu,
        write_rate=write_rate,
    )


# --- the records -------------------------------------------------------------------------------
def floor_results(
    *,
    latency_ours: list[float] | None,
    latency_floor: list[float] | None,
    parallel_stop_ours: float | None,
    parallel_stop_docker: float | None,
    write_rate_bare: float | None,
    ours: Cost | None,
    baseline: Cost | None,
    key_suffix: str = "",
) -> dict[str, dict[str, Any]]:
    """The records of :data:`FLOOR_KEYS` for one admission mode.

    The floor and Docker-only figures are the ``baseline`` of the first four keys; the
    cost keys compare ours with the single-loop baseline's window in the same mode.
    ``apiserver_write_rate`` sets every write on our groups during our throughput window
    (the client's included) against the bare write rate: how much of the apiserver's
    write capacity the window used.
    """

    def pct(samples: list[float] | None, q: float) -> float | None:
        return stats.percentile(samples, q) if samples else None

    def get(cost: Cost | None, name: str) -> float | None:
        return None if cost is None else getattr(cost, name)

    out = {
        "floor_action_latency_p50": stats.result(
            pct(latency_ours, 50), pct(latency_floor, 50), "s"
        ),
        "floor_action_latency_p99": stats.result(
            pct(latency_ours, 99), pct(latency_floor, 99), "s"
        ),
        "docker_parallel_stop_s": stats.result(parallel_stop_ours, parallel_stop_docker, "s"),
        "apiserver_write_rate": stats.result(get(ours, "write_rate"), write_rate_bare, "writes/s"),
    }
    units = {
        "service_cpu_ms_per_action": "ms",
        "apiserver_cpu_ms_per_action": "ms",
        "kube_requests_per_action": "requests",
        "throughput_per_cpu_s": "actions/CPU-s",
    }
    for key, unit in units.items():
        out[key] = stats.result(get(ours, key), get(baseline, key), unit)
    out["kube_requests_per_action"]["by_verb"] = {
        "ours": {} if ours is None else ours.by_verb,
        "baseline": {} if baseline is None else baseline.by_verb,
    }
    return {k + key_suffix: v for k, v in out.items()}


# --- targets of issue 14 point 3 (evaluated, not pursued here) -----------------------------------
def check_targets(
    results: dict[str, dict[str, Any]], modes: Iterable[str] = MODES[:1]
) -> list[stats.Check]:
    """Issue 14's targets on the new keys; the CPU limits hold for policy mode only."""
    checks: list[stats.Check] = []
    modes = list(modes)

    def ratio(key: str) -> float | None:
        value = (results.get(key) or {}).get("ratio")
        return value if isinstance(value, int | float) else None

    def ours(key: str) -> float | None:
        value = (results.get(key) or {}).get("ours")
        return value if isinstance(value, int | float) else None

    def cmp(key: str, text: str, value: float | None, limit: float, what: str) -> stats.Check:
        if value is None:
            return stats.Check(key, text, None, "n/a")
        return stats.Check(key, text, value <= limit, f"{what} {value:.3g} vs {limit:.3g}")

    for mode in modes:
        sfx = suffix(mode)
        for key, limit in (
            ("floor_action_latency_p50", 1.10),
            ("floor_action_latency_p99", 1.5),
            ("docker_parallel_stop_s", 1.10),
        ):
            k = key + sfx
            checks.append(cmp(k, f"<= {limit:g}x floor", ratio(k), limit, "ratio"))
        if mode == "policy":
            for key, limit in (
                ("service_cpu_ms_per_action", 5.0),
                ("apiserver_cpu_ms_per_action", 20.0),
            ):
                k = key + sfx
                checks.append(cmp(k, f"<= {limit:g} ms", ours(k), limit, "ms"))
    return checks

"""Prometheus metrics of one service instance (docs/troubleshooting.md, "Probes and metrics").

:class:`ServiceMetrics` owns a dedicated :class:`prometheus_client.CollectorRegistry`
(several instances may live in one process: tests start several services) and the
series listed in :data:`SERIES`. Actors reach it through small hooks:

* Docker and Kubernetes call latency and errors come from the journal: every call an
  actor makes runs in ``JournaledActor.effect``, which journals an ``Effect`` with its
  target, op, outcome and duration; :meth:`ServiceMetrics.on_entry` is the journal's
  listener, so no port or actor needs its own instrumentation;
* the container actor reports a request it starts on (:meth:`action_seen`) and one whose
  annotation it removed (:meth:`action_done`);
* the router reports retries it schedules, full syncs, EngineReady writes and container
  actor restarts, and binds a callback that reads its queue depths at scrape time;
* the supervisor reports top-level restarts and binds the event writer's backlog, the
  liveness snapshot and the leader state;
* the log streams (:mod:`actors.infra.log_stream`) report each answer (101 for a stream
  that was opened) and bind their count of open streams.

Gauges that follow a size (queues, actors alive, leader state) are read at scrape time
through callbacks (:class:`_ScrapeCollector`) instead of being updated on every change,
so the actors pay nothing for them.

Every hook may be called from any thread (prometheus_client's metrics are thread-safe;
the little state kept here is guarded by a lock) and never raises into an actor: a
failing hook is logged once and ignored, because metrics must not take the service down.
:class:`NoMetrics` is the do-nothing default the actors hold when no instance is wired.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Histogram, Info
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from messages.journal import Effect, Entry

log = logging.getLogger("dockmirror.metrics")

#: The action annotation's values (docs/contract.md §4).
ACTIONS = ("start", "stop", "pause", "unpause", "restart")
#: Leader states (issue 11, point 4): "disabled" means no election, act as the leader.
LEADER_STATES = ("leader", "standby", "disabled")

#: Action latency buckets (seconds): a pause takes ~50 ms, a stop up to the container's
#: StopTimeout (10 s by default), a request held by retries minutes.
ACTION_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 15.0, 30.0, 60.0, 300.0)
#: Call latency buckets (seconds): local Docker and apiserver calls take milliseconds; the
#: Docker call bounds are 5 s, 30 s and StopTimeout + 30 s (docs/architecture.md).
CALL_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
#: Full sync buckets (seconds): ~1 s for 100 containers, minutes for thousands.
SYNC_BUCKETS = (0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0)

#: Requests started on but not finished yet, remembered for their latency. A request that
#: never finishes (its mirror deleted meanwhile) must not grow this without bound.
MAX_PENDING_ACTIONS = 10_000

#: Every metric family the endpoint exposes in the Prometheus text format (names without
#: ``_total``, ``_bucket`` etc.; the Info ``dockmirror_admission`` is the gauge ``..._info``).
SERIES = (
    "dockmirror_actions",
    "dockmirror_action_duration_seconds",
    "dockmirror_docker_call_duration_seconds",
    "dockmirror_docker_call_errors",
    "dockmirror_kube_call_duration_seconds",
    "dockmirror_kube_call_errors",
    "dockmirror_retries_scheduled",
    "dockmirror_queue_depth",
    "dockmirror_actors_alive",
    "dockmirror_actor_restarts",
    "dockmirror_full_sync_duration_seconds",
    "dockmirror_engine_ready",
    "dockmirror_admission_info",
    "dockmirror_leader",
    "dockmirror_log_streams",
    "dockmirror_log_stream_answers",
)


@dataclass(frozen=True)
class RouterDepths:
    """What the router holds at one moment, read by the scrape thread."""

    backlog: int  # containers waiting for an actor slot (``--max-active-containers``)
    retries: int  # items in the retry queue (containers and the router's own steps)
    container_actors: int  # container actors alive (running and retiring)


class NoMetrics:
    """The hooks, doing nothing: what actors hold when no metrics instance is wired."""

    def action_seen(self, container_id: str, action: str, stamp: str) -> None:
        """Container actor thread: a valid request is about to be carried out."""

    def action_done(self, container_id: str, action: str, stamp: str, error: str | None) -> None:
        """Container actor thread: the request's outcome is recorded, its annotation gone."""

    def retry_scheduled(self, key: object) -> None:
        """Router thread: a retry of ``key`` (a container or a bracketed router step)."""

    def full_sync_started(self) -> None:
        """Router thread: both sides were listed; every container is being synced."""

    def engine_ready(self, ready: bool) -> None:
        """Router thread: EngineReady was written ``ready`` (True: the full sync is done),
        or the engine was lost (False, written or not)."""

    def actor_restarted(self, actor: str) -> None:
        """Supervisor (top-level actors) or router thread (``container``)."""

    def bind_router(self, depths: Callable[[], RouterDepths]) -> None:
        """Router thread, in ``on_start``: where the scrape reads the router's queues."""

    def log_stream_answered(self, status: int) -> None:
        """HTTP connection thread: a log stream request was answered ``status`` (101: the
        WebSocket was opened)."""


NO_METRICS = NoMetrics()


def step_label(key: object) -> str:
    """The ``step`` label of a retry key: the router's own steps are bracketed
    (``<full-sync>``), everything else is a container."""
    text = str(key)
    if text.startswith("<") and text.endswith(">"):
        return text[1:-1]
    return "container"


class ServiceMetrics(NoMetrics):
    """The metrics of one service instance and the hooks that feed them.

    ``clock`` (monotonic seconds) is injectable so the latency bookkeeping is tested
    without threads or sleeps. ``admission_mode`` is the configured admission mode
    (``--admission``; "webhook" before that option exists).
    """

    def __init__(
        self,
        *,
        admission_mode: str = "webhook",
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self._clock = clock
        self._lock = threading.Lock()
        self._pending: OrderedDict[tuple[str, str, str], float] = OrderedDict()
        self._sync_started: float | None = None
        self._ready = False
        self._router_depths: Callable[[], RouterDepths] | None = None
        self._failed_hooks: set[str] = set()
        reg = self.registry
        self.actions = Counter(
            "dockmirror_actions",
            "Action requests carried out (annotation removed), by action and outcome",
            ["action", "outcome"],
            registry=reg,
        )
        self.action_duration = Histogram(
            "dockmirror_action_duration_seconds",
            "From a request being seen by its container actor to its annotation's removal",
            ["action"],
            buckets=ACTION_BUCKETS,
            registry=reg,
        )
        self.call_duration = {
            target: Histogram(
                f"dockmirror_{target}_call_duration_seconds",
                f"Duration of {name} API calls made by the actors, by operation",
                ["op"],
                buckets=CALL_BUCKETS,
                registry=reg,
            )
            for target, name in (("docker", "Docker"), ("kube", "Kubernetes"))
        }
        self.call_errors = {
            target: Counter(
                f"dockmirror_{target}_call_errors",
                f"{name} API calls that did not succeed, by operation and outcome "
                "(not_found, conflict, unavailable, error, exception)",
                ["op", "outcome"],
                registry=reg,
            )
            for target, name in (("docker", "Docker"), ("kube", "Kubernetes"))
        }
        self.retries = Counter(
            "dockmirror_retries_scheduled",
            "Retries scheduled with backoff, by step (container, full-sync, engine-ready, resync)",
            ["step"],
            registry=reg,
        )
        self.restarts = Counter(
            "dockmirror_actor_restarts",
            "Actor restarts after a failure, by actor (container: any container actor)",
            ["actor"],
            registry=reg,
        )
        self.sync_duration = Histogram(
            "dockmirror_full_sync_duration_seconds",
            "From listing Docker and the mirrors to EngineReady=True",
            buckets=SYNC_BUCKETS,
            registry=reg,
        )
        # Known label values start at 0, so a rate() over them exists before the first one.
        for action in ACTIONS:
            self.action_duration.labels(action)
            for outcome in ("succeeded", "failed"):
                self.actions.labels(action, outcome)
        self.log_answers = Counter(
            "dockmirror_log_stream_answers",
            "Answers to log stream requests by HTTP status (101: a stream was opened; "
            "400, 403, 404, 429, 500, 503: refused)",
            ["code"],
            registry=reg,
        )
        self.log_answers.labels("101")
        self.admission = Info(
            "dockmirror_admission", "How Container writes are validated", registry=reg
        )
        self.admission.info({"mode": admission_mode})
        self._scrape = _ScrapeCollector(self)
        reg.register(self._scrape)

    # --- readiness snapshot (any thread) -----------------------------------------------
    @property
    def ready(self) -> bool:
        """True after EngineReady was written True and until the engine is lost or the
        router restarts: the router's ``ready``, readable from any thread."""
        with self._lock:
            return self._ready

    def bind_scrape(
        self,
        *,
        event_backlog: Callable[[], int] | None = None,
        alive: Callable[[], dict[str, bool]] | None = None,
        leader_state: Callable[[], str] | None = None,
        log_streams: Callable[[], int] | None = None,
    ) -> None:
        """Supervisor thread, at start: callbacks read at scrape time."""
        if log_streams is not None:
            self._scrape.log_streams = log_streams
        if event_backlog is not None:
            self._scrape.event_backlog = event_backlog
        if alive is not None:
            self._scrape.alive = alive
        if leader_state is not None:
            self._scrape.leader_state = leader_state

    # --- hooks (any thread; never raise) --------------------------------------------------
    def on_entry(self, entry: Entry) -> None:
        """The journal's listener (the recording thread): call latency and errors."""
        if type(entry) is not Effect or entry.target not in self.call_duration:
            return
        try:
            target = entry.target
            self.call_duration[target].labels(entry.op).observe(entry.duration_ms / 1000.0)
            if entry.outcome != "ok":
                self.call_errors[target].labels(entry.op, entry.outcome).inc()
        except Exception:
            self._hook_failed("on_entry")

    def action_seen(self, container_id: str, action: str, stamp: str) -> None:
        key = (container_id, action, stamp)
        with self._lock:
            if key in self._pending:
                return  # a retry of the same request: its latency runs from the first sight
            self._pending[key] = self._clock()
            while len(self._pending) > MAX_PENDING_ACTIONS:
                self._pending.popitem(last=False)

    def action_done(self, container_id: str, action: str, stamp: str, error: str | None) -> None:
        now = self._clock()
        with self._lock:
            seen = self._pending.pop((container_id, action, stamp), None)
        try:
            self.actions.labels(action, "failed" if error is not None else "succeeded").inc()
            if seen is not None:
                self.action_duration.labels(action).observe(max(0.0, now - seen))
        except Exception:
            self._hook_failed("action_done")

    def retry_scheduled(self, key: object) -> None:
        try:
            self.retries.labels(step_label(key)).inc()
        except Exception:
            self._hook_failed("retry_scheduled")

    def full_sync_started(self) -> None:
        with self._lock:
            self._sync_started = self._clock()

    def engine_ready(self, ready: bool) -> None:
        now = self._clock()
        with self._lock:
            self._ready = ready
            started = self._sync_started if ready else None
            self._sync_started = None
        if started is not None:
            self.sync_duration.observe(max(0.0, now - started))

    def actor_restarted(self, actor: str) -> None:
        try:
            self.restarts.labels(actor).inc()
        except Exception:
            self._hook_failed("actor_restarted")

    def bind_router(self, depths: Callable[[], RouterDepths]) -> None:
        # A new router starts with a new full sync: not ready until it wrote EngineReady.
        with self._lock:
            self._router_depths = depths
            self._ready = False
            self._sync_started = None

    def log_stream_answered(self, status: int) -> None:
        try:
            self.log_answers.labels(str(status)).inc()
        except Exception:
            self._hook_failed("log_stream_answered")

    def router_depths(self) -> RouterDepths | None:
        with self._lock:
            depths = self._router_depths
        return depths() if depths is not None else None

    def _hook_failed(self, hook: str) -> None:
        if hook not in self._failed_hooks:
            self._failed_hooks.add(hook)
            log.exception("metrics hook %s failed; metrics may be incomplete", hook)


def _call(fn: Callable[[], Any] | None, default: Any) -> Any:
    """A scrape callback's value; ``default`` when it is unbound or fails (a scrape must
    answer even while an actor is being replaced)."""
    if fn is None:
        return default
    try:
        return fn()
    except Exception:
        log.debug("metrics callback failed", exc_info=True)
        return default


class _ScrapeCollector(Collector):
    """Gauges computed at scrape time from callbacks (the scrape's HTTP thread)."""

    def __init__(self, owner: ServiceMetrics) -> None:
        self.owner = owner
        self.event_backlog: Callable[[], int] | None = None
        self.alive: Callable[[], dict[str, bool]] | None = None
        self.leader_state: Callable[[], str] | None = None
        self.log_streams: Callable[[], int] | None = None

    def describe(self) -> Iterable[Metric]:
        return list(self._families(placeholder=True))

    def collect(self) -> Iterable[Metric]:
        return list(self._families(placeholder=False))

    def _families(self, *, placeholder: bool) -> Iterator[Metric]:
        depths = None if placeholder else _call(self.owner.router_depths, None)
        queue = GaugeMetricFamily(
            "dockmirror_queue_depth",
            "Items waiting: router_backlog (containers waiting for an actor slot), "
            "retry_queue (pending retries), event_writer (Events queued for writing)",
            labels=["queue"],
        )
        queue.add_metric(["router_backlog"], depths.backlog if depths else 0)
        queue.add_metric(["retry_queue"], depths.retries if depths else 0)
        backlog = 0 if placeholder else _call(self.event_backlog, 0)
        queue.add_metric(["event_writer"], backlog)
        yield queue
        alive = GaugeMetricFamily(
            "dockmirror_actors_alive",
            "Actors alive: 1/0 per top-level actor, the count of container actors",
            labels=["actor"],
        )
        for name, is_alive in sorted(({} if placeholder else _call(self.alive, {})).items()):
            alive.add_metric([name], 1 if is_alive else 0)
        alive.add_metric(["container"], depths.container_actors if depths else 0)
        yield alive
        yield GaugeMetricFamily(
            "dockmirror_engine_ready",
            "1 after EngineReady=True was written for the current full sync, else 0",
            value=1 if (not placeholder and self.owner.ready) else 0,
        )
        state = "disabled" if placeholder else str(_call(self.leader_state, "disabled"))
        leader = GaugeMetricFamily(
            "dockmirror_leader",
            "1 for the current leader election state (leader, standby, disabled = no election)",
            labels=["state"],
        )
        for name in LEADER_STATES:
            leader.add_metric([name], 1 if name == state else 0)
        yield leader
        yield GaugeMetricFamily(
            "dockmirror_log_streams",
            "WebSocket log streams open or being opened (at most --max-log-streams)",
            value=0 if placeholder else _call(self.log_streams, 0),
        )

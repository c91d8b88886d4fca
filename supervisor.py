"""dockmirror: the composition root, the top-level supervisor and the CLI.

``python supervisor.py`` wires the ports, the journal and the actors together, then
supervises them from the main thread (which must stay free to receive signals):

* start order: CRDs, namespace and ``ContainerNamespace/moby`` (EngineReady False/
  Syncing), the admission webhook (registered and probed), then the event writer, the
  router and the two readers (Docker events, Kubernetes watch);
* every second the main loop ticks the router (idle retirement, container actor
  restarts, scheduled full syncs), sweeps the liveness of every top-level actor and of
  the webhook server (pykka reports neither ``on_start`` failures nor dead threads), and
  restarts what died with backoff inside a restart budget: more than
  ``--restart-budget`` restarts within ``--restart-window`` seconds ends the process
  with exit code 3 and a message naming the last failure; it also re-registers the
  webhook configuration every ``--webhook-recheck`` seconds and, hourly, renews the
  webhook certificates when due (reload + re-register with the new CA bundle);
* SIGINT/SIGTERM stop everything within a few seconds; mirrors stay, ``EngineReady``
  becomes False/Stopped and the webhook configuration is deleted so that Container
  writes are not blocked while the service is stopped on purpose.

The router is restarted together with the readers' target (rest-for-one): the readers
keep running and send through :class:`RouterHandle`, which always points at the live
router; the new router starts with a full sync.
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import logging
import os
import queue
import signal
import sys
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pykka
from kubernetes import client as k8s_client
from kubernetes import config as k8s_config

from actors import fence
from actors.certs import ensure_certificates
from actors.container import ContainerActor
from actors.crds import install_crds
from actors.docker_events import DockerEventsReader
from actors.docker_port import DockerPort
from actors.engine_status import EngineStatus
from actors.event_writer import EmitGate, EventWriterActor
from actors.heap_report import HeapGrowthReporter
from actors.kube_port import KubeError, KubeHttp, MirrorStore
from actors.kube_watch import KubeWatchReader
from actors.leader import (
    LEADER,
    STANDBY,
    LeaderElector,
    LeaderState,
    LeaseClient,
    LeaseTiming,
    new_identity,
)
from actors.router import CHILD_STOP_WAIT_S, RouterActor, RouterSettings
from actors.state_dir import StateError, open_state
from actors.webhook import WebhookRegistration, WebhookServer
from messages.base import Message
from messages.inbound import EmitEvent, Tick
from messages.journal import Note

log = logging.getLogger("dockmirror")

EXIT_BUDGET = 3
EXIT_STARTUP = 2
#: Seconds between checks that the webhook's TLS material is still valid (renewal is
#: due 30 days before expiry, so hourly is plenty; the check is a few file reads).
CERT_CHECK_INTERVAL = 3600.0


@dataclass
class Config:
    namespace: str
    kubeconfig: str | None
    docker_host: str | None
    state_dir: Path
    trace_file: Path | None
    trace_max_mb: int
    trace_backups: int
    max_active_containers: int
    idle_timeout: float
    restart_budget: int
    restart_window: float
    webhook_port: int
    webhook_recheck: float
    startup_timeout: float
    resync_interval: float = 600.0
    # Leader election (actors/leader.py): one active instance per namespace.
    leader_elect: bool = True
    lease_duration: float = 15.0
    renew_deadline: float = 10.0
    retry_period: float = 2.0


def parse_args(argv: list[str] | None = None) -> Config:
    state_default = (
        Path(os.environ.get("XDG_STATE_HOME", Path.home() / ".local/state")) / "dockmirror"
    )
    parser = argparse.ArgumentParser(
        prog="python supervisor.py",
        description="Mirror Docker containers into Kubernetes Container resources and run "
        "containers.rancherdesktop.io/action requests.",
    )
    parser.add_argument(
        "--namespace",
        default="rancher-desktop",
        help="Kubernetes namespace of the mirrors (created if missing)",
    )
    parser.add_argument(
        "--kubeconfig",
        default=os.environ.get("KUBECONFIG"),
        help="kubeconfig path (default: $KUBECONFIG, then ~/.kube/config)",
    )
    parser.add_argument(
        "--docker-host",
        default=os.environ.get("DOCKER_HOST"),
        help="Docker endpoint (default: $DOCKER_HOST, then the local socket)",
    )
    parser.add_argument(
        "--state-dir",
        type=Path,
        default=state_default,
        help="certificates and default trace location",
    )
    parser.add_argument(
        "--trace-file",
        default=None,
        help="journal path (default: <state-dir>/trace.jsonl; '-' disables)",
    )
    parser.add_argument(
        "--trace-max-mb", type=int, default=64, help="rotate the journal at this size"
    )
    parser.add_argument("--trace-backups", type=int, default=3, help="rotated journal files kept")
    parser.add_argument(
        "--max-active-containers",
        type=int,
        default=128,
        help="container actors alive at once (threads)",
    )
    parser.add_argument(
        "--idle-timeout",
        type=float,
        default=10.0,
        help="seconds before an idle container actor retires",
    )
    parser.add_argument(
        "--restart-budget", type=int, default=10, help="top-level actor restarts allowed per window"
    )
    parser.add_argument(
        "--restart-window", type=float, default=60.0, help="seconds of the restart budget window"
    )
    parser.add_argument(
        "--webhook-port",
        type=int,
        default=0,
        help="admission webhook port on 127.0.0.1 (0: pick a free one)",
    )
    parser.add_argument(
        "--webhook-recheck",
        type=float,
        default=30.0,
        help="seconds between checks that the webhook configuration exists",
    )
    parser.add_argument(
        "--resync-interval",
        type=float,
        default=600.0,
        help="seconds between safety-net checks of pending annotations and terminating "
        "mirrors (0: off)",
    )
    parser.add_argument(
        "--startup-timeout",
        type=float,
        default=60.0,
        help="seconds to wait for the apiserver at start",
    )
    parser.add_argument("--log-level", default=os.environ.get("DOCKMIRROR_LOG_LEVEL", "INFO"))
    parser.add_argument(
        "--no-leader-elect",
        dest="leader_elect",
        action="store_false",
        help="do not take the namespace's Lease (run active even if another instance is)",
    )
    parser.add_argument(
        "--lease-duration",
        type=float,
        default=15.0,
        help="seconds a standby waits, after the Lease last changed, before taking it",
    )
    parser.add_argument(
        "--renew-deadline",
        type=float,
        default=10.0,
        help="seconds without a successful renewal after which the leader stops acting",
    )
    parser.add_argument(
        "--retry-period", type=float, default=2.0, help="seconds between Lease renewals/attempts"
    )
    args = parser.parse_args(argv)
    timing_problem = LeaseTiming(args.lease_duration, args.renew_deadline, args.retry_period)
    if args.leader_elect and (problem := timing_problem.problem()):
        parser.error(problem)
    logging.basicConfig(
        level=args.log_level.upper(),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    trace: Path | None
    if args.trace_file == "-":
        trace = None
    elif args.trace_file:
        trace = Path(args.trace_file)
    else:
        trace = args.state_dir / "trace.jsonl"
    return Config(
        namespace=args.namespace,
        kubeconfig=args.kubeconfig,
        docker_host=args.docker_host,
        state_dir=args.state_dir,
        trace_file=trace,
        trace_max_mb=args.trace_max_mb,
        trace_backups=args.trace_backups,
        max_active_containers=args.max_active_containers,
        idle_timeout=args.idle_timeout,
        restart_budget=args.restart_budget,
        restart_window=args.restart_window,
        webhook_port=args.webhook_port,
        webhook_recheck=args.webhook_recheck,
        startup_timeout=args.startup_timeout,
        resync_interval=max(0.0, args.resync_interval),
        leader_elect=args.leader_elect,
        lease_duration=args.lease_duration,
        renew_deadline=args.renew_deadline,
        retry_period=args.retry_period,
    )


MALLOC_TRIM_INTERVAL_S = 60.0


def release_freed_memory() -> None:
    """Give freed heap memory back to the OS (glibc ``malloc_trim``); no-op elsewhere.

    Why: a long-running process whose threads come and go (container actors, webhook
    connections) keeps freed glibc heap pages resident; the soak campaign measured RSS
    creeping up by ~10 % over 10,000 actions without any growth in live Python objects.
    Trimming once a minute costs a few milliseconds.
    """
    global _libc
    if _libc is None:
        try:
            _libc = ctypes.CDLL("libc.so.6")
        except OSError:
            _libc = False
    if _libc:
        _libc.malloc_trim(0)


_libc: ctypes.CDLL | bool | None = None


class RouterHandle:
    """Always points at the live router; readers and actors send through it.

    ``send`` is called from reader and actor threads; a message sent while the router
    is being replaced is dropped, which is safe because the new router starts with a
    full sync and the watch replays annotations on its relist.
    """

    def __init__(self) -> None:
        self.ref: pykka.ActorRef | None = None

    def send(self, message: Message) -> None:
        ref = self.ref
        if ref is None:
            return
        with contextlib.suppress(pykka.ActorDeadError):
            ref.tell(message)


class RestartBudget:
    """At most ``limit`` restarts within ``window_s`` seconds (OTP-style intensity)."""

    def __init__(self, limit: int, window_s: float) -> None:
        self.limit = limit
        self.window_s = window_s
        self.times: deque[float] = deque()

    def spend(self, now: float) -> bool:
        while self.times and now - self.times[0] > self.window_s:
            self.times.popleft()
        self.times.append(now)
        return len(self.times) <= self.limit


class Supervisor:
    """Owns every top-level actor; runs in the main thread."""

    def __init__(self, config: Config) -> None:
        self.config = config
        self.stop_event = threading.Event()
        self.deaths: queue.Queue[tuple[str, str]] = queue.Queue()
        self.router = RouterHandle()
        self.events_ref: pykka.ActorRef | None = None
        self.refs: dict[str, pykka.ActorRef] = {}
        self.budget = RestartBudget(config.restart_budget, config.restart_window)
        self.exit_code = 0
        self.trimmed = time.monotonic()
        self.certs_checked = time.monotonic()
        self.emit_gate = EmitGate()
        self.dropped_reported = 0
        # Opt-in leak hunting (docs/reliability.md); None unless DOCKMIRROR_TRACEMALLOC is set.
        self.heap_report = HeapGrowthReporter.from_env()
        # Leader election: "leader" | "standby" | "disabled", read by readiness/metrics.
        self.leader_state = LeaderState()
        self.elector: LeaderElector | None = None
        self.lost_reason: str | None = None  # set by the renewer thread

    # --- composition ---------------------------------------------------------------
    def build(self) -> None:
        """Open the state files, then the ports. Main thread, at start.

        The state directory comes first: its checks are local and fast, and a problem
        there (a file of another owner, a journal that cannot be opened) ends the start
        with one line on stderr and exit code 2 (``main``).
        """
        cfg = self.config
        try:
            state = open_state(
                cfg.state_dir,
                trace_file=cfg.trace_file,
                trace_max_bytes=cfg.trace_max_mb * 1024 * 1024,
                trace_backups=cfg.trace_backups,
            )
        except StateError as exc:
            raise SystemExit(f"dockmirror: {exc}") from exc
        self.journal = state.journal
        # Every container actor may hold a connection; the client's default pool (5 per
        # CPU) made parallel actions drop and re-handshake connections.
        pool_size = cfg.max_active_containers + 16
        configuration = k8s_client.Configuration()
        k8s_config.load_kube_config(config_file=cfg.kubeconfig, client_configuration=configuration)
        configuration.connection_pool_maxsize = pool_size
        self.api_client = k8s_client.ApiClient(configuration)
        self.http = KubeHttp(self.api_client)
        self.store = MirrorStore(self.http, cfg.namespace)
        self.docker = DockerPort(cfg.docker_host, pool_size=pool_size)
        self.engine_status = EngineStatus(self.http, cfg.namespace)
        if cfg.leader_elect:
            self.elector = LeaderElector(
                LeaseClient(self.http, cfg.namespace),
                new_identity(),
                LeaseTiming(cfg.lease_duration, cfg.renew_deadline, cfg.retry_period),
                state=self.leader_state,
            )
            self.leader_state.set(STANDBY)

    def prepare_kubernetes(self) -> None:
        """CRDs, namespace, ContainerNamespace/moby; waits for the apiserver at start."""
        deadline = time.monotonic() + self.config.startup_timeout
        while True:
            try:
                install_crds(self.api_client)
                self.engine_status.ensure_namespace()
                self.engine_status.apply_moby()
                self.engine_status.set_ready(False, "Syncing", "Initial sync in progress")
                return
            except Exception as exc:
                if time.monotonic() >= deadline or self.stop_event.is_set():
                    raise SystemExit(
                        f"dockmirror: cannot prepare the Kubernetes API within "
                        f"{self.config.startup_timeout:.0f} s: {exc}"
                    ) from exc
                log.warning("apiserver not ready yet (%s); retrying", exc)
                self.stop_event.wait(1.0)

    def start_webhook(self) -> None:
        bundle = ensure_certificates(self.config.state_dir)
        self.webhook = WebhookServer(
            bundle.cert_path, bundle.key_path, port=self.config.webhook_port
        )
        self.webhook.start()
        self.registration = WebhookRegistration(
            self.api_client,
            self.config.namespace,
            self.webhook.port,
            bundle.ca_pem,
            server=self.webhook,
        )
        self.registration.register()
        self.registration.wait_until_called(timeout=30.0)
        self.webhook_checked = time.monotonic()

    def _on_death(self, name: str, error: str) -> None:
        """Called from a dying actor's thread; the main loop restarts it."""
        self.deaths.put((name, error))

    def _emit(self, message: EmitEvent) -> None:
        """Called from container-actor threads; drops the Event when the writer is
        backlogged (EmitGate) or being restarted."""
        ref = self.events_ref
        if ref is None:
            return
        with contextlib.suppress(pykka.ActorDeadError):
            self.emit_gate.tell(ref, message)

    def report_dropped_events(self) -> None:
        """Main thread, once a minute: say how many Events the backlog limit dropped."""
        dropped = self.emit_gate.dropped
        if dropped == self.dropped_reported:
            return
        log.warning(
            "event writer backlogged: dropped %d Events in the last minute (%d in total; "
            "limit %d queued)",
            dropped - self.dropped_reported,
            dropped,
            self.emit_gate.limit,
        )
        self.journal.record(
            Note(
                actor="supervisor",
                text="events dropped: writer backlogged",
                detail={"dropped": dropped - self.dropped_reported, "total": dropped},
            )
        )
        self.dropped_reported = dropped

    def start_actor(self, name: str) -> None:
        factories: dict[str, Callable[[], pykka.ActorRef]] = {
            "events": lambda: EventWriterActor.start(
                shutting_down=self.stop_event,
                journal=self.journal,
                http=self.http,
                namespace=self.config.namespace,
                on_death=self._on_death,
            ),
            "router": lambda: RouterActor.start(
                journal=self.journal,
                docker=self.docker,
                store=self.store,
                engine_status=self.engine_status,
                emit=self._emit,
                settings=RouterSettings(
                    max_active=self.config.max_active_containers,
                    idle_timeout_s=self.config.idle_timeout,
                    resync_interval_s=self.config.resync_interval,
                ),
                on_death=self._on_death,
            ),
            "docker-events": lambda: DockerEventsReader.start(
                journal=self.journal,
                docker=self.docker,
                send=self.router.send,
                on_death=self._on_death,
            ),
            "kube-watch": lambda: KubeWatchReader.start(
                journal=self.journal,
                store=self.store,
                send=self.router.send,
                on_death=self._on_death,
            ),
        }
        ref = factories[name]()
        self.refs[name] = ref
        if name == "router":
            self.router.ref = ref
        elif name == "events":
            self.events_ref = ref

    # --- supervision (main thread) ------------------------------------------------------
    def run(self) -> int:
        """Build, then one leadership term after another until a signal stops us."""
        self.build()
        while self.await_leadership():
            if not self.lead():
                return self.exit_code
            self.step_down()
        self.journal.close()
        return self.exit_code

    def lead(self) -> bool:
        """Start everything and supervise it while we lead (or always, without leader
        election). Returns False after a clean stop (shutdown done), True when the
        leadership was lost (the fence is up; :meth:`step_down` follows)."""
        self.prepare_kubernetes()
        self.start_webhook()
        for name in ("events", "router", "docker-events", "kube-watch"):
            self.start_actor(name)
        log.info(
            "dockmirror running: namespace %s, docker %s, webhook %s",
            self.config.namespace,
            self.docker.base_url,
            self.webhook.url,
        )
        if self.elector is not None:
            self.elector.start_renewing(self.on_leadership_lost)
        while not self.stop_event.wait(1.0):
            if self.leadership_lost():
                return True
            if time.monotonic() - self.trimmed >= MALLOC_TRIM_INTERVAL_S:
                self.trimmed = time.monotonic()
                release_freed_memory()
                self.report_dropped_events()
            if self.heap_report is not None:
                self.heap_report.maybe_report()
            tick = Tick(now_ns=time.time_ns())
            self.router.send(tick)
            if self.events_ref is not None:
                with contextlib.suppress(pykka.ActorDeadError):
                    self.events_ref.tell(tick)
            # Drives the Docker events reader's heartbeat (a hung engine: actors/heartbeat.py).
            if (reader := self.refs.get("docker-events")) is not None:
                with contextlib.suppress(pykka.ActorDeadError):
                    reader.tell(tick)
            self.sweep()
        self.shutdown()
        return False

    # --- leader election (actors/leader.py) ----------------------------------------------
    def await_leadership(self) -> bool:
        """Main thread, before anything acts: wait as a hot standby until we hold the
        namespace's Lease. False when a signal stopped us while standing by (nothing was
        started, nothing to undo)."""
        if self.elector is None:
            return True
        ok = self.elector.acquire(self.stop_event, prepare=self.engine_status.ensure_namespace)
        if ok:
            self.journal.record(
                Note(
                    actor="supervisor",
                    text="leader",
                    detail={"identity": self.elector.identity},
                )
            )
        return ok

    def on_leadership_lost(self, reason: str) -> None:
        """The renewer thread saw the loss: raise the fence at once (every actor's next
        Docker or Kubernetes call is refused); the main loop stops the actors."""
        fence.raise_fence()
        self.lost_reason = reason

    def leadership_lost(self) -> bool:
        """Main thread, every second; also the watchdog for a renewer stuck in a slow
        request. On a loss: raise the fence and say so (one ERROR line)."""
        if self.elector is None:
            return False
        reason = self.lost_reason or self.elector.lost()
        if reason is None:
            return False
        fence.raise_fence()
        log.error(
            "lost the leadership of namespace %s: %s; stopped acting, standing by",
            self.config.namespace,
            reason,
        )
        self.journal.record(
            Note(actor="supervisor", text="leadership lost", detail={"reason": reason})
        )
        return True

    def step_down(self) -> None:
        """Main thread, after a loss: stop every actor and the webhook server, then be a
        standby like a fresh start. Nothing of the clean stop's writes happens
        (``EngineReady`` Stopped, the webhook configuration's removal): those objects
        belong to the new leader now."""
        for name in ("docker-events", "kube-watch", "router", "events"):
            ref = self.refs.pop(name, None)
            if ref is not None:
                with contextlib.suppress(Exception):
                    ref.stop(block=True, timeout=5)
        self.router.ref = None
        self.events_ref = None
        self.wait_container_actors_stopped()
        self.webhook.stop()
        while not self.deaths.empty():  # deaths of the stopped actors: nothing to restart
            self.deaths.get_nowait()
        assert self.elector is not None
        self.elector.step_down()
        self.lost_reason = None
        fence.lower_fence()

    def sweep(self) -> None:
        dead: dict[str, str] = {}
        while True:
            try:
                name, error = self.deaths.get_nowait()
            except queue.Empty:
                break
            # A late report from an earlier incarnation (a failed router reports only after
            # its children stopped) must not restart the live replacement.
            if name in self.refs and not self.refs[name].is_alive():
                dead[name] = error
        for name, ref in self.refs.items():
            if name not in dead and not ref.is_alive():
                dead[name] = "found dead by liveness sweep (on_start failure or stopped)"
        if not self.webhook.is_alive():
            dead["webhook"] = "webhook server thread died"
        for name, error in dead.items():
            self.restart(name, error)
        if time.monotonic() - self.webhook_checked >= self.config.webhook_recheck:
            self.webhook_checked = time.monotonic()
            try:
                self.registration.register()
            except Exception as exc:
                log.warning("webhook configuration check failed: %s", exc)
        if time.monotonic() - self.certs_checked >= CERT_CHECK_INTERVAL:
            self.certs_checked = time.monotonic()
            self.check_certificates()

    def check_certificates(self) -> None:
        """Renew the webhook's TLS material when due (``ensure_certificates`` only reads
        the files otherwise). On renewal the server loads the new files for new
        connections and the configuration is re-registered with the new CA bundle; if
        that write fails, the ``--webhook-recheck`` re-registration retries it with the
        already updated ``ca_pem``."""
        try:
            bundle = ensure_certificates(self.config.state_dir)
            if not bundle.renewed:
                return
            log.info("webhook certificates renewed; reloading them and re-registering")
            self.webhook.reload_certificates()
            self.registration.ca_pem = bundle.ca_pem
            self.registration.register()
        except Exception as exc:
            log.warning("webhook certificate check failed: %s", exc)

    def restart(self, name: str, error: str) -> None:
        self.journal.record(
            Note(actor="supervisor", text="restarting", detail={"child": name, "error": error})
        )
        if not self.budget.spend(time.monotonic()):
            log.error(
                "restart budget exhausted: more than %d restarts within %.0f s; last: %s died: %s",
                self.config.restart_budget,
                self.config.restart_window,
                name,
                error,
            )
            self.exit_code = EXIT_BUDGET
            self.stop_event.set()
            return
        log.warning("restarting %s: %s", name, error)
        if name == "webhook":
            self.webhook.stop()
            self.webhook = WebhookServer(
                self.webhook._cert_path, self.webhook._key_path, port=self.webhook.port
            )
            self.webhook.start()
            return
        old = self.refs.get(name)
        if old is not None and old.is_alive():
            with contextlib.suppress(Exception):
                old.stop(block=True, timeout=5)
        if name == "router":
            self.wait_container_actors_stopped()
        self.start_actor(name)

    def wait_container_actors_stopped(self, timeout: float = CHILD_STOP_WAIT_S) -> None:
        """Before a new router starts, every container actor of the old one must be gone.

        pykka marks a failed actor dead *before* its ``on_failure`` runs, so this sweep
        can see the router dead while it is still stopping its children; a container
        actor busy in a 10 s ``docker stop`` would otherwise meet a second actor for the
        same container started by the new router's full sync.
        """
        deadline = time.monotonic() + timeout
        while True:
            alive = pykka.ActorRegistry.get_by_class(ContainerActor)
            if not alive:
                return
            for ref in alive:
                with contextlib.suppress(pykka.ActorDeadError):
                    ref.stop(block=False)
            if time.monotonic() >= deadline or self.stop_event.wait(0.05):
                log.warning(
                    "%d container actors still busy; starting the router anyway", len(alive)
                )
                return

    def shutdown(self) -> None:
        log.info("dockmirror stopping")
        for name in ("docker-events", "kube-watch", "router", "events"):
            ref = self.refs.get(name)
            if ref is None:
                continue
            started = time.monotonic()
            with contextlib.suppress(Exception):
                ref.stop(block=True, timeout=5)
            took = time.monotonic() - started
            if took > 1.0:
                log.info("stopping %s took %.1f s", name, took)
        try:
            self.engine_status.set_ready(False, "Stopped", "Container engine stopped")
        except KubeError as exc:
            log.warning("EngineReady not set to Stopped: %s", exc)
        try:
            self.registration.delete()
        except Exception as exc:
            log.warning("webhook configuration not deleted: %s", exc)
        self.webhook.stop()
        if self.elector is not None and self.leader_state.get() == LEADER:
            self.elector.release()  # last: nothing of ours acts any more
        self.journal.close()
        log.info("dockmirror stopped")


def main(argv: list[str] | None = None) -> int:
    config = parse_args(argv)
    supervisor = Supervisor(config)

    def on_signal(signum: int, _frame: object) -> None:
        log.info("received %s", signal.Signals(signum).name)
        supervisor.stop_event.set()

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    try:
        return supervisor.run()
    except SystemExit as exc:
        if isinstance(exc.code, str):
            print(exc.code, file=sys.stderr)
            return EXIT_STARTUP
        raise


if __name__ == "__main__":
    sys.exit(main())

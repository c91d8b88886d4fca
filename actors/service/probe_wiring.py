"""Wiring of the probes and metrics into one service instance (the supervisor's side).

:class:`Probes` owns the instance's :class:`~actors.infra.metrics.ServiceMetrics`, the
:class:`~actors.domain.probes.Liveness` snapshot and the
:class:`~actors.infra.http_endpoint.HttpEndpoint`,
so the supervisor needs one line per duty: ``start`` after the state files are open,
``observe_liveness`` at the end of every sweep, ``stopping`` and ``stop`` at shutdown.

Leader election (issue 11, point 4) plugs in by assigning :attr:`Probes.leader_state`
(a ``() -> "leader" | "standby" | "disabled"`` callable, called from HTTP threads);
until then this instance reports "disabled" and acts as the leader. An ``--admission``
mode resolved at run time (``auto``) is reported with :meth:`set_admission_mode`.

The same endpoint serves the WebSocket log stream (docs/contract.md §6.4) when the
supervisor has built its ports: :meth:`watch_engine` wraps the Docker events reader's
``send`` so the stream knows whether the engine is connected (503 otherwise).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from actors.domain.log_stream import DEFAULT_MAX_LOG_STREAMS, EngineLink
from actors.domain.probes import LeaderStateFn, Liveness, election_disabled
from actors.infra.http_endpoint import HttpEndpoint, parse_http_address
from actors.infra.log_stream import LogStreams
from actors.infra.metrics import ServiceMetrics
from actors.service.log_source import EngineLogSource
from messages.base import Message
from messages.inbound import DockerLost, EngineReachable

log = logging.getLogger("dockmirror.http")


def _inbox_size(ref: Any) -> int:
    """Messages waiting in an actor's mailbox (0 without an actor)."""
    return ref.actor_inbox.qsize() if ref is not None else 0


class Probes:
    """Probes and metrics of one service instance. Main thread, except the snapshots and
    callbacks, which the HTTP threads read."""

    def __init__(self, config: Any, *, leader_state: LeaderStateFn = election_disabled) -> None:
        self.http_address: str = getattr(config, "http_address", "") or ""
        self.metrics = ServiceMetrics(admission_mode=self._admission_of(config))
        self.liveness = Liveness()
        #: Assigned by the composition root when leader election exists.
        self.leader_state: LeaderStateFn = leader_state
        self.endpoint: HttpEndpoint | None = None
        self.max_log_streams: int = getattr(config, "max_log_streams", DEFAULT_MAX_LOG_STREAMS)
        #: The engine connection as the Docker events reader last reported it.
        self.engine_link = EngineLink()
        self.logs: LogStreams | None = None
        #: Whether the Docker events reader runs (bound by ``start``).
        self._mirroring: Callable[[], bool] = self._always

    @staticmethod
    def _admission_of(config: Any) -> str:
        """``--admission`` when the configuration has it, else the webhook (the only mode
        before issue 11, point 2)."""
        return str(getattr(config, "admission", None) or "webhook")

    def set_admission_mode(self, mode: str) -> None:
        """The admission mode actually in use (``auto`` resolved at start)."""
        self.metrics.admission.info({"mode": mode})

    def watch_engine(self, send: Callable[[Message], None]) -> Callable[[Message], None]:
        """The Docker events reader's ``send`` (its thread), noting on the way whether the
        engine is connected (``EngineReachable``/``DockerLost``) for the log stream."""
        link = self.engine_link

        def watched(message: Message) -> None:
            if isinstance(message, EngineReachable):
                link.reachable()
            elif isinstance(message, DockerLost):
                link.lost(message.reason)
            send(message)

        return watched

    def engine_state(self) -> tuple[bool, str]:
        """HTTP threads: connected as the Docker events reader last said, while it runs:
        a standby, or App mode while the App wants no mirroring, mirrors nothing."""
        if self.leader_state() == "standby":
            return False, "standby"
        if not self._mirroring():
            return False, "not mirroring"
        return self.engine_link.state()

    @staticmethod
    def _always() -> bool:
        return True

    def _log_streams(self, supervisor: Any) -> LogStreams | None:
        """The log streams, once the supervisor has its ports (None in bare tests)."""
        store, docker = getattr(supervisor, "store", None), getattr(supervisor, "docker", None)
        if store is None or docker is None:
            return None
        source = EngineLogSource(store, docker, self.engine_state)
        return LogStreams(source, max_streams=self.max_log_streams, metrics=self.metrics)

    def start(self, supervisor: Any) -> None:
        """Main thread, once the journal is open: feed the metrics and open the endpoint.

        A bind failure (address in use, not an address of this host) ends the start
        with one line (``SystemExit``, exit code 2 in ``main``).
        """
        supervisor.journal.listener = self.metrics.on_entry
        self.metrics.bind_scrape(
            event_backlog=lambda: _inbox_size(supervisor.events_ref),
            alive=self.liveness.alive,
            leader_state=lambda: self.leader_state(),
            log_streams=lambda: self.logs.active if self.logs is not None else 0,
        )
        refs = getattr(supervisor, "refs", None)
        if refs is not None:
            # The reader is in the table only while mirroring (not on a standby, not in
            # App mode while the App is stopped): its last report is stale otherwise.
            self._mirroring = lambda: "docker-events" in refs
        address = parse_http_address(self.http_address)
        if address is None:
            log.info("probes and metrics endpoint off (--http-address is empty)")
            return
        self.logs = self._log_streams(supervisor)
        endpoint = HttpEndpoint(
            address,
            metrics=self.metrics,
            liveness=self.liveness,
            leader_state=lambda: self.leader_state(),
            logs=self.logs,
        )
        try:
            endpoint.start()
        except OSError as exc:
            reason = exc.strerror or str(exc)
            raise SystemExit(
                f"dockmirror: cannot listen on --http-address {self.http_address}: {reason} "
                "(choose another HOST:PORT, or an empty value to turn the endpoint off)"
            ) from exc
        self.endpoint = endpoint
        paths = "/healthz, /readyz, /metrics" + (", /passthrough/engine/logs/" if self.logs else "")
        log.info("probes and metrics on %s (%s)", endpoint.url, paths)

    def observe_liveness(self, supervisor: Any) -> None:
        """Main thread, at the end of every sweep (after its restarts)."""
        alive = {name: ref.is_alive() for name, ref in supervisor.refs.items()}
        webhook = getattr(supervisor, "webhook", None)
        if webhook is not None:
            alive["webhook"] = webhook.is_alive()
        self.liveness.observe(alive)

    def stopping(self) -> None:
        """Main thread, when shutdown begins: readiness ends at once."""
        self.liveness.stop()

    def stop(self) -> None:
        """Main thread: close the endpoint (idempotent; prompt)."""
        endpoint, self.endpoint = self.endpoint, None
        if endpoint is not None:
            endpoint.stop()

"""The Docker events reader: parses ``GET /events`` and forwards; watches the engine.

One cycle (:meth:`DockerEventsReader.run_once`, in the reader thread):

1. ping; when it fails, tell the router :class:`DockerLost` (once per outage) and back off;
2. open the event stream with ``since`` = the last ``timeNano`` seen (or the daemon's
   own clock on the first connect, so host skew cannot drop events);
3. tell the router :class:`EngineReachable`, which runs a full sync - events missed
   while disconnected are repaired by that sync, not by replay (the daemon keeps only
   256 events);
4. forward every container event as :class:`DockerEvent` (Docker 29 shape: ``Type``,
   ``Action``, ``Actor.ID``; ``status``/``id`` are gone since API 1.52);
5. when the stream ends - silently, as the SDK turns a dropped connection into the end
   of iteration - start over.

A hung engine (alive, not answering) does not end the stream: it just goes quiet, like
an idle engine. So while the stream is open, the actor's own thread pings the engine on
the supervisor's ``Tick`` every few seconds (:mod:`actors.runtime.heartbeat`); a failed ping
sends :class:`DockerLost` (once per outage) and closes the stream, and the reader thread
goes back to step 1 until the engine answers again. Both threads change the connection
state under one lock, and a ping that fails after a reconnect it did not see (older
``generation``) is ignored, so the router never receives a stale ``DockerLost`` after
``EngineReachable``.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

from actors.infra.journal import Journal
from actors.ports.docker_port import DockerPort, EventStream
from actors.ports.port_errors import PortError
from actors.runtime.heartbeat import HEARTBEAT_INTERVAL_S, Heartbeat
from actors.runtime.reader import ReaderActor
from messages.base import Message
from messages.inbound import DockerEvent, DockerLost, EngineReachable, Tick
from messages.journal import Received


class DockerEventsReader(ReaderActor):
    actor_kind = "docker_events"

    def __init__(
        self,
        *,
        journal: Journal,
        docker: DockerPort,
        send: Callable[[Message], None],
        on_death: Callable[[str, str], None] | None = None,
        heartbeat_interval_s: float = HEARTBEAT_INTERVAL_S,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        super().__init__(journal=journal, name="docker-events", send=send, on_death=on_death)
        self.docker = docker
        self.last_time_nano: int | None = None
        # Connection state, shared by the reader thread and the actor thread (heartbeat).
        self._state_lock = threading.Lock()
        self.connected = False
        self.lost_reported = False
        self.generation = 0  # bumped on every connect: which stream a ping was about
        self.heartbeat = Heartbeat(interval_s=heartbeat_interval_s, clock=clock)
        self._stream: EventStream | None = None

    def handlers(self) -> dict[type, Callable[[Any], None]]:
        return {Tick: self._on_tick}

    # --- reader thread ------------------------------------------------------------------
    def run_once(self) -> None:
        try:
            self.docker.ping()
            if self.last_time_nano is None:
                self.last_time_nano = self.docker.system_time_ns()
            since = (
                f"{self.last_time_nano // 1_000_000_000}.{self.last_time_nano % 1_000_000_000:09d}"
            )
            stream = self.docker.events(since=since)
        except PortError as exc:
            self._lost(f"failed to ping Docker: {exc}")
            self.pause(self.backoff.next_delay())
            return
        self.backoff.reset()
        with self._state_lock:
            self.generation += 1
            self.connected = True
            self.lost_reported = False
            self._stream = stream
            self.heartbeat.watch()
            # Sent under the lock: a DockerLost for this connection cannot overtake it.
            self.send(EngineReachable(since=since))
        try:
            for event in stream:
                if self.stopping.is_set():
                    return
                self._forward(event)
        except PortError as exc:
            self.note("event stream broke", detail={"error": str(exc)})
        finally:
            with self._state_lock:
                self._stream = None
                self.connected = False
                self.heartbeat.unwatch()
        if not self.stopping.is_set():
            self.note("event stream ended; reconnecting")

    def _forward(self, event: dict[str, Any]) -> None:
        time_nano = event.get("timeNano")
        if isinstance(time_nano, int):
            self.last_time_nano = max(self.last_time_nano or 0, time_nano)
        if event.get("Type") != "container":
            return
        actor = event.get("Actor") or {}
        container_id = actor.get("ID") if isinstance(actor, dict) else None
        action = event.get("Action")
        if not isinstance(container_id, str) or not isinstance(action, str):
            self.note("malformed event ignored", detail={"event": str(event)[:300]})
            return
        message = DockerEvent(
            container_id=container_id,
            action=action,
            time_nano=time_nano if isinstance(time_nano, int) else 0,
        )
        self.journal.record(
            Received(
                actor=self.name,
                container_id=container_id,
                msg_id=message.msg_id,
                msg_kind="docker_event",
                msg={"action": action, "time_nano": message.time_nano},
            )
        )
        self.send(message)

    def _lost(self, reason: str) -> None:
        """Reader thread: connecting failed. Tell the router once per outage."""
        with self._state_lock:
            self._mark_lost(reason)

    def _mark_lost(self, reason: str) -> None:
        """Under the state lock: disconnected; DockerLost unless already sent."""
        self.connected = False
        self.heartbeat.unwatch()
        if not self.lost_reported:
            self.lost_reported = True
            self.send(DockerLost(reason=reason))

    # --- actor thread -------------------------------------------------------------------
    def _on_tick(self, _tick: Tick) -> None:
        """Heartbeat: ping when due while a stream is open (blocks at most the ping bound).

        On failure: DockerLost once, then close the silent stream so the reader thread
        returns to its reconnect loop. A failure about a connection the reader has
        replaced meanwhile (``generation``) is stale and ignored.
        """
        with self._state_lock:
            if not self.connected or not self.heartbeat.due():
                return
            self.heartbeat.pinged()
            generation = self.generation
        try:
            self.docker.ping()
        except PortError as exc:
            with self._state_lock:
                if generation != self.generation or not self.connected:
                    return
                self._mark_lost(f"failed to ping Docker: {exc}")
                stream = self._stream
            self.note("engine not answering; closing the event stream", detail={"error": str(exc)})
            if stream is not None:
                stream.close()  # unblocks the reader thread, which reconnects with backoff

    def interrupt(self) -> None:
        stream = self._stream
        if stream is not None:
            stream.close()

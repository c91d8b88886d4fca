"""The Docker events reader: parses ``GET /events`` and forwards; nothing else.

One cycle (:meth:`DockerEventsReader.run_once`):

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

Runs in the reader thread of a :class:`ReaderActor`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from actors.docker_port import DockerError, DockerPort, DockerUnavailable, EventStream
from actors.journal import Journal
from actors.reader import ReaderActor
from messages.base import Message
from messages.inbound import DockerEvent, DockerLost, EngineReachable
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
    ) -> None:
        super().__init__(journal=journal, name="docker-events", send=send, on_death=on_death)
        self.docker = docker
        self.last_time_nano: int | None = None
        self.connected = False
        self.lost_reported = False
        self._stream: EventStream | None = None

    def run_once(self) -> None:
        try:
            self.docker.ping()
            if self.last_time_nano is None:
                self.last_time_nano = self.docker.system_time_ns()
            since = (
                f"{self.last_time_nano // 1_000_000_000}.{self.last_time_nano % 1_000_000_000:09d}"
            )
            self._stream = self.docker.events(since=since)
        except (DockerUnavailable, DockerError) as exc:
            self._lost(f"failed to ping Docker: {exc}")
            return
        self.backoff.reset()
        self.connected = True
        self.lost_reported = False
        self.send(EngineReachable(since=since))
        try:
            for event in self._stream:
                if self.stopping.is_set():
                    return
                self._forward(event)
        except DockerUnavailable as exc:
            self.note("event stream broke", detail={"error": str(exc)})
        finally:
            self._stream = None
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
        self.connected = False
        if not self.lost_reported:
            self.lost_reported = True
            self.send(DockerLost(reason=reason))
        self.pause(self.backoff.next_delay())

    def interrupt(self) -> None:
        stream = self._stream
        if stream is not None:
            stream.close()

"""The event writer actor: Kubernetes Events for condition changes and action outcomes.

Why an actor of its own: an Event is a side note, not part of the action protocol; a
container actor tells this actor and goes on, so a slow or failing events API never
delays an action. Runs in its own pykka thread; a failed create is journaled and
dropped (Events are best effort, as in client-go's recorder).
"""

from __future__ import annotations

import socket
import time
import uuid
from collections.abc import Callable
from typing import Any

from actors._base import JournaledActor
from actors.journal import Journal
from actors.kube_port import API_VERSION, KubeError, KubeHttp
from actors.timefmt import micro_time_from_ns
from messages.inbound import EmitEvent


class EventWriterActor(JournaledActor):
    """Creates ``events.k8s.io/v1`` Events regarding Container mirrors."""

    actor_kind = "events"

    def __init__(
        self,
        *,
        journal: Journal,
        http: KubeHttp,
        namespace: str,
        on_death: Callable[[str, str], None] | None = None,
    ) -> None:
        super().__init__(journal=journal, name="events", on_death=on_death)
        self.http = http
        self.namespace = namespace
        self.instance = f"dockmirror-{socket.gethostname()}"[:128]

    def handlers(self) -> dict[type, Callable[[Any], None]]:
        return {EmitEvent: self._on_emit}

    def _on_emit(self, message: EmitEvent) -> None:
        now_ns = time.time_ns()
        body = {
            "apiVersion": "events.k8s.io/v1",
            "kind": "Event",
            "metadata": {
                "name": f"{message.container_id[:40]}.{uuid.uuid4().hex[:16]}",
                "namespace": self.namespace,
            },
            "eventTime": micro_time_from_ns(now_ns),
            "reportingController": message.reporting_controller,
            "reportingInstance": self.instance,
            "action": message.action,
            "reason": message.reason,
            "type": message.type,
            "note": message.note[:1000],
            "regarding": {
                "apiVersion": API_VERSION,
                "kind": "Container",
                "name": message.container_id,
                "namespace": self.namespace,
            },
        }
        try:
            self.effect(
                "kube",
                "create_event",
                self.http.request,
                "POST",
                f"/apis/events.k8s.io/v1/namespaces/{self.namespace}/events",
                body=body,
                detail={"reason": message.reason, "action": message.action},
            )
        except KubeError as exc:
            self.log.debug("event dropped: %s", exc)

"""Messages the readers, the router and the supervisor exchange.

Direction (see docs/architecture.md):

* docker-events reader -> router: :class:`DockerEvent`, :class:`DockerLost`,
  :class:`EngineReachable`
* kube-watch reader -> router: :class:`MirrorObserved`, :class:`MirrorDeleted`,
  :class:`WatchRelisted`
* router -> container actor: :class:`SyncContainer`, :class:`ContainerGone`,
  :class:`MirrorObserved`, :class:`Recover`, :class:`Retire`
* container actor -> router: :class:`SyncDone`, :class:`ChildStopped`,
  :class:`StepFailed`, :class:`StepSucceeded`
* container actor -> event writer: :class:`EmitEvent`
* supervisor/router internal: :class:`FullSync`, :class:`DockerResynced`,
  :class:`ActorFailed`, :class:`Tick`, :class:`RetryDue`
"""

from __future__ import annotations

from typing import Any

import msgspec

from messages.base import Message


class DockerEvent(Message, frozen=True, tag="docker_event"):
    """A container event from ``GET /events`` (Docker 29 shape: Type/Action/Actor.ID)."""

    container_id: str
    action: str
    time_nano: int = 0


class DockerLost(Message, frozen=True, tag="docker_lost"):
    """The engine stopped answering (ping failed or the event stream ended)."""

    reason: str


class EngineReachable(Message, frozen=True, tag="engine_reachable"):
    """The events reader (re)connected; the router must run a full sync."""

    since: str = ""


class FullSync(Message, frozen=True, tag="full_sync"):
    """Router: list Docker and the mirrors, sync every container, prune stale mirrors."""

    reason: str = ""


class DockerResynced(Message, frozen=True, tag="docker_resynced"):
    """Router-internal: a full sync finished (``ok`` False when the engine was lost)."""

    ok: bool
    containers: int = 0
    error: str = ""


class MirrorObserved(Message, frozen=True, tag="mirror_observed"):
    """The watch saw a Container mirror added or modified (or it was listed)."""

    name: str
    resource_version: str = ""
    event_type: str = ""
    obj: dict[str, Any] = msgspec.field(default_factory=dict)


class MirrorDeleted(Message, frozen=True, tag="mirror_deleted"):
    """The watch saw a Container mirror deleted."""

    name: str
    resource_version: str = ""


class WatchRelisted(Message, frozen=True, tag="watch_relisted"):
    """The watch listed all mirrors (start or after 410); ``names`` are the live ones."""

    names: tuple[str, ...] = ()
    resource_version: str = ""
    # True when this relist follows a broken connection: writes may have failed while
    # the apiserver was away, so the router runs a full sync to repair them.
    after_failure: bool = False


class SyncContainer(Message, frozen=True, tag="sync_container"):
    """Container actor: inspect the container and write its mirror.

    ``token`` is non-zero for a full sync; the actor answers with :class:`SyncDone`.
    """

    reason: str = ""
    token: int = 0


class SyncDone(Message, frozen=True, tag="sync_done"):
    """Container actor -> router: a full-sync :class:`SyncContainer` was handled."""

    container_id: str
    token: int
    ok: bool = True


class StepFailed(Message, frozen=True, tag="step_failed"):
    """Container actor -> router: handling a message failed; retry this container later.

    ``retryable`` is False when the same request cannot succeed unchanged (a 4xx other
    than 409/429); it is still retried, at the backoff's pace, because a fix elsewhere
    (RBAC, a removed webhook, a client's edit) can make it succeed. ``retry_after_s`` is
    the server's ``Retry-After``, 0 when it gave none.
    """

    container_id: str
    error: str = ""
    retryable: bool = True
    retry_after_s: float = 0.0


class StepSucceeded(Message, frozen=True, tag="step_succeeded"):
    """Container actor -> router: a message was handled after earlier failures."""

    container_id: str


class RetryDue(Message, frozen=True, tag="retry_due"):
    """Router -> itself (from a timer): some retry of its queue is due."""


class ChildStopped(Message, frozen=True, tag="child_stopped"):
    """Container actor -> router: the actor stopped (retired, or the router stopped it)."""

    container_id: str
    incarnation: int = 0


class EmitEvent(Message, frozen=True, tag="emit_event"):
    """-> event writer: create one events.k8s.io/v1 Event about a Container.

    ``uid`` and ``resource_version`` are those of the mirror the sender last saw (empty
    when it saw none): the Event regards that object version, so ``kubectl describe``
    finds it and a new transition never folds into an older one's series. Older
    journals carry a ``reporting_controller`` field; decoding ignores it (one reporting
    controller name is used for every Event).
    """

    container_id: str
    type: str  # "Normal" or "Warning"
    reason: str
    action: str
    note: str
    uid: str = ""
    resource_version: str = ""


class ContainerGone(Message, frozen=True, tag="container_gone"):
    """Container actor: Docker destroyed the container; remove the mirror (no Docker call)."""


class Recover(Message, frozen=True, tag="recover"):
    """Container actor: rebuild state from Kubernetes and Docker (after a restart)."""

    reason: str = ""


class Retire(Message, frozen=True, tag="retire"):
    """Container actor: stop if still idle since ``idle_since_ns``."""

    idle_since_ns: int = 0


class ActorFailed(Message, frozen=True, tag="actor_failed"):
    """An actor died (``on_failure`` or noticed by a liveness sweep)."""

    actor: str
    error: str = ""


class Tick(Message, frozen=True, tag="tick"):
    """A clock tick for periodic work (idle retirement, liveness sweeps); not journaled."""

    now_ns: int = 0

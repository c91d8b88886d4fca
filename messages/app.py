"""Messages of App mode (``--app``, docs/contract.md §3.1, §3.5).

Direction (see docs/architecture.md, "App mode"):

* app-watch reader -> app follower: :class:`AppObserved`, :class:`AppDeleted`
* supervisor (the mirroring switch, main thread) -> app follower: :class:`MirroringChanged`
* router (through ``EngineStatus``'s listener) -> app follower: :class:`EngineReadiness`
* app follower -> itself (timer): :class:`AppRetryDue`
"""

from __future__ import annotations

from typing import Any

import msgspec

from messages.base import Message


class AppObserved(Message, frozen=True, tag="app_observed"):
    """The App named ``app`` was listed, added or modified."""

    resource_version: str = ""
    event_type: str = ""
    obj: dict[str, Any] = msgspec.field(default_factory=dict)


class AppDeleted(Message, frozen=True, tag="app_deleted"):
    """The App is gone (a watch DELETED, or a list without it)."""


class MirroringChanged(Message, frozen=True, tag="mirroring_changed"):
    """The supervisor switched mirroring on or off (``epoch`` counts the starts).

    ``error`` is set when a start failed and mirroring stayed off.
    """

    on: bool
    epoch: int
    error: str = ""


class EngineReadiness(Message, frozen=True, tag="engine_readiness"):
    """The router wrote ``EngineReady`` (``Syncing``, ``Connected``, ``ConnectFailed``,
    ``Stopped``) during mirroring run ``epoch``."""

    epoch: int
    ready: bool
    reason: str
    message: str = ""


class AppRetryDue(Message, frozen=True, tag="app_retry_due"):
    """The follower's timer: a retry or the cleanup's next check is due."""

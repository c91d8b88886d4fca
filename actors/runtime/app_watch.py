"""The App watch reader: list, then watch the App named ``app`` (App mode, ``--app``).

The list-then-watch cycle, its 410 relist, backoff and inactivity watchdog are the
Kubernetes watch reader's (:mod:`actors.runtime.kube_watch`), run against
:class:`~actors.ports.app_port.AppApi` instead of the Container mirrors; only the
messages differ. Its outputs are translated for the App follower:

* a listed, added or modified App: :class:`~messages.app.AppObserved`;
* a deleted App, or a (re)list that does not contain it: :class:`~messages.app.AppDeleted`.

Runs in the reader thread; failures back off and relist like the Container watch.
"""

from __future__ import annotations

from collections.abc import Callable

from actors.domain.names import APP_NAME
from actors.infra.journal import Journal
from actors.ports.app_port import AppApi
from actors.runtime.kube_watch import INACTIVITY_TIMEOUT_S, SERVER_TIMEOUT_S, KubeWatchReader
from messages.app import AppDeleted, AppObserved
from messages.base import Message
from messages.inbound import MirrorDeleted, MirrorObserved, WatchRelisted


def app_messages(send: Callable[[Message], None]) -> Callable[[Message], None]:
    """Wrap ``send`` so that the watch reader's mirror messages reach it as App messages."""

    def translate(message: Message) -> None:
        if isinstance(message, MirrorObserved):
            if message.name == APP_NAME:
                send(
                    AppObserved(
                        resource_version=message.resource_version,
                        event_type=message.event_type,
                        obj=message.obj,
                    )
                )
        elif isinstance(message, MirrorDeleted):
            if message.name == APP_NAME:
                send(AppDeleted())
        elif isinstance(message, WatchRelisted) and APP_NAME not in message.names:
            send(AppDeleted())

    return translate


class AppWatchReader(KubeWatchReader):
    """The Kubernetes watch reader, pointed at the App. Own pykka actor + reader thread."""

    actor_kind = "app_watch"

    def __init__(
        self,
        *,
        journal: Journal,
        api: AppApi,
        send: Callable[[Message], None],
        on_death: Callable[[str, str], None] | None = None,
        server_timeout_s: int = SERVER_TIMEOUT_S,
        inactivity_timeout_s: float = INACTIVITY_TIMEOUT_S,
    ) -> None:
        super().__init__(
            journal=journal,
            store=api,  # type: ignore[arg-type]  # the same list/watch interface
            send=app_messages(send),
            on_death=on_death,
            server_timeout_s=server_timeout_s,
            inactivity_timeout_s=inactivity_timeout_s,
        )
        self.name = "app-watch"  # journal lines, thread name and on_death use it

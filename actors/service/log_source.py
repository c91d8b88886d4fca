"""Where the log stream's data comes from (docs/contract.md §6.4): the service's side.

:class:`EngineLogSource` does the steps before the WebSocket upgrade, in upstream's
order, and turns every port error into the answer
:func:`actors.domain.log_stream.refusal_for` decides:

1. the ``Container`` mirror named by the ID must exist in the service's namespace (a
   GET through the Kubernetes port, bounded by its request timeout): the service's own
   knowledge of which containers it mirrors, as upstream asks its cache;
2. the engine must be connected, as the Docker events reader last reported it
   (:class:`~actors.domain.log_stream.EngineLink`; a standby instance counts as not
   connected: it mirrors nothing);
3. ``docker inspect`` says whether the container has a TTY (bounded call);
4. Docker's log stream is opened on its own connection (bounded open).

Every method runs in the HTTP connection thread of the request; nothing here asks an
actor, so a busy router or container actor never delays a log stream, and a slow
stream never delays them.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator

from actors.domain.log_stream import (
    NOT_RUNNING,
    TTY_READ_SIZE,
    Failure,
    LogRequest,
    Refusal,
    Step,
    refusal_for,
)
from actors.infra.log_stream import OpenedLogs, Refused, StreamFailed
from actors.ports.docker_port import (
    DockerError,
    DockerNotFound,
    DockerPort,
    DockerUnavailable,
    LogStream,
)
from actors.ports.kube_port import KubeNotFound, MirrorStore
from actors.ports.port_errors import PortError

log = logging.getLogger("dockmirror.logs")

#: ``() -> (connected, why not)``; called from HTTP threads.
EngineState = Callable[[], tuple[bool, str]]


def failure_of(exc: BaseException) -> Failure:
    """A port error as the log stream sees it (see :func:`refusal_for`)."""
    if isinstance(exc, KubeNotFound | DockerNotFound):
        return Failure.NOT_FOUND
    if isinstance(exc, DockerUnavailable):
        return Failure.UNAVAILABLE
    if isinstance(exc, DockerError) and exc.status_code == 400:
        return Failure.INVALID
    return Failure.ERROR


class EngineLogSource:
    """Opens container log streams for :class:`~actors.infra.log_stream.LogStreams`."""

    def __init__(self, store: MirrorStore, docker: DockerPort, engine: EngineState) -> None:
        self.store = store
        self.docker = docker
        self.engine = engine

    def open(self, request: LogRequest) -> OpenedLogs:
        """Connection thread: the four steps; raises :class:`Refused` with the answer."""
        cid = request.container_id
        try:
            self.store.get(cid)
        except PortError as exc:
            self._refuse(Step.MIRROR, exc, cid)
        connected, why = self.engine()
        if not connected:
            log.debug("log stream of %s refused: engine not connected (%s)", cid[:12], why)
            raise Refused(Refusal(503, NOT_RUNNING))
        try:
            config = self.docker.inspect(cid).get("Config") or {}
        except PortError as exc:
            self._refuse(Step.INSPECT, exc, cid)
        try:
            stream = self.docker.logs(cid, follow=request.follow, tail=request.tail)
        except PortError as exc:
            self._refuse(Step.LOGS, exc, cid)
        return OpenedLogs(tty=bool(config.get("Tty")), chunks=_chunks(stream), close=stream.close)

    @staticmethod
    def _refuse(step: Step, exc: PortError, cid: str) -> None:
        refusal = refusal_for(step, failure_of(exc))
        # 404 is a client's mistake; anything else is worth a line in the service log.
        level = logging.DEBUG if refusal.status == 404 else logging.INFO
        log.log(level, "log stream of %s: %s failed: %s", cid[:12], step.value, exc)
        raise Refused(refusal) from exc


def _chunks(stream: LogStream) -> Iterator[bytes]:
    """Docker's chunks; a broken stream becomes :class:`StreamFailed` (closed with 1011)."""
    try:
        yield from stream.chunks(TTY_READ_SIZE)
    except PortError as exc:
        raise StreamFailed(str(exc)) from exc

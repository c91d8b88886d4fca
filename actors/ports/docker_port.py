"""The thin port to the Docker engine: the only module that imports the docker SDK.

Why a port: actors must not know HTTP status codes or SDK exception classes. This
module turns the engine's answers into outcomes the actors reason about; every failure
is a :class:`~actors.ports.port_errors.PortError` with ``retryable`` and ``retry_after``:

===========================================  ==========================  =========
answer                                       exception                   retryable
===========================================  ==========================  =========
2xx, 3xx (``304 Not Modified`` of a          success (the SDK returns)   -
redundant start/stop)
404                                          :class:`DockerNotFound`     no
409 of an image or volume remove (in use)    :class:`DockerInUse`        yes (later)
other 4xx (409 conflict, 400 bad parameter)  :class:`DockerError`        no
429, 5xx                                     :class:`DockerError`        yes
cannot connect, refused, reset, cut body,    :class:`DockerUnavailable`  yes
SDK/transport errors, non-JSON answer
no answer within the call's bound            :class:`DockerTimeout`      yes
                                             (a ``DockerUnavailable``)
===========================================  ==========================  =========

``str(DockerError)`` is exactly ``Error response from daemon: <message>`` as the contract's
``lastAction.error`` demands. :class:`DockerUnavailable` is never an action outcome
("retry after reconnect"); :class:`DockerTimeout` additionally means the engine may or
may not have carried the call out.

Every call is bounded (issue 10, point 4): see :data:`PING_TIMEOUT_S`,
:data:`CALL_TIMEOUT_S` and :func:`stop_call_timeout`. Only the event stream and the log
streams wait without a read timeout, because hours without an event (or a line of
output) are normal; the events reader's heartbeat (:mod:`actors.runtime.docker_events`)
watches the engine instead, and a log stream is closed when its client goes away.

Threads: one :class:`DockerPort` is shared by all container actors (the SDK's
connection pool serves parallel calls; see docs/architecture.md). The events stream
uses its own connection, opened by :meth:`DockerPort.events`; so does every container
log stream (:meth:`DockerPort.logs`), read by the HTTP connection thread that serves it.
"""

from __future__ import annotations

import contextlib
import http.client
import logging
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

import docker
import docker.errors
import docker.tls
import docker.types
import docker.utils
import requests.exceptions
import urllib3.exceptions

from actors.infra import faults
from actors.ports.port_errors import PortError, retry_after_from_headers

log = logging.getLogger("dockmirror.docker_port")

T = TypeVar("T")

#: ``GET /_ping`` and ``GET /info`` (the daemon's clock): the contract's 5 s
#: (docs/contract.md §3.2). Also bounds the API version negotiation and the opening of the
#: event stream, which the daemon answers at once (it flushes the headers before
#: waiting for events). A hung engine is noticed within one ping, so this bounds how
#: late EngineReady turns False.
PING_TIMEOUT_S = 5.0
#: Ordinary calls (inspect, list, start, pause, unpause, remove, version): they take
#: milliseconds on a healthy engine; a few tens of seconds covers a loaded one (a start
#: that sets up networking, a remove that unmounts) while never holding an actor for
#: minutes when the engine hangs.
CALL_TIMEOUT_S = 30.0
#: Docker's own stop grace when a container has no ``StopTimeout`` (moby: 10 s).
DEFAULT_STOP_TIMEOUT_S = 10.0
#: Added to the stop grace for ``stop``/``restart``: after the grace Docker sends
#: SIGKILL and waits for the exit; ``restart`` then starts the container again.
STOP_MARGIN_S = 30.0
#: A negative ``StopTimeout`` makes Docker wait for the exit forever; we stop waiting
#: for the answer after this long (the call then reports :class:`DockerTimeout`).
UNBOUNDED_STOP_WAIT_S = 300.0


def stop_call_timeout(stop_timeout_s: float | None) -> float:
    """HTTP read timeout of a ``stop``/``restart`` for a container's ``StopTimeout``."""
    if stop_timeout_s is None:
        return DEFAULT_STOP_TIMEOUT_S + STOP_MARGIN_S
    if stop_timeout_s < 0:
        return UNBOUNDED_STOP_WAIT_S
    return float(stop_timeout_s) + STOP_MARGIN_S


class DockerUnavailable(PortError):
    """The engine could not be reached or gave no usable answer (no socket, refused,
    reset, a cut or non-JSON body). Retryable; never an action outcome."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.retryable = True
        self.retry_after = None


class DockerTimeout(DockerUnavailable):
    """No answer within the call's bound. The engine may or may not have carried the
    call out (a stop may still be running): callers re-read before acting again."""


class DockerError(PortError):
    """The engine answered with an error status (other than 404).

    ``str(err)`` is ``Error response from daemon: <daemon message>``. Retryable for
    429 and 5xx (``retry_after`` from a 429/503 ``Retry-After``), not for 4xx.
    """

    def __init__(
        self,
        message: str,
        *,
        status_code: int | None = None,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(f"Error response from daemon: {message}")
        self.status_code = status_code
        self.daemon_message = message
        self.retryable = status_code is not None and (status_code >= 500 or status_code == 429)
        self.retry_after = retry_after


class DockerNotFound(DockerError):
    """404: no such container, image or volume. Not retryable."""


class DockerInUse(DockerError):
    """409 of an image or volume remove: something still holds it.

    Docker refuses to remove an image a container (running or stopped) was created from,
    that has child images, or (by ID) that other tags still name; and a volume a
    container mounts. The same request succeeds once that is gone, which is nobody's
    action of ours: retryable, with the caller's backoff (the engine gives no
    ``Retry-After``), so a deleted mirror stays Terminating until then
    (docs/contract.md §6.2, §7 scenario 13).
    """

    def __init__(self, message: str) -> None:
        super().__init__(message, status_code=409)
        self.retryable = True


def error_from_status(
    status_code: int, message: str, *, retry_after: float | None = None
) -> DockerError:
    """The exception for an engine's error answer (also used by the fakes)."""
    if status_code == 404:
        return DockerNotFound(message, status_code=404)
    return DockerError(message, status_code=status_code, retry_after=retry_after)


def in_use(exc: DockerError) -> DockerError:
    """A remove's error as the caller should see it: a 409 becomes :class:`DockerInUse`."""
    if exc.status_code == 409 and not isinstance(exc, DockerInUse):
        return DockerInUse(exc.daemon_message)
    return exc


def removal_in_progress(exc: DockerError) -> bool:
    """True for Docker's 409 when another client's removal of the container is under way.

    The engine answers ``removal of container <id> is already in progress``; the
    container will be gone (and a ``destroy`` event sent) when that removal ends.
    """
    return exc.status_code == 409 and "already in progress" in exc.daemon_message


_READ_TIMEOUTS = (
    requests.exceptions.ReadTimeout,
    urllib3.exceptions.ReadTimeoutError,
    TimeoutError,  # socket.timeout
)


def _timed_out(exc: BaseException | None) -> bool:
    """True when ``exc`` or what it wraps (the SDK wraps the version negotiation's
    error in a DockerException) is a read timeout."""
    seen = 0
    while exc is not None and seen < 10:
        if isinstance(exc, requests.exceptions.ConnectTimeout):
            return False  # never sent: plain unavailable
        if isinstance(exc, _READ_TIMEOUTS):
            return True
        if isinstance(exc, urllib3.exceptions.MaxRetryError):
            exc = exc.reason
        else:
            exc = exc.__cause__ or exc.__context__
        seen += 1
    return False


def translate(exc: BaseException) -> PortError:
    """Map anything the SDK, requests or urllib3 raised to this port's exceptions.

    Called in the calling thread. An exception type never seen before is logged with
    its traceback and reported as :class:`DockerUnavailable` (retried with backoff)
    rather than crashing the actor that made the call.
    """
    if isinstance(exc, PortError):
        return exc
    text = str(exc) or type(exc).__name__
    if isinstance(exc, docker.errors.APIError):
        status = exc.status_code
        if status is None:
            return DockerUnavailable(f"error without an answer: {_explanation(exc)}")
        headers = exc.response.headers if exc.response is not None else None
        return error_from_status(
            status, _explanation(exc), retry_after=retry_after_from_headers(status, headers)
        )
    if _timed_out(exc):
        return DockerTimeout(text)
    if isinstance(exc, requests.exceptions.JSONDecodeError | ValueError):
        return DockerUnavailable(f"answer is not JSON: {text}")
    if isinstance(
        exc,
        docker.errors.DockerException
        | requests.exceptions.RequestException
        | urllib3.exceptions.HTTPError
        | http.client.HTTPException
        | OSError,
    ):
        return DockerUnavailable(text)
    log.warning("unclassified error from the Docker SDK", exc_info=exc)
    return DockerUnavailable(f"unexpected {type(exc).__name__}: {text}")


def _explanation(exc: docker.errors.APIError) -> str:
    explanation = exc.explanation
    if isinstance(explanation, bytes):
        explanation = explanation.decode("utf-8", "replace")
    if not explanation and exc.response is not None:
        explanation = exc.response.reason
    return str(explanation or exc).strip()


def _injected(fault: str) -> PortError:
    """What the real failure named by a ``docker.call`` flaky fault raises."""
    if fault in ("5xx", "429"):  # Docker has no rate limit; a 429 would be a proxy's
        return DockerError(
            "injected fault: containerd: connection error: desc = transport is closing",
            status_code=500,
        )
    if fault == "reset":
        return DockerUnavailable("injected fault: ('Connection aborted.', ConnectionResetError)")
    if fault == "timeout_after":
        return DockerTimeout("injected fault: read timed out after the call was sent")
    return DockerTimeout("injected fault: read timed out")


class EventStream:
    """An iterator over decoded Docker events that another thread may close.

    Iteration ends silently when the connection drops (the SDK turns transport errors
    into the end of iteration); the reader treats every end as "reconnect".
    """

    def __init__(self, stream: Any, client: Any = None) -> None:
        self._stream = stream
        self._client = client

    def __iter__(self) -> Iterator[dict[str, Any]]:
        try:
            for event in self._stream:
                if isinstance(event, dict):
                    yield event
        except Exception as exc:  # a cut JSON line, a transport error the SDK let through
            raise translate(exc) from exc

    def close(self) -> None:
        """Close from any thread; unblocks a reader waiting in ``__iter__``."""
        with contextlib.suppress(Exception):
            self._stream.close()
        if self._client is not None:
            with contextlib.suppress(Exception):
                self._client.close()


class LogStream:
    """One container's log stream on its own connection (``GET /containers/{id}/logs``).

    :meth:`chunks` is iterated by one thread (the HTTP connection serving the stream);
    :meth:`close` may be called from any other thread and unblocks it (socket shutdown),
    which is how a follower that went away frees the Docker connection at once.
    """

    def __init__(self, response: Any, client: Any) -> None:
        self._response = response
        self._client = client
        self._closed = threading.Event()

    def chunks(self, size: int) -> Iterator[bytes]:
        """The body as the engine sent it, at most ``size`` bytes at a time.

        Docker writes (and flushes) each log message as one HTTP chunk, so one item is
        one message, or one piece of a message longer than ``size``. Ends when the
        engine ends the stream (``follow=false`` once the output is sent; ``follow``
        once the container stopped) or after :meth:`close`. A broken connection raises
        :class:`DockerUnavailable`, unless it was closed on purpose.
        """
        raw = self._response.raw
        try:
            if raw.chunked and raw.supports_chunked_reads():
                for chunk in raw.read_chunked(size, decode_content=False):
                    if chunk:
                        yield chunk
            else:  # not chunked (a proxy in between): whatever has arrived, as it arrives
                while chunk := raw.read1(size):
                    yield chunk
        except Exception as exc:
            if self._closed.is_set():
                return
            raise translate(exc) from exc

    def close(self) -> None:
        """Close from any thread (idempotent); a reader blocked in :meth:`chunks` ends."""
        if self._closed.is_set():
            return
        self._closed.set()
        with contextlib.suppress(Exception):
            docker.types.CancellableStream(iter(()), self._response).close()
        with contextlib.suppress(Exception):
            self._response.close()
        with contextlib.suppress(Exception):
            self._client.close()


class DockerPort:
    """Blocking, bounded calls to one Docker engine. Safe to share between actor threads.

    Every method raises only this module's exceptions. A call that could not reach the
    engine (:class:`DockerUnavailable`, but not a timeout) drops the HTTP client so the
    next call reconnects, e.g. to a restarted daemon's new socket.
    """

    def __init__(
        self,
        base_url: str | None = None,
        *,
        call_timeout_s: float = CALL_TIMEOUT_S,
        ping_timeout_s: float = PING_TIMEOUT_S,
        pool_size: int = docker.constants.DEFAULT_MAX_POOL_SIZE,
        tls: docker.tls.TLSConfig | None = None,
    ):
        """``base_url`` and ``tls`` as resolved by :mod:`actors.ports.docker_endpoint`; the TLS
        configuration applies to the shared client and to every event-stream client."""
        self._base_url = base_url or docker.constants.DEFAULT_UNIX_SOCKET
        self._tls = tls
        self._call_timeout = call_timeout_s
        self._ping_timeout = ping_timeout_s
        self._pool_size = pool_size
        self._api: docker.APIClient | None = None
        self._api_lock = threading.Lock()

    @property
    def base_url(self) -> str:
        return self._base_url

    def _client(self) -> docker.APIClient:
        with self._api_lock:
            if self._api is None:
                # version="auto" negotiates once (Debian's 20.10 engine speaks API 1.41);
                # bounded like a ping, then ordinary calls get their own bound.
                api = docker.APIClient(
                    base_url=self._base_url,
                    version="auto",
                    timeout=self._ping_timeout,
                    max_pool_size=self._pool_size,
                    tls=self._tls,
                )
                api.timeout = self._call_timeout
                self._api = api
            return self._api

    def _request(self, call: Callable[[docker.APIClient], T], *, inject: bool = True) -> T:
        """Run ``call`` with the shared client; the one path of every call but the stream.

        ``inject``: this is the ``docker.call`` fault point (off for ping, whose failure
        means "engine lost" rather than "one call failed").
        """
        fault = faults.flaky("docker.call") if inject else None
        if fault is not None and fault != "timeout_after":
            raise _injected(fault)
        try:
            result = call(self._client())
        except Exception as exc:
            error = translate(exc)
            if isinstance(error, DockerUnavailable) and not isinstance(error, DockerTimeout):
                self.reset()
            raise error from exc
        if fault == "timeout_after":  # the engine carried it out; the answer is "lost"
            raise _injected(fault)
        return result

    def reset(self) -> None:
        """Drop the HTTP client so the next call reconnects (after an engine restart)."""
        with self._api_lock:
            api, self._api = self._api, None
        if api is not None:
            with contextlib.suppress(Exception):
                api.close()

    # --- engine -----------------------------------------------------------------
    def ping(self) -> None:
        """``GET /_ping`` within :data:`PING_TIMEOUT_S` (no fault injection)."""

        def call(api: docker.APIClient) -> None:
            api._result(api._get(api._url("/_ping"), timeout=self._ping_timeout))

        self._request(call, inject=False)

    def version(self) -> dict[str, Any]:
        return self._request(lambda api: api.version())

    def system_time_ns(self) -> int:
        """The daemon's clock (``Info.SystemTime``) so event ``since`` ignores host skew."""

        def call(api: docker.APIClient) -> dict[str, Any]:
            return api._result(api._get(api._url("/info"), timeout=self._ping_timeout), json=True)

        info = self._request(call)
        text = info.get("SystemTime") or "" if isinstance(info, dict) else ""
        from actors.domain.timefmt import parse_rfc3339_ns  # local import: tiny pure helper

        parsed = parse_rfc3339_ns(text)
        return parsed if parsed is not None else time.time_ns()

    # --- containers -------------------------------------------------------------
    def list_ids(self) -> list[str]:
        """IDs of every container, running or not (the full sync's source of truth)."""
        listed = self._request(lambda api: api.containers(all=True, quiet=True))
        try:
            return [c["Id"] for c in listed]
        except (TypeError, KeyError) as exc:
            raise DockerUnavailable(f"unexpected container list: {str(listed)[:200]}") from exc

    def inspect(self, container_id: str) -> dict[str, Any]:
        return self._request(lambda api: api.inspect_container(container_id))

    def start(self, container_id: str) -> None:
        self._request(lambda api: api.start(container_id))

    def stop(self, container_id: str, *, stop_timeout_s: float | None = None) -> None:
        """Stop; ``stop_timeout_s`` is the container's ``Config.StopTimeout`` (None: 10 s).

        It only bounds how long we wait for the answer; it is never sent as ``t``: the
        container's own StopTimeout/StopSignal apply (docs/contract.md §4.4).
        """
        self._post_no_params("stop", container_id, stop_call_timeout(stop_timeout_s))

    def pause(self, container_id: str) -> None:
        self._request(lambda api: api.pause(container_id))

    def unpause(self, container_id: str) -> None:
        self._request(lambda api: api.unpause(container_id))

    def restart(self, container_id: str, *, stop_timeout_s: float | None = None) -> None:
        """Restart; ``stop_timeout_s`` as for :meth:`stop` (bounds the wait, not sent)."""
        self._post_no_params("restart", container_id, stop_call_timeout(stop_timeout_s))

    def remove(self, container_id: str) -> None:
        """Force-remove (kills a running container); anonymous volumes are kept."""
        self._request(lambda api: api.remove_container(container_id, force=True, v=False))

    def _post_no_params(self, verb: str, container_id: str, timeout_s: float) -> None:
        """POST /containers/{id}/{verb} without ``t``, waiting at most ``timeout_s``.

        The SDK's ``stop``/``restart`` always send ``t=10``; Docker must use the
        container's own StopTimeout instead, so the request is built here.
        """

        def call(api: docker.APIClient) -> None:
            url = api._url("/containers/{0}/" + verb, container_id)
            api._raise_for_status(api._post(url, timeout=timeout_s))

        self._request(call)

    # --- images (docs/contract.md §6.2) -------------------------------------------
    def list_images(self) -> list[dict[str, Any]]:
        """``GET /images/json?all=1``: every image, intermediate ones included."""
        listed = self._request(lambda api: api.images(all=True))
        if not isinstance(listed, list) or not all(isinstance(i, dict) for i in listed):
            raise DockerUnavailable(f"unexpected image list: {str(listed)[:200]}")
        return listed

    def inspect_image(self, ref: str) -> dict[str, Any]:
        """``GET /images/{ref}/json`` (an ID or a reference); 404 → DockerNotFound."""
        return self._request(lambda api: api.inspect_image(ref))

    def remove_image(self, ref: str) -> None:
        """``DELETE /images/{ref}?force=0&noprune=1``: never forced, parents kept.

        By tag, Docker only untags while other tags remain. Raises :class:`DockerInUse`
        (409) while a container uses it or it has child images, DockerNotFound (404)
        when it is gone.
        """
        try:
            self._request(lambda api: api.remove_image(ref, force=False, noprune=True))
        except DockerError as exc:
            raise in_use(exc) from exc.__cause__

    # --- volumes (docs/contract.md §6.3) ------------------------------------------
    def list_volumes(self) -> list[dict[str, Any]]:
        """``GET /volumes``: every volume, each entry with all the fields inspect has."""
        listed = self._request(lambda api: api.volumes())
        volumes = listed.get("Volumes") if isinstance(listed, dict) else None
        if volumes is None and isinstance(listed, dict) and "Volumes" in listed:
            return []  # Docker answers null when there are none
        if not isinstance(volumes, list) or not all(isinstance(v, dict) for v in volumes):
            raise DockerUnavailable(f"unexpected volume list: {str(listed)[:200]}")
        return volumes

    def inspect_volume(self, name: str) -> dict[str, Any]:
        """``GET /volumes/{name}``; 404 → DockerNotFound."""
        return self._request(lambda api: api.inspect_volume(name))

    def remove_volume(self, name: str) -> None:
        """``DELETE /volumes/{name}?force=1``. Force only ignores driver errors: a volume a
        container mounts still answers 409 (:class:`DockerInUse`).

        Built here: docker-py 7's ``remove_volume`` hands ``force`` to ``_url``, which
        ignores it, so the SDK never sends it.
        """

        def call(api: docker.APIClient) -> None:
            url = api._url("/volumes/{0}", name)
            api._raise_for_status(api._delete(url, params={"force": "1"}))

        try:
            self._request(call)
        except DockerError as exc:
            raise in_use(exc) from exc.__cause__

    # --- events -----------------------------------------------------------------
    def events(
        self,
        *,
        since: str | None = None,
        until: str | None = None,
        types: tuple[str, ...] = ("container",),
    ) -> EventStream:
        """Open ``GET /events`` for events of ``types`` on a dedicated client.

        ``since``/``until`` are ``"<seconds>.<nanoseconds>"`` strings built from
        ``timeNano`` (the SDK would round a datetime to whole seconds). Opening is
        bounded by :data:`PING_TIMEOUT_S`; once the answer's headers arrived the socket
        waits for events without a timeout (quiet hours are normal), as the SDK does
        for attach streams. No fault injection: the stream is not a call.
        """
        api_version = self._request(lambda api: api.api_version, inject=False)
        client: docker.APIClient | None = None
        try:
            client = docker.APIClient(
                base_url=self._base_url,
                version=api_version,
                timeout=self._ping_timeout,
                tls=self._tls,
            )
            params: dict[str, Any] = {
                "filters": docker.utils.convert_filters({"type": list(types)}),
                "since": since,
                "until": until,
            }
            response = client._get(client._url("/events"), params=params, stream=True)
            client._disable_socket_timeout(client._get_raw_response_socket(response))
            stream = docker.types.CancellableStream(
                client._stream_helper(response, decode=True), response
            )
            return EventStream(stream, client)
        except Exception as exc:
            if client is not None:
                with contextlib.suppress(Exception):
                    client.close()
            raise translate(exc) from exc

    # --- logs -------------------------------------------------------------------
    def logs(self, container_id: str, *, follow: bool, tail: str = "all") -> LogStream:
        """Open ``GET /containers/{id}/logs`` (stdout and stderr) on a dedicated client.

        ``tail`` is Docker's: ``all`` or a number of lines. Opening is bounded by
        :data:`PING_TIMEOUT_S` (the daemon flushes the answer's headers before it sends
        any output); then the socket waits without a timeout, since a followed container
        may be quiet for hours: the caller closes the stream when its client is gone.
        A 404 raises :class:`DockerNotFound`; no fault injection (a stream, not a call).
        """
        api_version = self._request(lambda api: api.api_version, inject=False)
        client: docker.APIClient | None = None
        try:
            client = docker.APIClient(
                base_url=self._base_url,
                version=api_version,
                timeout=self._ping_timeout,
                tls=self._tls,
            )
            params = {"stdout": 1, "stderr": 1, "follow": int(follow), "tail": tail}
            url = client._url("/containers/{0}/logs", container_id)
            response = client._get(url, params=params, stream=True)
            client._disable_socket_timeout(client._get_raw_response_socket(response))
            return LogStream(response, client)
        except Exception as exc:
            if client is not None:
                with contextlib.suppress(Exception):
                    client.close()
            raise translate(exc) from exc

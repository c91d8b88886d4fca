"""The thin port to the Docker engine: the only module that imports the docker SDK.

Why a port: actors must not know HTTP status codes or SDK exception classes. This
module turns the engine's answers into three outcomes the actors reason about:

* success (2xx, and 3xx such as ``304 Not Modified`` from a redundant start/stop,
  which the SDK already returns normally);
* :class:`DockerNotFound` (404) and :class:`DockerError` (any other 4xx/5xx), whose
  ``str()`` is exactly ``Error response from daemon: <message>`` as the spec's
  ``lastAction.error`` demands;
* :class:`DockerUnavailable`: the engine cannot be reached at all (socket missing,
  connection refused or dropped). Callers treat it as "retry after reconnect", never
  as an action outcome.

Threads: one :class:`DockerPort` is shared by all container actors (the SDK's
connection pool serves parallel calls; see docs/architecture.md). The events stream
uses its own connection, opened by :meth:`DockerPort.events`.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator
from typing import Any

import docker
import docker.errors
import requests.exceptions

# Our own stop grace is never passed: the container's StopTimeout applies (spec §4.4).
# The HTTP timeout must still outlast the longest stop grace Docker may wait.
DEFAULT_HTTP_TIMEOUT_S = 300.0


class DockerUnavailable(Exception):
    """The engine could not be reached (no socket, refused, reset, timed out)."""


class DockerError(Exception):
    """The engine answered with an error status (other than 404).

    ``str(err)`` is ``Error response from daemon: <daemon message>``.
    """

    def __init__(self, message: str, *, status_code: int | None = None) -> None:
        super().__init__(f"Error response from daemon: {message}")
        self.status_code = status_code
        self.daemon_message = message


class DockerNotFound(DockerError):
    """404: no such container (or the engine does not know the ID)."""


def removal_in_progress(exc: DockerError) -> bool:
    """True for Docker's 409 when another client's removal of the container is under way.

    The engine answers ``removal of container <id> is already in progress``; the
    container will be gone (and a ``destroy`` event sent) when that removal ends.
    """
    return exc.status_code == 409 and "already in progress" in exc.daemon_message


def _translate(exc: BaseException) -> Exception:
    """Map an SDK/transport exception to this port's exception types."""
    if isinstance(exc, docker.errors.NotFound):
        return DockerNotFound(_explanation(exc), status_code=404)
    if isinstance(exc, docker.errors.APIError):
        return DockerError(_explanation(exc), status_code=exc.status_code)
    if isinstance(exc, docker.errors.DockerException | requests.exceptions.RequestException):
        return DockerUnavailable(str(exc) or type(exc).__name__)
    if isinstance(exc, ConnectionError | OSError):
        return DockerUnavailable(str(exc) or type(exc).__name__)
    return exc if isinstance(exc, Exception) else RuntimeError(str(exc))


def _explanation(exc: docker.errors.APIError) -> str:
    explanation = exc.explanation
    if isinstance(explanation, bytes):
        explanation = explanation.decode("utf-8", "replace")
    if not explanation and exc.response is not None:
        explanation = exc.response.reason
    return str(explanation or exc).strip()


class EventStream:
    """An iterator over decoded Docker events that another thread may close.

    Iteration ends silently when the connection drops (the SDK turns transport errors
    into ``StopIteration``); the reader treats every end as "reconnect".
    """

    def __init__(self, stream: Any) -> None:
        self._stream = stream

    def __iter__(self) -> Iterator[dict[str, Any]]:
        try:
            for event in self._stream:
                if isinstance(event, dict):
                    yield event
        except Exception as exc:  # transport errors surface as a plain end of stream
            raise _translate(exc) from exc

    def close(self) -> None:
        """Close from any thread; unblocks a reader waiting in ``__iter__``."""
        with contextlib.suppress(Exception):
            self._stream.close()


class DockerPort:
    """Blocking calls to one Docker engine. Safe to share between actor threads."""

    def __init__(
        self,
        base_url: str | None = None,
        *,
        timeout: float = DEFAULT_HTTP_TIMEOUT_S,
        pool_size: int = docker.constants.DEFAULT_MAX_POOL_SIZE,
    ):
        self._base_url = base_url or docker.constants.DEFAULT_UNIX_SOCKET
        self._timeout = timeout
        self._pool_size = pool_size
        self._api: docker.APIClient | None = None

    @property
    def base_url(self) -> str:
        return self._base_url

    def _client(self) -> docker.APIClient:
        if self._api is None:
            try:
                # version="auto" negotiates once; Debian's 20.10 engine speaks API 1.41.
                self._api = docker.APIClient(
                    base_url=self._base_url,
                    version="auto",
                    timeout=self._timeout,
                    max_pool_size=self._pool_size,
                )
            except Exception as exc:
                raise _translate(exc) from exc
        return self._api

    def _call(self, fn_name: str, *args: Any, **kwargs: Any) -> Any:
        try:
            return getattr(self._client(), fn_name)(*args, **kwargs)
        except Exception as exc:
            translated = _translate(exc)
            if isinstance(translated, DockerUnavailable):
                self.reset()
            raise translated from exc

    def reset(self) -> None:
        """Drop the HTTP client so the next call reconnects (after an engine restart)."""
        api, self._api = self._api, None
        if api is not None:
            with contextlib.suppress(Exception):
                api.close()

    # --- engine -----------------------------------------------------------------
    def ping(self) -> None:
        self._call("ping")

    def version(self) -> dict[str, Any]:
        return self._call("version")

    def system_time_ns(self) -> int:
        """The daemon's clock (``Info.SystemTime``) so event ``since`` ignores host skew."""
        info = self._call("info")
        text = info.get("SystemTime") or ""
        from actors.timefmt import parse_rfc3339_ns  # local import: tiny pure helper

        parsed = parse_rfc3339_ns(text)
        return parsed if parsed is not None else time.time_ns()

    # --- containers -------------------------------------------------------------
    def list_ids(self) -> list[str]:
        """IDs of every container, running or not (the full sync's source of truth)."""
        return [c["Id"] for c in self._call("containers", all=True, quiet=True)]

    def inspect(self, container_id: str) -> dict[str, Any]:
        return self._call("inspect_container", container_id)

    def start(self, container_id: str) -> None:
        self._call("start", container_id)

    def stop(self, container_id: str, *, stop_timeout_s: float | None = None) -> None:
        # No ``t``: the container's own StopTimeout/StopSignal apply (spec §4.4).
        self._post_no_params("stop", container_id)

    def pause(self, container_id: str) -> None:
        self._call("pause", container_id)

    def unpause(self, container_id: str) -> None:
        self._call("unpause", container_id)

    def restart(self, container_id: str, *, stop_timeout_s: float | None = None) -> None:
        self._post_no_params("restart", container_id)

    def remove(self, container_id: str) -> None:
        """Force-remove (kills a running container); anonymous volumes are kept."""
        self._call("remove_container", container_id, force=True, v=False)

    def _post_no_params(self, verb: str, container_id: str) -> None:
        """POST /containers/{id}/{verb} without ``t``.

        The SDK's ``stop``/``restart`` always send ``t=10``; Docker must use the
        container's own StopTimeout instead, so the request is built here.
        """

        def call() -> None:
            api = self._client()
            url = api._url("/containers/{0}/" + verb, container_id)
            response = api._post(url, timeout=self._timeout)
            api._raise_for_status(response)

        try:
            call()
        except Exception as exc:
            translated = _translate(exc)
            if isinstance(translated, DockerUnavailable):
                self.reset()
            raise translated from exc

    # --- events -----------------------------------------------------------------
    def events(self, *, since: str | None = None, until: str | None = None) -> EventStream:
        """Open ``GET /events`` for container events on a dedicated client.

        ``since``/``until`` are ``"<seconds>.<nanoseconds>"`` strings built from
        ``timeNano`` (the SDK would round a datetime to whole seconds).
        """
        try:
            api = docker.APIClient(base_url=self._base_url, version="auto", timeout=None)
            params: dict[str, Any] = {"filters": {"type": ["container"]}, "decode": True}
            if since is not None:
                params["since"] = since
            if until is not None:
                params["until"] = until
            return EventStream(api.events(**params))
        except Exception as exc:
            raise _translate(exc) from exc

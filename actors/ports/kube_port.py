"""The thin port to the Kubernetes API: the only module that speaks HTTP to the apiserver.

Why raw JSON: the generated ``CustomObjectsApi`` of kubernetes 36 deserialises into
plain dicts anyway, returns ``None`` for some 201 answers and cannot send server-side
apply to ``/status`` with a JSON body without content-type tricks. Every call here
goes through ``ApiClient.call_api(..., _preload_content=False)`` and parses the body
itself, so each write returns the object the server stored (its resourceVersion is
the base for the next optimistic write, docs/contract.md §4.5).

Every failure leaves this module as a :class:`KubeError` family with a retry decision
(``retryable``, ``retry_after``; see :mod:`actors.ports.port_errors`); nothing else escapes:

=====================================  ===========================  =========
answer                                 family                       retryable
=====================================  ===========================  =========
404                                    :class:`KubeNotFound`        no
409                                    :class:`KubeConflict`        yes
403 (incl. admission denial)           :class:`KubeForbidden`       no
401, credentials not refreshable       :class:`KubeUnauthorized`    yes
410 (resourceVersion too old)          :class:`KubeGone`            yes
400, 413, 415, 422, other 4xx,         :class:`KubeInvalid`         no
the client refusing the request
408, 429, 5xx, status 0, refused,      :class:`KubeUnavailable`     yes
reset, TLS, non-JSON body
read timeout after sending             :class:`KubeTimeout`         yes
                                       (a ``KubeUnavailable``)
=====================================  ===========================  =========

``retry_after`` comes from the ``Retry-After`` header of a 429/503 (or the Status
body's ``details.retryAfterSeconds``), clamped to 0..600 s.

Threads: an :class:`ApiClient` keeps a urllib3 pool and is safe to share; every method
here is a blocking call made from the calling actor's thread.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import logging
from collections.abc import Iterator
from typing import Any, ClassVar
from urllib.parse import quote, urlencode

import msgspec
import urllib3.exceptions
from kubernetes import client as k8s
from kubernetes.client.exceptions import OpenApiException
from kubernetes.client.rest import ApiException
from kubernetes.config.config_exception import ConfigException
from kubernetes.watch.watch import iter_resp_lines

from actors.domain.names import (
    ACTION_ANNOTATION,
    API_VERSION,
    APPLY_PATCH,
    CONTAINERS,
    ENGINE_MANAGER,
    FINALIZER,
    GROUP,
    JSON,
    MERGE_PATCH,
    VERSION,
)
from actors.infra import faults
from actors.ports.port_errors import (
    RETRY_AFTER_MAX_S,
    RETRY_AFTER_STATUSES,
    PortError,
    retry_after_from_headers,
)

log = logging.getLogger("dockmirror.kube_port")


DEFAULT_REQUEST_TIMEOUT = (5.0, 30.0)

_MERGE = MERGE_PATCH
_APPLY = APPLY_PATCH
_JSON = JSON


# msgspec decodes the apiserver's JSON several times faster than the json module; every
# write answer and every watch event of every mirror passes through here.
_decode = msgspec.json.decode


class KubeError(PortError):
    """An answer (or the lack of one) from the apiserver, with its HTTP status and message.

    Every instance has ``retryable`` and ``retry_after`` (see :mod:`actors.ports.port_errors`).
    Raise a family below, not this base: :func:`error_from_status` picks it.
    """

    #: The family's retry decision; ``None`` on the base class, which decides by status.
    family_retryable: ClassVar[bool | None] = None

    def __init__(
        self,
        status: int | None,
        message: str,
        *,
        reason: str = "",
        retry_after: float | None = None,
    ) -> None:
        super().__init__(f"{status} {reason}: {message}" if status else message)
        self.status = status
        self.reason = reason
        self.message = message
        family = type(self).family_retryable
        self.retryable = family if family is not None else status_retryable(status)
        self.retry_after = retry_after


class KubeNotFound(KubeError):
    """404: the object (or its namespace, or the CRD) does not exist. Not retryable."""

    family_retryable = False


class KubeConflict(KubeError):
    """409: a stale resourceVersion, or an object that already exists. Retryable after a
    fresh read (the resourceVersion precondition is what failed, not the request)."""

    family_retryable = True


class KubeInvalid(KubeError):
    """The server rejected the request itself: 400, 413 (body too large), 415, 422 (schema,
    enum, bad patch), any other 4xx without a family of its own, and the client library
    refusing to build the request. Not retryable: the same request fails the same way."""

    family_retryable = False


class KubeForbidden(KubeError):
    """403: forbidden, including an admission webhook's denial. Not retryable."""

    family_retryable = False


class KubeUnauthorized(KubeError):
    """401, or the client could not produce credentials: the token expired or was
    rotated. Retryable: a refreshed kubeconfig token makes the same request succeed."""

    family_retryable = True


class KubeGone(KubeError):
    """410: the list/watch resourceVersion is too old (compacted). Retryable after a
    relist from scratch; the watch reader does exactly that."""

    family_retryable = True


class KubeUnavailable(KubeError):
    """No usable answer: connection refused/reset, TLS failure, timeout, 408, 429, 5xx,
    an unparseable body. Retryable; ``retry_after`` is set when a 429/503 said how long."""

    family_retryable = True


class KubeTimeout(KubeUnavailable):
    """The request was sent but no answer arrived in time: the server may have applied
    it. Writes must therefore be safe to repeat (they are: resourceVersion preconditions
    and server-side apply)."""


def status_retryable(status: int | None) -> bool:
    """The retry decision for a bare status (the base class and unknown statuses)."""
    if status is None or status == 0:
        return True  # no answer at all: a transport failure
    return status in (401, 408, 409, 410, 429) or status >= 500 or status < 400


def _family_of(status: int) -> type[KubeError]:
    """Every status to one family; the table is the interface (docs/architecture.md)."""
    if status == 404:
        return KubeNotFound
    if status == 409:
        return KubeConflict
    if status == 403:
        return KubeForbidden
    if status == 401:
        return KubeUnauthorized
    if status == 410:
        return KubeGone
    if status in (408, 429) or status >= 500 or status < 400:
        # 0 (no answer), an unexpected 1xx/3xx (a proxy in the way) and >= 600 are
        # transport trouble as far as we can tell: retry.
        return KubeUnavailable
    return KubeInvalid  # 400, 413, 415, 422 and every other 4xx


def error_from_status(
    status: int | None,
    message: str,
    *,
    reason: str = "",
    retry_after: float | None = None,
) -> KubeError:
    """The family instance for an HTTP status (also used by the watch and the fakes)."""
    cls = _family_of(status or 0)
    return cls(status or None, message, reason=reason, retry_after=retry_after)


def _error_from_api_exception(exc: ApiException) -> KubeError:
    """Map the client's ApiException; a non-JSON, empty or odd body still gets a message."""
    status = exc.status if isinstance(exc.status, int) else 0
    message = str(exc.reason or "").strip() or f"HTTP {status}"
    reason = ""
    details_retry: float | None = None
    body: Any = exc.body
    if isinstance(body, bytes | bytearray):
        body = bytes(body).decode("utf-8", "replace")
    if body:
        try:
            decoded = json.loads(body)
        except (ValueError, TypeError):
            decoded = None
        if isinstance(decoded, dict):
            message = str(decoded.get("message") or message)
            reason = str(decoded.get("reason") or "")
            details = decoded.get("details")
            seconds = details.get("retryAfterSeconds") if isinstance(details, dict) else None
            if isinstance(seconds, int | float) and not isinstance(seconds, bool):
                details_retry = min(max(float(seconds), 0.0), RETRY_AFTER_MAX_S)
        else:
            message = str(body)[:500]
    retry_after = retry_after_from_headers(status, exc.headers)
    if retry_after is None and status in RETRY_AFTER_STATUSES:
        retry_after = details_retry  # the Status body's details.retryAfterSeconds
    return error_from_status(status, message, reason=reason, retry_after=retry_after)


def _is_read_timeout(exc: BaseException) -> bool:
    if isinstance(exc, urllib3.exceptions.MaxRetryError):
        return _is_read_timeout(exc.reason) if exc.reason is not None else False
    return isinstance(exc, urllib3.exceptions.ReadTimeoutError | TimeoutError)


def translate(exc: BaseException) -> KubeError:
    """Map anything the client library or the transport raised to a :class:`KubeError`.

    Called in the requesting thread. A timeout after the request was sent becomes
    :class:`KubeTimeout`; a connect timeout, refused or reset connection, TLS or protocol
    error :class:`KubeUnavailable`; the client refusing to build a request
    :class:`KubeInvalid`; credentials it cannot refresh :class:`KubeUnauthorized`.
    An exception of a type never seen before is logged with its traceback and reported
    as :class:`KubeUnavailable` (retried with backoff) instead of crashing the caller.
    """
    if isinstance(exc, KubeError):
        return exc
    text = f"{type(exc).__name__}: {exc}"
    if isinstance(exc, ApiException):
        return _error_from_api_exception(exc)
    if isinstance(exc, OpenApiException):  # ApiTypeError, ApiValueError, ...: a bad request
        return KubeInvalid(None, text)
    if isinstance(exc, ConfigException):  # token refresh (exec plugin, OIDC) failed
        return KubeUnauthorized(None, text)
    if _is_read_timeout(exc):
        return KubeTimeout(None, text)
    if isinstance(exc, urllib3.exceptions.HTTPError | OSError | http.client.HTTPException):
        return KubeUnavailable(None, text)
    if isinstance(exc, msgspec.DecodeError | ValueError):  # a truncated or non-JSON body
        return KubeUnavailable(None, f"answer is not JSON: {text}")
    log.warning("unclassified error from the Kubernetes client", exc_info=exc)
    return KubeUnavailable(None, f"unexpected {text}")


class KubeHttp:
    """Raw JSON requests through a shared :class:`kubernetes.client.ApiClient`."""

    def __init__(
        self,
        api_client: k8s.ApiClient,
        *,
        request_timeout: tuple[float, float] = DEFAULT_REQUEST_TIMEOUT,
    ) -> None:
        self.api_client = api_client
        self._timeout = request_timeout

    def request(
        self,
        method: str,
        path: str,
        *,
        query: dict[str, Any] | None = None,
        body: Any = None,
        content_type: str = _JSON,
        timeout: tuple[float, float] | None = None,
    ) -> dict[str, Any]:
        """Send one request; return the decoded JSON object; raise a KubeError family."""
        response = self.open(
            method, path, query=query, body=body, content_type=content_type, timeout=timeout
        )
        try:
            data = response.data  # the body is read here: it can time out or break too
        except Exception as exc:
            raise translate(exc) from exc
        finally:
            with contextlib.suppress(Exception):
                response.release_conn()
        if not data:
            return {}
        try:
            decoded = _decode(data)
        except msgspec.DecodeError as exc:
            raise KubeUnavailable(None, f"answer is not JSON: {data[:200]!r}") from exc
        return decoded if isinstance(decoded, dict) else {}

    def open(
        self,
        method: str,
        path: str,
        *,
        query: dict[str, Any] | None = None,
        body: Any = None,
        content_type: str = _JSON,
        timeout: tuple[float, float] | None = None,
        stream: bool = False,
    ) -> Any:
        """Send one request and return the raw urllib3 response (for watches).

        Every request passes here, so this is the one fault point of the port
        (``kube.request``; not for watch streams, ``stream=True``). Raises a KubeError
        family, never anything else.
        """
        fault = None if stream else faults.flaky("kube.request")
        if fault is not None and fault != "timeout_after":
            raise _injected(fault)
        full_path = path + ("?" + urlencode(query) if query else "")
        headers = {"Accept": JSON, "Content-Type": content_type}
        try:
            response = self.api_client.call_api(
                full_path,
                method,
                header_params=headers,
                body=body,
                auth_settings=["BearerToken"],
                _preload_content=False,
                _request_timeout=timeout or self._timeout,
                _return_http_data_only=True,
            )
        except Exception as exc:
            raise translate(exc) from exc
        if fault == "timeout_after":  # the server applied it; we "never heard back"
            with contextlib.suppress(Exception):
                response.drain_conn()
                response.release_conn()
            raise _injected(fault)
        return response


def _injected(fault: str) -> KubeError:
    """What the real failure named by a ``kube.request`` flaky fault raises."""
    if fault == "5xx":
        return KubeUnavailable(
            503, "injected fault: service unavailable", reason="ServiceUnavailable"
        )
    if fault == "429":
        return KubeUnavailable(
            429, "injected fault: too many requests", reason="TooManyRequests", retry_after=1.0
        )
    if fault == "timeout_after":
        return KubeTimeout(None, "injected fault: read timed out after the request was sent")
    if fault == "timeout":
        return KubeTimeout(None, "injected fault: read timed out")
    return KubeUnavailable(None, "injected fault: connection reset by peer")


def custom_path(namespace: str, plural: str, name: str | None = None, sub: str = "") -> str:
    path = f"/apis/{GROUP}/{VERSION}/namespaces/{quote(namespace, safe='')}/{plural}"
    if name is not None:
        path += "/" + quote(name, safe="")
    if sub:
        path += "/" + sub
    return path


CRD_PATH = "/apis/apiextensions.k8s.io/v1/customresourcedefinitions"


class CrdStore:
    """CustomResourceDefinitions: server-side apply, read, and the "is it served" list.

    Blocking calls in the caller's thread (the supervisor's main thread, at start);
    every failure is a :class:`KubeError` family.
    """

    def __init__(self, http: KubeHttp) -> None:
        self.http = http

    def apply(self, manifest: dict[str, Any], *, field_manager: str) -> dict[str, Any]:
        """Server-side apply of one CRD manifest (``force``: the manifest wins every
        field it names); creates the CRD when missing. Returns the stored object."""
        name = manifest["metadata"]["name"]
        return self.http.request(
            "PATCH",
            f"{CRD_PATH}/{quote(name, safe='')}",
            query={"fieldManager": field_manager, "force": "true"},
            body=manifest,
            content_type=_APPLY,
        )

    def get(self, name: str) -> dict[str, Any]:
        return self.http.request("GET", f"{CRD_PATH}/{quote(name, safe='')}")

    def list_served(
        self,
        group: str,
        version: str,
        plural: str,
        *,
        namespace: str | None,
        label_selector: str,
        timeout_s: float,
    ) -> None:
        """List ``plural`` (in ``namespace``, or cluster-wide when None) with a label
        selector; the answer is discarded: only whether it succeeds matters."""
        base = f"/apis/{group}/{version}"
        if namespace is not None:
            base += f"/namespaces/{quote(namespace, safe='')}"
        self.http.request(
            "GET",
            f"{base}/{plural}",
            query={"labelSelector": label_selector},
            timeout=(min(5.0, timeout_s), timeout_s),
        )


class WatchStream:
    """Iterates one watch response's events; :meth:`close` works from any thread."""

    def __init__(self, response: Any) -> None:
        self._response = response

    def __iter__(self) -> Iterator[dict[str, Any]]:
        try:
            for line in iter_resp_lines(self._response):
                if not line:
                    continue
                event = _decode(line)
                if isinstance(event, dict):
                    yield event
        except Exception as exc:  # transport errors, read timeouts, a truncated line
            error = translate(exc)
            raise type(error)(
                error.status, f"watch stream broke: {error.message}", reason=error.reason
            ) from exc
        finally:
            self._response.release_conn()

    def close(self) -> None:
        """Unblock a reader stuck in a read (socket shutdown), then close."""
        try:
            self._response.shutdown()
        except Exception:  # already closed, or an old urllib3
            pass
        with contextlib.suppress(Exception):
            self._response.close()


class MirrorStore:
    """Reads and writes the ``Container`` mirrors of one Kubernetes namespace.

    Every method is a blocking call in the caller's thread and raises a
    :class:`KubeError` subclass on failure. Writes return the stored object.
    """

    def __init__(self, http: KubeHttp, namespace: str) -> None:
        self.http = http
        self.namespace = namespace

    def _path(self, name: str | None = None, sub: str = "") -> str:
        return custom_path(self.namespace, CONTAINERS, name, sub)

    # --- reads ------------------------------------------------------------------
    def get(self, name: str) -> dict[str, Any]:
        return self.http.request("GET", self._path(name))

    def list(self) -> tuple[list[dict[str, Any]], str]:
        """All mirrors and the list's resourceVersion (the watch starts there)."""
        body = self.http.request("GET", self._path(), timeout=(5.0, 120.0))
        items = body.get("items") or []
        return items, str((body.get("metadata") or {}).get("resourceVersion") or "")

    def watch(
        self, resource_version: str, *, server_timeout_s: int, read_timeout_s: float
    ) -> WatchStream:
        """Raw watch events (``{"type":..., "object":...}``) from ``resource_version``.

        Bookmarks are requested. The server ends the stream after
        ``server_timeout_s``; the client read timeout breaks a dead connection.
        """
        response = self.http.open(
            "GET",
            self._path(),
            query={
                "watch": "1",
                "resourceVersion": resource_version,
                "allowWatchBookmarks": "true",
                "timeoutSeconds": str(server_timeout_s),
            },
            timeout=(5.0, read_timeout_s),
        )
        return WatchStream(response)

    # --- engine writes (SSA, manager ENGINE_MANAGER) ---------------------------
    def apply_metadata(self, name: str) -> dict[str, Any]:
        """Create the mirror if missing, re-assert the finalizer (docs/contract.md §2.6 step 2)."""
        body = {
            "apiVersion": API_VERSION,
            "kind": "Container",
            "metadata": {"name": name, "namespace": self.namespace, "finalizers": [FINALIZER]},
        }
        return self.http.request(
            "PATCH",
            self._path(name),
            query={"fieldManager": ENGINE_MANAGER, "force": "true"},
            body=body,
            content_type=_APPLY,
        )

    def apply_status(self, name: str, status: dict[str, Any]) -> dict[str, Any]:
        """SSA of the mirrored fields to ``/status`` (docs/contract.md §2.6 step 3).

        Fields this manager owned and now leaves out are removed. The conditions travel
        in this apply too; ``lastAction`` belongs to another manager and is untouched.
        """
        body = {
            "apiVersion": API_VERSION,
            "kind": "Container",
            "metadata": {"name": name, "namespace": self.namespace},
            "status": status,
        }
        return self.http.request(
            "PATCH",
            self._path(name, "status"),
            query={"fieldManager": ENGINE_MANAGER, "force": "true"},
            body=body,
            content_type=_APPLY,
        )

    # --- optimistic merge patches -----------------------------------------------
    def patch_status(
        self,
        name: str,
        status_patch: dict[str, Any],
        *,
        resource_version: str | None,
        field_manager: str,
    ) -> dict[str, Any]:
        """JSON merge patch of ``/status``; ``resource_version`` makes it conditional."""
        return self._merge_patch(
            self._path(name, "status"),
            {"status": status_patch},
            {},
            resource_version,
            field_manager,
        )

    def patch_metadata(
        self,
        name: str,
        metadata_patch: dict[str, Any],
        *,
        resource_version: str | None,
        field_manager: str,
    ) -> dict[str, Any]:
        """JSON merge patch of ``metadata`` on the main resource (passes admission)."""
        return self._merge_patch(
            self._path(name), {}, metadata_patch, resource_version, field_manager
        )

    def _merge_patch(
        self,
        path: str,
        body: dict[str, Any],
        metadata: dict[str, Any],
        resource_version: str | None,
        field_manager: str,
    ) -> dict[str, Any]:
        """A ``metadata.resourceVersion`` inside a merge patch is a precondition (409)."""
        metadata = dict(metadata)
        if resource_version is not None:
            metadata["resourceVersion"] = resource_version
        if metadata:
            body = {**body, "metadata": metadata}
        return self.http.request(
            "PATCH", path, query={"fieldManager": field_manager}, body=body, content_type=_MERGE
        )

    def delete(self, name: str) -> None:
        self.http.request("DELETE", self._path(name))


def is_terminating(obj: dict[str, Any]) -> bool:
    return bool((obj.get("metadata") or {}).get("deletionTimestamp"))


def annotation_of(obj: dict[str, Any]) -> str | None:
    annotations = (obj.get("metadata") or {}).get("annotations") or {}
    value = annotations.get(ACTION_ANNOTATION) if isinstance(annotations, dict) else None
    return value if isinstance(value, str) else None


def has_finalizer(obj: dict[str, Any]) -> bool:
    return FINALIZER in ((obj.get("metadata") or {}).get("finalizers") or [])


def resource_version_of(obj: dict[str, Any]) -> str | None:
    return (obj.get("metadata") or {}).get("resourceVersion")


# --- connecting -----------------------------------------------------------------------


def open_http(configuration: k8s.Configuration, *, pool_maxsize: int) -> KubeHttp:
    """A :class:`KubeHttp` on a new shared ``ApiClient`` for a loaded configuration
    (:func:`actors.ports.kube_connect.load_client_configuration`).

    ``pool_maxsize`` connections are kept per host: every container actor may hold one,
    and the client's default (5 per CPU) made parallel actions drop and re-handshake
    connections. Main thread, at start; no request is sent.
    """
    configuration.connection_pool_maxsize = pool_maxsize
    return KubeHttp(k8s.ApiClient(configuration))


# --- admission ---------------------------------------------------------------------------

WEBHOOK_CONFIGS_PATH = "/apis/admissionregistration.k8s.io/v1/validatingwebhookconfigurations"


class WebhookConfigs:
    """``ValidatingWebhookConfiguration`` objects (cluster-scoped), raw JSON.

    Blocking calls in the caller's thread (the supervisor's main thread); every failure
    is a :class:`KubeError` family (409 when it exists / a stale resourceVersion, 404
    when missing, 403 without the permission).
    """

    def __init__(self, http: KubeHttp) -> None:
        self.http = http

    def _path(self, name: str | None = None) -> str:
        return WEBHOOK_CONFIGS_PATH + ("/" + quote(name, safe="") if name is not None else "")

    def create(self, body: dict[str, Any]) -> dict[str, Any]:
        return self.http.request("POST", self._path(), body=body)

    def get(self, name: str) -> dict[str, Any]:
        return self.http.request("GET", self._path(name))

    def replace(self, name: str, body: dict[str, Any]) -> dict[str, Any]:
        """PUT; a ``metadata.resourceVersion`` in ``body`` makes it conditional (409)."""
        return self.http.request("PUT", self._path(name), body=body)

    def delete(self, name: str) -> None:
        self.http.request("DELETE", self._path(name))


def dry_run_create(http: KubeHttp, namespace: str, plural: str, body: dict[str, Any]) -> None:
    """A server-side dry-run CREATE of a custom object: admission runs, nothing is stored.

    The start-up probes use it to prove that a policy or webhook denies what it must
    (docs/admission.md); a denial is :class:`KubeForbidden` with the apiserver's text.
    """
    http.request("POST", custom_path(namespace, plural), query={"dryRun": "All"}, body=body)


# --- events ------------------------------------------------------------------------------

EVENTS_API = "/apis/events.k8s.io/v1"


class EventStore:
    """``events.k8s.io/v1`` Events of one namespace, raw JSON.

    Blocking calls in the caller's thread (the event writer actor's); every failure is a
    :class:`KubeError` family (422 for an Event the apiserver's validation refuses, 404
    for a series whose Event expired, ``--event-ttl``).
    """

    def __init__(self, http: KubeHttp, namespace: str) -> None:
        self.http = http
        self.namespace = namespace

    def _path(self, name: str | None = None) -> str:
        path = f"{EVENTS_API}/namespaces/{quote(self.namespace, safe='')}/events"
        return path + ("/" + quote(name, safe="") if name is not None else "")

    def create(self, event: dict[str, Any]) -> dict[str, Any]:
        return self.http.request("POST", self._path(), body=event)

    def patch_series(self, name: str, count: int, last_observed_time: str) -> dict[str, Any]:
        """Merge patch of ``series`` (``count`` >= 2, ``lastObservedTime`` a MicroTime)."""
        body = {"series": {"count": count, "lastObservedTime": last_observed_time}}
        return self.http.request("PATCH", self._path(name), body=body, content_type=MERGE_PATCH)

    def list(self, *, field_selector: str = "") -> list[dict[str, Any]]:
        """Events of the namespace, e.g. ``field_selector="regarding.uid=<uid>"``."""
        query = {"fieldSelector": field_selector} if field_selector else None
        return list(self.http.request("GET", self._path(), query=query).get("items") or [])

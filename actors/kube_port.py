"""The thin port to the Kubernetes API: the only module that speaks HTTP to the apiserver.

Why raw JSON: the generated ``CustomObjectsApi`` of kubernetes 36 deserialises into
plain dicts anyway, returns ``None`` for some 201 answers and cannot send server-side
apply to ``/status`` with a JSON body without content-type tricks. Every call here
goes through ``ApiClient.call_api(..., _preload_content=False)`` and parses the body
itself, so each write returns the object the server stored (its resourceVersion is
the base for the next optimistic write, spec §4.5).

Errors are mapped to a small taxonomy the actors reason about:

* :class:`KubeNotFound` (404), :class:`KubeConflict` (409), :class:`KubeInvalid`
  (400/422, e.g. a CRD enum rejecting garbage), :class:`KubeForbidden` (403, e.g. an
  admission webhook denial);
* :class:`KubeUnavailable`: connection failures, timeouts, 429 and 5xx: retry later.

Threads: an :class:`ApiClient` keeps a urllib3 pool and is safe to share; every method
here is a blocking call made from the calling actor's thread.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator
from typing import Any
from urllib.parse import quote, urlencode

import msgspec
import urllib3.exceptions
from kubernetes import client as k8s
from kubernetes.client.rest import ApiException
from kubernetes.watch.watch import iter_resp_lines

GROUP = "containers.rancherdesktop.io"
VERSION = "v1alpha1"
API_VERSION = f"{GROUP}/{VERSION}"
CONTAINERS = "containers"
CONTAINER_NAMESPACES = "containernamespaces"
FINALIZER = "engine.rancherdesktop.io/mirror"
ACTION_ANNOTATION = "containers.rancherdesktop.io/action"

# Field managers. The engine's SSA writes own the mirrored fields and the conditions
# derived from them (spec §2.6); lastAction is written by another manager so the
# engine's apply never removes it.
ENGINE_MANAGER = "engine-controller"
ACTIONS_MANAGER = "dockmirror-actions"

DEFAULT_REQUEST_TIMEOUT = (5.0, 30.0)

_MERGE = "application/merge-patch+json"
_APPLY = "application/apply-patch+yaml"
_JSON = "application/json"


# msgspec decodes the apiserver's JSON several times faster than the json module; every
# write answer and every watch event of every mirror passes through here.
_decode = msgspec.json.decode


class KubeError(Exception):
    """An error answer from the apiserver, with its HTTP status and message."""

    def __init__(self, status: int | None, message: str, *, reason: str = "") -> None:
        super().__init__(f"{status} {reason}: {message}" if status else message)
        self.status = status
        self.reason = reason
        self.message = message


class KubeNotFound(KubeError):
    """404: the object (or its namespace, or the CRD) does not exist."""


class KubeConflict(KubeError):
    """409: a stale resourceVersion, or an object that already exists."""


class KubeInvalid(KubeError):
    """400/422: the server rejected the body (schema, enum, bad patch)."""


class KubeForbidden(KubeError):
    """403: forbidden, including an admission webhook's denial."""


class KubeUnavailable(KubeError):
    """Could not get an answer: connection failure, timeout, 429 or 5xx."""


def _error_from_api_exception(exc: ApiException) -> KubeError:
    status = exc.status or 0
    message = exc.reason or ""
    reason = ""
    try:
        body = json.loads(exc.body) if exc.body else {}
        if isinstance(body, dict):
            message = body.get("message") or message
            reason = body.get("reason") or ""
    except (ValueError, TypeError):
        if exc.body:
            message = str(exc.body)[:500]
    cls: type[KubeError]
    if status == 404:
        cls = KubeNotFound
    elif status == 409:
        cls = KubeConflict
    elif status in (400, 415, 422):
        cls = KubeInvalid
    elif status == 403:
        cls = KubeForbidden
    elif status == 429 or status >= 500 or status == 0:
        cls = KubeUnavailable
    else:
        cls = KubeError
    return cls(status or None, message, reason=reason)


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
        """Send one request; return the decoded JSON object; raise a KubeError."""
        response = self.open(
            method, path, query=query, body=body, content_type=content_type, timeout=timeout
        )
        try:
            data = response.data
        finally:
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
        """Send one request and return the raw urllib3 response (for watches)."""
        full_path = path + ("?" + urlencode(query) if query else "")
        headers = {"Accept": "application/json", "Content-Type": content_type}
        try:
            return self.api_client.call_api(
                full_path,
                method,
                header_params=headers,
                body=body,
                auth_settings=["BearerToken"],
                _preload_content=False,
                _request_timeout=timeout or self._timeout,
                _return_http_data_only=True,
            )
        except ApiException as exc:
            raise _error_from_api_exception(exc) from exc
        except (urllib3.exceptions.HTTPError, OSError) as exc:
            raise KubeUnavailable(None, f"{type(exc).__name__}: {exc}") from exc


def custom_path(namespace: str, plural: str, name: str | None = None, sub: str = "") -> str:
    path = f"/apis/{GROUP}/{VERSION}/namespaces/{quote(namespace, safe='')}/{plural}"
    if name is not None:
        path += "/" + quote(name, safe="")
    if sub:
        path += "/" + sub
    return path


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
        except (urllib3.exceptions.HTTPError, OSError, ValueError) as exc:  # DecodeError too
            raise KubeUnavailable(None, f"watch stream broke: {exc}") from exc
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

    # --- engine writes (SSA, manager engine-controller) --------------------------
    def apply_metadata(self, name: str) -> dict[str, Any]:
        """Create the mirror if missing and re-assert the finalizer (spec §2.6 step 2)."""
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
        """SSA of the mirrored fields to ``/status`` (spec §2.6 step 3).

        Fields this manager owned and now leaves out are removed; ``lastAction`` and
        ``conditions`` belong to other managers and are untouched.
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

"""Every answer the apiserver (or the road to it) can give lands in a KubeError family.

Table tests drive :class:`KubeHttp` with a stand-in ``ApiClient`` whose ``call_api``
raises exactly what the kubernetes client raises (``ApiException`` built from an HTTP
response, urllib3 and socket errors), so the mapping is tested at the port boundary.
"""

from __future__ import annotations

import http.client
import time
from datetime import UTC, datetime
from email.utils import format_datetime
from typing import Any

import pytest
import urllib3.exceptions
from kubernetes.client.exceptions import ApiTypeError, ApiValueError
from kubernetes.client.rest import ApiException
from kubernetes.config.config_exception import ConfigException
from urllib3._collections import HTTPHeaderDict

from actors.infra import faults
from actors.ports.kube_port import (
    KubeConflict,
    KubeError,
    KubeForbidden,
    KubeGone,
    KubeHttp,
    KubeInvalid,
    KubeNotFound,
    KubeTimeout,
    KubeUnauthorized,
    KubeUnavailable,
    WatchStream,
    error_from_status,
    translate,
)
from actors.ports.port_errors import (
    RETRY_AFTER_MAX_S,
    is_retryable,
    parse_retry_after,
    retry_after_of,
)


class _Resp:
    """What ``ApiException(http_resp=...)`` reads: status, reason, data, getheaders()."""

    def __init__(self, status: int, body: bytes | str | None, headers: dict[str, str]) -> None:
        self.status = status
        self.reason = http.client.responses.get(status, "")
        self.data = body
        self._headers = HTTPHeaderDict(headers)

    def getheaders(self) -> HTTPHeaderDict:
        return self._headers


def api_exception(
    status: int, body: bytes | str | None = None, headers: dict[str, str] | None = None
) -> ApiException:
    return ApiException(http_resp=_Resp(status, body, headers or {}))


def status_body(code: int, reason: str, message: str) -> bytes:
    return (
        f'{{"kind":"Status","apiVersion":"v1","status":"Failure","message":"{message}",'
        f'"reason":"{reason}","code":{code}}}'
    ).encode()


class _RaisingClient:
    """A stand-in ApiClient: ``call_api`` raises the given exception (or returns it)."""

    def __init__(self, outcome: BaseException | Any) -> None:
        self.outcome = outcome
        self.calls = 0

    def call_api(self, *args: Any, **kwargs: Any) -> Any:
        self.calls += 1
        if isinstance(self.outcome, BaseException):
            raise self.outcome
        return self.outcome


def _raised_by(exc: BaseException) -> KubeError:
    http = KubeHttp(_RaisingClient(exc))  # type: ignore[arg-type]
    with pytest.raises(KubeError) as err:
        http.request("GET", "/api/v1/namespaces/x")
    return err.value


#: Stands for an HTTP-date 30 s ahead, built when the test runs (not at collection).
HTTP_DATE_IN_30S = "<http-date in 30 s>"

# (status, body, headers, family, retryable, retry_after check)
STATUS_TABLE: list[tuple[int, bytes | str | None, dict[str, str], type, bool, Any]] = [
    (400, status_body(400, "BadRequest", "bad patch"), {}, KubeInvalid, False, None),
    (401, status_body(401, "Unauthorized", "Unauthorized"), {}, KubeUnauthorized, True, None),
    (403, status_body(403, "Forbidden", "denied"), {}, KubeForbidden, False, None),
    (404, status_body(404, "NotFound", "not found"), {}, KubeNotFound, False, None),
    (405, b"", {}, KubeInvalid, False, None),
    (408, status_body(408, "Timeout", "request timeout"), {}, KubeUnavailable, True, None),
    (409, status_body(409, "Conflict", "modified"), {}, KubeConflict, True, None),
    (410, status_body(410, "Expired", "too old"), {}, KubeGone, True, None),
    (413, b"request entity too large", {}, KubeInvalid, False, None),
    (415, status_body(415, "UnsupportedMediaType", "no"), {}, KubeInvalid, False, None),
    (422, status_body(422, "Invalid", "enum"), {}, KubeInvalid, False, None),
    (
        429,
        status_body(429, "TooManyRequests", "slow"),
        {"Retry-After": "3"},
        KubeUnavailable,
        True,
        3.0,
    ),
    (429, b"", {"retry-after": HTTP_DATE_IN_30S}, KubeUnavailable, True, "about 30"),
    (429, b"", {"Retry-After": "86400"}, KubeUnavailable, True, RETRY_AFTER_MAX_S),
    (429, b"", {"Retry-After": "soon"}, KubeUnavailable, True, None),
    (500, b"", {}, KubeUnavailable, True, None),
    (502, b"<html>bad gateway</html>", {}, KubeUnavailable, True, None),
    (
        503,
        status_body(503, "ServiceUnavailable", "x"),
        {"Retry-After": "1"},
        KubeUnavailable,
        True,
        1.0,
    ),
    (504, None, {}, KubeUnavailable, True, None),
    (302, b"", {}, KubeUnavailable, True, None),
]


@pytest.mark.parametrize(
    ("status", "body", "headers", "family", "retryable", "retry_after"),
    STATUS_TABLE,
    ids=[f"{row[0]}-{i}" for i, row in enumerate(STATUS_TABLE)],
)
def test_every_status_maps_to_a_family(status, body, headers, family, retryable, retry_after):
    if HTTP_DATE_IN_30S in headers.values():
        when = datetime.fromtimestamp(time.time() + 30, UTC)
        headers = {k: format_datetime(when, usegmt=True) for k in headers}
    err = _raised_by(api_exception(status, body, headers))
    assert type(err) is family
    assert err.status == status
    assert err.retryable is retryable
    assert is_retryable(err) is retryable
    if retry_after == "about 30":
        assert err.retry_after is not None and 25 <= err.retry_after <= 30
    else:
        assert err.retry_after == retry_after
    assert retry_after_of(err) == err.retry_after
    assert err.message  # never empty, whatever the body was


def test_status_body_message_and_reason_are_used():
    err = _raised_by(api_exception(422, status_body(422, "Invalid", "lastAction.state: bad")))
    assert (err.message, err.reason) == ("lastAction.state: bad", "Invalid")
    assert str(err) == "422 Invalid: lastAction.state: bad"


def test_non_json_and_empty_bodies_still_give_a_message():
    assert _raised_by(api_exception(502, b"<html>oops</html>")).message == "<html>oops</html>"
    assert _raised_by(api_exception(500, b"")).message == "Internal Server Error"
    assert _raised_by(api_exception(500, b"\xff\xfe")).message  # not UTF-8
    assert _raised_by(api_exception(500, b"[1, 2]")).message == "[1, 2]"


def test_retry_after_from_status_details_when_no_header():
    body = (
        b'{"kind":"Status","code":429,"reason":"TooManyRequests","message":"m",'
        b'"details":{"retryAfterSeconds":2}}'
    )
    assert _raised_by(api_exception(429, body)).retry_after == 2.0
    # The header wins over the body.
    assert _raised_by(api_exception(429, body, {"Retry-After": "5"})).retry_after == 5.0
    # Only 429 and 503 carry a delay.
    assert _raised_by(api_exception(500, b"", {"Retry-After": "5"})).retry_after is None


TRANSPORT_TABLE: list[tuple[BaseException, type]] = [
    (ApiException(status=0, reason="SSLError\ncertificate verify failed"), KubeUnavailable),
    (ApiException(status=None, reason=None), KubeUnavailable),
    (urllib3.exceptions.SSLError("handshake"), KubeUnavailable),
    (
        urllib3.exceptions.ProtocolError("Connection aborted.", ConnectionResetError(104)),
        KubeUnavailable,
    ),
    (urllib3.exceptions.NewConnectionError(None, "Connection refused"), KubeUnavailable),  # type: ignore[arg-type]
    (urllib3.exceptions.ConnectTimeoutError("connect timed out"), KubeUnavailable),
    (urllib3.exceptions.ReadTimeoutError(None, "/x", "Read timed out."), KubeTimeout),  # type: ignore[arg-type]
    (
        urllib3.exceptions.MaxRetryError(
            None, "/x", urllib3.exceptions.ReadTimeoutError(None, "/x", "timed out")
        ),  # type: ignore[arg-type]
        KubeTimeout,
    ),
    (
        urllib3.exceptions.MaxRetryError(
            None, "/x", urllib3.exceptions.NewConnectionError(None, "refused")
        ),  # type: ignore[arg-type]
        KubeUnavailable,
    ),
    (ConnectionRefusedError(111, "Connection refused"), KubeUnavailable),
    (ConnectionResetError(104, "Connection reset by peer"), KubeUnavailable),
    (TimeoutError("timed out"), KubeTimeout),
    (OSError(101, "Network is unreachable"), KubeUnavailable),
    (http.client.RemoteDisconnected("Remote end closed connection"), KubeUnavailable),
    (ApiValueError("body parameter cannot be used with post_params"), KubeInvalid),
    (ApiTypeError("bad type"), KubeInvalid),
    (ConfigException("exec plugin failed to refresh the token"), KubeUnauthorized),
    (RuntimeError("something no one expected"), KubeUnavailable),
]


@pytest.mark.parametrize(
    ("exc", "family"), TRANSPORT_TABLE, ids=[type(e).__name__ for e, _ in TRANSPORT_TABLE]
)
def test_transport_and_client_exceptions_map_to_a_family(exc, family):
    err = _raised_by(exc)
    assert type(err) is family
    assert err.retryable is (family is not KubeInvalid)
    assert err.retry_after is None
    assert isinstance(err.__cause__, type(exc))  # the original stays attached for logs


class _Body:
    """An un-preloaded urllib3 response whose body read fails (or is not JSON)."""

    def __init__(self, data: bytes | BaseException) -> None:
        self._data = data
        self.released = False

    @property
    def data(self) -> bytes:
        if isinstance(self._data, BaseException):
            raise self._data
        return self._data

    def release_conn(self) -> None:
        self.released = True

    def drain_conn(self) -> None:
        pass


@pytest.mark.parametrize(
    ("body", "family"),
    [
        (urllib3.exceptions.ReadTimeoutError(None, "/x", "Read timed out."), KubeTimeout),  # type: ignore[arg-type]
        (urllib3.exceptions.ProtocolError("Connection broken: IncompleteRead"), KubeUnavailable),
        (b'{"kind": "Container", "meta', KubeUnavailable),  # truncated JSON
        (b"<html>proxy</html>", KubeUnavailable),
    ],
)
def test_body_read_failures_are_classified_and_release_the_connection(body, family):
    response = _Body(body)
    with pytest.raises(KubeError) as err:
        KubeHttp(_RaisingClient(response)).request("GET", "/x")  # type: ignore[arg-type]
    assert type(err.value) is family and err.value.retryable
    assert response.released


def test_empty_and_non_object_bodies_are_empty_dicts():
    assert KubeHttp(_RaisingClient(_Body(b""))).request("DELETE", "/x") == {}  # type: ignore[arg-type]
    assert KubeHttp(_RaisingClient(_Body(b"[]"))).request("GET", "/x") == {}  # type: ignore[arg-type]


def test_watch_stream_breaks_are_classified():
    class _Stream:
        def stream(self, *args: Any, **kwargs: Any):
            raise urllib3.exceptions.ReadTimeoutError(None, "/x", "Read timed out.")  # type: ignore[arg-type]

        def read_chunked(self, *args: Any, **kwargs: Any):
            return self.stream()

        def release_conn(self) -> None:
            pass

        chunked = False

    with pytest.raises(KubeTimeout) as err:
        list(WatchStream(_Stream()))
    assert err.value.message.startswith("watch stream broke: ")


def test_error_from_status_is_total():
    for status in [None, 0, *range(100, 700)]:
        err = error_from_status(status, "m")
        assert isinstance(err, KubeError) and type(err) is not KubeError
        assert isinstance(err.retryable, bool)
    assert not error_from_status(418, "teapot").retryable
    assert error_from_status(599, "x").retryable


def test_base_class_decides_retry_by_status():
    assert KubeError(500, "x").retryable and KubeError(None, "x").retryable
    assert not KubeError(400, "x").retryable and not KubeError(404, "x").retryable
    assert KubeError(409, "x").retryable and KubeError(401, "x").retryable


def test_translate_keeps_port_errors():
    err = KubeConflict(409, "x")
    assert translate(err) is err


# --- helpers ------------------------------------------------------------------------------


def test_parse_retry_after_forms_and_clamping():
    now = 1_700_000_000.0
    date = format_datetime(datetime.fromtimestamp(now + 42, UTC), usegmt=True)
    past = format_datetime(datetime.fromtimestamp(now - 42, UTC), usegmt=True)
    assert parse_retry_after("7", now=lambda: now) == 7.0
    assert parse_retry_after(" 0 ", now=lambda: now) == 0.0
    assert parse_retry_after(date, now=lambda: now) == 42.0
    assert parse_retry_after(past, now=lambda: now) == 0.0
    assert parse_retry_after("-5", now=lambda: now) == 0.0
    assert parse_retry_after("100000", now=lambda: now) == RETRY_AFTER_MAX_S
    for junk in (None, "", "soon", "nan", "Mon, 99 Foo 2020"):
        assert parse_retry_after(junk, now=lambda: now) is None


def test_helpers_on_foreign_exceptions():
    assert is_retryable(ValueError("bug")) is False
    assert retry_after_of(ValueError("bug")) is None
    assert is_retryable(KubeUnavailable(429, "x", retry_after=2.0))
    assert retry_after_of(KubeUnavailable(429, "x", retry_after=2.0)) == 2.0


# --- fault point ----------------------------------------------------------------------------


class _Ok:
    """A successful un-preloaded response."""

    def __init__(self) -> None:
        self.data = b'{"ok": true}'
        self.drained = False

    def release_conn(self) -> None:
        pass

    def drain_conn(self) -> None:
        self.drained = True


@pytest.mark.parametrize(
    ("fault", "family", "status", "retry_after", "sent"),
    [
        ("5xx", KubeUnavailable, 503, None, 0),
        ("429", KubeUnavailable, 429, 1.0, 0),
        ("timeout", KubeTimeout, None, None, 0),
        ("reset", KubeUnavailable, None, None, 0),
        ("timeout_after", KubeTimeout, None, None, 1),
    ],
)
def test_flaky_fault_point_raises_what_the_real_failure_raises(
    monkeypatch, fault, family, status, retry_after, sent
):
    monkeypatch.setattr(faults, "flaky", lambda point: fault if point == "kube.request" else None)
    client = _RaisingClient(_Ok())
    with pytest.raises(KubeError) as err:
        KubeHttp(client).request("PATCH", "/x")  # type: ignore[arg-type]
    assert type(err.value) is family and err.value.status == status
    assert err.value.retry_after == retry_after and err.value.retryable
    assert client.calls == sent  # "timeout_after": the server got (and applied) it


def test_flaky_fault_point_skips_watch_streams(monkeypatch):
    monkeypatch.setattr(faults, "flaky", lambda point: "5xx")
    response = _Ok()
    assert KubeHttp(_RaisingClient(response)).open("GET", "/x", stream=True) is response  # type: ignore[arg-type]


def test_flaky_is_silent_without_configuration():
    assert faults.flaky("kube.request") is None
    assert faults.flaky("docker.call") is None

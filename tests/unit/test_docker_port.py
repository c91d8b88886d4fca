"""The Docker port: every answer and exception lands in a family; every call is bounded.

Two layers:

* table tests of :func:`actors.ports.docker_port.translate` and of :class:`DockerPort` with a
  stand-in SDK client, for every status and transport exception of issue 10;
* transport tests against a tiny HTTP server on a Unix socket speaking the few
  endpoints we need like dockerd does (``/version``, ``/_ping``, ``/events`` with the
  headers flushed first, ``stop`` with 204), which can hang or cut a connection. They
  check what only the real SDK can show: the ping bound, the event stream surviving a
  quiet period longer than every bound, ``close()`` from another thread.
"""

from __future__ import annotations

import http.client
import json
import os
import socket
import socketserver
import threading
import time
import urllib.parse
from collections.abc import Iterator
from datetime import UTC, datetime
from email.utils import format_datetime
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any

import docker.errors
import pytest
import requests
import requests.exceptions
import urllib3.exceptions

from actors.domain.names import JSON
from actors.infra import faults
from actors.ports.docker_port import (
    CALL_TIMEOUT_S,
    DEFAULT_STOP_TIMEOUT_S,
    PING_TIMEOUT_S,
    STOP_MARGIN_S,
    UNBOUNDED_STOP_WAIT_S,
    DockerError,
    DockerInUse,
    DockerNotFound,
    DockerPort,
    DockerTimeout,
    DockerUnavailable,
    stop_call_timeout,
    translate,
)
from actors.ports.port_errors import PortError, is_retryable, retry_after_of
from tests.support.wait import wait_for


def _response(status: int, body: bytes = b"", headers: dict[str, str] | None = None):
    r = requests.Response()
    r.status_code = status
    r.reason = http.client.responses.get(status, "")
    r._content = body
    r.headers.update(headers or {})
    r.url = "http+docker://localhost/v1.41/containers/x/json"
    return r


def api_error(status: int, message: str, headers: dict[str, str] | None = None):
    """What the SDK raises for an error answer (``create_api_error_from_http_exception``)."""
    response = _response(status, json.dumps({"message": message}).encode(), headers)
    try:
        response.raise_for_status()
    except requests.exceptions.HTTPError as exc:
        from docker.errors import create_api_error_from_http_exception

        try:
            create_api_error_from_http_exception(exc)
        except docker.errors.APIError as api_exc:
            return api_exc
    raise AssertionError("not an error status")


def _in_30s() -> str:
    return format_datetime(datetime.fromtimestamp(time.time() + 30, UTC), usegmt=True)


# (exception factory, family, retryable, retry_after, status_code)
TABLE: list[tuple[str, Any, type, bool, Any, int | None]] = [
    ("400", lambda: api_error(400, "invalid reference format"), DockerError, False, None, 400),
    ("401", lambda: api_error(401, "unauthorized"), DockerError, False, None, 401),
    ("403", lambda: api_error(403, "forbidden by plugin"), DockerError, False, None, 403),
    ("404", lambda: api_error(404, "No such container: x"), DockerNotFound, False, None, 404),
    ("408", lambda: api_error(408, "request timeout"), DockerError, False, None, 408),
    ("409", lambda: api_error(409, "is already paused"), DockerError, False, None, 409),
    ("410", lambda: api_error(410, "gone"), DockerError, False, None, 410),
    ("413", lambda: api_error(413, "too large"), DockerError, False, None, 413),
    ("422", lambda: api_error(422, "unprocessable"), DockerError, False, None, 422),
    (
        "429-delta",
        lambda: api_error(429, "slow down", {"Retry-After": "4"}),
        DockerError,
        True,
        4.0,
        429,
    ),
    (
        "429-date",
        lambda: api_error(429, "slow down", {"Retry-After": _in_30s()}),
        DockerError,
        True,
        "about 30",
        429,
    ),
    ("500", lambda: api_error(500, "Container x is not paused"), DockerError, True, None, 500),
    ("503", lambda: api_error(503, "busy", {"Retry-After": "2"}), DockerError, True, 2.0, 503),
    (
        "refused",
        lambda: requests.exceptions.ConnectionError(
            urllib3.exceptions.ProtocolError("Connection aborted.", ConnectionRefusedError(111))
        ),
        DockerUnavailable,
        True,
        None,
        None,
    ),
    (
        "reset",
        lambda: requests.exceptions.ConnectionError(
            urllib3.exceptions.ProtocolError("Connection aborted.", ConnectionResetError(104))
        ),
        DockerUnavailable,
        True,
        None,
        None,
    ),
    (
        "no-socket",
        lambda: FileNotFoundError(2, "No such file or directory"),
        DockerUnavailable,
        True,
        None,
        None,
    ),
    (
        "read-timeout",
        lambda: requests.exceptions.ReadTimeout("Read timed out. (read timeout=30)"),
        DockerTimeout,
        True,
        None,
        None,
    ),
    (
        "connect-timeout",
        lambda: requests.exceptions.ConnectTimeout("connect timed out"),
        DockerUnavailable,
        True,
        None,
        None,
    ),
    (
        "urllib3-read-timeout",
        lambda: urllib3.exceptions.ReadTimeoutError(None, "/x", "Read timed out."),
        DockerTimeout,
        True,
        None,
        None,
    ),  # type: ignore[arg-type]
    ("socket-timeout", lambda: TimeoutError("timed out"), DockerTimeout, True, None, None),
    (
        "chunked",
        lambda: requests.exceptions.ChunkedEncodingError("Connection broken"),
        DockerUnavailable,
        True,
        None,
        None,
    ),
    (
        "json",
        lambda: requests.exceptions.JSONDecodeError("Expecting value", '{"Id": "ab', 10),
        DockerUnavailable,
        True,
        None,
        None,
    ),
    (
        "plain-json",
        lambda: json.JSONDecodeError("Unterminated string", '{"Id": "ab', 7),
        DockerUnavailable,
        True,
        None,
        None,
    ),
    (
        "remote-disconnected",
        lambda: http.client.RemoteDisconnected("closed"),
        DockerUnavailable,
        True,
        None,
        None,
    ),
    (
        "docker-exception",
        lambda: docker.errors.DockerException("Error while fetching server API version: boom"),
        DockerUnavailable,
        True,
        None,
        None,
    ),
    (
        "unexpected",
        lambda: RuntimeError("no one expected this"),
        DockerUnavailable,
        True,
        None,
        None,
    ),
]


@pytest.mark.parametrize(
    ("make", "family", "retryable", "retry_after", "status"),
    [row[1:] for row in TABLE],
    ids=[row[0] for row in TABLE],
)
def test_every_answer_maps_to_a_family(make, family, retryable, retry_after, status):
    err = translate(make())
    assert type(err) is family
    assert err.retryable is retryable and is_retryable(err) is retryable
    if retry_after == "about 30":
        assert err.retry_after is not None and 25 <= err.retry_after <= 30
    else:
        assert err.retry_after == retry_after
    assert retry_after_of(err) == err.retry_after
    if isinstance(err, DockerError):
        assert err.status_code == status
        assert str(err) == f"Error response from daemon: {err.daemon_message}"


def test_daemon_message_is_the_contract_error_text():
    err = translate(api_error(409, "Container abc is not running"))
    assert isinstance(err, DockerError)
    assert str(err) == "Error response from daemon: Container abc is not running"


def test_version_negotiation_timeout_is_a_timeout():
    """The SDK wraps the negotiation's error in a DockerException ``from`` the timeout."""
    try:
        try:
            raise requests.exceptions.ReadTimeout("Read timed out.")
        except requests.exceptions.ReadTimeout as cause:
            raise docker.errors.DockerException("Error while fetching server API version") from (
                cause
            )
    except docker.errors.DockerException as exc:
        assert type(translate(exc)) is DockerTimeout


def test_stop_call_timeout_follows_the_containers_stop_timeout():
    assert stop_call_timeout(None) == DEFAULT_STOP_TIMEOUT_S + STOP_MARGIN_S
    assert stop_call_timeout(0) == STOP_MARGIN_S
    assert stop_call_timeout(120) == 120 + STOP_MARGIN_S
    assert stop_call_timeout(-1) == UNBOUNDED_STOP_WAIT_S  # Docker waits forever
    assert PING_TIMEOUT_S == 5.0 and CALL_TIMEOUT_S <= 60


# --- DockerPort with a stand-in SDK client ---------------------------------------------------


class _Api:
    """Records the SDK calls DockerPort makes; ``fail`` makes the next one raise."""

    api_version = "1.41"
    timeout = CALL_TIMEOUT_S

    def __init__(self) -> None:
        self.calls: list[tuple[str, Any, dict[str, Any]]] = []
        self.fail: BaseException | None = None
        self.closed = False

    def _url(self, template: str, *args: str) -> str:
        return template.format(*args)

    def _record(self, name: str, *args: Any, **kwargs: Any) -> Any:
        self.calls.append((name, args, kwargs))
        if self.fail is not None:
            exc, self.fail = self.fail, None
            raise exc
        return _response(204)

    def _post(self, url: str, **kwargs: Any) -> Any:
        return self._record("_post", url, **kwargs)

    def _get(self, url: str, **kwargs: Any) -> Any:
        return self._record("_get", url, **kwargs)

    def _raise_for_status(self, response: Any) -> None:
        pass

    def _result(self, response: Any, json: bool = False) -> Any:
        return {"SystemTime": "2026-01-01T00:00:00.5Z"} if json else "OK"

    def inspect_container(self, cid: str) -> dict[str, Any]:
        self._record("inspect_container", cid)
        return {"Id": cid}

    def start(self, cid: str) -> None:
        self._record("start", cid)

    def pause(self, cid: str) -> None:
        self._record("pause", cid)

    def unpause(self, cid: str) -> None:
        self._record("unpause", cid)

    def remove_container(self, cid: str, **kwargs: Any) -> None:
        self._record("remove_container", cid, **kwargs)

    def containers(self, **kwargs: Any) -> list[dict[str, str]]:
        self._record("containers", **kwargs)
        return [{"Id": "a"}, {"Id": "b"}]

    def _delete(self, url: str, **kwargs: Any) -> Any:
        return self._record("_delete", url, **kwargs)

    def images(self, **kwargs: Any) -> Any:
        self._record("images", **kwargs)
        return self.image_list

    def inspect_image(self, ref: str) -> dict[str, Any]:
        self._record("inspect_image", ref)
        return {"Id": "sha256:1"}

    def remove_image(self, ref: str, **kwargs: Any) -> None:
        self._record("remove_image", ref, **kwargs)

    def volumes(self, **kwargs: Any) -> Any:
        self._record("volumes", **kwargs)
        return self.volume_list

    def inspect_volume(self, name: str) -> dict[str, Any]:
        self._record("inspect_volume", name)
        return {"Name": name}

    image_list: Any = [{"Id": "sha256:1", "RepoTags": ["a:1"]}]
    volume_list: Any = {"Volumes": [{"Name": "v"}], "Warnings": None}

    def close(self) -> None:
        self.closed = True


@pytest.fixture
def port_and_api(monkeypatch) -> tuple[DockerPort, _Api]:
    port = DockerPort("unix:///nonexistent.sock")
    api = _Api()
    monkeypatch.setattr(port, "_client", lambda: api)
    return port, api


@pytest.mark.parametrize(
    ("kwargs", "bound"),
    [({}, DEFAULT_STOP_TIMEOUT_S + STOP_MARGIN_S), ({"stop_timeout_s": 3}, 3 + STOP_MARGIN_S)],
)
@pytest.mark.parametrize("verb", ["stop", "restart"])
def test_stop_and_restart_wait_for_the_stop_timeout_but_never_send_t(
    port_and_api, verb, kwargs, bound
):
    port, api = port_and_api
    getattr(port, verb)("c1", **kwargs)
    name, args, sent = api.calls[-1]
    assert (name, args) == ("_post", (f"/containers/c1/{verb}",))
    assert sent == {"timeout": bound}  # no params: the container's StopTimeout applies


def test_ping_and_info_use_the_ping_bound(port_and_api):
    port, api = port_and_api
    port.ping()
    assert port.system_time_ns() == 1_767_225_600_500_000_000
    assert [(c[1], c[2]) for c in api.calls] == [
        (("/_ping",), {"timeout": PING_TIMEOUT_S}),
        (("/info",), {"timeout": PING_TIMEOUT_S}),
    ]


def test_ordinary_calls_keep_their_signatures(port_and_api):
    port, api = port_and_api
    assert port.inspect("c1") == {"Id": "c1"}
    port.start("c1")
    port.pause("c1")
    port.unpause("c1")
    port.remove("c1")
    assert port.list_ids() == ["a", "b"]
    assert [c[0] for c in api.calls] == [
        "inspect_container",
        "start",
        "pause",
        "unpause",
        "remove_container",
        "containers",
    ]


def test_image_and_volume_calls(port_and_api):
    port, api = port_and_api
    assert port.list_images() == [{"Id": "sha256:1", "RepoTags": ["a:1"]}]
    assert port.inspect_image("a:1") == {"Id": "sha256:1"}
    port.remove_image("a:1")
    assert port.list_volumes() == [{"Name": "v"}]
    assert port.inspect_volume("v") == {"Name": "v"}
    port.remove_volume("My_Vol")
    assert [(c[0], c[1], c[2]) for c in api.calls] == [
        ("images", (), {"all": True}),  # intermediate images too
        ("inspect_image", ("a:1",), {}),
        ("remove_image", ("a:1",), {"force": False, "noprune": True}),
        ("volumes", (), {}),
        ("inspect_volume", ("v",), {}),
        ("_delete", ("/volumes/My_Vol",), {"params": {"force": "1"}}),
    ]


@pytest.mark.parametrize(
    ("status", "family", "retryable"),
    [
        (409, DockerInUse, True),
        (404, DockerNotFound, False),
        (500, DockerError, True),
        (400, DockerError, False),
    ],
)
@pytest.mark.parametrize("verb", ["remove_image", "remove_volume"])
def test_remove_answers(port_and_api, verb, status, family, retryable):
    port, api = port_and_api
    message = "conflict: unable to delete 5808ca04f9ae (must be forced) - in use"
    api.fail = api_error(status, message)
    with pytest.raises(PortError) as err:
        getattr(port, verb)("x")
    assert type(err.value) is family and err.value.retryable is retryable
    assert err.value.status_code == status
    assert str(err.value) == f"Error response from daemon: {message}"
    assert isinstance(err.value.__cause__, docker.errors.APIError)


def test_in_use_only_for_removes(port_and_api):
    """A 409 elsewhere (a start of a paused container) stays a plain, final DockerError."""
    port, api = port_and_api
    api.fail = api_error(409, "cannot start a paused container, try unpause instead")
    with pytest.raises(DockerError) as err:
        port.start("c1")
    assert type(err.value) is DockerError and not err.value.retryable


@pytest.mark.parametrize(
    ("attr", "value", "call", "expected"),
    [
        ("volume_list", {"Volumes": None, "Warnings": None}, "list_volumes", []),
        ("volume_list", {"Warnings": None}, "list_volumes", DockerUnavailable),
        ("volume_list", [{"Name": "v"}], "list_volumes", DockerUnavailable),
        ("volume_list", {"Volumes": ["v"]}, "list_volumes", DockerUnavailable),
        ("image_list", [], "list_images", []),
        ("image_list", {"Id": "x"}, "list_images", DockerUnavailable),
        ("image_list", ["sha256:1"], "list_images", DockerUnavailable),
    ],
)
def test_list_shapes(port_and_api, attr, value, call, expected):
    port, api = port_and_api
    setattr(api, attr, value)
    if isinstance(expected, type):
        with pytest.raises(expected):
            getattr(port, call)()
    else:
        assert getattr(port, call)() == expected


def test_unavailable_resets_the_client_but_a_timeout_does_not(monkeypatch):
    port = DockerPort("unix:///nonexistent.sock")
    api = _Api()
    port._api = api  # type: ignore[assignment]
    api.fail = requests.exceptions.ReadTimeout("Read timed out.")
    with pytest.raises(DockerTimeout):
        port.inspect("c1")
    assert port._api is api and not api.closed
    api.fail = requests.exceptions.ConnectionError("refused")
    with pytest.raises(DockerUnavailable) as err:
        port.inspect("c1")
    assert type(err.value) is DockerUnavailable
    assert port._api is None and api.closed


def test_errors_keep_their_cause(port_and_api):
    port, api = port_and_api
    api.fail = api_error(404, "No such container: c1")
    with pytest.raises(DockerNotFound) as err:
        port.start("c1")
    assert isinstance(err.value.__cause__, docker.errors.NotFound)
    assert isinstance(err.value, PortError)


def test_unexpected_list_shape_is_unavailable(port_and_api, monkeypatch):
    port, api = port_and_api
    monkeypatch.setattr(api, "containers", lambda **kwargs: [{"Names": ["/x"]}])
    with pytest.raises(DockerUnavailable):
        port.list_ids()


@pytest.mark.parametrize(
    ("fault", "family", "status", "sent"),
    [
        ("5xx", DockerError, 500, 0),
        ("429", DockerError, 500, 0),
        ("timeout", DockerTimeout, None, 0),
        ("reset", DockerUnavailable, None, 0),
        ("timeout_after", DockerTimeout, None, 1),
    ],
)
def test_flaky_fault_point(port_and_api, monkeypatch, fault, family, status, sent):
    port, api = port_and_api
    monkeypatch.setattr(faults, "flaky", lambda point: fault if point == "docker.call" else None)
    with pytest.raises(PortError) as err:
        port.stop("c1")
    assert type(err.value) is family and err.value.retryable
    assert getattr(err.value, "status_code", None) == status
    assert len(api.calls) == sent  # "timeout_after": the engine got (and ran) it
    port.ping()  # never injected: a failed ping means "engine lost"
    assert api.calls[-1][1] == ("/_ping",)


# --- transport: a dockerd-like HTTP server on a Unix socket -----------------------------------


class _Engine(socketserver.ThreadingMixIn, socketserver.UnixStreamServer):
    daemon_threads = True
    block_on_close = False

    def __init__(self, path: str) -> None:
        super().__init__(path, _Handler)
        self.hang = threading.Event()  # set: answer nothing until released
        self.released = threading.Event()
        self.quiet_s = 0.0  # the /events handler waits this long before its event
        self.events_open = threading.Event()
        self.requests: list[str] = []

    def handle_error(self, request: Any, client_address: Any) -> None:
        pass  # a client that timed out and hung up: expected here


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _Engine

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def address_string(self) -> str:
        return "unix"

    def _send(self, status: int, body: bytes, headers: dict[str, str] | None = None) -> None:
        self.send_response(status)
        self.send_header("Content-Type", JSON)
        self.send_header("Content-Length", str(len(body)))
        for key, value in (headers or {}).items():
            self.send_header(key, value)
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self) -> None:
        self.server.requests.append(f"GET {self.path}")
        if self.server.hang.is_set():
            self.server.released.wait(10)  # a SIGSTOPped dockerd: the socket stays open
            self._send(200, b"OK")
        elif self.path == "/version":
            self._send(200, b'{"ApiVersion": "1.41", "Version": "20.10.24"}')
        elif self.path.endswith("/_ping"):
            self._send(200, b"OK")
        elif "/containers/cut/json" in self.path:
            self._send(200, b'{"Id": "cu')  # the body is cut short
        elif "/containers/busy/json" in self.path:
            self._send(503, b'{"message": "busy"}', {"Retry-After": "2"})
        elif "/containers/gone/" in self.path:  # json and logs
            self._send(404, b'{"message": "No such container: gone"}')
        elif "/logs" in self.path:
            self._logs()
        elif "/containers/reset/json" in self.path:
            self.connection.shutdown(socket.SHUT_RDWR)  # dropped without an answer
            self.close_connection = True
        elif "/events" in self.path:
            self._events()
        elif "/images/json" in self.path:
            self._send(200, b'[{"Id": "sha256:1", "RepoTags": ["<none>:<none>"]}]')
        elif self.path.endswith("/volumes"):
            self._send(200, b'{"Volumes": null, "Warnings": null}')
        else:
            self._send(404, b'{"message": "page not found"}')

    def do_DELETE(self) -> None:
        self.server.requests.append(f"DELETE {self.path}")
        if "/used" in self.path:
            self._send(409, b'{"message": "conflict: unable to delete used (cannot be forced)"}')
        elif self.path.startswith("/v1.41/images/"):
            self._send(200, b'[{"Untagged": "x:1"}]')
        else:
            self.send_response(204)
            self.end_headers()

    def do_POST(self) -> None:
        self.server.requests.append(f"POST {self.path}")
        # A redundant start/stop: dockerd answers 304 Not Modified.
        self.send_response(304 if "/containers/already/" in self.path else 204)
        self.end_headers()

    def _events(self) -> None:
        # Like dockerd: headers are flushed at once, events follow whenever they happen.
        self.send_response(200)
        self.send_header("Content-Type", JSON)
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        self.wfile.flush()
        self.server.events_open.set()
        threading.Event().wait(self.server.quiet_s)  # the quiet period under test
        line = json.dumps({"Type": "container", "Action": "start", "Actor": {"ID": "c1"}})
        data = (line + "\n").encode()
        try:
            self.wfile.write(f"{len(data):x}\r\n".encode() + data + b"\r\n")
            self.wfile.flush()
            self.server.released.wait(10)  # then quiet until the client goes away
        except OSError:
            pass
        self.close_connection = True

    def _logs(self) -> None:
        # Like dockerd: headers flushed at once, then one chunk per log message (an
        # 8-byte frame header and the line); "cut" breaks off inside a chunk.
        self.send_response(200)
        self.send_header("Content-Type", "application/vnd.docker.raw-stream")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        self.wfile.flush()

        def chunk(data: bytes) -> None:
            self.wfile.write(f"{len(data):x}\r\n".encode() + data + b"\r\n")
            self.wfile.flush()

        try:
            chunk(b"\x01\x00\x00\x00\x00\x00\x00\x06first\n")
            if "/containers/cut/" in self.path:
                self.wfile.write(b"40\r\npartial")
                self.wfile.flush()
                self.connection.shutdown(socket.SHUT_RDWR)
                return
            threading.Event().wait(self.server.quiet_s)
            chunk(b"\x02\x00\x00\x00\x00\x00\x00\x07second\n")
            if "follow=0" in self.path:
                self.wfile.write(b"0\r\n\r\n")  # the end of the output
                return
            self.server.released.wait(10)  # following: quiet until the client goes away
        except OSError:
            pass
        self.close_connection = True


@pytest.fixture
def engine(tmp_path: Path) -> Iterator[_Engine]:
    path = str(tmp_path / "docker.sock")
    server = _Engine(path)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.released.set()
    server.shutdown()
    server.server_close()
    os.unlink(path)


def _port(engine: _Engine, **kwargs: Any) -> DockerPort:
    return DockerPort(f"unix://{engine.server_address}", **kwargs)


def test_transport_answers(engine: _Engine):
    port = _port(engine)
    port.ping()
    port.stop("c1", stop_timeout_s=2)
    assert engine.requests[-1] == "POST /v1.41/containers/c1/stop"  # no ?t=
    port.start("already")  # 304 is a success
    port.stop("already")
    with pytest.raises(DockerNotFound) as not_found:
        port.inspect("gone")
    assert str(not_found.value) == "Error response from daemon: No such container: gone"
    with pytest.raises(DockerError) as busy:
        port.inspect("busy")
    assert (busy.value.status_code, busy.value.retry_after, busy.value.retryable) == (
        503,
        2.0,
        True,
    )
    with pytest.raises(DockerUnavailable):
        port.inspect("cut")
    with pytest.raises(DockerUnavailable):
        port.inspect("reset")
    port.ping()  # and the port still works afterwards


def test_transport_image_and_volume_calls(engine: _Engine):
    """What the real SDK puts on the wire: the query strings of the removes matter."""
    port = _port(engine)
    assert port.list_images() == [{"Id": "sha256:1", "RepoTags": ["<none>:<none>"]}]
    assert port.list_volumes() == []
    port.remove_image("probe/x:1")
    port.remove_volume("My_Vol")
    with pytest.raises(DockerInUse):
        port.remove_image("used")
    with pytest.raises(DockerInUse):
        port.remove_volume("used")
    stream = port.events(types=("container", "image", "volume"))
    stream.close()
    query = urllib.parse.parse_qs(urllib.parse.urlsplit(engine.requests.pop()).query)
    assert json.loads(query["filters"][0]) == {"type": ["container", "image", "volume"]}
    assert engine.requests == [
        "GET /version",
        "GET /v1.41/images/json?only_ids=0&all=1",
        "GET /v1.41/volumes",
        "DELETE /v1.41/images/probe/x:1?force=False&noprune=True",
        "DELETE /v1.41/volumes/My_Vol?force=1",
        "DELETE /v1.41/images/used?force=False&noprune=True",
        "DELETE /v1.41/volumes/used?force=1",
    ]


def test_missing_socket_is_unavailable(tmp_path: Path):
    with pytest.raises(DockerUnavailable) as err:
        DockerPort(f"unix://{tmp_path}/none.sock").ping()
    assert type(err.value) is DockerUnavailable


def test_ping_of_a_hung_engine_times_out_within_its_bound(engine: _Engine):
    port = _port(engine, ping_timeout_s=0.3, call_timeout_s=0.3)
    port.ping()  # negotiated and connected
    engine.hang.set()
    started = time.monotonic()
    with pytest.raises(DockerTimeout):
        port.ping()
    assert time.monotonic() - started < 5  # 0.3 s bound, generous for a slow machine
    with pytest.raises(DockerTimeout):
        port.inspect("c1")  # the ordinary bound applies: call_timeout_s
    started = time.monotonic()
    with pytest.raises(DockerTimeout):
        port.events(since="0.000000000")  # opening the stream is bounded too
    assert time.monotonic() - started < 5
    engine.hang.clear()


def test_first_contact_with_a_hung_engine_is_bounded(engine: _Engine):
    """The API version negotiation happens on first use; it gets the ping bound."""
    engine.hang.set()
    port = _port(engine, ping_timeout_s=0.3, call_timeout_s=60)
    started = time.monotonic()
    with pytest.raises(DockerTimeout):
        port.ping()
    assert time.monotonic() - started < 5
    engine.hang.clear()


def test_event_stream_outlives_every_bound_and_closes_from_another_thread(engine: _Engine):
    port = _port(engine, ping_timeout_s=0.2, call_timeout_s=0.2)
    engine.quiet_s = 1.0  # five times the open bound: a read timeout would end the stream
    stream = port.events(since="0.000000000")
    assert "filters" in engine.requests[-1] and "since=0.000000000" in engine.requests[-1]
    received: list[dict[str, Any]] = []
    ended = threading.Event()

    def read() -> None:
        try:
            for event in stream:
                received.append(event)
        except DockerUnavailable:
            pass
        ended.set()

    threading.Thread(target=read, daemon=True).start()
    wait_for(lambda: received, timeout=10, message="the event after the quiet period")
    assert received[0]["Actor"]["ID"] == "c1" and not ended.is_set()
    stream.close()
    assert ended.wait(5), "close() did not unblock the reader"


def test_log_stream_chunks_follow_quiet_periods_and_close_from_another_thread(engine: _Engine):
    port = _port(engine, ping_timeout_s=0.2, call_timeout_s=0.2)
    engine.quiet_s = 1.0  # five times the open bound: a read timeout would end the stream
    stream = port.logs("c1", follow=True, tail="5")
    request = engine.requests[-1]
    assert request.startswith("GET /v1.41/containers/c1/logs?")
    for param in ("stdout=1", "stderr=1", "follow=1", "tail=5"):
        assert param in request
    received: list[bytes] = []
    ended = threading.Event()

    def read() -> None:
        try:
            received.extend(stream.chunks(32768))
        except DockerUnavailable:
            pass
        ended.set()

    threading.Thread(target=read, daemon=True).start()
    wait_for(lambda: len(received) == 2, timeout=10, message="both chunks")
    assert received == [
        b"\x01\x00\x00\x00\x00\x00\x00\x06first\n",
        b"\x02\x00\x00\x00\x00\x00\x00\x07second\n",
    ]
    assert not ended.is_set()
    stream.close()
    assert ended.wait(5), "close() did not unblock the reader"
    stream.close()  # idempotent


def test_log_stream_ends_and_fails_like_the_engine_says(engine: _Engine):
    port = _port(engine)
    done = port.logs("c1", follow=False, tail="all")
    assert len(list(done.chunks(4))) == 8  # 28 bytes in pieces of at most 4
    with pytest.raises(DockerNotFound):
        port.logs("gone", follow=True)
    cut = port.logs("cut", follow=True)
    chunks = cut.chunks(32768)
    assert next(chunks).endswith(b"first\n")
    with pytest.raises(DockerUnavailable):
        list(chunks)
    cut.close()

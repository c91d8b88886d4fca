"""The real WebhookServer over real HTTPS on 127.0.0.1: generated and hostile input.

Every answer must be a well-formed AdmissionReview response echoing the uid, or a 400
with a JSON error; the server must keep serving afterwards.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import socket
import ssl
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from actors.domain.names import ACTION_ANNOTATION, GROUP, JSON
from actors.domain.webhook_review import MAX_BODY_BYTES
from actors.infra.certs import ensure_certificates
from actors.infra.webhook import HEALTHZ_PATH, PROBE_LABEL, VALIDATE_PATH, WebhookServer
from tests.support.wait import wait_for

SETTINGS = settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)


@pytest.fixture(scope="module")
def tls(tmp_path_factory: pytest.TempPathFactory) -> Any:
    return ensure_certificates(tmp_path_factory.mktemp("state"))


@pytest.fixture(scope="module")
def server(tls: Any) -> Iterator[WebhookServer]:
    srv = WebhookServer(tls.cert_path, tls.key_path, port=0)
    srv.start()
    yield srv
    srv.stop()


@pytest.fixture(scope="module")
def client_ctx(tls: Any) -> ssl.SSLContext:
    # Verifies the chain and the 127.0.0.1 IP SAN, like the API server does.
    return ssl.create_default_context(cadata=tls.ca_pem.decode())


def request(
    server: WebhookServer,
    ctx: ssl.SSLContext,
    method: str,
    path: str,
    body: bytes | None = None,
    headers: dict[str, str] | None = None,
) -> tuple[int, bytes]:
    conn = http.client.HTTPSConnection("127.0.0.1", server.port, context=ctx, timeout=10)
    try:
        conn.request(method, path, body=body, headers=headers or {})
        resp = conn.getresponse()
        return resp.status, resp.read()
    finally:
        conn.close()


def post(server: WebhookServer, ctx: ssl.SSLContext, body: bytes) -> tuple[int, bytes]:
    return request(server, ctx, "POST", VALIDATE_PATH, body, {"Content-Type": JSON})


def healthy(server: WebhookServer, ctx: ssl.SSLContext) -> bool:
    return request(server, ctx, "GET", HEALTHZ_PATH) == (200, b"ok")


# -- strategies ----------------------------------------------------------------

json_leaf = st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text()
json_value = st.recursive(
    json_leaf,
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3)
    ),
    max_leaves=8,
)
action_value = (
    st.sampled_from(["start", "stop", "pause", "unpause", "restart", "", "Start"]) | st.text()
)
annotations = st.none() | st.dictionaries(
    st.sampled_from([ACTION_ANNOTATION, "other", f"{GROUP}/x"]),
    action_value,
    max_size=2,
)


@st.composite
def container_obj(draw: st.DrawFn) -> dict[str, Any]:
    meta: dict[str, Any] = {"name": draw(st.text(max_size=10))}
    ann = draw(annotations)
    if ann is not None:
        meta["annotations"] = ann
    obj: dict[str, Any] = {"metadata": meta}
    if draw(st.booleans()):
        obj["spec"] = draw(st.none() | st.dictionaries(st.text(max_size=3), json_value, max_size=2))
    return obj


@st.composite
def review_doc(draw: st.DrawFn) -> dict[str, Any]:
    request: dict[str, Any] = {
        "uid": draw(st.uuids().map(str) | st.text(min_size=1, max_size=20)),
        "operation": draw(st.sampled_from(["CREATE", "UPDATE", "DELETE", "CONNECT"])),
        "object": draw(container_obj()),
    }
    if request["operation"] in ("UPDATE", "DELETE") or draw(st.booleans()):
        request["oldObject"] = draw(container_obj())
    return {
        "apiVersion": draw(st.sampled_from(["admission.k8s.io/v1", "admission.k8s.io/v1beta1"])),
        "kind": "AdmissionReview",
        "request": request,
    }


@st.composite
def mutated_doc(draw: st.DrawFn) -> dict[str, Any]:
    doc = draw(review_doc())
    target = draw(st.sampled_from(["top", "request", "object", "metadata"]))
    container: dict[str, Any] = {
        "top": doc,
        "request": doc["request"],
        "object": doc["request"]["object"],
        "metadata": doc["request"]["object"]["metadata"],
    }[target]
    keys = sorted(container) or ["x"]
    key = draw(st.sampled_from([*keys, "annotations", "uid"]))
    if draw(st.booleans()):
        container.pop(key, None)
    else:
        container[key] = draw(json_value)
    return doc


def check_answer(sent: Any, status: int, body: bytes) -> None:
    if status == 400:
        doc = json.loads(body)
        assert isinstance(doc, dict) and isinstance(doc.get("error"), str)
        return
    assert status == 200, (status, body)
    doc = json.loads(body)
    assert doc["kind"] == "AdmissionReview"
    assert doc["apiVersion"] == sent["apiVersion"]
    resp = doc["response"]
    assert resp["uid"] == sent["request"]["uid"]
    assert isinstance(resp["allowed"], bool)
    if resp["allowed"]:
        assert "status" not in resp
    else:
        assert resp["status"]["code"] == 403
        assert resp["status"]["reason"] == "Forbidden"
        assert isinstance(resp["status"]["message"], str) and resp["status"]["message"]


# -- property tests --------------------------------------------------------------


@SETTINGS
@given(doc=review_doc())
def test_valid_reviews_get_valid_answers(
    server: WebhookServer, client_ctx: ssl.SSLContext, doc: dict[str, Any]
) -> None:
    status, body = post(server, client_ctx, json.dumps(doc).encode())
    assert status == 200, body
    check_answer(doc, status, body)


@SETTINGS
@given(doc=mutated_doc())
def test_mutated_reviews_get_answer_or_400(
    server: WebhookServer, client_ctx: ssl.SSLContext, doc: dict[str, Any]
) -> None:
    status, body = post(server, client_ctx, json.dumps(doc).encode())
    check_answer(doc, status, body)


@SETTINGS
@given(data=st.binary(max_size=2048))
def test_arbitrary_bytes_get_400(
    server: WebhookServer, client_ctx: ssl.SSLContext, data: bytes
) -> None:
    status, body = post(server, client_ctx, data)
    assert status in (200, 400), body
    if status == 400:
        assert "error" in json.loads(body)


# -- hostile connections --------------------------------------------------------


def raw_tls(server: WebhookServer, ctx: ssl.SSLContext) -> ssl.SSLSocket:
    sock = socket.create_connection(("127.0.0.1", server.port), timeout=10)
    return ctx.wrap_socket(sock, server_hostname="127.0.0.1")


def read_all(sock: socket.socket) -> bytes:
    chunks = []
    while True:
        try:
            chunk = sock.recv(65536)
        except (ConnectionError, ssl.SSLError):
            break
        if not chunk:
            break
        chunks.append(chunk)
    return b"".join(chunks)


def test_tls_garbage_and_plain_http_do_not_kill_server(
    server: WebhookServer, client_ctx: ssl.SSLContext
) -> None:
    for payload in (
        b"\x16\x03\x01\x00\x05garbage" * 10,
        b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n",
        bytes(range(256)) * 4,
        b"",
    ):
        # The server may reset the connection at any point: client errors are fine.
        with (
            socket.create_connection(("127.0.0.1", server.port), timeout=10) as s,
            contextlib.suppress(OSError),
        ):
            if payload:
                s.sendall(payload)
            s.shutdown(socket.SHUT_WR)
            read_all(s)
    assert server.is_alive()
    assert healthy(server, client_ctx)


def test_stalled_handshake_does_not_block_others(
    server: WebhookServer, client_ctx: ssl.SSLContext
) -> None:
    with socket.create_connection(("127.0.0.1", server.port), timeout=10):
        # This connection never starts TLS; others must still be served at once.
        start = time.monotonic()
        assert healthy(server, client_ctx)
        assert time.monotonic() - start < 2


def test_oversized_content_length_rejected_without_reading(
    server: WebhookServer, client_ctx: ssl.SSLContext
) -> None:
    with raw_tls(server, client_ctx) as s:
        s.sendall(
            f"POST {VALIDATE_PATH} HTTP/1.1\r\nHost: x\r\n"
            f"Content-Length: {MAX_BODY_BYTES + 1}\r\n\r\n".encode()
        )
        reply = read_all(s)  # we send no body: the server must answer anyway
    assert reply.startswith(b"HTTP/1.1 413")
    assert b'{"error"' in reply
    assert healthy(server, client_ctx)


@pytest.mark.parametrize(
    "headers",
    [
        "",
        "Content-Length: abc\r\n",
        "Content-Length: -1\r\n",
        "Content-Length: +5\r\n",
        "Content-Length: 5\r\nContent-Length: 6\r\n",
        "Transfer-Encoding: chunked\r\n",
    ],
)
def test_bad_content_length_is_400(
    server: WebhookServer, client_ctx: ssl.SSLContext, headers: str
) -> None:
    with raw_tls(server, client_ctx) as s:
        s.sendall(f"POST {VALIDATE_PATH} HTTP/1.1\r\nHost: x\r\n{headers}\r\n".encode())
        reply = read_all(s)
    assert reply.startswith(b"HTTP/1.1 400"), reply
    assert healthy(server, client_ctx)


def test_truncated_body_and_garbage_request_lines(
    server: WebhookServer, client_ctx: ssl.SSLContext, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level("WARNING", logger="dockmirror.webhook"):
        with raw_tls(server, client_ctx) as s:
            s.sendall(f"POST {VALIDATE_PATH} HTTP/1.1\r\nContent-Length: 100\r\n\r\n{{".encode())
            s.shutdown(socket.SHUT_WR)  # EOF mid-body (drops TLS, so no reply to read)
            read_all(s)
        wait_for(
            lambda: "body shorter than Content-Length" in caplog.text,
            timeout=5,
            message="the truncated body logged",
        )
    for junk in (b"\x00\x01\x02\r\n\r\n", b"GARBAGE\r\n\r\n", b"x" * 70000 + b"\r\n\r\n"):
        with raw_tls(server, client_ctx) as s:
            s.sendall(junk)
            read_all(s)
    assert healthy(server, client_ctx)


def test_routes_and_methods(server: WebhookServer, client_ctx: ssl.SSLContext) -> None:
    assert request(server, client_ctx, "GET", VALIDATE_PATH)[0] == 405
    assert request(server, client_ctx, "GET", "/nope")[0] == 404
    assert request(server, client_ctx, "POST", "/nope", b"{}")[0] == 404
    assert request(server, client_ctx, "PUT", VALIDATE_PATH, b"{}")[0] == 501
    # The API server appends ?timeout=5s to the URL.
    doc = {
        "apiVersion": "admission.k8s.io/v1",
        "kind": "AdmissionReview",
        "request": {
            "uid": "u1",
            "operation": "CREATE",
            "object": {"metadata": {"annotations": {ACTION_ANNOTATION: ""}}},
        },
    }
    status, body = request(
        server, client_ctx, "POST", VALIDATE_PATH + "?timeout=5s", json.dumps(doc).encode()
    )
    assert status == 200
    assert json.loads(body)["response"]["allowed"] is False


def test_keep_alive_serves_several_requests(
    server: WebhookServer, client_ctx: ssl.SSLContext
) -> None:
    before = server.served_count
    conn = http.client.HTTPSConnection("127.0.0.1", server.port, context=client_ctx, timeout=10)
    try:
        for _ in range(3):
            conn.request("GET", HEALTHZ_PATH)
            resp = conn.getresponse()
            assert (resp.status, resp.read()) == (200, b"ok")
    finally:
        conn.close()
    # The server counts a response after sending it: the client can read the third
    # answer a moment before the counter moves.
    wait_for(lambda: server.served_count >= before + 3, timeout=5, message="3 responses counted")


def test_probe_label_is_recorded(server: WebhookServer, client_ctx: ssl.SSLContext) -> None:
    doc = {
        "apiVersion": "admission.k8s.io/v1",
        "kind": "AdmissionReview",
        "request": {
            "uid": "u2",
            "operation": "CREATE",
            "object": {"metadata": {"labels": {PROBE_LABEL: "tok123"}}},
        },
    }
    assert post(server, client_ctx, json.dumps(doc).encode())[0] == 200
    assert server.last_probe == "tok123"


def test_untrusted_client_ca_fails_verification(server: WebhookServer, tmp_path: Path) -> None:
    other = ensure_certificates(tmp_path)
    ctx = ssl.create_default_context(cadata=other.ca_pem.decode())
    with pytest.raises(ssl.SSLCertVerificationError):
        request(server, ctx, "GET", HEALTHZ_PATH)


def test_start_stop_is_prompt(tls: Any) -> None:
    srv = WebhookServer(tls.cert_path, tls.key_path)
    srv.start()
    assert srv.is_alive() and srv.port > 0
    ctx = ssl.create_default_context(cadata=tls.ca_pem.decode())
    # An idle keep-alive connection and a stalled handshake must not delay stop().
    idle = socket.create_connection(("127.0.0.1", srv.port))
    assert healthy(srv, ctx)
    start = time.monotonic()
    srv.stop()
    assert time.monotonic() - start < 2
    assert not srv.is_alive()
    idle.close()
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", srv.port), timeout=2).close()


def test_stop_cuts_keep_alive_connections(tls: Any) -> None:
    # The API server keeps idle connections to webhooks; after stop() they must not
    # be answered any more (otherwise "service down" would still admit requests).
    srv = WebhookServer(tls.cert_path, tls.key_path)
    srv.start()
    ctx = ssl.create_default_context(cadata=tls.ca_pem.decode())
    conn = http.client.HTTPSConnection("127.0.0.1", srv.port, context=ctx, timeout=5)
    try:
        conn.request("GET", HEALTHZ_PATH)
        assert conn.getresponse().read() == b"ok"
        srv.stop()
        with pytest.raises((OSError, http.client.HTTPException)):
            conn.request("GET", HEALTHZ_PATH)
            conn.getresponse().read()
    finally:
        conn.close()
        srv.stop()

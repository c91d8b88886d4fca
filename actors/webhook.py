"""HTTPS admission webhook server and its ValidatingWebhookConfiguration (spec §5.1).

:class:`WebhookServer` serves ``POST /validate-containers-rancherdesktop-io-v1alpha1-container``
(decisions in :mod:`actors.webhook_review`) and ``GET /healthz`` on 127.0.0.1 over TLS.
No request -- oversized, truncated, not HTTP, not TLS -- can stop the serving thread:
the TLS handshake and each connection run in their own daemon thread, and every failure
is answered (or the connection dropped) and logged once at WARNING. Idle keep-alive
connections that time out (or are closed by the client) between requests are normal
and logged at DEBUG only.

:class:`WebhookRegistration` creates or replaces the ValidatingWebhookConfiguration that
points the API server at it, deletes it, and probes that the API server really calls it.
See docs/webhook.md.
"""

from __future__ import annotations

import base64
import contextlib
import json
import logging
import secrets
import socket
import ssl
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import urllib3
from kubernetes import client as k8s
from kubernetes.client.exceptions import ApiException

from actors.webhook_review import ACTION_ANNOTATION, MAX_BODY_BYTES, review

logger = logging.getLogger("dockmirror.webhook")

VALIDATE_PATH = "/validate-containers-rancherdesktop-io-v1alpha1-container"
HEALTHZ_PATH = "/healthz"
WEBHOOK_NAME = "container-mutating.containers.rancherdesktop.io"
CONTAINER_GROUP = "containers.rancherdesktop.io"
CONTAINER_VERSION = "v1alpha1"
CONTAINER_PLURAL = "containers"
#: Label carried by the dry-run probe object; its value is a random token.
PROBE_LABEL = "dockmirror.rancherdesktop.io/webhook-probe"

HANDSHAKE_TIMEOUT = 5.0
CONNECTION_TIMEOUT = 10.0
#: How long a closing connection's unread input is drained (see _lingering_close).
LINGER_SECONDS = 2.0


def _json_bytes(obj: Any) -> bytes:
    return json.dumps(obj).encode()


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    timeout = CONNECTION_TIMEOUT
    server: _TLSServer
    server_version = "dockmirror-webhook"
    sys_version = ""

    # -- plumbing ---------------------------------------------------------

    def log_message(self, format: str, *args: Any) -> None:
        logger.debug("%s - " + format, self.client_address[0], *args)

    def log_error(self, format: str, *args: Any) -> None:
        logger.warning("%s - " + format, self.client_address[0], *args)

    def handle_one_request(self) -> None:
        # Wait for the first byte of the next request before the base class reads it.
        # The API server keeps idle keep-alive connections open; when no new request
        # starts within CONNECTION_TIMEOUT (or the client goes away meanwhile) that is
        # normal, so close quietly at DEBUG. A request that stalls *after* its first
        # byte still times out in the base class and is logged at WARNING.
        try:
            self.rfile.peek(1)
        except TimeoutError:
            logger.debug("%s - idle keep-alive connection timed out", self.client_address[0])
            self.close_connection = True
            return
        except ConnectionError as exc:
            logger.debug("%s - connection closed while idle: %s", self.client_address[0], exc)
            self.close_connection = True
            return
        super().handle_one_request()

    def _send(self, status: int, body: bytes, *, close: bool = False, ctype: str = "") -> None:
        self.send_response(status)
        self.send_header("Content-Type", ctype or "application/json")
        self.send_header("Content-Length", str(len(body)))
        if close:
            self.send_header("Connection", "close")
            self.close_connection = True
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)
        self.wfile.flush()
        self.server.owner._count()

    def send_error(self, code: int, message: str | None = None, explain: str | None = None) -> None:
        # Used by the base class for unparsable request lines, bad headers, unknown
        # methods. Answer with JSON instead of HTML and log once.
        msg = message or self.responses.get(code, ("error",))[0]
        logger.warning("%s - rejected request: %d %s", self.client_address[0], code, msg)
        try:
            self._send(code, _json_bytes({"error": msg}), close=True)
        except OSError:
            self.close_connection = True

    def _reject(self, code: int, message: str) -> None:
        self.send_error(code, message)

    # -- routes -----------------------------------------------------------

    def do_GET(self) -> None:
        path = urlsplit(self.path).path
        if path == HEALTHZ_PATH:
            self._send(200, b"ok", ctype="text/plain")
        elif path == VALIDATE_PATH:
            self._reject(405, "method not allowed")
        else:
            self._reject(404, "not found")

    do_HEAD = do_GET

    def do_POST(self) -> None:
        try:
            self._post()
        except (TimeoutError, ConnectionError, ssl.SSLError) as exc:
            logger.warning("%s - connection failed: %s", self.client_address[0], exc)
            self.close_connection = True
        except Exception:
            logger.exception("%s - internal error handling %s", self.client_address[0], self.path)
            try:
                self._send(500, _json_bytes({"error": "internal error"}), close=True)
            except OSError:
                self.close_connection = True

    def _post(self) -> None:
        if urlsplit(self.path).path != VALIDATE_PATH:
            self._reject(404, "not found")
            return
        if self.headers.get("Transfer-Encoding") is not None:
            self._reject(400, "Transfer-Encoding is not supported; send Content-Length")
            return
        lengths = self.headers.get_all("Content-Length") or []
        if len(set(lengths)) != 1:
            self._reject(400, "missing or conflicting Content-Length")
            return
        raw = lengths[0].strip()
        if not (raw.isascii() and raw.isdigit()):
            self._reject(400, "invalid Content-Length")
            return
        length = int(raw)
        if length > MAX_BODY_BYTES:
            self._reject(413, f"body larger than {MAX_BODY_BYTES} bytes")
            return
        body = self.rfile.read(length)
        if len(body) != length:
            self._reject(400, "body shorter than Content-Length")
            return
        status, out = review(body)
        if status == 200:
            self.server.owner._note_probe(body)
        elif status == 400:
            logger.warning("%s - malformed AdmissionReview: %s", self.client_address[0], out)
        else:
            logger.error("%s - review failed: %s", self.client_address[0], out)
        self._send(status, out)


class _TLSServer(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 64

    def __init__(self, address: tuple[str, int], ctx: ssl.SSLContext, owner: WebhookServer):
        self.ssl_context = ctx
        self.owner = owner
        self._conns: set[socket.socket] = set()
        self._conns_lock = threading.Lock()
        self._closing = False
        super().__init__(address, _Handler)

    def finish_request(self, request: Any, client_address: Any) -> None:
        # Runs in the per-connection thread, so a slow or garbage handshake never
        # blocks accept().
        request.settimeout(HANDSHAKE_TIMEOUT)
        with contextlib.suppress(OSError):  # headers and body are separate writes
            request.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        if not self._track(request):
            return
        try:
            tls = self.ssl_context.wrap_socket(request, server_side=True)
        except (ssl.SSLError, OSError) as exc:
            self._untrack(request)
            logger.warning("%s - TLS handshake failed: %s", client_address[0], exc)
            return
        # wrap_socket detached `request`; track the TLS socket (same descriptor) instead.
        self._untrack(request)
        if not self._track(tls):
            tls.close()
            return
        try:
            self.RequestHandlerClass(tls, client_address, self)
            self._lingering_close(tls)
        finally:
            self._untrack(tls)
            with contextlib.suppress(OSError):
                tls.close()

    def _track(self, sock: socket.socket) -> bool:
        with self._conns_lock:
            if self._closing:
                return False
            self._conns.add(sock)
            return True

    def _untrack(self, sock: socket.socket) -> None:
        with self._conns_lock:
            self._conns.discard(sock)

    def close_connections(self) -> None:
        """Refuse new connections and cut open ones (keep-alive connections from the API
        server would otherwise keep being answered after stop())."""
        with self._conns_lock:
            self._closing = True
            conns = list(self._conns)
        for sock in conns:
            with contextlib.suppress(OSError, ValueError):
                # Plain socket shutdown on the descriptor, bypassing the TLS wrapper that
                # the connection thread owns; its blocked read returns at once.
                socket.socket.shutdown(sock, socket.SHUT_RDWR)

    @staticmethod
    def _lingering_close(tls: ssl.SSLSocket) -> None:
        # Closing a socket with unread input (a body we refused to read) makes the kernel
        # send RST, which can destroy our error response before the client reads it. So
        # half-close, then discard input for a bounded time until the client closes.
        deadline = time.monotonic() + LINGER_SECONDS
        with contextlib.suppress(OSError, ValueError):
            tls.shutdown(socket.SHUT_WR)  # also drops the TLS layer: raw bytes below
            while (left := deadline - time.monotonic()) > 0:
                tls.settimeout(left)
                if not tls.recv(65536):
                    break

    def handle_error(self, request: Any, client_address: Any) -> None:
        logger.warning("%s - connection error", client_address[0], exc_info=True)


class WebhookServer:
    """The HTTPS admission endpoint on 127.0.0.1:<port> (0 picks a free port)."""

    def __init__(self, cert_path: Path, key_path: Path, port: int = 0, host: str = "127.0.0.1"):
        self._cert_path = Path(cert_path)
        self._key_path = Path(key_path)
        self._host = host
        self._port = port
        self._lock = threading.Lock()
        self._served = 0
        self._last_probe: str | None = None
        self._httpd: _TLSServer | None = None
        self._thread: threading.Thread | None = None

    # -- state ------------------------------------------------------------

    @property
    def port(self) -> int:
        return self._port

    @property
    def url(self) -> str:
        return f"https://{self._host}:{self._port}{VALIDATE_PATH}"

    @property
    def served_count(self) -> int:
        """Number of HTTP responses sent (any route, any status)."""
        with self._lock:
            return self._served

    @property
    def last_probe(self) -> str | None:
        """Token of the last reviewed object labelled ``PROBE_LABEL`` (see
        :meth:`WebhookRegistration.wait_until_called`)."""
        with self._lock:
            return self._last_probe

    def _count(self) -> None:
        with self._lock:
            self._served += 1

    def _note_probe(self, body: bytes) -> None:
        if PROBE_LABEL.encode() not in body:
            return
        try:
            labels = json.loads(body)["request"]["object"]["metadata"]["labels"]
            token = labels[PROBE_LABEL]
        except (ValueError, KeyError, TypeError):
            return
        if isinstance(token, str):
            with self._lock:
                self._last_probe = token

    # -- lifecycle --------------------------------------------------------

    def _context(self) -> ssl.SSLContext:
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.minimum_version = ssl.TLSVersion.TLSv1_2
        ctx.load_cert_chain(self._cert_path, self._key_path)
        return ctx

    def reload_certificates(self) -> None:
        """Load renewed certificate files; new connections use them."""
        if self._httpd is not None:
            self._httpd.ssl_context.load_cert_chain(self._cert_path, self._key_path)

    def start(self) -> None:
        if self._thread is not None:
            raise RuntimeError("WebhookServer already started")
        self._httpd = _TLSServer((self._host, self._port), self._context(), self)
        self._port = self._httpd.server_address[1]
        self._thread = threading.Thread(
            target=self._serve, name=f"webhook-{self._port}", daemon=True
        )
        self._thread.start()
        logger.info("webhook serving on %s", self.url)

    def _serve(self) -> None:
        assert self._httpd is not None
        try:
            self._httpd.serve_forever(poll_interval=0.1)
        except Exception:
            logger.exception("webhook server loop died")

    def stop(self, timeout: float = 5.0) -> None:
        httpd, thread = self._httpd, self._thread
        if httpd is None or thread is None:
            return
        httpd.shutdown()
        thread.join(timeout)
        httpd.server_close()
        httpd.close_connections()
        self._httpd = None
        self._thread = None
        logger.info("webhook on port %d stopped", self._port)

    def is_alive(self) -> bool:
        return self._thread is not None and self._thread.is_alive()


# ---------------------------------------------------------------------------
# Registration


class WebhookNotCalledError(RuntimeError):
    """The API server did not route a probe request to this webhook in time."""


class WebhookRegistration:
    """Create/replace, probe and delete ``ValidatingWebhookConfiguration/dockmirror-<ns>``."""

    def __init__(
        self,
        api_client: k8s.ApiClient,
        namespace: str,
        port: int,
        ca_pem: bytes,
        *,
        server: WebhookServer | None = None,
    ):
        self._api = k8s.AdmissionregistrationV1Api(api_client)
        self._custom = k8s.CustomObjectsApi(api_client)
        self.namespace = namespace
        self.port = port
        self.ca_pem = ca_pem
        self._server = server

    @property
    def name(self) -> str:
        return f"dockmirror-{self.namespace}"

    @property
    def url(self) -> str:
        return f"https://127.0.0.1:{self.port}{VALIDATE_PATH}"

    def body(self) -> dict[str, Any]:
        return {
            "apiVersion": "admissionregistration.k8s.io/v1",
            "kind": "ValidatingWebhookConfiguration",
            "metadata": {
                "name": self.name,
                "labels": {"app.kubernetes.io/managed-by": "dockmirror"},
            },
            "webhooks": [
                {
                    "name": WEBHOOK_NAME,
                    "clientConfig": {
                        "url": self.url,
                        "caBundle": base64.b64encode(self.ca_pem).decode(),
                    },
                    "rules": [
                        {
                            "operations": ["CREATE", "UPDATE"],
                            "apiGroups": [CONTAINER_GROUP],
                            "apiVersions": [CONTAINER_VERSION],
                            "resources": [CONTAINER_PLURAL],
                            "scope": "Namespaced",
                        }
                    ],
                    "failurePolicy": "Fail",
                    "matchPolicy": "Equivalent",
                    "sideEffects": "None",
                    "admissionReviewVersions": ["v1", "v1beta1"],
                    "timeoutSeconds": 5,
                    "namespaceSelector": {
                        "matchLabels": {"kubernetes.io/metadata.name": self.namespace}
                    },
                }
            ],
        }

    def register(self, attempts: int = 5) -> None:
        """Create the configuration, or replace it if it exists (re-reading on 409)."""
        last: ApiException | None = None
        for _ in range(attempts):
            try:
                self._api.create_validating_webhook_configuration(body=self.body())
                logger.info("registered ValidatingWebhookConfiguration %s", self.name)
                return
            except ApiException as exc:
                if exc.status != 409:
                    raise
                last = exc
            try:
                current = self._api.read_validating_webhook_configuration(self.name)
                body = self.body()
                body["metadata"]["resourceVersion"] = current.metadata.resource_version
                self._api.replace_validating_webhook_configuration(self.name, body)
                logger.info("replaced ValidatingWebhookConfiguration %s", self.name)
                return
            except ApiException as exc:
                if exc.status not in (404, 409):  # deleted or changed meanwhile: retry
                    raise
                last = exc
        raise RuntimeError(f"could not register {self.name}: {last}")

    def delete(self) -> None:
        try:
            self._api.delete_validating_webhook_configuration(self.name)
            logger.info("deleted ValidatingWebhookConfiguration %s", self.name)
        except ApiException as exc:
            if exc.status != 404:
                raise

    def _probe_object(self, token: str) -> dict[str, Any]:
        return {
            "apiVersion": f"{CONTAINER_GROUP}/{CONTAINER_VERSION}",
            "kind": "Container",
            "metadata": {
                "generateName": "dockmirror-webhook-probe-",
                "namespace": self.namespace,
                "labels": {PROBE_LABEL: token},
                "annotations": {ACTION_ANNOTATION: "start"},
            },
        }

    def wait_until_called(self, timeout: float = 30.0, interval: float = 0.2) -> None:
        """Server-side dry-run CREATE a Container carrying the action annotation until the
        API server answers with this webhook's denial (and, when the server was given,
        until that server saw the probe). Raises WebhookNotCalledError on timeout."""
        token = secrets.token_hex(8)
        deadline = time.monotonic() + timeout
        last = "no attempt made"
        while True:
            try:
                self._custom.create_namespaced_custom_object(
                    CONTAINER_GROUP,
                    CONTAINER_VERSION,
                    self.namespace,
                    CONTAINER_PLURAL,
                    self._probe_object(token),
                    dry_run="All",
                )
                last = "dry-run create was allowed (webhook not active yet)"
            except ApiException as exc:
                text = exc.body.decode() if isinstance(exc.body, bytes) else str(exc.body)
                if WEBHOOK_NAME in text and "not allowed on create" in text:
                    if self._server is None or self._server.last_probe == token:
                        logger.info("webhook %s is called by the API server", self.name)
                        return
                    last = "denied by a webhook, but not by this server"
                else:
                    last = f"HTTP {exc.status}: {text[:300]}"
            except (OSError, urllib3.exceptions.HTTPError) as exc:
                last = f"{type(exc).__name__}: {exc}"
            if time.monotonic() >= deadline:
                raise WebhookNotCalledError(
                    f"API server did not call webhook {self.name} within {timeout}s: {last}"
                )
            time.sleep(interval)

"""Supervisor's webhook duties, driven by hand (no actors, no API server, no Docker).

* ``Supervisor.sweep`` restarts a webhook server whose thread died, on the same port and
  certificate files, inside the restart budget;
* it re-registers the configuration every ``--webhook-recheck`` seconds;
* every ``CERT_CHECK_INTERVAL`` it calls ``ensure_certificates`` and, on renewal, reloads
  the server's certificates and re-registers with the new CA bundle.

Also here: the real ``WebhookServer`` logs an idle keep-alive timeout at DEBUG only, and a
request that stalls mid-way still at WARNING.
"""

from __future__ import annotations

import logging
import socket
import ssl
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

import supervisor
from actors.infra import webhook as webhook_mod
from actors.infra.certs import ensure_certificates
from actors.ports.kube_port import KubeUnavailable
from supervisor import CERT_CHECK_INTERVAL, EXIT_BUDGET, Config, Supervisor
from tests.support.wait import wait_for


class FakeServer:
    instances: list[FakeServer] = []

    def __init__(self, cert_path: Path, key_path: Path, port: int = 0, host: str = "127.0.0.1"):
        self._cert_path = cert_path
        self._key_path = key_path
        self.port = port
        self.alive = True
        self.started = False
        self.stopped = False
        self.reloads = 0
        FakeServer.instances.append(self)

    def start(self) -> None:
        self.started = True

    def stop(self) -> None:
        self.stopped = True
        self.alive = False

    def is_alive(self) -> bool:
        return self.alive

    def reload_certificates(self) -> None:
        self.reloads += 1


class FakeRegistration:
    def __init__(self, ca_pem: bytes = b"old-ca") -> None:
        self.ca_pem = ca_pem
        self.registered: list[bytes] = []
        self.fail = False

    def register(self) -> None:
        if self.fail:
            raise KubeUnavailable(503, "apiserver down")
        self.registered.append(self.ca_pem)


class FakeJournal:
    def __init__(self) -> None:
        self.notes: list[Any] = []

    def record(self, entry: Any) -> None:
        self.notes.append(entry)


@dataclass
class FakeBundle:
    ca_pem: bytes
    renewed: bool


def make_config(tmp_path: Path, **over: Any) -> Config:
    values: dict[str, Any] = dict(
        namespace="ns",
        kubeconfig=None,
        docker_host=None,
        state_dir=tmp_path,
        trace_file="-",
        trace_max_mb=1,
        trace_backups=1,
        max_active_containers=4,
        idle_timeout=3.0,
        restart_budget=10,
        restart_window=60.0,
        webhook_port=0,
        webhook_recheck=30.0,
        startup_timeout=5.0,
    )
    values.update(over)
    return Config(**values)


@pytest.fixture
def sup(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Supervisor:
    FakeServer.instances = []
    monkeypatch.setattr(supervisor, "WebhookServer", FakeServer)
    s = Supervisor(make_config(tmp_path))
    s.journal = FakeJournal()  # type: ignore[assignment]
    s.webhook = FakeServer(tmp_path / "tls.crt", tmp_path / "tls.key", port=4321)  # type: ignore[assignment]
    s.registration = FakeRegistration()  # type: ignore[assignment]
    s.webhook_checked = time.monotonic()
    s.certs_checked = time.monotonic()
    return s


# -- webhook thread death ------------------------------------------------------------


def test_live_webhook_is_left_alone(sup: Supervisor) -> None:
    first = sup.webhook
    sup.sweep()
    assert sup.webhook is first
    assert sup.journal.notes == []  # type: ignore[attr-defined]


def test_dead_webhook_thread_is_restarted_on_same_port_and_files(sup: Supervisor) -> None:
    dead = sup.webhook
    dead.alive = False  # type: ignore[attr-defined]
    sup.sweep()
    assert dead.stopped  # type: ignore[attr-defined]
    new = sup.webhook
    assert new is not dead
    assert isinstance(new, FakeServer) and new.started
    assert (new.port, new._cert_path, new._key_path) == (
        4321,
        dead._cert_path,  # type: ignore[attr-defined]
        dead._key_path,  # type: ignore[attr-defined]
    )
    (note,) = sup.journal.notes  # type: ignore[attr-defined]
    assert note.text == "restarting"
    assert note.detail == {"child": "webhook", "error": "webhook server thread died"}
    assert sup.exit_code == 0 and not sup.stop_event.is_set()
    sup.sweep()  # the new one is alive: nothing more happens
    assert sup.webhook is new


def test_webhook_deaths_beyond_the_budget_end_the_process(tmp_path: Path, sup: Supervisor) -> None:
    sup.budget = supervisor.RestartBudget(2, 60.0)
    for _ in range(3):
        sup.webhook.alive = False  # type: ignore[attr-defined]
        sup.sweep()
    assert sup.exit_code == EXIT_BUDGET
    assert sup.stop_event.is_set()


# -- periodic re-registration ----------------------------------------------------------------


def test_configuration_is_re_registered_every_recheck_interval(sup: Supervisor) -> None:
    reg = sup.registration
    sup.sweep()
    assert reg.registered == []  # type: ignore[attr-defined]
    sup.webhook_checked = time.monotonic() - sup.config.webhook_recheck - 1
    sup.sweep()
    assert reg.registered == [b"old-ca"]  # type: ignore[attr-defined]
    reg.fail = True  # type: ignore[attr-defined]
    sup.webhook_checked = time.monotonic() - sup.config.webhook_recheck - 1
    sup.sweep()  # a failed write is logged, never raised


# -- certificate renewal ----------------------------------------------------------------------


def test_cert_check_waits_for_its_interval(
    sup: Supervisor, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[Path] = []
    monkeypatch.setattr(
        supervisor,
        "ensure_certificates",
        lambda d, **_kw: calls.append(d) or FakeBundle(b"x", False),
    )
    sup.sweep()
    assert calls == []
    sup.certs_checked = time.monotonic() - CERT_CHECK_INTERVAL - 1
    sup.sweep()
    assert calls == [sup.config.state_dir]
    sup.sweep()  # checked just now: not again
    assert len(calls) == 1


def test_unrenewed_certificates_change_nothing(
    sup: Supervisor, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(
        supervisor, "ensure_certificates", lambda d, **_kw: FakeBundle(b"same", False)
    )
    sup.certs_checked = time.monotonic() - CERT_CHECK_INTERVAL - 1
    sup.sweep()
    assert sup.webhook.reloads == 0  # type: ignore[attr-defined]
    assert sup.registration.registered == []  # type: ignore[attr-defined]
    assert sup.registration.ca_pem == b"old-ca"


def test_renewal_reloads_and_re_registers_with_new_ca(
    sup: Supervisor, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Real files: first call creates them, then a lost serving cert forces a renewal.
    state = tmp_path / "real"
    first = ensure_certificates(state)
    (state / "webhook-tls" / "ca.crt").unlink()  # a new CA, hence a new caBundle
    sup.config.state_dir = state
    sup.certs_checked = time.monotonic() - CERT_CHECK_INTERVAL - 1
    sup.sweep()
    new_ca = (state / "webhook-tls" / "ca.crt").read_bytes()
    assert new_ca != first.ca_pem
    assert sup.webhook.reloads == 1  # type: ignore[attr-defined]
    assert sup.registration.ca_pem == new_ca
    assert sup.registration.registered == [new_ca]  # type: ignore[attr-defined]
    # Nothing is due any more on the next check.
    sup.certs_checked = time.monotonic() - CERT_CHECK_INTERVAL - 1
    sup.sweep()
    assert sup.webhook.reloads == 1  # type: ignore[attr-defined]


def test_failed_re_registration_after_renewal_is_retried_by_the_recheck(
    sup: Supervisor, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(
        supervisor, "ensure_certificates", lambda d, **_kw: FakeBundle(b"new-ca", True)
    )
    sup.registration.fail = True  # type: ignore[attr-defined]
    sup.certs_checked = time.monotonic() - CERT_CHECK_INTERVAL - 1
    sup.sweep()  # logged, not raised
    assert sup.registration.ca_pem == b"new-ca"
    sup.registration.fail = False  # type: ignore[attr-defined]
    sup.webhook_checked = time.monotonic() - sup.config.webhook_recheck - 1
    sup.sweep()
    assert sup.registration.registered == [b"new-ca"]  # type: ignore[attr-defined]


# -- idle keep-alive logging of the real server ------------------------------------------------


@pytest.fixture
def quick_server(tmp_path: Path) -> Iterator[Callable[..., Any]]:
    """Factory of real servers with short limits; only the limit under test is short, so
    a slow machine cannot trip the other one."""
    tls = ensure_certificates(tmp_path)
    servers: list[webhook_mod.WebhookServer] = []

    def make(**limits: float) -> tuple[webhook_mod.WebhookServer, ssl.SSLContext]:
        srv = webhook_mod.WebhookServer(tls.cert_path, tls.key_path, port=0, **limits)
        srv.start()
        servers.append(srv)
        return srv, ssl.create_default_context(cadata=tls.ca_pem.decode())

    yield make
    for srv in servers:
        srv.stop()


def _connect(srv: webhook_mod.WebhookServer, ctx: ssl.SSLContext) -> ssl.SSLSocket:
    raw = socket.create_connection(("127.0.0.1", srv.port), timeout=5)
    return ctx.wrap_socket(raw, server_hostname="127.0.0.1")


def _wait_closed(sock: ssl.SSLSocket) -> None:
    sock.settimeout(5)
    try:
        while sock.recv(4096):
            pass
    except (ConnectionError, ssl.SSLError):
        pass


def test_idle_keep_alive_timeout_is_debug_only(
    quick_server: Any, caplog: pytest.LogCaptureFixture
) -> None:
    srv, ctx = quick_server(idle_timeout=0.5, request_deadline=60.0)
    with caplog.at_level(logging.DEBUG, logger="dockmirror.webhook"):
        with _connect(srv, ctx) as sock:
            sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
            assert b"ok" in sock.recv(4096)
            _wait_closed(sock)  # the server closes the idle connection after 0.5 s
        wait_for(lambda: "idle keep-alive" in caplog.text, timeout=5, message="idle log line")
    warnings = [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert warnings == [], [r.getMessage() for r in warnings]


def test_request_stalled_mid_way_is_still_a_warning(
    quick_server: Any, caplog: pytest.LogCaptureFixture
) -> None:
    srv, ctx = quick_server(request_deadline=0.5, idle_timeout=60.0)
    with caplog.at_level(logging.DEBUG, logger="dockmirror.webhook"):
        with _connect(srv, ctx) as sock:
            sock.sendall(b"GET /heal")  # never finished
            _wait_closed(sock)
        wait_for(lambda: "Request timed out" in caplog.text, timeout=5, message="timeout log")
    timed_out = [r for r in caplog.records if "Request timed out" in r.getMessage()]
    assert len(timed_out) == 1 and timed_out[0].levelno == logging.WARNING
    assert "idle keep-alive" not in caplog.text

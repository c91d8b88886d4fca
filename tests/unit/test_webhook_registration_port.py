"""WebhookRegistration and remove_stale_webhook through the Kubernetes port, on the
faithful FakeKubeHttp: every apiserver answer arrives as a KubeError family."""

from __future__ import annotations

import logging

import pytest

from actors.domain.webhook_review import CREATE_DENIED_MESSAGE
from actors.infra.webhook import WEBHOOK_NAME, WebhookNotCalledError, WebhookRegistration
from actors.ports.kube_port import (
    KubeConflict,
    KubeForbidden,
    KubeUnavailable,
)
from actors.service.admission import remove_stale_webhook
from tests.fakes.kube import FakeKubeHttp

NAME = "dockmirror-ns"
PATH = f"/apis/admissionregistration.k8s.io/v1/validatingwebhookconfigurations/{NAME}"


def registration(http: FakeKubeHttp, ca: bytes = b"ca-1") -> WebhookRegistration:
    return WebhookRegistration(http, "ns", 4443, ca)  # type: ignore[arg-type]


def test_register_creates_then_replaces_only_what_changed(caplog: pytest.LogCaptureFixture):
    http = FakeKubeHttp()
    caplog.set_level(logging.DEBUG, logger="dockmirror.webhook")
    reg = registration(http)
    reg.register()
    rv = http.webhooks[NAME]["metadata"]["resourceVersion"]
    reg.register()  # the periodic recheck: nothing changed, nothing written
    assert http.webhooks[NAME]["metadata"]["resourceVersion"] == rv
    assert "is up to date" in caplog.text
    reg.ca_pem = b"ca-2"  # renewed certificates: the bundle is replaced
    reg.register()
    assert http.webhooks[NAME]["metadata"]["resourceVersion"] != rv
    assert "replaced ValidatingWebhookConfiguration" in caplog.text


def test_register_retries_races_then_reports_the_last_conflict():
    http = FakeKubeHttp()
    registration(http).register()
    conflict = KubeConflict(409, "the object has been modified", reason="Conflict")
    http.fail_next(f"PUT {PATH}", conflict, times=2)
    registration(http, b"ca-2").register()  # two lost races, then it wins
    http.fail_next(f"PUT {PATH}", conflict, times=5)
    with pytest.raises(KubeConflict, match=f"could not register {NAME}"):
        registration(http, b"ca-3").register()


def test_register_passes_other_failures_on_as_port_errors():
    http = FakeKubeHttp()
    http.fail_next("POST", KubeForbidden(403, "cannot create"))
    with pytest.raises(KubeForbidden):
        registration(http).register()


def test_delete_is_idempotent():
    http = FakeKubeHttp()
    reg = registration(http)
    reg.register()
    reg.delete()
    reg.delete()  # already gone: fine
    assert http.webhooks == {}


def test_remove_stale_webhook_never_raises(caplog: pytest.LogCaptureFixture):
    caplog.set_level(logging.INFO, logger="dockmirror.admission")
    http = FakeKubeHttp()
    registration(http).register()
    remove_stale_webhook(http, "ns")  # type: ignore[arg-type]
    assert http.webhooks == {}
    http.fail_next("DELETE", KubeForbidden(403, "no access"))
    remove_stale_webhook(http, "ns")  # type: ignore[arg-type]
    assert "no access to validatingwebhookconfigurations" in caplog.text
    http.fail_next("DELETE", KubeUnavailable(503, "down"))
    remove_stale_webhook(http, "ns")  # type: ignore[arg-type]
    assert f"could not check for a leftover {NAME}" in caplog.text


def test_wait_until_called_needs_this_webhooks_denial():
    http = FakeKubeHttp()
    answers = [
        None,  # allowed: not active yet
        KubeUnavailable(500, "failed calling webhook: connection refused"),
        KubeForbidden(403, "denied by something else"),
        KubeForbidden(
            403, f'admission webhook "{WEBHOOK_NAME}" denied the request: {CREATE_DENIED_MESSAGE}'
        ),
    ]

    def answer(body: dict) -> None:
        exc = answers.pop(0)
        if exc is not None:
            raise exc

    http.on_dry_run = answer
    registration(http).wait_until_called(timeout=10, interval=0.001)
    assert answers == []


def test_wait_until_called_gives_up_with_the_last_observation():
    http = FakeKubeHttp()
    http.on_dry_run = lambda body: (_ for _ in ()).throw(KubeUnavailable(500, "no route"))
    with pytest.raises(WebhookNotCalledError, match="no route"):
        registration(http).wait_until_called(timeout=0.05, interval=0.01)

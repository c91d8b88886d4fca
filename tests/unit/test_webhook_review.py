"""Decision table of the admission webhook.

Contract: docs/contract.md §5.1, §5.2; §7 scenarios 19, 20, 30, 31.
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from actors.domain.names import (
    ACTION_ANNOTATION,
    API_VERSION,
    CONTAINER_NAMESPACES,
    CONTAINERS,
    GROUP,
    VERSION,
)
from actors.domain.webhook_review import (
    CREATE_DENIED_MESSAGE,
    MAX_BODY_BYTES,
    NAMESPACE_DELETE_WARNING,
    go_quote,
    go_v,
    review,
)

CREATE_MSG = f"{ACTION_ANNOTATION} annotation is not allowed on create"


def container(annotations: dict[str, Any] | None = None, spec: Any = None) -> dict[str, Any]:
    obj: dict[str, Any] = {
        "apiVersion": API_VERSION,
        "kind": "Container",
        "metadata": {"name": "c1", "namespace": "ns"},
    }
    if annotations is not None:
        obj["metadata"]["annotations"] = annotations
    if spec is not None:
        obj["spec"] = spec
    return obj


def make_review(
    operation: str,
    obj: Any = None,
    old: Any = None,
    api_version: str = "admission.k8s.io/v1",
    uid: str = "uid-1",
) -> bytes:
    request: dict[str, Any] = {"uid": uid, "operation": operation, "object": obj}
    if old is not None:
        request["oldObject"] = old
    return json.dumps(
        {"apiVersion": api_version, "kind": "AdmissionReview", "request": request}
    ).encode()


def decide(body: bytes) -> dict[str, Any]:
    status, out = review(body)
    assert status == 200, out
    doc = json.loads(out)
    assert doc["kind"] == "AdmissionReview"
    return doc


def test_create_message_constant() -> None:
    assert CREATE_DENIED_MESSAGE == CREATE_MSG


@pytest.mark.parametrize("value", ["start", "stop", "pause", "unpause", "restart", "", "bogus"])
def test_create_with_annotation_any_value_is_denied(value: str) -> None:
    # Scenarios 20 and 30: valid, empty or invalid value -- the key alone denies.
    doc = decide(make_review("CREATE", container({ACTION_ANNOTATION: value})))
    resp = doc["response"]
    assert resp == {
        "uid": "uid-1",
        "allowed": False,
        "status": {"code": 403, "message": CREATE_MSG, "reason": "Forbidden"},
    }


@pytest.mark.parametrize(
    "obj",
    [
        container(),
        container({}),
        container({"other": "x", f"{ACTION_ANNOTATION}x": "start"}),
        {"metadata": {"name": "x", "annotations": None}},
        {"kind": "Container"},  # no metadata at all
    ],
)
def test_create_without_annotation_is_allowed(obj: dict[str, Any]) -> None:
    resp = decide(make_review("CREATE", obj))["response"]
    assert resp == {"uid": "uid-1", "allowed": True}


@pytest.mark.parametrize("value", ["start", "stop", "pause", "unpause", "restart"])
def test_update_with_valid_action_is_allowed(value: str) -> None:
    body = make_review("UPDATE", container({ACTION_ANNOTATION: value}), container())
    assert decide(body)["response"] == {"uid": "uid-1", "allowed": True}


@pytest.mark.parametrize(
    ("value", "quoted"),
    [
        ("", '""'),
        ("Start", '"Start"'),
        ("STOP", '"STOP"'),
        ("bogus", '"bogus"'),
        (" start", '" start"'),
        ("start\n", '"start\\n"'),
        ('a"b', '"a\\"b"'),
        ("a\\b", '"a\\\\b"'),
        ("tab\there", '"tab\\there"'),
        ("é☃", '"é☃"'),
        ("\x00\x1b\x7f", '"\\x00\\x1b\\x7f"'),
        ("\u200b", '"\\u200b"'),
    ],
)
def test_update_with_invalid_action_is_denied(value: str, quoted: str) -> None:
    # Scenarios 19 and 31.
    body = make_review("UPDATE", container({ACTION_ANNOTATION: value}), container())
    resp = decide(body)["response"]
    assert resp["allowed"] is False
    assert resp["uid"] == "uid-1"
    assert resp["status"] == {
        "code": 403,
        "message": f"invalid {ACTION_ANNOTATION} annotation {quoted}",
        "reason": "Forbidden",
    }


def test_update_only_new_object_is_checked() -> None:
    # Old object had an invalid value; the update removes it -> allowed.
    old = container({ACTION_ANNOTATION: "bogus"})
    assert decide(make_review("UPDATE", container({}), old))["response"]["allowed"] is True
    # Invalid value kept in place -> still denied (docs/contract.md §5.1 note).
    body = make_review("UPDATE", container({ACTION_ANNOTATION: "bogus", "x": "y"}), old)
    assert decide(body)["response"]["allowed"] is False


def test_update_without_annotation_is_allowed() -> None:
    body = make_review("UPDATE", container({"x": "1"}), container({ACTION_ANNOTATION: "stop"}))
    assert decide(body)["response"] == {"uid": "uid-1", "allowed": True}


@pytest.mark.parametrize(
    ("old", "new", "message"),
    [
        (None, {"a": "b"}, "spec is immutable: old: map[], new: map[a:b]"),
        ({"a": "b"}, {}, "spec is immutable: old: map[a:b], new: map[]"),
        (
            {"z": 1, "a": [True, None, 1.5]},
            {"z": 2, "a": [True, None, 1.5]},
            "spec is immutable: old: map[a:[true <nil> 1.5] z:1], new: map[a:[true <nil> 1.5] z:2]",
        ),
        ({"n": 1}, {"n": True}, "spec is immutable: old: map[n:1], new: map[n:true]"),
    ],
)
def test_update_spec_change_is_denied(old: Any, new: Any, message: str) -> None:
    body = make_review(
        "UPDATE", container({ACTION_ANNOTATION: "start"}, spec=new), container(spec=old)
    )
    resp = decide(body)["response"]
    assert resp["allowed"] is False
    assert resp["status"]["message"] == message


def test_spec_check_comes_before_annotation_check() -> None:
    body = make_review(
        "UPDATE", container({ACTION_ANNOTATION: "bogus"}, spec={"a": 1}), container(spec={})
    )
    assert decide(body)["response"]["status"]["message"].startswith("spec is immutable")


@pytest.mark.parametrize(("old", "new"), [(None, {}), ({}, None), ({"a": 1}, {"a": 1.0})])
def test_equal_specs_are_allowed(old: Any, new: Any) -> None:
    body = make_review("UPDATE", container(spec=new), container(spec=old))
    assert decide(body)["response"]["allowed"] is True


@pytest.mark.parametrize("operation", ["DELETE", "CONNECT"])
def test_other_operations_are_allowed(operation: str) -> None:
    body = make_review(operation, None, container({ACTION_ANNOTATION: "bogus"}))
    assert decide(body)["response"] == {"uid": "uid-1", "allowed": True}


def test_v1beta1_is_answered_in_v1beta1() -> None:
    body = make_review(
        "CREATE", container({ACTION_ANNOTATION: "start"}), api_version="admission.k8s.io/v1beta1"
    )
    doc = decide(body)
    assert doc["apiVersion"] == "admission.k8s.io/v1beta1"
    assert doc["response"]["allowed"] is False


def test_v1_is_answered_in_v1_and_uid_echoed() -> None:
    doc = decide(make_review("CREATE", container(), uid="705ab4f5-6393-11e8-b7cc-42010a800002"))
    assert doc["apiVersion"] == "admission.k8s.io/v1"
    assert doc["response"]["uid"] == "705ab4f5-6393-11e8-b7cc-42010a800002"


def _envelope(**overrides: Any) -> bytes:
    doc: dict[str, Any] = {
        "apiVersion": "admission.k8s.io/v1",
        "kind": "AdmissionReview",
        "request": {"uid": "u", "operation": "CREATE", "object": container()},
    }
    for key, value in overrides.items():
        if value is ...:
            doc.pop(key, None)
        else:
            doc[key] = value
    return json.dumps(doc).encode()


def _request(**fields: Any) -> bytes:
    request: dict[str, Any] = {"uid": "u", "operation": "UPDATE", "object": container()}
    request["oldObject"] = container()
    for key, value in fields.items():
        if value is ...:
            request.pop(key, None)
        else:
            request[key] = value
    return _envelope(request=request)


@pytest.mark.parametrize(
    "body",
    [
        b"",
        b"not json",
        b"\xff\xfe\x00garbage",
        b"[]",
        b"null",
        b'"AdmissionReview"',
        b"{" * 100_000,
        b"[" * 100_000 + b"]" * 100_000,
        _envelope(apiVersion="admission.k8s.io/v2"),
        _envelope(apiVersion=...),
        _envelope(kind="Admission"),
        _envelope(kind=...),
        _envelope(request=...),
        _envelope(request=[]),
        _envelope(request="x"),
        _request(uid=...),
        _request(uid=""),
        _request(uid=5),
        _request(operation=...),
        _request(operation=1),
        _request(object=...),
        _request(object=[]),
        _request(oldObject=...),
        _request(oldObject="x"),
        _request(object={"metadata": []}),
        _request(object={"metadata": {"annotations": []}}),
        _request(object={"metadata": {"annotations": "a=b"}}),
        _request(oldObject={"metadata": {"annotations": 3}}),
        _request(object={"metadata": {"annotations": {ACTION_ANNOTATION: 1}}}),
        _request(object={"metadata": {"annotations": {ACTION_ANNOTATION: None}}}),
    ],
)
def test_malformed_input_is_400(body: bytes) -> None:
    status, out = review(body)
    assert status == 400
    doc = json.loads(out)
    assert set(doc) == {"error"}
    assert isinstance(doc["error"], str) and doc["error"]


def test_deep_spec_does_not_raise() -> None:
    deep = '{"a":' * 5000 + "{}" + "}" * 5000
    body = (
        '{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","request":'
        '{"uid":"u","operation":"UPDATE","object":{},"oldObject":{"spec":' + deep + "}}}"
    ).encode()
    status, out = review(body)
    assert status in (200, 400)
    json.loads(out)


def test_max_body_constant() -> None:
    assert MAX_BODY_BYTES == 3 * 1024 * 1024


@pytest.mark.parametrize(
    ("s", "expected"),
    [
        ("", '""'),
        ("abc", '"abc"'),
        ('"', '"\\""'),
        ("\\", '"\\\\"'),
        ("\a\b\f\n\r\t\v", '"\\a\\b\\f\\n\\r\\t\\v"'),
        ("\x01", '"\\x01"'),
        ("\x7f", '"\\x7f"'),
        ("\x85", '"\\u0085"'),
        ("\u00a0", '"\\u00a0"'),  # NBSP is not printable for Go
        ("\u00ad", '"\\u00ad"'),
        ("日本", '"日本"'),
        ("\U0001f600", '"\U0001f600"'),
        ("\U000e0001", '"\\U000e0001"'),
        ("\ud800", '"\ufffd"'),
    ],
)
def test_go_quote(s: str, expected: str) -> None:
    assert go_quote(s) == expected


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ({}, "map[]"),
        (None, "<nil>"),
        ({"b": 1, "a": "x"}, "map[a:x b:1]"),
        ([], "[]"),
        ([1, "a", False], "[1 a false]"),
        (1000000, "1e+06"),
        (123456, "123456"),
        (0.5, "0.5"),
        (1e-5, "1e-05"),
        ({"m": {"n": [{"k": "v"}]}}, "map[m:map[n:[map[k:v]]]]"),
    ],
)
def test_go_v(value: Any, expected: str) -> None:
    assert go_v(value) == expected


# --- ContainerNamespace: DELETE allowed with the warning (docs/contract.md §5.2) -----------

CNS_RESOURCE = {"group": GROUP, "version": VERSION}


def cns_review(operation: str, api_version: str = "admission.k8s.io/v1") -> bytes:
    cns = {"apiVersion": API_VERSION, "kind": "ContainerNamespace"}
    request = {
        "uid": "uid-2",
        "operation": operation,
        "resource": {**CNS_RESOURCE, "resource": CONTAINER_NAMESPACES},
        "oldObject": {**cns, "metadata": {"name": "moby", "namespace": "ns"}},
        "object": None,
    }
    return json.dumps(
        {"apiVersion": api_version, "kind": "AdmissionReview", "request": request}
    ).encode()


@pytest.mark.parametrize("api_version", ["admission.k8s.io/v1", "admission.k8s.io/v1beta1"])
def test_container_namespace_delete_is_allowed_with_the_warning(api_version: str) -> None:
    doc = decide(cns_review("DELETE", api_version))
    assert doc["apiVersion"] == api_version
    assert doc["response"] == {
        "uid": "uid-2",
        "allowed": True,
        "warnings": [NAMESPACE_DELETE_WARNING],
    }
    assert NAMESPACE_DELETE_WARNING == "namespace delete validation not implemented"


@pytest.mark.parametrize("operation", ["CREATE", "UPDATE", "CONNECT"])
def test_other_container_namespace_operations_are_allowed_silently(operation: str) -> None:
    """Only DELETE is registered; anything else that arrives is allowed without a word."""
    assert decide(cns_review(operation))["response"] == {"uid": "uid-2", "allowed": True}


def test_a_container_delete_gets_no_warning() -> None:
    body = make_review("DELETE", None, container({ACTION_ANNOTATION: "bogus"}))
    assert decide(body)["response"] == {"uid": "uid-1", "allowed": True}


def test_a_container_namespace_review_needs_an_operation() -> None:
    doc = json.loads(cns_review("DELETE"))
    del doc["request"]["operation"]
    status, out = review(json.dumps(doc).encode())
    assert status == 400 and b"operation" in out


def test_the_container_rules_apply_to_every_other_resource() -> None:
    doc = json.loads(make_review("CREATE", container({ACTION_ANNOTATION: "start"})))
    doc["request"]["resource"] = {**CNS_RESOURCE, "resource": CONTAINERS}
    assert decide(json.dumps(doc).encode())["response"]["allowed"] is False


def test_the_webhook_configuration_warns_on_container_namespace_deletes() -> None:
    from actors.infra.webhook import (
        NAMESPACE_WEBHOOK_NAME,
        WEBHOOK_NAME,
        WebhookRegistration,
    )

    body = WebhookRegistration(None, "ns", 4443, b"CA", url="https://x/y").body()  # type: ignore[arg-type]
    container_hook, namespace_hook = body["webhooks"]
    assert container_hook["name"] == WEBHOOK_NAME
    assert namespace_hook["name"] == NAMESPACE_WEBHOOK_NAME
    assert namespace_hook["rules"] == [
        {
            "operations": ["DELETE"],
            "apiGroups": [GROUP],
            "apiVersions": [VERSION],
            "resources": [CONTAINER_NAMESPACES],
            "scope": "Namespaced",
        }
    ]
    assert namespace_hook["failurePolicy"] == "Ignore"  # it only warns: never blocks
    assert container_hook["failurePolicy"] == "Fail"
    for key in ("clientConfig", "namespaceSelector", "timeoutSeconds", "sideEffects"):
        assert namespace_hook[key] == container_hook[key]

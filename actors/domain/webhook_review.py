"""Decision logic of the validating admission webhook (docs/contract.md §5.1, §5.2).

Pure functions, no I/O: :func:`review` takes the raw HTTP request body of an
``AdmissionReview`` (``admission.k8s.io/v1`` or ``v1beta1``) and returns the HTTP
status and response body to send back. It never raises.

Decisions (in this order, as in the table of docs/contract.md §5.1):

* CREATE with the action annotation key present (any value, even empty) -> deny
  ``<ACTION_ANNOTATION> annotation is not allowed on create`` (:data:`CREATE_DENIED_MESSAGE`).
* UPDATE where the old ``spec`` differs from the new ``spec`` -> deny
  ``spec is immutable: old: <%v>, new: <%v>``. Specs are rendered like Go's ``%v`` of a
  decoded JSON map (see :func:`go_v`); an absent or null spec compares equal to ``{}``
  and renders as ``map[]``.
* UPDATE where the new object carries the annotation with a value outside
  start|stop|pause|unpause|restart (case-sensitive; empty is invalid) -> deny
  ``invalid <ACTION_ANNOTATION> annotation <%q of value>``.
* Everything else (other CREATE/UPDATE, DELETE, CONNECT) -> allow.

A request about a ``ContainerNamespace`` (``request.resource`` is
``GROUP`` ``CONTAINER_NAMESPACES``, :mod:`actors.domain.names`; the webhook is registered for
its DELETE only) is allowed; a DELETE carries the warning
``namespace delete validation not implemented`` (docs/contract.md §5.2), which kubectl
prints as ``Warning: ...``.

Malformed input answers HTTP 400 with ``{"error": "..."}``.
"""

from __future__ import annotations

import json
import math
import unicodedata
from decimal import Decimal
from typing import Any

from actors.domain.names import ACTION_ANNOTATION, ACTIONS, CONTAINER_NAMESPACES, GROUP

VALID_ACTIONS = frozenset(ACTIONS)

#: Largest request body the server accepts (the kube-apiserver's maximum request size).
MAX_BODY_BYTES = 3 * 1024 * 1024

SUPPORTED_API_VERSIONS = ("admission.k8s.io/v1", "admission.k8s.io/v1beta1")

CREATE_DENIED_MESSAGE = f"{ACTION_ANNOTATION} annotation is not allowed on create"

#: The warning on every ContainerNamespace delete (docs/contract.md §5.2), the same in
#: both admission modes (actors/domain/admission_policy.py).
NAMESPACE_DELETE_WARNING = "namespace delete validation not implemented"


class MalformedReview(ValueError):
    """The request body is not a usable AdmissionReview."""


# ---------------------------------------------------------------------------
# Go formatting helpers


#: Go's strconv.Quote short escapes (the quoting characters included); the admission
#: policy's CEL builds the same quoting from this table (actors/domain/admission_policy.py).
GO_SHORT_ESCAPES = {
    "\a": "\\a",
    "\b": "\\b",
    "\f": "\\f",
    "\n": "\\n",
    "\r": "\\r",
    "\t": "\\t",
    "\v": "\\v",
    "\\": "\\\\",
    '"': '\\"',
}


def _go_is_print(ch: str) -> bool:
    # Go's unicode.IsPrint: categories L, M, N, P, S plus the ASCII space.
    if ch == " ":
        return True
    return unicodedata.category(ch)[0] in "LMNPS"


def go_quote(s: str) -> str:
    """Return ``s`` quoted like Go's ``strconv.Quote`` (and so ``fmt``'s ``%q``).

    Printable runes are kept, ``\\a \\b \\f \\n \\r \\t \\v \\\\ \\"`` use short escapes,
    other control/non-printable runes become ``\\xhh`` (below U+0080), ``\\uhhhh`` or
    ``\\Uhhhhhhhh``. Lone surrogates (which Go's JSON decoder would have replaced)
    render as U+FFFD. Unicode tables are Python's, so very new code points may differ.
    """
    out = ['"']
    for ch in s:
        if "\ud800" <= ch <= "\udfff":
            ch = "\ufffd"
        if ch in GO_SHORT_ESCAPES:
            out.append(GO_SHORT_ESCAPES[ch])
            continue
        if _go_is_print(ch):
            out.append(ch)
            continue
        cp = ord(ch)
        if cp < 0x80:
            out.append(f"\\x{cp:02x}")
        elif cp < 0x10000:
            out.append(f"\\u{cp:04x}")
        else:
            out.append(f"\\U{cp:08x}")
    out.append('"')
    return "".join(out)


def _go_float(x: float) -> str:
    """Go ``%v`` of a float64: ``%g`` with the shortest digits, exponent form when the
    decimal exponent is < -4 or >= 6 (``1e+06``, ``123456``, ``1.5``)."""
    if math.isnan(x):
        return "NaN"
    if math.isinf(x):
        return "+Inf" if x > 0 else "-Inf"
    if x == 0:
        return "-0" if math.copysign(1.0, x) < 0 else "0"
    sign, digit_tuple, raw_exponent = Decimal(repr(x)).as_tuple()
    assert isinstance(raw_exponent, int)  # finite: NaN and infinities returned above
    exponent = raw_exponent
    digits = "".join(map(str, digit_tuple)).rstrip("0") or "0"
    exponent += len("".join(map(str, digit_tuple))) - len(digits)  # dropped zeros
    exp10 = len(digits) + exponent - 1
    neg = "-" if sign else ""
    if exp10 < -4 or exp10 >= 6:
        mant = digits[0] + ("." + digits[1:] if len(digits) > 1 else "")
        return f"{neg}{mant}e{'-' if exp10 < 0 else '+'}{abs(exp10):02d}"
    if exponent >= 0:
        return neg + digits + "0" * exponent
    point = len(digits) + exponent
    if point > 0:
        return f"{neg}{digits[:point]}.{digits[point:]}"
    return f"{neg}0.{'0' * -point}{digits}"


def go_v(value: Any) -> str:
    """Render a decoded JSON value like Go's ``%v`` of the ``map[string]interface{}``
    tree that ``encoding/json`` produces: ``map[k:v ...]`` with sorted keys, ``[a b]``
    for arrays, strings unquoted, ``<nil>`` for null, ``true``/``false``, numbers as
    float64 (``1``, ``1.5``). ``{}`` renders as ``map[]``."""
    if value is None:
        return "<nil>"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        try:
            return _go_float(float(value))  # encoding/json decodes numbers as float64
        except OverflowError:
            return "+Inf" if value > 0 else "-Inf"
    if isinstance(value, float):
        return _go_float(value)
    if isinstance(value, str):
        return value
    if isinstance(value, dict):
        items = " ".join(f"{k}:{go_v(value[k])}" for k in sorted(value))
        return f"map[{items}]"
    if isinstance(value, list):
        return "[" + " ".join(go_v(v) for v in value) + "]"
    return str(value)


def _json_equal(a: Any, b: Any) -> bool:
    """Deep equality of decoded JSON that does not conflate ``true`` with ``1``."""
    if isinstance(a, bool) or isinstance(b, bool):
        return isinstance(a, bool) and isinstance(b, bool) and a == b
    if isinstance(a, dict):
        if not isinstance(b, dict) or a.keys() != b.keys():
            return False
        return all(_json_equal(a[k], b[k]) for k in a)
    if isinstance(a, list):
        if not isinstance(b, list) or len(a) != len(b):
            return False
        return all(_json_equal(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, int | float) and isinstance(b, int | float):
        return a == b
    return type(a) is type(b) and a == b


# ---------------------------------------------------------------------------
# Request parsing


def _annotations(obj: dict[str, Any], which: str) -> dict[str, Any]:
    metadata = obj.get("metadata")
    if metadata is None:
        return {}
    if not isinstance(metadata, dict):
        raise MalformedReview(f"request.{which}.metadata is not an object")
    annotations = metadata.get("annotations")
    if annotations is None:
        return {}
    if not isinstance(annotations, dict):
        raise MalformedReview(f"request.{which}.metadata.annotations is not an object")
    return annotations


def _object(request: dict[str, Any], which: str) -> dict[str, Any]:
    obj = request.get(which)
    if obj is None:
        raise MalformedReview(f"request.{which} is missing")
    if not isinstance(obj, dict):
        raise MalformedReview(f"request.{which} is not an object")
    return obj


def _spec(obj: dict[str, Any]) -> Any:
    spec = obj.get("spec")
    return {} if spec is None else spec


def _decide(request: dict[str, Any]) -> str | None:
    """Return the denial message, or None to allow."""
    operation = request.get("operation")
    if not isinstance(operation, str):
        raise MalformedReview("request.operation is missing or not a string")

    if operation == "CREATE":
        obj = _object(request, "object")
        if ACTION_ANNOTATION in _annotations(obj, "object"):
            return CREATE_DENIED_MESSAGE
        return None

    if operation == "UPDATE":
        obj = _object(request, "object")
        old = _object(request, "oldObject")
        annotations = _annotations(obj, "object")
        _annotations(old, "oldObject")  # validate shape only
        old_spec, new_spec = _spec(old), _spec(obj)
        if not _json_equal(old_spec, new_spec):
            return f"spec is immutable: old: {go_v(old_spec)}, new: {go_v(new_spec)}"
        if ACTION_ANNOTATION in annotations:
            value = annotations[ACTION_ANNOTATION]
            if not isinstance(value, str):
                raise MalformedReview(f"annotation {ACTION_ANNOTATION} is not a string")
            if value not in VALID_ACTIONS:
                return f"invalid {ACTION_ANNOTATION} annotation {go_quote(value)}"
        return None

    # DELETE, CONNECT and anything else: not registered for them; allow.
    return None


def is_container_namespace(request: dict[str, Any]) -> bool:
    """Whether the request is about a ContainerNamespace (by ``request.resource``)."""
    resource = request.get("resource")
    return (
        isinstance(resource, dict)
        and resource.get("group") == GROUP
        and resource.get("resource") == CONTAINER_NAMESPACES
    )


def namespace_warnings(request: dict[str, Any]) -> list[str]:
    """The warnings for a ContainerNamespace request: every DELETE gets one (§5.2)."""
    operation = request.get("operation")
    if not isinstance(operation, str):
        raise MalformedReview("request.operation is missing or not a string")
    return [NAMESPACE_DELETE_WARNING] if operation == "DELETE" else []


def _error(status: int, message: str) -> tuple[int, bytes]:
    return status, json.dumps({"error": message}).encode()


def parse_review(body: bytes) -> tuple[str, dict[str, Any]]:
    """Validate the envelope; return (apiVersion, request). Raises MalformedReview."""
    try:
        doc = json.loads(body)
    except (ValueError, RecursionError) as exc:  # UnicodeDecodeError is a ValueError
        raise MalformedReview(f"body is not valid JSON: {type(exc).__name__}") from None
    if not isinstance(doc, dict):
        raise MalformedReview("body is not a JSON object")
    api_version = doc.get("apiVersion")
    if api_version not in SUPPORTED_API_VERSIONS:
        raise MalformedReview(f"unsupported apiVersion {api_version!r}"[:200])
    if doc.get("kind") != "AdmissionReview":
        raise MalformedReview(f"unexpected kind {doc.get('kind')!r}"[:200])
    request = doc.get("request")
    if not isinstance(request, dict):
        raise MalformedReview("request is missing or not an object")
    uid = request.get("uid")
    if not isinstance(uid, str) or not uid:
        raise MalformedReview("request.uid is missing or not a string")
    return api_version, request


def review(body: bytes) -> tuple[int, bytes]:
    """Decide one AdmissionReview. Returns (HTTP status, JSON response body)."""
    try:
        api_version, request = parse_review(body)
        if is_container_namespace(request):
            message, warnings = None, namespace_warnings(request)
        else:
            message, warnings = _decide(request), []
    except MalformedReview as exc:
        return _error(400, str(exc))
    except RecursionError:
        return _error(400, "object nesting too deep")
    except Exception as exc:  # never raise to the server
        return _error(500, f"internal error: {type(exc).__name__}")

    response: dict[str, Any] = {"uid": request["uid"], "allowed": message is None}
    if message is not None:
        response["status"] = {"code": 403, "message": message, "reason": "Forbidden"}
    if warnings:
        response["warnings"] = warnings
    out = {"apiVersion": api_version, "kind": "AdmissionReview", "response": response}
    return 200, json.dumps(out).encode()

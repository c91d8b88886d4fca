"""Admission without a callback: the ValidatingAdmissionPolicy manifests (docs/contract.md §5).

Pure: :func:`policy_manifests` builds the objects, nothing here talks to the apiserver
(``actors/service/admission.py`` installs and checks them). The policy is evaluated by the
apiserver itself (CEL), so unlike the webhook it needs no network path back to the
service and keeps rejecting invalid values while the service is down.

Shape (docs/admission.md):

* one ``ValidatingAdmissionPolicy`` :data:`POLICY_NAME`, shared by every namespace
  (identical for every instance, so concurrent applies by several instances agree);
* one ``ValidatingAdmissionPolicyBinding`` ``dockmirror-<namespace>`` per namespace,
  bound to that namespace only (``namespaceSelector`` on
  ``kubernetes.io/metadata.name``) with ``validationActions: [Deny]``.

The three rules are those of ``actors/domain/webhook_review.py`` with the contract's exact
texts. Each validation fails for exactly one of the three situations, so the order in
which the apiserver evaluates them cannot change the message:

1. CREATE carrying the action annotation (any value) -> ``... is not allowed on create``;
2. UPDATE changing ``spec`` -> ``spec is immutable: old: map[], new: map[]``. The CRD
   declares no spec properties, so the apiserver prunes every spec to ``{}`` and this
   rule cannot fail today; the message renders the only spec that can exist. An
   absent spec equals ``{}`` as in the webhook;
3. UPDATE whose new object carries a value outside the five -> ``invalid ... annotation
   <Go %q of the value>``. :func:`go_quote_cel` renders Go's ``strconv.Quote`` in CEL.

The ContainerNamespace delete warning (docs/contract.md §5.2) is a second pair, because
a binding's ``validationActions`` apply to every validation of its policy: the policy
:data:`NAMESPACE_POLICY_NAME` matches DELETE of ContainerNamespaces with one
validation that always fails, and its binding ``dockmirror-<namespace>.<CONTAINER_NAMESPACES>``
(a dot cannot occur in a namespace name, so it never clashes with another namespace's
binding) has ``validationActions: [Warn]``: the delete goes ahead and the apiserver
returns the warning ``Validation failed for ValidatingAdmissionPolicy '<policy>' with
binding '<binding>': namespace delete validation not implemented``.
"""

from __future__ import annotations

from typing import Any

from actors.domain.names import (
    ACTION_ANNOTATION,
    CONTAINER_NAMESPACES,
    CONTAINERS,
    GROUP,
    VERSION,
)
from actors.domain.webhook_review import (
    CREATE_DENIED_MESSAGE,
    GO_SHORT_ESCAPES,
    NAMESPACE_DELETE_WARNING,
    VALID_ACTIONS,
)

API_VERSION = "admissionregistration.k8s.io/v1"
POLICY_NAME = f"container-validation.{GROUP}"
#: The ContainerNamespace delete warning (the webhook of that name upstream).
NAMESPACE_POLICY_NAME = f"container-namespace-deleting.{GROUP}"
MANAGED_BY = {"app.kubernetes.io/managed-by": "dockmirror"}


#: The only spec the CRD lets exist (no properties: everything under spec is pruned).
SPEC_IMMUTABLE_MESSAGE = "spec is immutable: old: map[], new: map[]"

# Go's unicode.IsPrint: letters, marks, numbers, punctuation, symbols and ASCII space.
# RE2 (CEL's matches) uses Go's Unicode tables, so this is Go's definition exactly.
_PRINTABLE_CLASS = r"[\p{L}\p{M}\p{N}\p{P}\p{S} ]"


_CEL_ESCAPES = {
    "\\": "\\\\",
    "'": "\\'",
    "\a": "\\a",
    "\b": "\\b",
    "\f": "\\f",
    "\n": "\\n",
    "\r": "\\r",
    "\t": "\\t",
    "\v": "\\v",
}


def binding_name(namespace: str) -> str:
    """The binding of one namespace (cluster-scoped, so the namespace is in the name)."""
    return f"dockmirror-{namespace}"


def namespace_binding_name(namespace: str) -> str:
    """The warning binding of one namespace; the dot keeps it apart from every
    :func:`binding_name` (namespace names have none)."""
    return f"{binding_name(namespace)}.{CONTAINER_NAMESPACES}"


def cel_str(text: str) -> str:
    """A CEL single-quoted string literal for ``text`` (ASCII input only)."""
    return "'" + "".join(_CEL_ESCAPES.get(ch, ch) for ch in text) + "'"


def _cel_map(entries: dict[str, Any]) -> str:
    def lit(v: Any) -> str:
        return cel_str(v) if isinstance(v, str) else str(v)

    return "{" + ", ".join(f"{cel_str(k)}: {lit(v)}" for k, v in entries.items()) + "}"


def go_quote_cel(value: str) -> str:
    """A CEL expression rendering the string expression ``value`` like Go's ``%q``.

    A printable value (the common case, linear cost) uses ``strings.quote``, which then
    escapes exactly ``\\`` and ``"`` as Go does. Otherwise each character is mapped: the
    short escapes, printable characters kept, ``\\xhh`` below U+0080, ``\\uhhhh`` and
    ``\\Uhhhhhhhh`` above, the code point decoded from the character's UTF-8 bytes
    (``'%x'.format([c])``: 2, 4, 6 or 8 hex digits). If this costs more than the
    apiserver's CEL budget (huge values), the apiserver falls back to the static
    ``message``, which still starts with ``invalid ... annotation``.
    """
    hexval = _cel_map({f"{d:x}": d for d in range(16)})
    h = "'%x'.format([c])"

    def byte(k: int) -> str:
        return f"({hexval}[{h}.charAt({2 * k})] * 16 + {hexval}[{h}.charAt({2 * k + 1})])"

    cp2 = f"(({byte(0)} % 32) * 64 + {byte(1)} % 64)"
    cp3 = f"(({byte(0)} % 16) * 4096 + ({byte(1)} % 64) * 64 + {byte(2)} % 64)"
    cp4 = (
        f"(({byte(0)} % 8) * 262144 + ({byte(1)} % 64) * 4096 + ({byte(2)} % 64) * 64"
        f" + {byte(3)} % 64)"
    )

    def pad(cp: str, width: int) -> str:
        # '%x' has no width: prefix zeros and keep the last `width` digits.
        digits = f"'%x'.format([{cp}])"
        return f"('{'0' * (width - 1)}' + {digits}).substring(size({digits}) - 1)"

    nonprint = (
        f"(size({h}) == 2 ? '\\\\x' + {h}"
        f" : size({h}) == 8 ? '\\\\U' + {pad(cp4, 8)}"
        f" : '\\\\u' + {pad(f'(size({h}) == 4 ? {cp2} : {cp3})', 4)})"
    )
    escape = (
        f"(c in {_cel_map(GO_SHORT_ESCAPES)} ? {_cel_map(GO_SHORT_ESCAPES)}[c]"
        f" : c.matches({cel_str('^' + _PRINTABLE_CLASS + '$')}) ? c : {nonprint})"
    )
    printable_all = cel_str("^" + _PRINTABLE_CLASS + "*$")
    return (
        f"({value}.matches({printable_all}) ? strings.quote({value})"
        f" : '\"' + {value}.split('').map(c, {escape}).join('') + '\"')"
    )


def _has_action(obj: str) -> str:
    return (
        f"has({obj}.metadata.annotations) && "
        f"{cel_str(ACTION_ANNOTATION)} in {obj}.metadata.annotations"
    )


def validations() -> list[dict[str, Any]]:
    """The three CEL rules; each fails in exactly one situation (module docstring)."""
    action = f"object.metadata.annotations[{cel_str(ACTION_ANNOTATION)}]"
    valid = "[" + ", ".join(cel_str(a) for a in sorted(VALID_ACTIONS)) + "]"
    same_spec = "(!has(object.spec) || !has(oldObject.spec) || object.spec == oldObject.spec)"
    invalid_prefix = f"invalid {ACTION_ANNOTATION} annotation "
    return [
        {
            "expression": f"request.operation != 'CREATE' || !({_has_action('object')})",
            "message": CREATE_DENIED_MESSAGE,
            "reason": "Forbidden",
        },
        {
            "expression": f"request.operation != 'UPDATE' || {same_spec}",
            "message": SPEC_IMMUTABLE_MESSAGE,
            "reason": "Forbidden",
        },
        {
            "expression": (
                f"request.operation != 'UPDATE' || !{same_spec}"
                f" || !({_has_action('object')}) || {action} in {valid}"
            ),
            # Used only if the messageExpression fails (e.g. over the cost budget).
            "message": f"{invalid_prefix}(value not shown)",
            "messageExpression": f"{cel_str(invalid_prefix)} + {go_quote_cel(action)}",
            "reason": "Forbidden",
        },
    ]


def policy_manifest() -> dict[str, Any]:
    """The shared ``ValidatingAdmissionPolicy`` (the same for every namespace)."""
    return {
        "apiVersion": API_VERSION,
        "kind": "ValidatingAdmissionPolicy",
        "metadata": {"name": POLICY_NAME, "labels": dict(MANAGED_BY)},
        "spec": {
            # An expression error denies, like the webhook's failurePolicy: Fail.
            "failurePolicy": "Fail",
            "matchConstraints": {
                "matchPolicy": "Equivalent",
                "resourceRules": [
                    {
                        "apiGroups": [GROUP],
                        "apiVersions": [VERSION],
                        "operations": ["CREATE", "UPDATE"],
                        # The main resource only: status writes are never checked.
                        "resources": [CONTAINERS],
                        "scope": "Namespaced",
                    }
                ],
            },
            "validations": validations(),
        },
    }


def binding_manifest(namespace: str) -> dict[str, Any]:
    """The binding of :data:`POLICY_NAME` to ``namespace`` only, denying violations."""
    return {
        "apiVersion": API_VERSION,
        "kind": "ValidatingAdmissionPolicyBinding",
        "metadata": {"name": binding_name(namespace), "labels": dict(MANAGED_BY)},
        "spec": {
            "policyName": POLICY_NAME,
            "validationActions": ["Deny"],
            "matchResources": {
                "namespaceSelector": {
                    "matchLabels": {"kubernetes.io/metadata.name": namespace},
                },
            },
        },
    }


def namespace_policy_manifest() -> dict[str, Any]:
    """The shared policy that warns on every ContainerNamespace delete (§5.2)."""
    return {
        "apiVersion": API_VERSION,
        "kind": "ValidatingAdmissionPolicy",
        "metadata": {"name": NAMESPACE_POLICY_NAME, "labels": dict(MANAGED_BY)},
        "spec": {
            # It only warns: an evaluation error must never block a delete.
            "failurePolicy": "Ignore",
            "matchConstraints": {
                "matchPolicy": "Equivalent",
                "resourceRules": [
                    {
                        "apiGroups": [GROUP],
                        "apiVersions": [VERSION],
                        "operations": ["DELETE"],
                        "resources": [CONTAINER_NAMESPACES],
                        "scope": "Namespaced",
                    }
                ],
            },
            # Fails for every request it matches; the binding turns that into a warning.
            "validations": [
                {"expression": "request.operation != 'DELETE'", "message": NAMESPACE_DELETE_WARNING}
            ],
        },
    }


def namespace_binding_manifest(namespace: str) -> dict[str, Any]:
    """The binding of :data:`NAMESPACE_POLICY_NAME` to ``namespace``, warning only."""
    return {
        "apiVersion": API_VERSION,
        "kind": "ValidatingAdmissionPolicyBinding",
        "metadata": {"name": namespace_binding_name(namespace), "labels": dict(MANAGED_BY)},
        "spec": {
            "policyName": NAMESPACE_POLICY_NAME,
            "validationActions": ["Warn"],
            "matchResources": {
                "namespaceSelector": {
                    "matchLabels": {"kubernetes.io/metadata.name": namespace},
                },
            },
        },
    }


def warning_manifests(namespace: str) -> list[dict[str, Any]]:
    """The warning-only pair for ``namespace`` (policy first): optional at start."""
    return [namespace_policy_manifest(), namespace_binding_manifest(namespace)]


def policy_manifests(namespace: str) -> list[dict[str, Any]]:
    """Every admission object for ``namespace``, in apply order (each policy before its
    binding): the Container policy and binding, then the warning pair.

    Pure; ``dockmirror policy --namespace NS`` prints it for ``kubectl apply -f -``.
    """
    return [policy_manifest(), binding_manifest(namespace), *warning_manifests(namespace)]

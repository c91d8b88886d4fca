"""Pure derivation of a ``Container`` mirror's status from a Docker inspect dict.

Contract: docs/contract.md §1.3-§1.6 and §2.2-§2.5. Nothing here does I/O,
so it is safe to call from any actor and easy to test exhaustively.

All functions tolerate garbage input (missing keys, ``None``, wrong types): a missing or
mistyped part is treated as absent. They never raise ``KeyError``/``TypeError`` on
inspect data, because one odd container must not break the whole sync.

Deliberate deviation from upstream (§2.4; docs/contract.md §9, D16): a binding whose ``HostIp``
is not an IP address (Docker has been seen to send ``""``) passes through verbatim, so ``""`` stays
``""``. Upstream parses into ``netip.Addr`` and would emit the text ``invalid IP``.
"""

from __future__ import annotations

import ipaddress
from typing import Any

from actors.domain.timefmt import MAX_TIME_S, ZERO_TIME_S, kube_time_from_seconds, parse_rfc3339

DEFAULT_NAMESPACE = "moby"

# status.status enum of the CRD (§1.3); anything else is mapped to "unknown" (§2.3).
CONTAINER_STATUSES: tuple[str, ...] = (
    "created",
    "running",
    "pausing",
    "paused",
    "restarting",
    "removing",
    "exited",
    "dead",
    "unknown",
)

_INT32_MIN = -(2**31)
_INT32_MAX = 2**31 - 1


def parse_container_name(name: str) -> tuple[str, str]:
    """Split a Docker container name into ``(namespace, name)`` (§2.2).

    One leading ``/`` is removed; the rest is split at the first ``/``. Without a
    ``/`` the namespace is ``moby``.
    """
    if not isinstance(name, str):
        name = ""
    if name.startswith("/"):
        name = name[1:]
    namespace, sep, rest = name.partition("/")
    if sep:
        return namespace, rest
    return DEFAULT_NAMESPACE, name


def to_kube_time(value: str | None) -> str | None:
    """Convert a Docker RFC 3339 timestamp to Kubernetes ``metav1.Time`` text (§2.5).

    The result is UTC at whole seconds, the fraction truncated (never rounded), e.g.
    ``2025-11-22T00:34:07Z``. Returns ``None`` for ``None``, non-strings, unparsable
    text and Docker's zero time ``0001-01-01T00:00:00Z`` (with or without a fraction).
    """
    parsed = parse_rfc3339(value)  # the one parser (actors/domain/timefmt.py)
    # Truncated to the second in UTC: offsets are whole minutes, so dropping the fraction
    # before or after the shift is the same. The zero time "never" is no time at all,
    # whatever fraction it carries; an offset may push an instant out of 0001..9999.
    if parsed is None or not ZERO_TIME_S < parsed.seconds <= MAX_TIME_S:
        return None
    return kube_time_from_seconds(parsed.seconds)


def _get(obj: Any, key: str) -> Any:
    return obj.get(key) if isinstance(obj, dict) else None


def _str(value: Any) -> str:
    return value if isinstance(value, str) else ""


def _int32(value: Any) -> int:
    """Docker int to int32 like Go's ``int32(x)`` (wraps); non-integers become 0."""
    if not isinstance(value, int) or isinstance(value, bool):
        return 0
    if _INT32_MIN <= value <= _INT32_MAX:
        return value
    return (value - _INT32_MIN) % 2**32 + _INT32_MIN


def _canonical_ip(text: str) -> str:
    """Canonical text of an IP like Go's ``netip.Addr.String``; non-IPs pass through."""
    try:
        addr = ipaddress.ip_address(text)
    except ValueError:
        return text
    if isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped is not None:
        # Go prints 4-in-6 as "::ffff:1.2.3.4"; Python 3.11 would print hex groups.
        scope = f"%{addr.scope_id}" if addr.scope_id else ""
        return f"::ffff:{addr.ipv4_mapped}{scope}"
    return str(addr)


def _ports(raw: Any) -> list[dict[str, Any]]:
    """``NetworkSettings.Ports`` to the sorted ContainerPort list (§1.5, §2.4)."""
    if not isinstance(raw, dict):
        return []
    ports: list[dict[str, Any]] = []
    keys = sorted((k for k in raw if isinstance(k, str)), key=lambda k: k.encode("utf-8"))
    for key in keys:
        entry: dict[str, Any] = {"name": key}
        value = raw[key]
        if isinstance(value, list):
            bindings = [
                {
                    "hostIP": _canonical_ip(_str(b.get("HostIp"))),
                    "hostPort": _str(b.get("HostPort")),
                }
                for b in value
                if isinstance(b, dict)
            ]
            if bindings:
                # Python str order is code-point order, identical to UTF-8 byte order.
                bindings.sort(key=lambda b: (b["hostIP"], b["hostPort"]))
                entry["bindings"] = bindings
        ports.append(entry)
    return ports


def mirror_status(inspect: dict) -> dict:
    """Build the ``Container`` ``status`` the engine applies, from a Docker inspect dict.

    Keys follow §2.3. ``name``, ``namespace``, ``path``, ``image``, ``status``, ``pid``
    and ``exitCode`` are always present (the CRD requires the first five; the engine
    always sends the two ints). ``args``, ``labels``, ``error``, ``ports`` and the
    timestamps are omitted when empty or unparsable, so a server-side apply removes
    them. ``conditions`` and ``lastAction`` are never produced here.
    """
    state = _get(inspect, "State")
    namespace, name = parse_container_name(_str(_get(inspect, "Name")))
    status: dict[str, Any] = {
        "name": name,
        "namespace": namespace,
        "path": _str(_get(inspect, "Path")),
    }

    args = _get(inspect, "Args")
    if isinstance(args, list):
        args = [a for a in args if isinstance(a, str)]
        if args:
            status["args"] = args

    status["image"] = _str(_get(inspect, "Image"))

    labels = _get(_get(inspect, "Config"), "Labels")
    if isinstance(labels, dict):
        labels = {k: v for k, v in labels.items() if isinstance(k, str) and isinstance(v, str)}
        if labels:
            status["labels"] = labels

    docker_status = _get(state, "Status")
    status["status"] = docker_status if docker_status in CONTAINER_STATUSES else "unknown"
    status["pid"] = _int32(_get(state, "Pid"))
    status["exitCode"] = _int32(_get(state, "ExitCode"))

    error = _get(state, "Error")
    if isinstance(error, str) and error:
        status["error"] = error

    for field, source in (
        ("createdAt", _get(inspect, "Created")),
        ("startedAt", _get(state, "StartedAt")),
        ("finishedAt", _get(state, "FinishedAt")),
    ):
        stamp = to_kube_time(source)
        if stamp is not None:
            status[field] = stamp

    ports = _ports(_get(_get(inspect, "NetworkSettings"), "Ports"))
    if ports:
        status["ports"] = ports
    return status


# --- conditions (§1.6) -------------------------------------------------------------

CONDITION_TYPES: tuple[str, ...] = ("Running", "Paused", "Restarting", "Dead", "OOMKilled")

# type -> (status.status value that makes it True, true reason/message, false reason/message)
_CONDITION_RULES: dict[str, tuple[str, tuple[str, str], tuple[str, str]]] = {
    "Running": (
        "running",
        ("Running", "Container is running"),
        ("NotRunning", "Container is not running"),
    ),
    "Paused": (
        "paused",
        ("Paused", "Container is paused"),
        ("NotPaused", "Container is not paused"),
    ),
    "Restarting": (
        "restarting",
        ("Restarting", "Container is restarting"),
        ("NotRestarting", "Container is not restarting"),
    ),
    "Dead": (
        "dead",
        ("Dead", "Container is dead"),
        ("NotDead", "Container is not dead"),
    ),
}
_OOM_REASON = "OOMKilled"
_OOM_MESSAGE = "Unable to tell if container is OOMKilled"


def _desired_condition(cond_type: str, container_status: str) -> tuple[str, str, str]:
    if cond_type == "OOMKilled":
        return "Unknown", _OOM_REASON, _OOM_MESSAGE
    true_when, (true_reason, true_msg), (false_reason, false_msg) = _CONDITION_RULES[cond_type]
    if container_status == true_when:
        return "True", true_reason, true_msg
    return "False", false_reason, false_msg


def compute_conditions(
    status: str, previous: list[dict] | None, now: str
) -> tuple[list[dict], list[dict]]:
    """Derive ``status.conditions`` from ``status.status`` (§1.6).

    ``status`` is the Container's ``status.status`` (empty or non-string means
    ``unknown``); ``previous`` the stored conditions; ``now`` the kube time text to use
    as ``lastTransitionTime`` for conditions whose status changes (or are new).

    Returns ``(conditions, changed)``. ``conditions`` lists the five
    :data:`CONDITION_TYPES` in that order, followed by any other condition types found
    in ``previous`` (kept verbatim, in their previous order, as ``meta.SetStatusCondition``
    would). ``changed`` holds the new conditions whose status, reason or message differ
    from ``previous`` (all five on the first computation); each warrants one
    ``ConditionChanged`` Event. No ``observedGeneration`` is set.
    """
    if not isinstance(status, str) or not status:
        status = "unknown"
    prev_by_type: dict[str, dict] = {}
    others: list[dict] = []
    for cond in previous if isinstance(previous, list) else []:
        if not isinstance(cond, dict):
            continue
        cond_type = cond.get("type")
        if cond_type in CONDITION_TYPES:
            prev_by_type.setdefault(cond_type, cond)
        elif isinstance(cond_type, str):
            others.append(cond)

    conditions: list[dict] = []
    changed: list[dict] = []
    for cond_type in CONDITION_TYPES:
        cond_status, reason, message = _desired_condition(cond_type, status)
        prev = prev_by_type.get(cond_type)
        transition = now
        if prev is not None and prev.get("status") == cond_status:
            prev_time = prev.get("lastTransitionTime")
            if isinstance(prev_time, str) and prev_time:
                transition = prev_time
        cond = {
            "type": cond_type,
            "status": cond_status,
            "reason": reason,
            "message": message,
            "lastTransitionTime": transition,
        }
        conditions.append(cond)
        if prev is None or (prev.get("status"), prev.get("reason"), prev.get("message")) != (
            cond_status,
            reason,
            message,
        ):
            changed.append(cond)
    conditions.extend(others)
    return conditions, changed


def comparable_status(status: dict) -> dict:
    """Copy of ``status`` without ``conditions`` and ``lastAction``.

    The engine never writes those two fields, so comparing
    ``comparable_status(stored) == comparable_status(mirror_status(inspect))`` tells
    whether a status apply would be a no-op.
    """
    if not isinstance(status, dict):
        return {}
    return {k: v for k, v in status.items() if k not in ("conditions", "lastAction")}

"""Fault injection points for crash tests (``DOCKMIRROR_FAULTS``).

Syntax: a comma-separated list of ``POINT[=MODE][@N]``:

* ``POINT`` names a step, e.g. ``action.after_docker``, ``action.after_last_action``,
  ``action.after_annotation_removed`` (see :data:`POINTS`);
* ``MODE`` is ``kill`` (SIGKILL the whole process, the default) or ``raise``
  (raise :class:`InjectedFault` in the calling actor);
* ``N`` fires on the N-th time the point is reached (default 1), once per process.

Unset, :func:`hit` costs one dict lookup. Tests set the variable in the environment of
a ``python supervisor.py`` child process and restart it after the kill.
"""

from __future__ import annotations

import logging
import os
import signal
import threading

log = logging.getLogger("dockmirror.faults")

POINTS = (
    "action.before_docker",
    "action.after_docker",
    "action.after_last_action",
    "action.after_annotation_removed",
    "sync.before_status",
    "container.on_receive",
    "container.on_start",
    "router.on_receive",
    "router.on_start",
    "reader.run_once",
)


class InjectedFault(RuntimeError):
    """Raised at a fault point whose mode is ``raise``."""


class _Rule:
    def __init__(self, mode: str, nth: int) -> None:
        self.mode = mode
        self.nth = nth
        self.count = 0
        self.fired = False


def parse(spec: str) -> dict[str, _Rule]:
    rules: dict[str, _Rule] = {}
    for raw in spec.split(","):
        item = raw.strip()
        if not item:
            continue
        nth = 1
        if "@" in item:
            item, count = item.rsplit("@", 1)
            nth = max(1, int(count))
        point, _, mode = item.partition("=")
        mode = mode or "kill"
        if mode not in ("kill", "raise"):
            raise ValueError(f"DOCKMIRROR_FAULTS: unknown mode {mode!r} for {point!r}")
        if point not in POINTS:
            raise ValueError(f"DOCKMIRROR_FAULTS: unknown point {point!r}; known: {POINTS}")
        rules[point] = _Rule(mode, nth)
    return rules


_lock = threading.Lock()
_rules: dict[str, _Rule] = parse(os.environ.get("DOCKMIRROR_FAULTS", ""))


def configure(spec: str) -> None:
    """Replace the active rules (tests in the same process)."""
    global _rules
    with _lock:
        _rules = parse(spec)


def hit(point: str) -> None:
    """Called by actors at ``point``; fires the configured fault, if any."""
    rule = _rules.get(point)
    if rule is None:
        return
    with _lock:
        rule.count += 1
        if rule.fired or rule.count != rule.nth:
            return
        rule.fired = True
    log.warning("fault injection: %s (%s)", point, rule.mode)
    if rule.mode == "kill":
        os.kill(os.getpid(), signal.SIGKILL)
    raise InjectedFault(f"injected fault at {point}")


def bug(name: str) -> bool:
    """False normally. True when DOCKMIRROR_BUGS (comma-separated) names it."""
    return name in _bugs


_bugs = frozenset(b.strip() for b in os.environ.get("DOCKMIRROR_BUGS", "").split(",") if b.strip())

# --- flaky answers at the port boundary ---------------------------------------------------
# Stub with the interface of the chaos harness's implementation (which replaces it when
# the branches merge): the ports call it on every request, so with DOCKMIRROR_FAULTS
# unset it must cost no more than one dict lookup.
FLAKY_POINTS = ("kube.request", "docker.call")
FLAKY_FAULTS = ("5xx", "429", "timeout", "reset", "timeout_after")
_flaky: dict[str, float] = {}


def flaky(point: str) -> str | None:
    """None normally. When DOCKMIRROR_FAULTS configures POINT=flaky:P, returns with
    probability P one of "5xx", "429", "timeout", "reset", "timeout_after" (the
    call is made, then reported as timed out)."""
    if _flaky.get(point) is None:
        return None
    return None  # stub: the chaos branch's implementation picks a fault here

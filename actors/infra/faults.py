"""Fault injection for crash and chaos tests (``DOCKMIRROR_FAULTS``, ``DOCKMIRROR_BUGS``).

``DOCKMIRROR_FAULTS`` is a comma-separated list of ``POINT[=MODE][@N]``:

* ``POINT`` names a step, e.g. ``action.after_docker``, ``action.after_last_action``,
  ``action.after_annotation_removed``, or a port call, ``kube.request`` and
  ``docker.call`` (see :data:`POINTS`);
* ``MODE`` is ``kill`` (SIGKILL the whole process, the default), ``raise`` (raise
  :class:`InjectedFault` in the calling actor), or ``flaky:P`` with ``P`` a float in
  (0, 1]: :func:`flaky` then answers a transient failure kind with probability ``P``
  every time the point is reached (``@N`` is meaningless with it and refused);
* ``N`` fires a ``kill``/``raise`` on the N-th time the point is reached (default 1),
  once per process.

``DOCKMIRROR_FAULTS_SEED`` (an int) seeds the random source of ``flaky`` so that a
chaos run can be replayed. ``DOCKMIRROR_BUGS`` is a comma-separated list of names from
:data:`BUGS`: deliberately broken behaviour that ``scripts/chaos --self-test`` plants to
prove that each invariant of the harness catches its bug (:func:`bug`).

A malformed variable raises :class:`ValueError` naming the variable and the bad item at
import, so the service refuses to start instead of running with a fault half-configured.
Unset, :func:`hit`, :func:`flaky` and :func:`bug` each cost one dict lookup. Tests set
the variables in the environment of a ``python supervisor.py`` child process, or call
:func:`configure` / :func:`configure_bugs` in-process.

Every function here may be called from any actor or thread; the counters are guarded by
one lock.
"""

from __future__ import annotations

import logging
import math
import os
import random
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
    "kube.request",
    "docker.call",
)

# What a flaky port call turns into. "timeout_after": the call is made, then reported
# as timed out (the caller cannot know whether it took effect).
FLAKY_KINDS = ("5xx", "429", "timeout", "reset", "timeout_after")

# Planted bugs for scripts/chaos --self-test (docs/reliability.md).
BUGS = (
    "double_restart",  # the service restarts the container twice for one request
    "drop_last_action",  # the outcome write is skipped, the annotation still removed
    "leave_annotation",  # the outcome is written, the annotation never removed
    # Every status apply writes a wrong value (a one-off wrong write that a later apply
    # repairs would be legal eventual consistency, not a bug the harness should flag).
    "wrong_status",
)


class InjectedFault(RuntimeError):
    """Raised at a fault point whose mode is ``raise``."""


class _Rule:
    def __init__(self, mode: str, nth: int) -> None:
        self.mode = mode
        self.nth = nth
        self.count = 0
        self.fired = False


def _probability(text: str, item: str) -> float:
    try:
        p = float(text)
    except ValueError:
        p = math.nan
    if not (0.0 < p <= 1.0):  # also refuses nan and inf
        raise ValueError(
            f"DOCKMIRROR_FAULTS: {item!r}: flaky probability must be a number in (0, 1], "
            f"got {text!r}"
        )
    return p


def parse(spec: str) -> tuple[dict[str, _Rule], dict[str, float]]:
    """``DOCKMIRROR_FAULTS`` text -> (kill/raise rules, flaky probabilities) by point.

    Raises ValueError with the offending item for unknown points or modes, a bad ``@N``,
    a probability outside (0, 1], ``flaky`` combined with ``@N``, or a point named twice.
    """
    rules: dict[str, _Rule] = {}
    flaky_p: dict[str, float] = {}
    for raw in spec.split(","):
        item = raw.strip()
        if not item:
            continue
        body, nth = item, 1
        has_count = "@" in item
        if has_count:
            body, count = item.rsplit("@", 1)
            try:
                nth = int(count)
            except ValueError:
                raise ValueError(
                    f"DOCKMIRROR_FAULTS: {item!r}: @N needs an integer, got {count!r}"
                ) from None
            nth = max(1, nth)
        point, _, mode = body.partition("=")
        mode = mode or "kill"
        if point not in POINTS:
            raise ValueError(f"DOCKMIRROR_FAULTS: unknown point {point!r}; known: {POINTS}")
        if point in rules or point in flaky_p:
            raise ValueError(f"DOCKMIRROR_FAULTS: point {point!r} configured twice")
        if mode.startswith("flaky:"):
            if has_count:
                raise ValueError(f"DOCKMIRROR_FAULTS: {item!r}: flaky takes no @N")
            flaky_p[point] = _probability(mode.removeprefix("flaky:"), item)
        elif mode in ("kill", "raise"):
            rules[point] = _Rule(mode, nth)
        else:
            raise ValueError(
                f"DOCKMIRROR_FAULTS: unknown mode {mode!r} for {point!r} (kill, raise or flaky:P)"
            )
    return rules, flaky_p


def parse_bugs(spec: str) -> frozenset[str]:
    """``DOCKMIRROR_BUGS`` text -> set of bug names; ValueError for an unknown name."""
    names = frozenset(n.strip() for n in spec.split(",") if n.strip())
    unknown = sorted(names - set(BUGS))
    if unknown:
        raise ValueError(f"DOCKMIRROR_BUGS: unknown bug(s) {unknown}; known: {BUGS}")
    return names


def _seed_from_env() -> int | None:
    text = os.environ.get("DOCKMIRROR_FAULTS_SEED", "").strip()
    if not text:
        return None
    try:
        return int(text)
    except ValueError:
        raise ValueError(f"DOCKMIRROR_FAULTS_SEED must be an integer, got {text!r}") from None


_lock = threading.Lock()
_rules: dict[str, _Rule]
_flaky: dict[str, float]
_rules, _flaky = parse(os.environ.get("DOCKMIRROR_FAULTS", ""))
_rng = random.Random(_seed_from_env())
# name -> 0 (not planted), 1 (planted, not fired yet), 2 (fired): one lookup per call.
_bugs: dict[str, int] = {}


def _bug_states(spec: str) -> dict[str, int]:
    planted = parse_bugs(spec)
    return {name: int(name in planted) for name in BUGS}


_bugs = _bug_states(os.environ.get("DOCKMIRROR_BUGS", ""))
# Figures for logs and tests: point -> kind -> count of injected flaky failures.
flaky_counts: dict[str, dict[str, int]] = {}


def configure(spec: str, rng: random.Random | None = None) -> None:
    """Replace the active fault rules (tests in the same process); ``rng`` drives flaky."""
    global _rules, _flaky, _rng
    rules, flaky_p = parse(spec)
    with _lock:
        _rules, _flaky = rules, flaky_p
        _rng = rng or random.Random()
        flaky_counts.clear()


def configure_bugs(spec: str) -> None:
    """Replace the planted bugs (tests in the same process)."""
    global _bugs
    states = _bug_states(spec)
    with _lock:
        _bugs = states


def hit(point: str) -> None:
    """Called by actors at ``point``; fires the configured kill/raise fault, if any."""
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


def flaky(point: str) -> str | None:
    """None normally. When DOCKMIRROR_FAULTS configures POINT=flaky:P, returns with
    probability P one of "5xx", "429", "timeout", "reset", "timeout_after" (the
    call is made, then reported as timed out).

    Called by the ports (``kube.request``, ``docker.call``) before each call, on the
    calling actor's thread; the port turns the answer into the matching transient error
    of its error family. Each injected failure is logged (``fault injection: flaky``)
    and counted in :data:`flaky_counts`, so a chaos campaign can prove faults fired.
    """
    p = _flaky.get(point)
    if p is None:
        return None
    with _lock:
        if _rng.random() >= p:
            return None
        kind = _rng.choice(FLAKY_KINDS)
        per_point = flaky_counts.setdefault(point, {})
        per_point[kind] = per_point.get(kind, 0) + 1
    log.warning("fault injection: flaky %s -> %s", point, kind)
    return kind


def bug(name: str) -> bool:
    """False normally. True when DOCKMIRROR_BUGS (comma-separated) names it.

    ``name`` must be one of :data:`BUGS` (a typo in a hook is a ValueError, not a bug
    that silently never fires). The first time a planted bug fires, a warning
    ``planted bug fired: <name>`` is logged: the self-test uses it to tell "the
    invariant missed the bug" from "the hook is not wired".
    """
    try:
        state = _bugs[name]
    except KeyError:
        raise ValueError(f"faults.bug: unknown bug {name!r}; known: {BUGS}") from None
    if not state:
        return False
    if state == 1:
        with _lock:
            first = _bugs.get(name) == 1
            if first:
                _bugs[name] = 2
        if first:
            log.warning("planted bug fired: %s", name)
    return True

"""``scripts/chaos --self-test``: prove that each invariant catches the bug it is for.

A small strict campaign (:func:`probe`) runs once against the correct service (the
*control*, which must pass every invariant) and once per planted bug of
``actors/infra/faults.py`` (``DOCKMIRROR_BUGS=<name>``, hooks in ``actors/runtime/container.py``).
A bug run counts as caught only if the service logged that the bug fired and the
invariant meant for it (:data:`~scripts.chaoslib.invariants.BUG_INVARIANT`) failed;
other invariants failing as well is fine. The self-test passes when the control passed
and every bug was caught (:func:`~scripts.chaoslib.invariants.self_test_problems`).
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass, field

from scripts.chaoslib.campaigns import _containers, _start, _teardown
from scripts.chaoslib.harness import (
    WEIGHTS,
    Driver,
    Env,
    Observer,
    OutcomeWatch,
    RestartCounter,
    log,
    settle_and_check,
)
from scripts.chaoslib.invariants import BUG_INVARIANT, Result, self_test_problems

CONTAINERS = 6
BUDGET = 36  # request cycles: ~6 per container
# Short timeouts: a planted bug is meant to fail, and the control finishes long before.
CONSUME_TIMEOUT = 20.0
QUIESCE_TIMEOUT = 10.0
MIRROR_TIMEOUT = 10.0


@dataclass
class Verdict:
    bug: str | None
    result: Result
    fired: bool
    problems: list[str] = field(default_factory=list)

    @property
    def line(self) -> str:
        name = self.bug or "control"
        if self.problems:
            return f"self-test {name:<17} FAIL  " + "; ".join(self.problems)
        if self.bug is None:
            return f"self-test {name:<17} ok    every invariant held"
        others = sorted(self.result.failed_invariants - {BUG_INVARIANT[self.bug]})
        also = f" (also: {', '.join(others)})" if others else ""
        return f"self-test {name:<17} ok    caught by {BUG_INVARIANT[self.bug]!r}{also}"


def probe(env: Env, rng: random.Random, bug: str | None) -> tuple[Result, bool]:
    """One small strict campaign with ``bug`` planted (None: the control run).

    Returns the result and whether the service logged that the bug fired.
    """
    name = f"selftest-{(bug or 'control').replace('_', '-')}"
    result = Result(name)
    ids = _containers(env, name, CONTAINERS, created_every=3)
    svc = env.service(name, env={"DOCKMIRROR_BUGS": bug or ""})
    _start(svc)
    # Restarts are rare in the default mix; the double-restart probe needs several.
    weights = {**WEIGHTS, "restart": 4} if bug == "double_restart" else WEIGHTS
    with Observer(env) as obs, RestartCounter(env) as restarts, OutcomeWatch(env) as outcomes:
        driver = Driver(
            env,
            obs,
            ids,
            budget=BUDGET,
            weights=weights,
            consume_timeout=CONSUME_TIMEOUT,
            seed=rng.random(),
        ).start()
        driver.wait_budget(BUDGET * 5)
        driver.finish(timeout=CONSUME_TIMEOUT + 10)
        settle_and_check(
            env,
            result,
            driver,
            restarts,
            outcomes,
            strict=True,
            quiesce_timeout=QUIESCE_TIMEOUT,
            mirror_timeout=MIRROR_TIMEOUT,
        )
    fired = bug is not None and f"planted bug fired: {bug}" in svc.log_text()
    result.figures.update(bug=bug or "", fired=fired, trace=str(svc.workdir))
    result.minimums = {"requested": BUDGET, "completed": BUDGET} if bug is None else {}
    _teardown(env, name, svc, result)
    return result, fired


Probe = Callable[[Env, random.Random, "str | None"], tuple[Result, bool]]


def self_test(
    env: Env, rng: random.Random, run: Probe = probe, bugs: tuple[str, ...] = ()
) -> list[Verdict]:
    """The control run, then one run per bug (default: all of BUG_INVARIANT).

    ``run(env, rng, bug) -> (Result, fired)`` is injectable for unit tests; the caller
    (scripts/chaos.py) wraps it to add the exit and minimum-count checks.
    """
    verdicts = []
    for bug in (None, *(bugs or tuple(BUG_INVARIANT))):
        log(f"--- self-test {bug or 'control'}")
        result, fired = run(env, rng, bug)
        verdict = Verdict(
            bug, result, fired, self_test_problems(bug, result.failed_invariants, fired)
        )
        log(verdict.line)
        verdicts.append(verdict)
    return verdicts

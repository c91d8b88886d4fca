"""Chaos campaigns against the real devenv (issues 7 and 10; docs/reliability.md).

    scripts/chaos --quick                       # CI: every campaign, a few minutes
    scripts/chaos                               # full mode (100 kills, 10,000-action soak)
    scripts/chaos --quick --only sigkill,races  # a subset
    scripts/chaos --json figures.json           # also write the figures
    scripts/chaos --self-test                   # prove each invariant catches its bug
    scripts/chaos --engine chaos                # on an extra engine of scripts/devenv

Campaigns: sigkill, actor-crash, engine, races, soak, flaky, bad-input. ``engine``
stops and starts the Docker engine and the devenv's apiserver, ``flaky`` SIGSTOPs
dockerd for 20 s, and a teardown restarts the engine when a container cannot be
removed: on a shared engine, run with ``--engine NAME`` (an extra engine started with
``scripts/devenv engine-up NAME``; only it is ever stopped, frozen or restarted). Prints
one summary line per campaign; exits 1 if an invariant failed (details printed).
Everything created is labelled ``dockmirror.chaos=<run id>`` in namespace
``chaos-<run id>`` and removed at the end, also on failure or Ctrl-C.
"""

from __future__ import annotations

import argparse
import json
import random
import signal
import sys
import time
import traceback
from collections.abc import Callable
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from scripts.chaoslib import campaigns  # noqa: E402
from scripts.chaoslib.badinput import bad_input  # noqa: E402
from scripts.chaoslib.harness import ENGINE_NAME, Env, log, record_removal  # noqa: E402
from scripts.chaoslib.invariants import Result, minimum_problems  # noqa: E402
from scripts.chaoslib.selftest import probe, self_test  # noqa: E402

CAMPAIGNS = {
    "sigkill": campaigns.sigkill,
    "actor-crash": campaigns.actor_crash,
    "engine": campaigns.engine,
    "races": campaigns.races,
    "soak": campaigns.soak,
    "flaky": campaigns.flaky,
    "bad-input": bad_input,
}


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="scripts/chaos", description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="CI sizes: all campaigns in minutes")
    p.add_argument(
        "--only",
        default="",
        help=f"comma-separated subset of: {', '.join(CAMPAIGNS)} (default: all)",
    )
    p.add_argument(
        "--self-test",
        action="store_true",
        help="run a small campaign against the correct service and against each planted "
        "bug (DOCKMIRROR_BUGS); pass only if every bug is caught by its invariant",
    )
    p.add_argument("--json", type=Path, help="write the figures of every campaign here")
    p.add_argument("--scale", type=float, default=1.0, help="multiply campaign sizes (dev)")
    p.add_argument("--seed", type=int, help="random seed (printed; default: time-based)")
    p.add_argument(
        "--workdir",
        type=Path,
        help="service logs and journals (default /tmp/dockmirror-chaos-<id>)",
    )
    p.add_argument(
        "--engine",
        metavar="NAME",
        help="run against the extra Docker engine NAME of scripts/devenv (started with "
        "engine-up NAME if needed) instead of the devenv's main engine: the service, the "
        "racers and every stop, SIGSTOP and restart of dockerd use that engine only",
    )
    args = p.parse_args(argv)
    if args.engine is not None and not ENGINE_NAME.fullmatch(args.engine):
        p.error(f"--engine {args.engine!r}: 1-16 characters a-z, 0-9 and '-'")
    if args.self_test and args.only:
        p.error("--self-test runs its own fixed campaign; --only does not apply")
    names = [n.strip() for n in args.only.split(",") if n.strip()] or list(CAMPAIGNS)
    unknown = [n for n in names if n not in CAMPAIGNS]
    if unknown:
        p.error(f"unknown campaign(s) {unknown}; known: {list(CAMPAIGNS)}")
    args.names = names
    return args


def _sigterm(*_: object) -> None:
    raise KeyboardInterrupt


def run_campaign(env: Env, name: str, body: Callable[[], Result]) -> Result:
    """Run one campaign and apply the checks every campaign shares: a crash of the
    campaign itself, service exits the harness did not cause, minimum counts.

    Only KeyboardInterrupt propagates: an exception of the campaign or of the cleanup
    after a crash is a failure of this campaign, and the next campaign still runs."""
    first = len(env.services)
    t0 = time.monotonic()
    try:
        result = body()
    except KeyboardInterrupt:
        raise
    except Exception as exc:
        result = Result(name)
        result.fail("campaign crashed", [f"{type(exc).__name__}: {exc}"])
        traceback.print_exc()
        try:
            removal = env.remove_containers(name)
            if removal is not None:
                record_removal(result, removal)
        except Exception as exc2:
            result.fail("teardown", [f"harness error: {type(exc2).__name__}: {exc2}"[:400]])
    finally:
        # A campaign that crashed half-way must not leave its service running:
        # two services in one namespace would both run every request.
        try:
            env.stop_services()
        except Exception as exc:
            log(f"{name}: stopping the services: {type(exc).__name__}: {exc}")
    result.seconds = time.monotonic() - t0
    exits = [p for svc in env.services[first:] for p in svc.unexpected_exits()]
    result.figures["unexpected_exits"] = len(exits)
    result.fail("service exit", exits)
    result.fail("minimum counts", minimum_problems(result.figures, result.minimums))
    return result


def _campaigns(env: Env, args: argparse.Namespace, rng: random.Random) -> list[Result]:
    sizes = campaigns.QUICK if args.quick else campaigns.FULL
    results = []
    for name in args.names:
        log(f"--- campaign {name}")
        if name == "bad-input":

            def body(name: str = name) -> Result:
                return bad_input(env, args.quick, rng)
        else:

            def body(name: str = name) -> Result:
                return CAMPAIGNS[name](env, campaigns.scaled(sizes[name], args.scale), rng)

        result = run_campaign(env, name, body)
        result.figures.setdefault("engine_restarts_in_teardown", 0)
        limit = result.figures.pop("_rss_limit_pct", None)
        growth = result.figures.get("rss_growth_pct")
        if limit is not None and not args.quick and growth is not None and growth > limit:
            result.fail("rss", [f"RSS grew {growth}% (> {limit}%) over the soak"])
        results.append(result)
        log(result.summary_line())
        for note in result.notes:
            log(f"{name}: note: {note}")
    return results


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    seed = args.seed if args.seed is not None else int(time.time())
    rng = random.Random(seed)
    signal.signal(signal.SIGTERM, _sigterm)
    env = Env(args.workdir, engine_name=args.engine)
    mode = "self-test" if args.self_test else "quick" if args.quick else "full"
    log(f"chaos run {env.run_id} ({mode}, seed {seed}), namespace {env.namespace}, {env.workdir}")
    log(f"Docker engine: {env.engine} at {env.devenv.docker_host}")
    results: list[Result] = []
    verdicts = []
    started = time.monotonic()
    interrupted = False
    try:
        if args.self_test:

            def run(env: Env, rng: random.Random, bug: str | None) -> tuple[Result, bool]:
                fired = False

                def body() -> Result:
                    nonlocal fired
                    result, fired = probe(env, rng, bug)
                    return result

                name = f"selftest-{(bug or 'control').replace('_', '-')}"
                return run_campaign(env, name, body), fired

            verdicts = self_test(env, rng, run)
            results = [v.result for v in verdicts]
        else:
            results = _campaigns(env, args, rng)
    except KeyboardInterrupt:
        interrupted = True
        log("interrupted: cleaning up")
    finally:
        env.cleanup()
    total = time.monotonic() - started
    print()
    for r in results:
        print(r.summary_line())
    for r in results:
        for note in r.notes:
            print(f"note: {r.name}: {note}")
    if args.self_test:
        print()
        for v in verdicts:
            print(v.line)
        failed_names = [v.bug or "control" for v in verdicts if v.problems]
        ok = not failed_names and len(verdicts) > 0 and not interrupted
        detail = [r for r in results if not r.ok]
    else:
        failed = [r for r in results if not r.ok]
        ok = not failed
        detail = failed
    for r in detail:
        print(f"\n{r.name} {'FAILED' if not args.self_test else 'failures'}:")
        for line in r.failures:
            print(f"  - {line}")
        if "trace" in r.figures:
            print(f"  service log and journal: {r.figures['trace']}")
    if args.self_test:
        verdict = "passed" if ok else f"FAILED ({', '.join(failed_names) or 'incomplete'})"
        print(f"\nchaos self-test run {env.run_id} seed {seed}: {verdict} in {total:.0f}s")
    else:
        print(
            f"\nchaos {mode} run {env.run_id} seed {seed}: {len(results) - len(detail)}/"
            f"{len(results)} campaigns passed in {total:.0f}s"
        )
    if args.json:
        args.json.write_text(
            json.dumps(
                {
                    "run": env.run_id,
                    "mode": mode,
                    "seed": seed,
                    "engine": args.engine or "devenv",
                    "seconds": round(total, 1),
                    "campaigns": [r.as_json() for r in results],
                    "self_test": [
                        {"bug": v.bug, "fired": v.fired, "problems": v.problems} for v in verdicts
                    ],
                },
                indent=2,
            )
        )
    if interrupted:
        return 130
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())

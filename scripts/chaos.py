"""Chaos campaigns against the real devenv (issue 7; docs/reliability.md).

    scripts/chaos --quick                       # CI: every campaign, under 5 minutes
    scripts/chaos                               # full mode (100 kills, 10,000-action soak)
    scripts/chaos --quick --only sigkill,races  # a subset
    scripts/chaos --json figures.json           # also write the figures

Campaigns: sigkill, actor-crash, engine, races, soak, bad-input. ``engine`` stops and
starts the devenv's Docker engine and apiserver: never run it while others use them.
Prints one summary line per campaign; exits 1 if an invariant failed (details printed).
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
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from scripts.chaoslib import campaigns  # noqa: E402
from scripts.chaoslib.badinput import bad_input  # noqa: E402
from scripts.chaoslib.harness import Env, log  # noqa: E402
from scripts.chaoslib.invariants import Result  # noqa: E402

CAMPAIGNS = {
    "sigkill": campaigns.sigkill,
    "actor-crash": campaigns.actor_crash,
    "engine": campaigns.engine,
    "races": campaigns.races,
    "soak": campaigns.soak,
    "bad-input": bad_input,
}


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="scripts/chaos", description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="CI sizes: all campaigns in < 5 min")
    p.add_argument(
        "--only",
        default="",
        help=f"comma-separated subset of: {', '.join(CAMPAIGNS)} (default: all)",
    )
    p.add_argument("--json", type=Path, help="write the figures of every campaign here")
    p.add_argument("--scale", type=float, default=1.0, help="multiply campaign sizes (dev)")
    p.add_argument("--seed", type=int, help="random seed (printed; default: time-based)")
    p.add_argument(
        "--workdir",
        type=Path,
        help="service logs and journals (default /tmp/dockmirror-chaos-<id>)",
    )
    args = p.parse_args(argv)
    names = [n.strip() for n in args.only.split(",") if n.strip()] or list(CAMPAIGNS)
    unknown = [n for n in names if n not in CAMPAIGNS]
    if unknown:
        p.error(f"unknown campaign(s) {unknown}; known: {list(CAMPAIGNS)}")
    args.names = names
    return args


def _sigterm(*_: object) -> None:
    raise KeyboardInterrupt


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    seed = args.seed if args.seed is not None else int(time.time())
    rng = random.Random(seed)
    signal.signal(signal.SIGTERM, _sigterm)
    sizes = campaigns.QUICK if args.quick else campaigns.FULL
    env = Env(args.workdir)
    mode = "quick" if args.quick else "full"
    log(f"chaos run {env.run_id} ({mode}, seed {seed}), namespace {env.namespace}, {env.workdir}")
    results: list[Result] = []
    started = time.monotonic()
    interrupted = False
    try:
        for name in args.names:
            log(f"--- campaign {name}")
            t0 = time.monotonic()
            try:
                if name == "bad-input":
                    result = bad_input(env, args.quick, rng)
                else:
                    result = CAMPAIGNS[name](env, campaigns.scaled(sizes[name], args.scale), rng)
            except KeyboardInterrupt:
                raise
            except Exception as exc:
                result = Result(name)
                result.fail("campaign crashed", [f"{type(exc).__name__}: {exc}"])
                traceback.print_exc()
                env.remove_containers(name)
            finally:
                # A campaign that crashed half-way must not leave its service running:
                # two services in one namespace would both run every request.
                env.stop_services()
            result.seconds = time.monotonic() - t0
            limit = result.figures.pop("_rss_limit_pct", None)
            growth = result.figures.get("rss_growth_pct")
            if limit is not None and not args.quick and growth is not None and growth > limit:
                result.fail("rss", [f"RSS grew {growth}% (> {limit}%) over the soak"])
            results.append(result)
            log(result.summary_line())
    except KeyboardInterrupt:
        interrupted = True
        log("interrupted: cleaning up")
    finally:
        env.cleanup()
    total = time.monotonic() - started
    print()
    for r in results:
        print(r.summary_line())
    failed = [r for r in results if not r.ok]
    for r in failed:
        print(f"\n{r.name} FAILED:")
        for line in r.failures:
            print(f"  - {line}")
        if "trace" in r.figures:
            print(f"  service log and journal: {r.figures['trace']}")
    print(
        f"\nchaos {mode} run {env.run_id} seed {seed}: {len(results) - len(failed)}/"
        f"{len(results)} campaigns passed in {total:.0f}s"
    )
    if args.json:
        args.json.write_text(
            json.dumps(
                {
                    "run": env.run_id,
                    "mode": mode,
                    "seed": seed,
                    "seconds": round(total, 1),
                    "campaigns": [r.as_json() for r in results],
                },
                indent=2,
            )
        )
    if interrupted:
        return 130
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())

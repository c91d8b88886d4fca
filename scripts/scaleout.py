#!/usr/bin/env python3
"""Measure what one dockmirror per engine costs the shared apiserver (docs/scale-out.md).

Usage: scripts/scaleout.py [--engines N] [--containers K] [--json PATH]

Starts N extra engines (``scripts/devenv engine-up``), one service per engine into its
own namespace of the devenv apiserver, then runs three phases and counts the service's
Kubernetes writes in its journal (``effect`` entries with ``target: kube``) per phase:

* create: K containers per engine (``docker run``) until every mirror is running;
* docker: a direct ``docker pause`` + ``docker unpause`` of each container (2K changes
  of the engine that no client asked for);
* actions: ``pause`` + ``unpause`` requested on each mirror (2K actions), first on
  engine 1 alone, then on all N engines at once (one client thread per namespace,
  requests one after another, each waiting until the annotation is consumed).

Needs the installed project (``make install``) and root for the engines. Everything it
starts (engines, services, namespaces, containers) is removed at the end.
"""

from __future__ import annotations

import argparse
import collections
import concurrent.futures as cf
import json
import sys
import tempfile
import time
import uuid
from collections.abc import Iterable
from pathlib import Path

_here = Path(__file__).resolve().parent
sys.path[:0] = [str(_here.parent)]

#: Journal effect ops that write to the apiserver (everything else reads).
KUBE_WRITE_OPS = frozenset(
    {
        "apply_metadata",
        "apply_status",
        "patch_last_action",
        "remove_annotation",
        "strip_finalizer",
        "delete",
        "engine_ready",
        "create_event",
        "update_event_series",
    }
)
EVENT_OPS = frozenset({"create_event", "update_event_series"})


def count_kube_writes(entries: Iterable[object], since_ns: int, until_ns: int) -> dict[str, int]:
    """Kubernetes writes by op among journal ``entries`` with ``since_ns <= ts_ns < until_ns``.

    Failed writes count too (the apiserver still handled the request).
    """
    from messages.journal import Effect

    counts: collections.Counter[str] = collections.Counter()
    for e in entries:
        if (
            isinstance(e, Effect)
            and e.target == "kube"
            and e.op in KUBE_WRITE_OPS
            and since_ns <= e.ts_ns < until_ns
        ):
            counts[e.op] += 1
    return dict(counts)


def per_unit(counts: dict[str, int], units: int) -> dict[str, float]:
    """``counts`` divided by ``units``, plus ``total`` and ``events`` (writes of Events)."""
    total = sum(counts.values())
    events = sum(v for k, v in counts.items() if k in EVENT_OPS)
    out = {k: round(v / units, 2) for k, v in sorted(counts.items())}
    out["total"] = round(total / units, 2)
    out["events"] = round(events / units, 2)
    return out


def cpu_seconds(pid: int | None) -> float | None:
    """User + system CPU time of ``pid`` (from /proc), or None when unknown."""
    import os

    if pid is None:
        return None
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def apiserver_pid(repo: Path) -> int | None:
    try:
        return int((repo / ".devenv" / "apiserver.pid").read_text().strip())
    except (OSError, ValueError):
        return None


def _settle(services, seconds: float = 1.5, timeout: float = 60) -> None:
    """Wait until no service has written to its journal for ``seconds`` (bounded)."""
    deadline = time.monotonic() + timeout
    last = None
    quiet_since = time.monotonic()
    while time.monotonic() < deadline:
        sizes = tuple(s.trace_file.stat().st_size for s in services)
        if sizes != last:
            last, quiet_since = sizes, time.monotonic()
        elif time.monotonic() - quiet_since >= seconds:
            return
        time.sleep(0.2)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--engines", type=int, default=3, help="extra engines (default 3)")
    parser.add_argument("--containers", type=int, default=10, help="per engine (default 10)")
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args(argv)
    if not 1 <= args.engines <= 8 or not 1 <= args.containers <= 200:
        parser.error("--engines must be 1..8 and --containers 1..200")

    from kubernetes import client as k8s
    from kubernetes import config as k8s_config

    from tests.support.devenv import start_devenv
    from tests.support.engines import QUICK_STOP_SLEEP, engines_remove, engines_up
    from tests.support.service import Service

    names = [f"sc{i + 1}" for i in range(args.engines)]
    dev = start_devenv()
    api = k8s_config.new_client_from_config(config_file=str(dev.kubeconfig))
    engines_remove(*names)
    engines = engines_up(*names)
    clients = {e.name: e.client() for e in engines}
    run_id = uuid.uuid4().hex[:6]
    workdir = Path(tempfile.mkdtemp(prefix="dockmirror-scaleout-"))
    services: dict[str, Service] = {}
    results: dict[str, object] = {"engines": args.engines, "containers": args.containers}
    try:
        for e in engines:
            svc = Service(
                dev,
                api,
                f"scaleout-{e.name}-{run_id}",
                workdir / e.name,
                extra_args=("--docker-host", e.docker_host),
            )
            services[e.name] = svc.start()
        _settle(services.values())

        api_pid = apiserver_pid(dev.repo_root)

        def api_cpu_ms_per_write(cpu0: float | None, writes: int) -> float | None:
            """apiserver+etcd CPU ms per service write since ``cpu0`` (client writes too)."""
            cpu1 = cpu_seconds(api_pid)
            if cpu0 is None or cpu1 is None or not writes:
                return None
            return round((cpu1 - cpu0) * 1000 / writes, 2)

        def window(phase_start: int) -> dict[str, dict[str, int]]:
            end = time.time_ns()
            return {
                n: count_kube_writes(s.journal(), phase_start, end) for n, s in services.items()
            }

        # --- create ------------------------------------------------------------
        t0 = time.time_ns()
        ids: dict[str, list[str]] = {n: [] for n in services}
        for n, cl in clients.items():
            for i in range(args.containers):
                c = cl.containers.run(
                    "busybox:local",
                    QUICK_STOP_SLEEP,
                    detach=True,
                    network_mode="none",
                    name=f"scaleout-{i}",
                )
                ids[n].append(c.id)
        for n, svc in services.items():
            for cid in ids[n]:
                svc.wait_status(cid, "running", timeout=120)
        _settle(services.values())
        created = window(t0)
        results["create_per_container"] = {
            n: per_unit(c, args.containers) for n, c in created.items()
        }

        # --- docker-side changes ---------------------------------------------------
        t0 = time.time_ns()
        for n, cl in clients.items():
            for cid in ids[n]:
                cl.api.pause(cid)
            for cid in ids[n]:
                cl.api.unpause(cid)
        for n, svc in services.items():
            for cid in ids[n]:
                svc.wait_status(cid, "running", timeout=60)
        _settle(services.values())
        results["docker_change_per_change"] = {
            n: per_unit(c, 2 * args.containers) for n, c in window(t0).items()
        }

        # --- actions ------------------------------------------------------------
        def act(n: str) -> float:
            svc, started = services[n], time.monotonic()
            for cid in ids[n]:
                for action in ("pause", "unpause"):
                    last = svc.request(cid, action, timeout=60)
                    if last.get("state") != "Succeeded":
                        raise RuntimeError(f"{action} of {cid[:12]} on {n}: {last}")
            return time.monotonic() - started

        actions = 2 * args.containers
        t0 = time.time_ns()
        alone_s = act(names[0])
        _settle(services.values())
        alone = window(t0)[names[0]]
        results["alone"] = {
            "engine": names[0],
            "actions": actions,
            "seconds": round(alone_s, 2),
            "actions_per_s": round(actions / alone_s, 2),
            "writes_per_s": round(sum(alone.values()) / alone_s, 2),
            "per_action": per_unit(alone, actions),
        }

        t0, cpu0 = time.time_ns(), cpu_seconds(api_pid)
        with cf.ThreadPoolExecutor(len(names)) as pool:
            secs = dict(zip(names, pool.map(act, names), strict=True))
        _settle(services.values())
        together = window(t0)
        total_writes = sum(sum(c.values()) for c in together.values())
        wall = max(secs.values())
        results["together"] = {
            "seconds_per_engine": {n: round(s, 2) for n, s in secs.items()},
            "actions_per_s_per_engine": {n: round(actions / s, 2) for n, s in secs.items()},
            "actions_per_s_total": round(actions * len(names) / wall, 2),
            "writes_per_s_total": round(total_writes / wall, 2),
            "apiserver_cpu_ms_per_service_write": api_cpu_ms_per_write(cpu0, total_writes),
            "apiserver_cpu_share_of_one_core": (
                round((cpu_seconds(api_pid) - cpu0) / wall, 2) if cpu0 is not None else None
            ),
            "per_action": {n: per_unit(c, actions) for n, c in together.items()},
        }

        # --- objects per namespace -------------------------------------------------
        ev = k8s.EventsV1Api(api)
        results["objects"] = {
            n: {
                "containers": len(s.mirrors()),
                "events": len(ev.list_namespaced_event(s.namespace).items),
            }
            for n, s in services.items()
        }
    finally:
        for svc in services.values():
            try:
                svc.stop()
            except AssertionError:
                svc.kill()
        for cl in clients.values():
            cl.close()
        engines_remove(*names)
        core = k8s.CoreV1Api(api)
        for svc in services.values():
            try:
                core.delete_namespace(svc.namespace)
            except Exception as exc:  # cleanup only: report, do not mask the result
                print(f"scaleout: could not delete namespace {svc.namespace}: {exc}")
        api.close()
    text = json.dumps(results, indent=2)
    print(text)
    if args.json:
        args.json.write_text(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())

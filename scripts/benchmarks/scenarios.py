"""The bench scenarios (issue 6) and the ``scripts/bench`` CLI.

Order of one run (namespace ``bench-<id>``; the full sync uses a fresh ``bench-<id>-sync``):

1. latency container + 10 created ones; ours: ``mirror_latency_p50_n10``, action latency;
   + chatty containers (a line every 0.1 s): action latency without and with one log
   stream follower per chatty container, alternating in rounds
   (``action_latency_p*_logs``); chatty containers removed; stop ours; baseline on the
   same mirrors: action latency.
2. + stop containers (StopTimeout 3, PID 1 ignores SIGTERM) + throughput containers;
   ours: single stop, parallel stop, throughput; stop ours; restart the containers;
   baseline: the same three.
   Then the floors of this mode (``benchmarks.floor``): bare action latency and bare
   write rate (admission of the mode, no service), Docker's own parallel stop.
   ``--admission both`` (default): a second pass in webhook mode on the same mirrors
   (ours: action latency, parallel stop, throughput; baseline: throughput; floors) for
   the keys with the ``_webhook`` suffix.
3. remove the stop containers; + 1,000 created; ours in the fresh namespace: full sync,
   idle RSS and threads once settled, ``mirror_latency_p50_n1000``.

Ours and the baseline never run at the same time (both would act on the annotations).
"""

from __future__ import annotations

import argparse
import concurrent.futures as cf
import os
import platform
import secrets
import signal
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from benchmarks import cost, stats
from benchmarks.floor import ModePasses, delete_policy_bindings
from benchmarks.harness import (
    Containers,
    Kube,
    LogFollowers,
    Process,
    Watcher,
    cpu_seconds,
    devenv_env,
    last_action_differs,
    no_annotation,
    proc_status,
    status_is,
    wait_for,
)
from benchmarks.meters import CostMeter

SETTLE_STEADY_S = 12.0  # > the service's default --idle-timeout (10 s)
#: A chatty container for the log followers: one line every 0.1 s, for ever.
CHATTY = ["sh", "-c", "i=0; while true; do echo line $i; i=$((i+1)); usleep 100000; done"]


@dataclass(frozen=True)
class Sizes:
    latency_actions: int = 200
    others_small: int = 10
    stop_containers: int = 50
    stop_timeout: int = 3
    throughput_containers: int = 100
    throughput_s: float = 30.0
    created_large: int = 1000
    mirror_samples: int = 40
    settle_max_s: float = 60.0
    write_rate_s: float = 10.0
    log_followers: int = 50
    log_rounds: int = 4


QUICK = Sizes(
    log_followers=16,
    log_rounds=2,
    latency_actions=20,
    stop_containers=6,
    throughput_containers=20,
    throughput_s=6.0,
    created_large=100,
    mirror_samples=8,
    settle_max_s=30.0,
    write_rate_s=3.0,
)


def say(text: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {text}", file=sys.stderr, flush=True)


def _rv(obj: dict[str, Any]) -> str:
    return (obj.get("metadata") or {}).get("resourceVersion") or "0"


class Bench:
    def __init__(
        self, sizes: Sizes, workdir: Path, profile: Path | None, admission: str = "policy"
    ) -> None:
        self.sizes = sizes
        #: Admission modes of this run, first first (``both``: policy, then webhook).
        #: The first mode is that of every scenario; the others get an extra pass.
        self.modes: tuple[str, ...] = cost.MODES if admission == "both" else (admission,)
        self.admission = self.modes[0]
        self.env = devenv_env()
        self.run_id = time.strftime("%H%M%S") + secrets.token_hex(2)
        self.ns = f"bench-{self.run_id}"
        self.ns_sync = f"{self.ns}-sync"
        self.workdir = workdir
        self.profile = profile
        self.kube = Kube(self.env["KUBECONFIG"])
        self.docker = Containers(self.env["DOCKER_HOST"], self.run_id)
        self.processes: list[Process] = []
        self.watchers: list[Watcher] = []
        self.results: dict[str, dict[str, Any]] = {}
        self.info: dict[str, Any] = {"admission": "+".join(self.modes)}
        self.costs = ModePasses(self)

    # --- processes ----------------------------------------------------------------------
    def start_ours(self, namespace: str, admission: str | None = None) -> Process:
        proc = Process("ours", namespace, self.workdir, self.env)
        self.processes.append(proc)
        proc.start("--admission", admission or self.admission)
        proc.wait_log("dockmirror running", timeout=120)
        wait_for(
            lambda: proc.alive() and self.kube.engine_ready(namespace) == ("True", "Connected"),
            180,
            "EngineReady=True",
        )
        return proc

    def start_baseline(self, admission: str | None = None) -> Process:
        proc = Process("baseline", self.ns, self.workdir, self.env)
        self.processes.append(proc)
        proc.start("--admission", admission or self.admission)
        proc.wait_log("baseline running", timeout=60)
        return proc

    def watcher(self, namespace: str) -> Watcher:
        w = Watcher(self.kube, namespace)
        self.watchers.append(w)
        return w

    # --- measurements ---------------------------------------------------------------------
    def action_latency(self, w: Watcher, cid: str, n: int) -> list[float]:
        """Alternating pause/unpause; annotation write -> annotation seen gone (watch)."""
        self.docker.ensure_running([cid])
        samples = []
        action = "pause"
        for i in range(n + 2):  # two warm-up actions (actor start, connections)
            t0 = time.monotonic()
            resp = self.kube.annotate(w.store.namespace, cid, action)
            t1 = w.wait(w.expect(cid, no_annotation, _rv(resp)), timeout=60)
            if i >= 2:
                samples.append(t1 - t0)
            action = "unpause" if action == "pause" else "pause"
        return samples

    def latency_with_followers(self, ours: Process, w: Watcher, cid: str) -> None:
        """Action latency with chatty containers, without and with one log stream
        follower each; the followers' cost is the ratio (issue 13: followers must not
        slow actions down). The two conditions alternate in ``log_rounds`` rounds
        (followers connect at the start of each "with" block and leave at its end), so a
        change of the machine's load during the phase affects both alike."""
        s = self.sizes
        say(f"creating {s.log_followers} chatty containers")
        chatty = self.docker.create(s.log_followers, start=True, role="chatty", command=CHATTY)
        wait_for(lambda: all(w.get(c) for c in chatty), 120, "chatty mirrors")
        per_round = max(1, s.latency_actions // s.log_rounds)
        quiet: list[float] = []
        followed: list[float] = []
        time_s = {"quiet": 0.0, "followed": 0.0}
        cpu_s = {"quiet": 0.0, "followed": 0.0}
        frames = 0
        for n in range(s.log_rounds):
            say(f"ours: round {n + 1}/{s.log_rounds}: {per_round} actions without followers")
            cpu0, t0 = cpu_seconds(ours.pid), time.monotonic()
            quiet += self.action_latency(w, cid, per_round)
            time_s["quiet"] += time.monotonic() - t0
            cpu_s["quiet"] += cpu_seconds(ours.pid) - cpu0
            followers = LogFollowers(ours.http_port(), chatty)
            try:
                followers.start()
                say(f"ours: round {n + 1}: {per_round} actions with {s.log_followers} followers")
                before, cpu0, t0 = followers.count(), cpu_seconds(ours.pid), time.monotonic()
                followed += self.action_latency(w, cid, per_round)
                time_s["followed"] += time.monotonic() - t0
                cpu_s["followed"] += cpu_seconds(ours.pid) - cpu0
                frames += followers.count() - before
            finally:
                followers.close()
        self.docker.remove_ids(chatty)
        self.info["log_frames_per_s"] = round(frames / time_s["followed"])
        # CPU of ours (one core = 100 %) while acting without and with the followers.
        for key in ("quiet", "followed"):
            self.info[f"ours_cpu_pct_{key}"] = round(100 * cpu_s[key] / time_s[key])
        for q in (50, 99):
            self.results[f"action_latency_p{q}_logs"] = stats.result(
                stats.percentile(followed, q), stats.percentile(quiet, q), "s"
            )

    def stop_all(self, w: Watcher, ids: list[str]) -> float:
        """Request ``stop`` on all at once; wall time until every lastAction is written."""
        old = {cid: ((w.get(cid) or {}).get("status") or {}).get("lastAction") for cid in ids}
        t0 = time.monotonic()
        with cf.ThreadPoolExecutor(min(len(ids), 16)) as pool:
            resps = list(pool.map(lambda c: self.kube.annotate(w.store.namespace, c, "stop"), ids))
        exps = [
            w.expect(cid, last_action_differs(old[cid], "stop"), _rv(resp))
            for cid, resp in zip(ids, resps, strict=True)
        ]
        timeout = self.sizes.stop_timeout * len(ids) + 120
        end = max(w.wait(e, timeout=timeout) for e in exps)
        failed = [
            e.name[:12] for e in exps if e.obj["status"]["lastAction"]["state"] != "Succeeded"
        ]
        if failed:
            say(f"WARNING: stop failed on {failed}")
        return end - t0

    def throughput(
        self, w: Watcher, ids: list[str], duration: float, meter: CostMeter | None = None
    ) -> float:
        """Pause/unpause kept in flight on every container; completed actions per second.

        ``meter`` (``benchmarks.meters``) measures the cost per action from the first
        request to the end of the drain, and counts every completion and client write."""
        self.docker.ensure_running(ids)
        ns = w.store.namespace
        lock = threading.Lock()
        state = {"done": 0, "outstanding": 0, "errors": 0}
        pool = cf.ThreadPoolExecutor(8)
        t_end = 0.0

        def submit(cid: str, action: str) -> None:
            try:
                resp = self.kube.annotate(ns, cid, action)
                if meter is not None:
                    meter.client_write()
                w.expect(cid, no_annotation, _rv(resp), callback=lambda e: finished(cid, action, e))
            except Exception as exc:
                with lock:
                    state["errors"] += 1
                    state["outstanding"] -= 1
                say(f"throughput request failed: {exc}")

        def finished(cid: str, action: str, exp: Any) -> None:
            if meter is not None:
                meter.action_done()
            with lock:
                if exp.t_done <= t_end:
                    state["done"] += 1
                again = time.monotonic() < t_end
                if not again:
                    state["outstanding"] -= 1
            if again:
                pool.submit(submit, cid, "unpause" if action == "pause" else "pause")

        if meter is not None:
            meter.start()
        t_end = time.monotonic() + duration
        with lock:
            state["outstanding"] = len(ids)
        for cid in ids:
            pool.submit(submit, cid, "pause")
        time.sleep(max(0.0, t_end - time.monotonic()))
        with lock:
            done = state["done"]
        try:  # drain: nothing may stay annotated for the next process
            wait_for(lambda: state["outstanding"] <= 0, 120, "throughput drain", interval=0.2)
        finally:
            pool.shutdown(wait=True)
        if meter is not None:
            meter.stop(done / duration)
        if state["errors"]:
            say(f"WARNING: {state['errors']} throughput requests failed")
        return done / duration

    def mirror_latency(self, w: Watcher, cid: str, n: int) -> list[float]:
        """``docker pause``/``unpause`` directly; time until status.status follows."""
        self.docker.ensure_running([cid])
        wait_for(lambda: status_is("running")(w.get(cid) or {}), 60, "mirror running")
        samples = []
        for i in range(n + 1):  # one warm-up
            target = "paused" if i % 2 == 0 else "running"
            after = _rv(w.get(cid) or {})
            t0 = time.monotonic()
            (self.docker.api.pause if target == "paused" else self.docker.api.unpause)(cid)
            t1 = w.wait(w.expect(cid, status_is(target), after), timeout=60)
            if i >= 1:
                samples.append(t1 - t0)
            time.sleep(0.1)
        if n % 2 == 0:
            self.docker.api.unpause(cid)
        return samples

    def settle(self, pid: int) -> dict[str, str]:
        """Wait until the thread count is steady for longer than the service's idle
        timeout (10 s: idle actors retire only then; a shorter window measured the
        plateau before retirement), then read."""
        deadline = time.monotonic() + self.sizes.settle_max_s
        last, since = None, time.monotonic()
        while time.monotonic() < deadline:
            threads = proc_status(pid)["Threads"]
            if threads != last:
                last, since = threads, time.monotonic()
            elif time.monotonic() - since >= SETTLE_STEADY_S:
                break
            time.sleep(0.5)
        return proc_status(pid)

    # --- profiling ----------------------------------------------------------------------
    def profiler(self, pid: int, name: str) -> subprocess.Popen[bytes] | None:
        if self.profile is None:
            return None
        self.profile.mkdir(parents=True, exist_ok=True)
        out = self.profile / f"{name}.txt"
        return subprocess.Popen(
            ["py-spy", "record", "--pid", str(pid), "--format", "raw", "--threads",
             "--idle", "--nonblocking", "--rate", "50", "--output", str(out)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )  # fmt: skip

    @staticmethod
    def profiler_stop(prof: subprocess.Popen[bytes] | None) -> None:
        if prof is not None:
            prof.send_signal(signal.SIGINT)
            try:
                prof.wait(timeout=30)
            except subprocess.TimeoutExpired:
                prof.kill()

    # --- the run ------------------------------------------------------------------------
    def run(self) -> dict[str, dict[str, Any]]:
        s, r = self.sizes, self.results
        say(f"run {self.run_id}: namespaces {self.ns}, {self.ns_sync}; logs in {self.workdir}")
        # 1. latency
        lat_id = self.docker.create(1, start=True, role="latency")[0]
        self.docker.create(s.others_small, start=False, role="other")
        ours = self.start_ours(self.ns)
        w = self.watcher(self.ns)
        self.info["mirrors_n10"] = self.kube.count(self.ns)
        say(f"ours ready; mirror latency with {self.info['mirrors_n10']} mirrors")
        n10 = self.mirror_latency(w, lat_id, s.mirror_samples)
        say("ours: action latency")
        lat_ours = self.action_latency(w, lat_id, s.latency_actions)
        self.latency_with_followers(ours, w, lat_id)
        ours.stop()
        base = self.start_baseline()
        say("baseline: action latency")
        lat_base = self.action_latency(w, lat_id, s.latency_actions)
        base.stop()
        for q in (50, 99):
            r[f"action_latency_p{q}"] = stats.result(
                stats.percentile(lat_ours, q), stats.percentile(lat_base, q), "s"
            )

        # 2. stop and throughput
        say(f"creating {s.stop_containers + 1} stop and {s.throughput_containers} busy containers")
        stop_ids = self.docker.create(
            s.stop_containers + 1, start=True, role="stop", stop_timeout=s.stop_timeout
        )
        tp_ids = self.docker.create(s.throughput_containers, start=True, role="throughput")
        ours = self.start_ours(self.ns)
        wait_for(lambda: all(w.get(c) for c in stop_ids + tp_ids), 120, "mirrors")
        say("ours: single stop, parallel stop, throughput")
        single_ours = self.stop_all(w, stop_ids[:1])
        par_ours = self.stop_all(w, stop_ids[1:])
        prof = self.profiler(ours.pid, "ours-throughput")
        meter_ours = self.costs.meter(ours)
        tp_ours = self.throughput(w, tp_ids, s.throughput_s, meter_ours)
        self.profiler_stop(prof)
        ours.stop()
        self.docker.ensure_running(stop_ids + tp_ids)
        base = self.start_baseline()
        say("baseline: single stop, parallel stop, throughput")
        single_base = self.stop_all(w, stop_ids[:1])
        par_base = self.stop_all(w, stop_ids[1:])
        meter_base = self.costs.meter(base)
        tp_base = self.throughput(w, tp_ids, s.throughput_s, meter_base)
        base.stop()
        r["single_stop_s"] = stats.result(single_ours, single_base, "s")
        r["parallel_stop_s"] = stats.result(par_ours, par_base, "s")
        r["action_throughput"] = stats.result(tp_ours, tp_base, "actions/s")
        floors = self.costs.floors(self.admission, lat_id, stop_ids[1:], tp_ids)
        self.costs.record(
            self.admission,
            lat_ours=lat_ours,
            par_ours=par_ours,
            meter_ours=meter_ours,
            meter_base=meter_base,
            floors=floors,
        )
        for mode in self.modes[1:]:
            self.costs.extra_pass(mode, w, lat_id, stop_ids[1:], tp_ids)
        self.docker.remove_ids(stop_ids)

        # 3. scale: full sync, idle footprint, mirror latency with many mirrors
        say(f"creating {s.created_large} created containers")
        self.docker.create(s.created_large, start=False, role="idle")
        self.info["docker_containers"] = len(self.docker.api.containers(all=True, quiet=True))
        t0 = time.monotonic()
        sync = self.start_ours(self.ns_sync)
        full_sync = time.monotonic() - t0
        self.info["mirrors_n1000"] = self.kube.count(self.ns_sync)
        say(f"full sync of {self.info['mirrors_n1000']} mirrors: {full_sync:.1f} s; settling")
        status = self.settle(sync.pid)
        rss_mb = int(status["VmRSS"].split()[0]) / 1024
        threads = int(status["Threads"])
        w2 = self.watcher(self.ns_sync)
        n1000 = self.mirror_latency(w2, lat_id, s.mirror_samples)
        sync.stop()
        r["mirror_latency_p50_n10"] = stats.result(stats.percentile(n10, 50), None, "s")
        r["mirror_latency_p50_n1000"] = stats.result(stats.percentile(n1000, 50), None, "s")
        r["full_sync_s"] = stats.result(full_sync, None, "s")
        r["rss_mb_idle_n1000"] = stats.result(rss_mb, None, "MB")
        r["threads_idle_n1000"] = stats.result(threads, None, "threads")
        return r

    def cleanup(self) -> None:
        say("cleanup")
        for w in self.watchers:
            w.close()
        for proc in self.processes:
            try:
                proc.stop(timeout=20)
            except Exception as exc:
                say(f"cleanup: {proc.kind} stop: {exc}")
        try:
            removed = self.docker.remove_all()
            say(f"cleanup: removed {removed} containers")
        except Exception as exc:
            say(f"cleanup: container removal failed: {exc}")
        for ns in (self.ns, self.ns_sync):
            try:
                delete_policy_bindings(self.kube, ns)  # both, the warning binding too
                self.kube.cleanup_namespace(ns)
            except Exception as exc:
                say(f"cleanup: namespace {ns}: {exc}")


def machine() -> str:
    cpu = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem = ""
    try:
        kb = int(Path("/proc/meminfo").read_text().split()[1])
        mem = f", {kb / 1024 / 1024:.0f} GiB RAM"
    except (OSError, ValueError, IndexError):
        pass
    return f"{os.cpu_count()} CPUs ({cpu}){mem}, {platform.system()} {platform.release()}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="scripts/bench",
        description="Benchmark dockmirror against the single-threaded baseline on the devenv.",
    )
    parser.add_argument("--quick", action="store_true", help="smaller sizes (< 5 minutes)")
    parser.add_argument("--json", type=Path, help="write the results as JSON to this path")
    parser.add_argument("--workdir", type=Path, help="logs and state (default: a tmp dir)")
    parser.add_argument(
        "--profile", type=Path, help="py-spy raw profiles of ours into this directory"
    )
    parser.add_argument("--latency-actions", type=int, help="override the action count")
    parser.add_argument("--throughput-s", type=float, help="override the throughput window")
    parser.add_argument(
        "--admission",
        choices=("both", "policy", "webhook"),
        default="both",
        help="admission mode of the service and the baseline (docs/admission.md); both "
        "(default): every scenario in policy mode, then a webhook pass for the floor and "
        "cost keys with the _webhook suffix",
    )
    args = parser.parse_args(argv)
    sizes = QUICK if args.quick else Sizes()
    if args.latency_actions:
        sizes = replace(sizes, latency_actions=args.latency_actions)
    if args.throughput_s:
        sizes = replace(sizes, throughput_s=args.throughput_s)
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="dockmirror-bench-"))

    # SIGTERM (and SIGHUP) clean up like Ctrl-C.
    def interrupt(*_: Any) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, interrupt)
    signal.signal(signal.SIGHUP, interrupt)
    bench = Bench(sizes, workdir, args.profile, args.admission)
    started = time.monotonic()
    code = 0
    try:
        bench.run()
    except KeyboardInterrupt:
        say("interrupted")
        code = 130
    except Exception as exc:
        say(f"FAILED: {type(exc).__name__}: {exc}")
        code = 1
    finally:
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # let the cleanup finish
        bench.cleanup()
        signal.signal(signal.SIGINT, signal.default_int_handler)
    elapsed = time.monotonic() - started
    results = bench.results
    print(
        f"dockmirror bench{' --quick' if args.quick else ''} --admission {args.admission}, "
        f"run {bench.run_id}, "
        f"{elapsed:.0f} s, {machine()}"
    )
    print(f"sizes: {sizes}")
    print(f"observed: {bench.info}")
    checks = stats.check_targets(results) + cost.check_targets(results, bench.modes)
    print(stats.format_table(results, checks))
    for key, record in results.items():
        if "by_verb" in record:
            print(f"{key} by verb: {record['by_verb']}")
    keys = cost.required_keys(bench.modes)
    missing = stats.missing_keys(results, keys)
    if args.json:
        stats.write_json(args.json, results, keys)
    if missing:
        print(f"missing results: {', '.join(missing)}", file=sys.stderr)
        code = code or 1
    return code

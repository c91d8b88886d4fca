"""The floor of every run and the cost per action, per admission mode (issue 14).

Three floors, each measured by the bench's own client with no service running, on the
same containers and mirrors as the scenarios (docs/performance.md, "Floor and cost"):

* :func:`floor_latency`: one action as four direct steps one after another, the
  client's annotation write, the bare Docker call (no inspect), the ``lastAction``
  merge patch and the annotation removal (each with the previous response's
  resourceVersion, as the protocol writes them);
* :func:`docker_parallel_stop`: Docker's own stop of the parallel-stop containers,
  all at once;
* :func:`write_rate`: merge patches per second from :data:`WRITE_THREADS` client
  threads on the mirrors.

The writes pass the admission of the mode being measured (:func:`admission_only`: the
policy applied from here, or the webhook served by the baseline process started with
``--admission-only``, which acts on nothing, so that the webhook runs in another
process, as ours serves it).

:class:`ModePasses` records the new keys of a mode and runs the extra pass of
``--admission both``. Everything here runs in the bench's main thread (the write-rate
and parallel-stop workers are its own short-lived pools); a failure raises and fails the
run like any scenario, after which ``Bench.cleanup`` removes what was created.
"""

from __future__ import annotations

import concurrent.futures as cf
import contextlib
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from actors.domain.names import ACTION_ANNOTATION, ACTIONS_MANAGER, CONTAINER_NAMESPACES
from actors.domain.timefmt import kube_now
from actors.ports.docker_port import DockerPort
from actors.ports.kube_port import KubeError
from actors.runtime.actions import last_action
from actors.service.admission import PolicyAdmission
from benchmarks import cost
from benchmarks.harness import Kube, Process, Watcher
from benchmarks.meters import CostMeter, apiserver_pid, cpu_between, read_stat

if TYPE_CHECKING:  # scenarios imports this module
    from benchmarks.scenarios import Bench

#: Client threads of the bare write rate (2 cores: more threads only queue on the GIL).
WRITE_THREADS = 8
#: The annotation the write-rate floor rewrites (removed again afterwards).
FLOOR_ANNOTATION = "dockmirror.bench/floor"
WARM_UP = 2


def say(text: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {text}", file=sys.stderr, flush=True)


def _rv(obj: dict[str, Any]) -> str | None:
    return (obj.get("metadata") or {}).get("resourceVersion")


def floor_latency(kube: Kube, docker: DockerPort, namespace: str, cid: str, n: int) -> list[float]:
    """``n`` pause/unpause actions as the four bare steps; seconds per action.

    The container must be running and nothing else may act on the annotation. Two
    warm-up actions are not counted, as for ours.
    """
    store = kube.store(namespace)
    samples = []
    action = "pause"
    for i in range(n + WARM_UP):
        t0 = time.monotonic()
        written = kube.annotate(namespace, cid, action)
        observed = kube_now()
        (docker.pause if action == "pause" else docker.unpause)(cid)
        status = store.patch_status(
            cid,
            {"lastAction": last_action(action, None, observed, kube_now())},
            resource_version=_rv(written),
            field_manager=ACTIONS_MANAGER,
        )
        store.patch_metadata(
            cid,
            {"annotations": {ACTION_ANNOTATION: None}},
            resource_version=_rv(status),
            field_manager=ACTIONS_MANAGER,
        )
        if i >= WARM_UP:
            samples.append(time.monotonic() - t0)
        action = "unpause" if action == "pause" else "pause"
    if action == "unpause":  # an odd count left it paused
        docker.unpause(cid)
    return samples


def docker_parallel_stop(docker_host: str, ids: list[str], stop_timeout_s: int) -> float:
    """Docker's own ``stop`` of every container at once; wall time until all returned."""
    docker = DockerPort(docker_host, pool_size=max(10, len(ids)))
    try:
        with cf.ThreadPoolExecutor(max(1, len(ids))) as pool:
            t0 = time.monotonic()
            list(pool.map(lambda c: docker.stop(c, stop_timeout_s=stop_timeout_s), ids))
            return time.monotonic() - t0
    finally:
        docker.reset()


@dataclass(frozen=True)
class WriteRate:
    rate: float  # merge patches per second
    writes: int
    seconds: float
    apiserver_cpu_ms_per_write: float | None


def write_rate(
    kube: Kube, namespace: str, names: list[str], seconds: float, api_pid: int | None
) -> WriteRate:
    """Merge patches of :data:`FLOOR_ANNOTATION` (a new value each time, so each one is
    a real write) from :data:`WRITE_THREADS` threads, each on its own mirrors, without
    resourceVersion (no conflicts). The annotation is removed afterwards (not timed)."""
    store = kube.store(namespace)
    threads = max(1, min(WRITE_THREADS, len(names)))
    counts = [0] * threads
    stop = threading.Event()

    def worker(i: int) -> None:
        mine = names[i::threads]
        n = 0
        while not stop.is_set():
            store.patch_metadata(
                mine[n % len(mine)],
                {"annotations": {FLOOR_ANNOTATION: str(n)}},
                resource_version=None,
                field_manager="bench-floor",
            )
            n += 1
            if not stop.is_set():
                counts[i] = n

    with cf.ThreadPoolExecutor(threads) as pool:
        cpu0 = read_stat(api_pid)
        t0 = time.monotonic()
        futures = [pool.submit(worker, i) for i in range(threads)]
        time.sleep(seconds)
        stop.set()
        cpu1 = read_stat(api_pid)
        elapsed = time.monotonic() - t0
        for f in futures:
            f.result()
        writes = sum(counts)

        def clear(name: str) -> None:
            with contextlib.suppress(KubeError):
                store.patch_metadata(
                    name,
                    {"annotations": {FLOOR_ANNOTATION: None}},
                    resource_version=None,
                    field_manager="bench-floor",
                )

        list(pool.map(clear, names))
    api_cpu = cpu_between(cpu0, cpu1)
    return WriteRate(
        rate=writes / elapsed,
        writes=writes,
        seconds=elapsed,
        apiserver_cpu_ms_per_write=None
        if api_cpu is None or not writes
        else 1000 * api_cpu / writes,
    )


def delete_policy_bindings(kube: Kube, namespace: str) -> None:
    """Remove the namespace's policy bindings (the policy mode leaves them at a clean
    stop), so that a webhook-mode pass does not pay both admissions."""
    for name in (f"dockmirror-{namespace}", f"dockmirror-{namespace}.{CONTAINER_NAMESPACES}"):
        with contextlib.suppress(KubeError):
            kube.http.request(
                "DELETE",
                f"/apis/admissionregistration.k8s.io/v1/validatingadmissionpolicybindings/{name}",
            )


@contextlib.contextmanager
def admission_only(bench: Bench, mode: str) -> Iterator[None]:
    """Admission of ``mode`` in place with nobody acting on the annotations.

    ``policy``: the service's own policy and binding, applied (and probed) from here;
    the apiserver evaluates it, nothing has to run. ``webhook``: the baseline process
    with ``--admission-only`` serves and registers the webhook (another process, as
    ours serves it) and deletes the registration when it stops.
    """
    if mode == "policy":
        PolicyAdmission(bench.kube.http, bench.ns).ensure(timeout=60.0)
        yield
        return
    proc = Process("baseline", bench.ns, bench.workdir, bench.env)
    bench.processes.append(proc)
    proc.start("--admission", mode, "--admission-only")
    try:
        proc.wait_log("baseline admission only", timeout=60)
        yield
    finally:
        proc.stop()


@dataclass
class Floors:
    latency: list[float]
    docker_stop_s: float
    writes: WriteRate


class ModePasses:
    """The floors and costs of each admission mode of one run (``Bench.costs``)."""

    def __init__(self, bench: Bench) -> None:
        self.bench = bench
        self.api_pid = apiserver_pid()
        self.docker = DockerPort(bench.env["DOCKER_HOST"])
        #: Docker's own parallel stop, measured once per run: no admission is involved.
        self.docker_stop_s: float | None = None

    def meter(self, proc: Process) -> CostMeter:
        return CostMeter(self.bench.kube, proc.pid, self.api_pid)

    def floors(self, mode: str, lat_id: str, stop_ids: list[str], tp_ids: list[str]) -> Floors:
        """The floors in ``mode``; no service may run. The first call also stops
        ``stop_ids`` with Docker alone (they must be running then)."""
        b, s = self.bench, self.bench.sizes
        b.docker.ensure_running([lat_id])
        with admission_only(b, mode):
            say(f"floor ({mode}): bare action latency, bare write rate")
            latency = floor_latency(b.kube, self.docker, b.ns, lat_id, s.latency_actions)
            writes = write_rate(b.kube, b.ns, tp_ids, s.write_rate_s, self.api_pid)
        if self.docker_stop_s is None:
            say(f"floor: Docker's own parallel stop of {len(stop_ids)}")
            b.docker.ensure_running(stop_ids)
            self.docker_stop_s = docker_parallel_stop(
                b.env["DOCKER_HOST"], stop_ids, s.stop_timeout
            )
        return Floors(latency, self.docker_stop_s, writes)

    def record(
        self,
        mode: str,
        *,
        lat_ours: list[float],
        par_ours: float,
        meter_ours: CostMeter,
        meter_base: CostMeter,
        floors: Floors,
    ) -> None:
        b = self.bench
        ours, base = meter_ours.window(), meter_base.window()
        b.results.update(
            cost.floor_results(
                latency_ours=lat_ours,
                latency_floor=floors.latency,
                parallel_stop_ours=par_ours,
                parallel_stop_docker=floors.docker_stop_s,
                write_rate_bare=floors.writes.rate,
                ours=cost.cost_of(ours),
                baseline=cost.cost_of(base),
                key_suffix=cost.suffix(mode),
            )
        )
        b.info[f"cost_{mode}"] = {
            "ours_window": _window_info(ours),
            "baseline_window": _window_info(base),
            "bare_writes": floors.writes.writes,
            "apiserver_cpu_ms_per_bare_write": _round(floors.writes.apiserver_cpu_ms_per_write),
        }

    def extra_pass(
        self, mode: str, w: Watcher, lat_id: str, stop_ids: list[str], tp_ids: list[str]
    ) -> None:
        """Ours and the baseline again in ``mode`` on the same mirrors, for the keys with
        the ``_<mode>`` suffix only: action latency, parallel stop, throughput window."""
        b, s = self.bench, self.bench.sizes
        delete_policy_bindings(b.kube, b.ns)
        b.docker.ensure_running([lat_id, *stop_ids, *tp_ids])
        say(f"{mode} pass: ours")
        ours = b.start_ours(b.ns, admission=mode)
        lat = b.action_latency(w, lat_id, s.latency_actions)
        par = b.stop_all(w, stop_ids)
        meter_ours = self.meter(ours)
        b.throughput(w, tp_ids, s.throughput_s, meter=meter_ours)
        ours.stop()
        say(f"{mode} pass: baseline throughput")
        base = b.start_baseline(admission=mode)
        meter_base = self.meter(base)
        b.throughput(w, tp_ids, s.throughput_s, meter=meter_base)
        base.stop()
        floors = self.floors(mode, lat_id, stop_ids, tp_ids)
        self.record(
            mode,
            lat_ours=lat,
            par_ours=par,
            meter_ours=meter_ours,
            meter_base=meter_base,
            floors=floors,
        )


def _round(value: float | None, digits: int = 2) -> float | None:
    return None if value is None else round(value, digits)


def _window_info(w: cost.Window) -> dict[str, Any]:
    return {
        "seconds": round(w.seconds, 2),
        "actions": w.actions,
        "client_writes": w.client_writes,
        "service_cpu_s": _round(w.service_cpu_s),
        "apiserver_cpu_s": _round(w.apiserver_cpu_s),
        "requests": w.requests,
    }

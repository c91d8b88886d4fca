"""The campaigns (issue 7). Each returns a :class:`Result` with figures and failures."""

from __future__ import annotations

import contextlib
import os
import random
import signal
import subprocess
import threading
import time
from dataclasses import dataclass

from scripts.chaoslib.harness import (
    Driver,
    Env,
    Observer,
    RestartCounter,
    docker_cli,
    log,
    rss_mb,
    settle_and_check,
)
from scripts.chaoslib.invariants import Result
from tests.support.devenv import DEVENV_SCRIPT
from tests.support.service import Service

KILL_POINTS = (
    "action.before_docker",
    "action.after_docker",
    "action.after_last_action",
    "action.after_annotation_removed",
    "sync.before_status",
)


@dataclass(frozen=True)
class Sizes:
    containers: int
    seconds: float
    budget: int | None = None
    kills: int = 0
    epochs: int = 0


QUICK = {
    "sigkill": Sizes(containers=30, seconds=0, kills=8),
    "actor-crash": Sizes(containers=15, seconds=5, epochs=3),
    "engine": Sizes(containers=15, seconds=3),
    "races": Sizes(containers=12, seconds=20),
    "soak": Sizes(containers=20, seconds=0, budget=400),
}
FULL = {
    "sigkill": Sizes(containers=30, seconds=0, kills=100),
    "actor-crash": Sizes(containers=30, seconds=8, epochs=20),
    "engine": Sizes(containers=30, seconds=6),
    "races": Sizes(containers=20, seconds=180),
    "soak": Sizes(containers=50, seconds=0, budget=10_000),
}


def scaled(sizes: Sizes, factor: float) -> Sizes:
    """Sizes multiplied by ``factor`` (development smoke runs: ``--scale 0.2``)."""
    return Sizes(
        containers=max(3, int(sizes.containers * factor)),
        seconds=max(5.0, sizes.seconds * factor),
        budget=None if sizes.budget is None else max(20, int(sizes.budget * factor)),
        kills=max(1, int(sizes.kills * factor)) if sizes.kills else 0,
        epochs=max(1, int(sizes.epochs * factor)) if sizes.epochs else 0,
    )


def _containers(env: Env, campaign: str, n: int, created_every: int = 6) -> list[str]:
    """n containers; every ``created_every``-th one is created but not started."""
    return [env.container(campaign, start=(i % created_every != 0)) for i in range(n)]


def _teardown(env: Env, campaign: str, svc: Service | None) -> None:
    env.remove_containers(campaign)
    if svc is not None and svc.running:
        # Let the service delete the mirrors of the removed containers before it stops.
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            try:
                names = set(env.mirrors())
            except Exception:
                break
            try:
                states = env.docker_states()
            except Exception:  # the engine may be briefly unreachable after a campaign
                states = None
            if states is not None and not (names - set(states)):
                break
            time.sleep(0.5)
        with contextlib.suppress(Exception):
            svc.stop()


# --- sigkill ---------------------------------------------------------------------------
def sigkill(env: Env, sizes: Sizes, rng: random.Random) -> Result:
    """Random action stream on 30 containers; the whole process SIGKILLed at random
    moments (by timer, during start-up, or at an action fault point) and restarted."""
    result = Result("sigkill")
    ids = _containers(env, "sigkill", sizes.containers)
    svc = env.service("sigkill")
    _start(svc)
    kills = fault_kills = startup_kills = 0
    faults = ""
    with Observer(env) as obs, RestartCounter(env) as restarts:
        driver = Driver(env, obs, ids, seed=rng.random()).start()
        try:
            while kills < sizes.kills:
                time.sleep(rng.uniform(0.3, 2.5))
                if not svc.running:
                    fault_kills += 1
                svc.kill()
                kills += 1
                faults = ""
                if rng.random() < 0.4:
                    faults = f"{rng.choice(KILL_POINTS)}=kill@{rng.randint(1, 6)}"
                if rng.random() < 0.2:
                    # Kill again during start-up (full sync, relist, replay judgement).
                    svc.start(env={"DOCKMIRROR_FAULTS": faults}, wait_ready=False)
                    time.sleep(rng.uniform(0.2, 2.0))
                    svc.kill()
                    kills += 1
                    startup_kills += 1
                svc.start(env={"DOCKMIRROR_FAULTS": faults}, wait_ready=False)
                _wait_ready_or_died(svc)
                log(f"sigkill: {kills}/{sizes.kills} kills ({faults or 'timer'})")
            # Last start without faults, then let the stream drain.
            if svc.running and faults:
                svc.kill()
                kills += 1
            if not svc.running:
                _start(svc, "")
        finally:
            driver.finish()
        settle_and_check(env, result, driver, restarts, strict=True)
    result.figures.update(
        kills=kills, fault_kills=fault_kills, startup_kills=startup_kills, trace=str(svc.workdir)
    )
    _teardown(env, "sigkill", svc)
    return result


def _start(svc: Service, faults: str = "") -> None:
    """Start the service and wait until it is ready; tolerates a briefly unreachable
    apiserver (``Service.start`` would propagate the first connection error)."""
    svc.start(env={"DOCKMIRROR_FAULTS": faults}, wait_ready=False)
    _wait_ready_or_died(svc)
    if not svc.running:
        raise AssertionError(f"service exited during start-up: {svc.log_file}")


def _wait_ready_or_died(svc: Service, timeout: float = 90) -> None:
    """Wait for EngineReady, unless an injected fault kills the process first."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not svc.running:
            return
        try:
            if "dockmirror running" in svc.log_since_start() and svc.engine_ready() == (
                "True",
                "Connected",
            ):
                return
        except Exception:
            pass
        time.sleep(0.1)
    raise AssertionError(f"service not ready within {timeout}s (log {svc.log_file})")


# --- actor-crash -----------------------------------------------------------------------
def _drop_apiserver_connections(env: Env, svc: Service) -> int:
    """Kill the service's TCP connections to the apiserver (``ss -K``): the kube watch's
    stream breaks mid-read and must relist. Only this process's sockets are touched."""
    if svc.proc is None:
        return 0
    port = env.devenv.kubeconfig.read_text().split("https://127.0.0.1:")[1].split()[0].strip("\"'")
    out = subprocess.run(["ss", "-tnpH", "dport", "=", f":{port}"], capture_output=True, text=True)
    local_ports = [
        line.split()[3].rsplit(":", 1)[1]
        for line in out.stdout.splitlines()
        if f"pid={svc.proc.pid}," in line
    ]
    dropped = 0
    for lport in local_ports:
        r = subprocess.run(
            ["ss", "-K", "-tnH", "dport", "=", f":{port}", "and", "sport", "=", f":{lport}"],
            capture_output=True,
            text=True,
        )
        dropped += int(r.returncode == 0 and bool(r.stdout.strip()))
    return dropped


def actor_crash(env: Env, sizes: Sizes, rng: random.Random) -> Result:
    """Epochs of a random action stream with exceptions injected into container actors
    and the router (``DOCKMIRROR_FAULTS=...=raise@N``, random N), and the service's
    apiserver connections (kube watch stream) cut with ``ss -K``."""
    result = Result("actor-crash")
    ids = _containers(env, "actor-crash", sizes.containers)
    svc = env.service("actor-crash")
    fired = drops = 0
    with Observer(env) as obs, RestartCounter(env) as restarts:
        driver = Driver(env, obs, ids, seed=rng.random())
        try:
            for epoch in range(sizes.epochs + 1):
                last = epoch == sizes.epochs
                faults = (
                    ""
                    if last
                    else f"container.on_receive=raise@{rng.randint(1, 60)},"
                    f"router.on_receive=raise@{rng.randint(1, 150)}"
                )
                _start(svc, faults)
                if epoch == 0:
                    driver.start()
                if last:
                    break
                end = time.monotonic() + rng.uniform(sizes.seconds, sizes.seconds * 1.5)
                while time.monotonic() < end:
                    time.sleep(rng.uniform(1, 3))
                    drops += _drop_apiserver_connections(env, svc)
                if not svc.running:
                    result.fail("service", [f"exited during epoch {epoch}: {svc.log_file}"])
                    break
                fired += svc.log_since_start().count("fault injection:")
                svc.stop()
                log(f"actor-crash: epoch {epoch + 1}/{sizes.epochs} ({faults}), {fired} fired")
            time.sleep(3)
        finally:
            driver.finish()
        settle_and_check(env, result, driver, restarts, strict=True)
    actor_failures = svc.log_text().count("fault injection:")
    result.figures.update(
        faults_fired=fired, connections_dropped=drops, epochs=sizes.epochs, trace=str(svc.workdir)
    )
    if fired == 0 and sizes.epochs:
        result.fail("faults", [f"no injected fault fired ({actor_failures} in log)"])
    _teardown(env, "actor-crash", svc)
    return result


# --- races -----------------------------------------------------------------------------
def races(env: Env, sizes: Sizes, rng: random.Random) -> Result:
    """docker CLI start/stop/pause/unpause racing annotation requests on the same
    containers; ``--restart=always`` containers' processes SIGKILLed repeatedly (policy
    restarts emit die+start, never restart, so they do not count as restarts)."""
    result = Result("races")
    plain = _containers(env, "races", sizes.containers)
    always = [
        env.container("races", restart_always=True) for _ in range(max(3, sizes.containers // 4))
    ]
    ids = plain + always
    svc = env.service("races")
    _start(svc)
    stop = threading.Event()
    cli_ops = policy_kills = 0

    def racer() -> None:
        nonlocal cli_ops
        r = random.Random(rng.random())
        while not stop.is_set():
            op = r.choice(["start", "stop", "pause", "unpause"])
            args = [op, "-t", "1"] if op == "stop" else [op]
            docker_cli(env, *args, r.choice(ids))
            cli_ops += 1
            stop.wait(r.uniform(0.05, 0.3))

    def policy_killer() -> None:
        nonlocal policy_kills
        r = random.Random(rng.random())
        while not stop.is_set():
            cid = r.choice(always)
            with contextlib.suppress(Exception):
                pid = env.docker.api.inspect_container(cid)["State"]["Pid"]
                if pid:
                    os.kill(pid, signal.SIGKILL)
                    policy_kills += 1
            stop.wait(r.uniform(0.3, 1.0))

    with Observer(env) as obs, RestartCounter(env) as restarts:
        driver = Driver(env, obs, ids, seed=rng.random()).start()
        threads = [threading.Thread(target=f, daemon=True) for f in (racer, racer, policy_killer)]
        for t in threads:
            t.start()
        try:
            time.sleep(sizes.seconds)
        finally:
            stop.set()
            for t in threads:
                t.join(timeout=40)
            driver.finish()
        settle_and_check(env, result, driver, restarts, strict=False)
    result.figures.update(cli_ops=cli_ops, policy_kills=policy_kills, trace=str(svc.workdir))
    _teardown(env, "races", svc)
    return result


# --- soak ------------------------------------------------------------------------------
def soak(env: Env, sizes: Sizes, rng: random.Random) -> Result:
    """A long action stream (full: 10,000 actions over 50 containers); RSS is sampled
    after a warm-up of 10 % of the actions and at the end."""
    result = Result("soak")
    ids = _containers(env, "soak", sizes.containers)
    svc = env.service("soak")
    _start(svc)
    rss_ready = rss_mb(svc)
    assert sizes.budget is not None
    with Observer(env) as obs, RestartCounter(env) as restarts:
        driver = Driver(env, obs, ids, budget=sizes.budget, seed=rng.random()).start()
        warm = sizes.budget // 10
        while driver.book.completed < warm and not driver.wait_budget(0.5):
            pass
        rss_start = rss_mb(svc)
        t0 = time.monotonic()
        while not driver.wait_budget(10):
            log(f"soak: {driver.book.completed}/{sizes.budget} actions, RSS {rss_mb(svc)} MB")
        driver.finish()
        elapsed = time.monotonic() - t0
        settle_and_check(env, result, driver, restarts, strict=True)
        # Idle actors retire after --idle-timeout (3 s): measure the steady state.
        time.sleep(5)
        rss_end = rss_mb(svc)
    growth = round(100 * (rss_end - rss_start) / rss_start, 1) if rss_start and rss_end else None
    result.figures.update(
        rss_ready_mb=rss_ready,
        rss_start_mb=rss_start,
        rss_end_mb=rss_end,
        rss_growth_pct=growth,
        actions_per_s=round((driver.book.completed - warm) / max(elapsed, 0.1), 1),
        trace=str(svc.workdir),
    )
    if not svc.running:
        result.fail("service", ["exited during the soak"])
    result.figures["_rss_limit_pct"] = 10.0
    _teardown(env, "soak", svc)
    return result


# --- engine ----------------------------------------------------------------------------
def _devenv(cmd: str) -> None:
    log(f"engine: scripts/devenv {cmd}")
    subprocess.run([str(DEVENV_SCRIPT), cmd], check=True, capture_output=True, timeout=300)


def _mirrors_a_new_container(env: Env, timeout: float) -> bool:
    """Create a probe container, wait for its mirror, remove it. False on timeout."""
    probe = env.container("engine", start=False)
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            with contextlib.suppress(Exception):  # the apiserver may still be warming up
                if probe in env.mirrors():
                    return True
            time.sleep(0.2)
        return False
    finally:
        with contextlib.suppress(Exception):
            env.docker.api.remove_container(probe, force=True)


def engine(env: Env, sizes: Sizes, rng: random.Random) -> Result:
    """The Docker engine stopped and restarted mid-stream, then the apiserver (etcd data
    kept). Stops every container on the engine: run it on a devenv nobody else uses."""
    result = Result("engine")
    ids = _containers(env, "engine", sizes.containers)
    always = [env.container("engine", restart_always=True) for _ in range(3)]
    ids += always
    svc = env.service("engine")
    _start(svc)
    outages = []
    with Observer(env) as obs, RestartCounter(env) as restarts:
        driver = Driver(env, obs, ids, seed=rng.random()).start()
        try:
            for stop_cmd, start_cmd in (
                ("stop-docker", "start-docker"),
                ("stop-apiserver", "start-apiserver"),
            ):
                time.sleep(rng.uniform(sizes.seconds, 2 * sizes.seconds))
                t0 = time.monotonic()
                _devenv(stop_cmd)
                time.sleep(rng.uniform(sizes.seconds, 2 * sizes.seconds))
                _devenv(start_cmd)
                _wait_ready_or_died(svc, timeout=180)
                if not svc.running:
                    result.fail("service", [f"exited after {stop_cmd}: {svc.log_file}"])
                    break
                # EngineReady may still say True from before an apiserver outage (the
                # service could not write False): a new container mirrored end to end is
                # the proof that the service has recovered.
                if not _mirrors_a_new_container(env, timeout=180):
                    result.fail("recovery", [f"no new container mirrored after {start_cmd}"])
                outages.append(round(time.monotonic() - t0, 1))
            time.sleep(sizes.seconds)
        finally:
            driver.finish()
        settle_and_check(env, result, driver, restarts, strict=False)
    result.figures.update(outages_s=outages, trace=str(svc.workdir))
    _teardown(env, "engine", svc)
    return result

"""The campaigns (issue 7). Each returns a :class:`Result` with figures and failures."""

from __future__ import annotations

import contextlib
import os
import random
import signal
import subprocess
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

import docker

from scripts.chaoslib.harness import (
    Driver,
    Env,
    Observer,
    OutcomeWatch,
    RacerErrors,
    RestartCounter,
    docker_cli,
    log,
    record_removal,
    rss_mb,
    run_devenv,
    settle_and_check,
)
from scripts.chaoslib.invariants import Result
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
    hang: float = 0.0  # seconds dockerd stays SIGSTOPped (flaky)


QUICK = {
    "sigkill": Sizes(containers=30, seconds=0, kills=8),
    "actor-crash": Sizes(containers=15, seconds=5, epochs=3),
    "engine": Sizes(containers=15, seconds=3),
    "races": Sizes(containers=12, seconds=20),
    "soak": Sizes(containers=20, seconds=0, budget=400),
    "flaky": Sizes(containers=12, seconds=10, hang=20),
}
FULL = {
    "sigkill": Sizes(containers=30, seconds=0, kills=100),
    "actor-crash": Sizes(containers=30, seconds=8, epochs=20),
    "engine": Sizes(containers=30, seconds=6),
    "races": Sizes(containers=20, seconds=180),
    "soak": Sizes(containers=50, seconds=0, budget=10_000),
    "flaky": Sizes(containers=30, seconds=60, hang=20),
}
# Share of the service's port calls that fail transiently in the flaky campaign.
FLAKY_P = 0.03


def scaled(sizes: Sizes, factor: float) -> Sizes:
    """Sizes multiplied by ``factor`` (development smoke runs: ``--scale 0.2``)."""
    return Sizes(
        containers=max(3, int(sizes.containers * factor)),
        seconds=max(5.0, sizes.seconds * factor),
        budget=None if sizes.budget is None else max(20, int(sizes.budget * factor)),
        kills=max(1, int(sizes.kills * factor)) if sizes.kills else 0,
        epochs=max(1, int(sizes.epochs * factor)) if sizes.epochs else 0,
        hang=sizes.hang,
    )


def minimums(sizes: Sizes, **extra: int) -> dict[str, int]:
    """What every request-stream campaign must at least have done to prove anything.

    Quick runs make 10-30 requests per container; 3 per container is far below that
    on any machine, so only a stream that stalled or never started fails it. A restart
    is required once the stream is long enough that none at all (weight 1/10) would be
    an event of chance below 1e-4.
    """
    base = {
        "requested": 3 * sizes.containers,
        "completed": 2 * sizes.containers,
        "restarts_requested": 1 if sizes.containers >= 10 else 0,
    }
    return {**base, **extra}


def _containers(env: Env, campaign: str, n: int, created_every: int = 6) -> list[str]:
    """n containers; every ``created_every``-th one is created but not started."""
    return [env.container(campaign, start=(i % created_every != 0)) for i in range(n)]


def _teardown(env: Env, campaign: str, svc: Service | None, result: Result) -> None:
    """Remove the campaign's containers, let its service delete their mirrors, stop it.

    Runs after the invariants were checked and changes none of their verdicts. A
    container that cannot be removed in time makes the harness restart the engine it
    owns (:meth:`Env.remove_containers`): reported as the figure
    ``engine_restarts_in_teardown`` and a note. Containers still there after that, or
    an exception of the harness here, fail the separate ``teardown`` check. Never
    raises: the next campaign still runs.
    """
    try:
        record_removal(result, env.remove_containers(campaign))
        if svc is not None and svc.running:
            # Let the service delete the mirrors of the removed containers before it
            # stops (polled until a deadline; a slow deletion is not a failure).
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
    except Exception as exc:
        result.fail("teardown", [f"harness error: {type(exc).__name__}: {exc}"[:400]])
        log(f"{campaign}: teardown: {type(exc).__name__}: {exc}")
    finally:
        if svc is not None and svc.running:
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
    with Observer(env) as obs, RestartCounter(env) as restarts, OutcomeWatch(env) as outcomes:
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
        settle_and_check(env, result, driver, restarts, outcomes, strict=True)
    result.figures.update(
        kills=kills, fault_kills=fault_kills, startup_kills=startup_kills, trace=str(svc.workdir)
    )
    result.minimums = minimums(sizes, kills=sizes.kills)
    _teardown(env, "sigkill", svc, result)
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
    fired = drops = epochs_run = 0
    with Observer(env) as obs, RestartCounter(env) as restarts, OutcomeWatch(env) as outcomes:
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
                epochs_run += 1
                log(f"actor-crash: epoch {epoch + 1}/{sizes.epochs} ({faults}), {fired} fired")
            time.sleep(3)
        finally:
            driver.finish()
        settle_and_check(env, result, driver, restarts, outcomes, strict=True)
    actor_failures = svc.log_text().count("fault injection:")
    result.figures.update(
        faults_fired=fired,
        faults_in_log=actor_failures,
        connections_dropped=drops,
        epochs=epochs_run,
        trace=str(svc.workdir),
    )
    result.minimums = minimums(
        sizes,
        epochs=sizes.epochs,
        faults_fired=1 if sizes.epochs else 0,
        connections_dropped=1 if sizes.epochs else 0,
    )
    _teardown(env, "actor-crash", svc, result)
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
    cli_ops = cli_timeouts = policy_kills = 0
    racers = RacerErrors()

    def racer() -> None:
        nonlocal cli_ops, cli_timeouts
        r = random.Random(rng.random())
        while not stop.is_set():
            op = r.choice(["start", "stop", "pause", "unpause"])
            args = [op, "-t", "1"] if op == "stop" else [op]
            # A non-zero exit is a legal answer (pause of a stopped container).
            if docker_cli(env, *args, r.choice(ids)) == -1:
                cli_timeouts += 1
            cli_ops += 1
            stop.wait(r.uniform(0.05, 0.3))

    def policy_killer() -> None:
        nonlocal policy_kills
        r = random.Random(rng.random())
        while not stop.is_set():
            cid = r.choice(always)
            try:
                pid = env.docker.api.inspect_container(cid)["State"]["Pid"]
                if pid:
                    os.kill(pid, signal.SIGKILL)
                    policy_kills += 1
            except (ProcessLookupError, docker.errors.NotFound) as exc:
                # The process exited (or was restarted) between inspect and kill.
                racers.add("policy-killer", exc, expected=True)
            stop.wait(r.uniform(0.3, 1.0))

    with Observer(env) as obs, RestartCounter(env) as restarts, OutcomeWatch(env) as outcomes:
        driver = Driver(env, obs, ids, seed=rng.random(), racers=racers).start()
        threads = [
            racers.guarded(name, fn)
            for name, fn in (("cli-1", racer), ("cli-2", racer), ("policy-killer", policy_killer))
        ]
        for t in threads:
            t.start()
        try:
            time.sleep(sizes.seconds)
        finally:
            stop.set()
            for t in threads:
                t.join(timeout=40)
            driver.finish()
        settle_and_check(env, result, driver, restarts, outcomes, strict=False)
    result.figures.update(
        cli_ops=cli_ops,
        cli_timeouts=cli_timeouts,
        policy_kills=policy_kills,
        trace=str(svc.workdir),
    )
    # One CLI op per 0.05-0.3 s per racer and one kill per 0.3-1 s: a tenth of that.
    result.minimums = minimums(
        sizes, cli_ops=int(sizes.seconds), policy_kills=max(1, int(sizes.seconds / 10))
    )
    _teardown(env, "races", svc, result)
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
    with Observer(env) as obs, RestartCounter(env) as restarts, OutcomeWatch(env) as outcomes:
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
        settle_and_check(env, result, driver, restarts, outcomes, strict=True)
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
    result.minimums = minimums(sizes, completed=sizes.budget)
    _teardown(env, "soak", svc, result)
    return result


# --- engine ----------------------------------------------------------------------------
def _devenv(cmd: str) -> Callable[[], None]:
    """A devenv command for the apiserver outage (the Docker side is ``env.engine``)."""

    def run() -> None:
        log(f"engine: scripts/devenv {cmd}")
        run_devenv(cmd)

    return run


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
    kept). Stops every container on the engine (``env.engine``: with ``--engine NAME``
    an extra engine of its own; otherwise the devenv's, which nobody else may use)."""
    result = Result("engine")
    ids = _containers(env, "engine", sizes.containers)
    always = [env.container("engine", restart_always=True) for _ in range(3)]
    ids += always
    svc = env.service("engine")
    _start(svc)
    outages = []
    with Observer(env) as obs, RestartCounter(env) as restarts, OutcomeWatch(env) as outcomes:
        driver = Driver(env, obs, ids, seed=rng.random()).start()
        try:
            for side, stop_side, start_side in (
                ("docker", env.engine.stop, env.engine.start),
                ("apiserver", _devenv("stop-apiserver"), _devenv("start-apiserver")),
            ):
                time.sleep(rng.uniform(sizes.seconds, 2 * sizes.seconds))
                t0 = time.monotonic()
                stop_side()
                time.sleep(rng.uniform(sizes.seconds, 2 * sizes.seconds))
                start_side()
                _wait_ready_or_died(svc, timeout=180)
                if not svc.running:
                    result.fail("service", [f"exited after the {side} outage: {svc.log_file}"])
                    break
                # EngineReady may still say True from before an apiserver outage (the
                # service could not write False): a new container mirrored end to end is
                # the proof that the service has recovered.
                if not _mirrors_a_new_container(env, timeout=180):
                    result.fail("recovery", [f"no new container mirrored after the {side} outage"])
                outages.append(round(time.monotonic() - t0, 1))
            time.sleep(sizes.seconds)
        finally:
            driver.finish()
        # The apiserver restart drops the watch cache: the harness's outcome watch must
        # relist (410 Gone), so requests whose outcome fell in that gap are unverified.
        settle_and_check(env, result, driver, restarts, outcomes, strict=False, allow_gaps=True)
    result.figures.update(outages=len(outages), outages_s=outages, trace=str(svc.workdir))
    result.minimums = minimums(sizes, outages=2)
    _teardown(env, "engine", svc, result)
    return result


# --- flaky -----------------------------------------------------------------------------
def hang_engine(
    env: Env,
    svc: Service,
    seconds: float,
    kill: Callable[[int, int], None] = os.kill,
) -> float | None:
    """SIGSTOP the selected engine's dockerd (``env.engine``) for ``seconds`` (the
    process alive, not answering), then SIGCONT, always, in a ``finally`` (also on
    Ctrl-C/SIGTERM of the harness). Returns how many seconds after the SIGSTOP the
    service reported ``EngineReady`` False, or None if it did not during the hang.
    Runs on the campaign's thread.
    """
    pid = env.engine.dockerd_pid()
    log(f"flaky: SIGSTOP dockerd of {env.engine} (pid {pid}) for {seconds:.0f}s")
    t0 = time.monotonic()
    reported: float | None = None
    kill(pid, signal.SIGSTOP)
    try:
        while (elapsed := time.monotonic() - t0) < seconds:
            if reported is None:
                with contextlib.suppress(Exception):
                    if (svc.engine_ready() or ("",))[0] == "False":
                        reported = round(elapsed, 1)
            time.sleep(0.5)  # poll interval within the fixed hang window
    finally:
        kill(pid, signal.SIGCONT)
        log("flaky: SIGCONT dockerd")
    return reported


def flaky(env: Env, sizes: Sizes, rng: random.Random) -> Result:
    """A request stream while a share of the service's calls in both ports fail
    transiently (``DOCKMIRROR_FAULTS=kube.request=flaky:P,docker.call=flaky:P``: 5xx,
    429, timeouts, resets, a call made then reported as timed out), plus one hung-engine
    episode (dockerd SIGSTOPped, then SIGCONT). Stops the selected engine's answers for
    ``sizes.hang`` seconds: an extra engine (``--engine NAME``), or the devenv's engine
    only when nobody else uses it."""
    result = Result("flaky")
    ids = _containers(env, "flaky", sizes.containers)
    svc = env.service("flaky", env={"DOCKMIRROR_FAULTS_SEED": str(rng.randrange(1 << 30))})
    spec = f"kube.request=flaky:{FLAKY_P},docker.call=flaky:{FLAKY_P}"
    _start(svc, spec)
    hangs = 0
    reported: float | None = None
    recovered = True
    with Observer(env) as obs, RestartCounter(env) as restarts, OutcomeWatch(env) as outcomes:
        driver = Driver(env, obs, ids, seed=rng.random()).start()
        try:
            time.sleep(sizes.seconds)  # stream under flaky ports only
            reported = hang_engine(env, svc, sizes.hang)
            hangs += 1
            try:
                _wait_ready_or_died(svc, timeout=120)
            except AssertionError:
                recovered = False
            time.sleep(sizes.seconds)  # stream after the engine answers again
        finally:
            driver.finish()
        settle_and_check(env, result, driver, restarts, outcomes, strict=False)
    text = svc.log_text()
    kube = text.count("fault injection: flaky kube.request")
    dock = text.count("fault injection: flaky docker.call")
    result.figures.update(
        flaky_faults=kube + dock,
        flaky_kube=kube,
        flaky_docker=dock,
        hangs=hangs,
        engine_not_ready_after_s=reported,
        trace=str(svc.workdir),
    )
    if hangs and reported is None:
        result.fail("hung engine", [f"EngineReady never turned False in {sizes.hang:.0f}s"])
    elif reported is not None and reported > 15:
        result.fail("hung engine", [f"EngineReady turned False only after {reported}s (> 15)"])
    if not recovered:
        result.fail("hung engine", ["EngineReady not True again within 120 s after SIGCONT"])
    if not svc.running:
        result.fail("service", ["exited during the flaky campaign"])
    result.minimums = minimums(sizes, flaky_kube=1, flaky_docker=1, hangs=1)
    _teardown(env, "flaky", svc, result)
    return result

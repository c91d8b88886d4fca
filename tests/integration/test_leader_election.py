"""Issue 11, point 4: one active instance per namespace (docs/architecture.md, "One
active instance per namespace").

Two real services with separate state directories run against one namespace. The
second waits as a hot standby (mirrors and acts on nothing); when the leader is
SIGKILLed in the middle of a stream of restart requests, the standby takes over and
every request gets its outcome with exactly one Docker ``restart`` per request (Docker's
own event stream is the judge). A clean stop hands the Lease over at once.
"""

from __future__ import annotations

import subprocess
import time
from collections import Counter

from kubernetes import client as k8s
from kubernetes.client.rest import ApiException

from actors.domain.names import ACTION_ANNOTATION, DISPATCH_ANNOTATION
from tests.support.devenv import DEVENV_SCRIPT, REPO_ROOT
from tests.support.service import Service
from tests.support.wait import wait_for

LEASE = "dockmirror"
LEASE_DURATION_S = 15.0  # the service's default (client-go's)
RETRY_PERIOD_S = 2.0
CONTAINERS = 3
ROUNDS = 3
KILL_AT = 4  # the 5th request of 9: the second round's second container


# --- helpers ------------------------------------------------------------------------------
def lease_holder(api_client, namespace: str) -> str | None:
    try:
        lease = k8s.CoordinationV1Api(api_client).read_namespaced_lease(LEASE, namespace)
    except ApiException as exc:
        if exc.status == 404:
            return None
        raise
    return lease.spec.holder_identity or ""


def start_standby(service_factory) -> Service:
    standby = service_factory(start=False)
    standby.start(wait_ready=False)
    wait_for(
        lambda: standby._check_alive() and "standby: lease dockmirror" in standby.log_since_start(),
        timeout=60,
        message="the second instance says it stands by",
    )
    return standby


def annotations(obj: dict | None) -> dict:
    return ((obj or {}).get("metadata") or {}).get("annotations") or {}


def request_restart(client: Service, container_id: str, timeout: float = 90.0) -> dict:
    """What a GUI does: write the annotation (again, while a write is refused), wait for
    it to disappear, read ``lastAction``.

    Between the leader's death and the new leader's start the dead leader's webhook
    configuration (``failurePolicy: Fail``, docs/webhook.md) refuses every write in the
    namespace: the client retries its write until one is accepted.
    """
    wait_for(
        lambda: client.annotate(container_id, "restart"),
        timeout=timeout,
        interval=0.2,
        ignore=(ApiException,),
        message="the restart request written",
    )
    obj = client.wait_mirror(
        container_id,
        lambda m: ACTION_ANNOTATION not in annotations(m),
        timeout=timeout,
        message="restart request consumed",
    )
    return (obj.get("status") or {}).get("lastAction") or {}


def restart_counts(docker_client, ids: list[str], since: int) -> Counter:
    """Docker's own ``restart`` events per container since ``since`` (a finite read:
    ``until`` lies one second ahead, so an event being logged right now is seen)."""
    events = docker_client.api.events(
        since=since,
        until=int(time.time()) + 1,
        decode=True,
        filters={"event": "restart"},
    )
    wanted = set(ids)
    return Counter(e["Actor"]["ID"] for e in events if e.get("Actor", {}).get("ID") in wanted)


def verdicts(svc: Service, container_id: str) -> list[str]:
    return [n.detail.get("verdict") for n in svc.notes(container_id, "restart replay judged")]


# --- tests --------------------------------------------------------------------------------------
def test_standby_takes_over_a_stream_of_restarts_exactly_once(
    service_factory, run_container, docker_client, api_client, namespace
):
    leader = service_factory()  # the first instance leads (EngineReady=True)
    first_holder = lease_holder(api_client, namespace)
    assert first_holder, "the leader holds the namespace's Lease"
    standby = start_standby(service_factory)
    assert lease_holder(api_client, namespace) == first_holder

    # StopTimeout 2 s: busybox ``sleep`` ignores SIGTERM, so every restart is in flight for
    # about 2 s; the kill below lands inside one.
    containers = [run_container(stop_timeout=2) for _ in range(CONTAINERS)]
    ids = [c.id for c in containers]
    for cid in ids:
        leader.wait_status(cid, "running")
    # The standby mirrors nothing and acts on nothing: not a single Docker or Kubernetes
    # call in its journal, and it never started its actors.
    assert standby.effects() == []
    assert "dockmirror running" not in standby.log_since_start()

    since = int(time.time()) - 1
    outcomes: list[dict] = []
    killed_at = took_over_at = None
    requests = [ids[i % CONTAINERS] for i in range(CONTAINERS * ROUNDS)]
    for index, cid in enumerate(requests):
        if index != KILL_AT:
            outcomes.append(request_restart(leader, cid))
            continue
        # Kill the leader while this restart is in flight: its dispatch record is on
        # the mirror (Docker was or is about to be called), the annotation still there.
        leader.annotate(cid, "restart")
        wait_for(
            lambda cid=cid: (
                DISPATCH_ANNOTATION in annotations(leader.mirror(cid))
                or ACTION_ANNOTATION not in annotations(leader.mirror(cid))
            ),
            timeout=30,
            interval=0.02,
            message="the restart dispatched",
        )
        in_flight = DISPATCH_ANNOTATION in annotations(leader.mirror(cid))
        leader.kill()
        killed_at = time.monotonic()
        took_over_at = wait_for(
            lambda: (
                lease_holder(api_client, namespace) not in (None, "", first_holder)
                and time.monotonic()
            ),
            timeout=LEASE_DURATION_S + 3 * RETRY_PERIOD_S + 5,
            interval=0.1,
            message="the standby takes the Lease",
        )
        obj = standby.wait_mirror(
            cid, lambda m: ACTION_ANNOTATION not in annotations(m), timeout=90, message="replayed"
        )
        outcomes.append((obj.get("status") or {}).get("lastAction") or {})
        print(f"killed with the restart in flight: {in_flight}; {verdicts(standby, cid)}")
        if in_flight:
            # The new leader judged the old leader's dispatch: never a blind second call.
            assert verdicts(standby, cid) in (["already_done"], ["run_again"]), verdicts(
                standby, cid
            )

    assert killed_at is not None and took_over_at is not None
    takeover_s = took_over_at - killed_at
    print(f"takeover after SIGKILL: {takeover_s:.1f} s")
    # client-go's bound: the standby saw the last renewal at most one retry period late
    # and takes the Lease at its first retry once the lease duration has passed since.
    assert takeover_s <= LEASE_DURATION_S + 2 * RETRY_PERIOD_S + 1, takeover_s

    # Every request got its outcome, and Docker restarted each container exactly once
    # per request: no request lost, none run twice across the two instances.
    assert len(outcomes) == len(requests)
    for outcome in outcomes:
        assert (outcome.get("action"), outcome.get("state")) == ("restart", "Succeeded"), outcome
    assert restart_counts(docker_client, ids, since) == Counter(requests)
    for cid in ids:
        assert DISPATCH_ANNOTATION not in annotations(standby.mirror(cid))
    assert standby.running
    assert "dockmirror running" in standby.log_since_start()


def test_clean_stop_hands_over_at_once(
    service_factory, run_container, docker_client, api_client, namespace
):
    leader = service_factory()
    first_holder = lease_holder(api_client, namespace)
    standby = start_standby(service_factory)
    c = run_container(stop_timeout=1)
    leader.wait_status(c.id, "running")

    assert leader.stop() == 0
    stopped_at = time.monotonic()
    assert "lease dockmirror released" in leader.log_since_start()
    took_over_at = wait_for(
        lambda: (
            lease_holder(api_client, namespace) not in (None, "", first_holder) and time.monotonic()
        ),
        timeout=LEASE_DURATION_S,
        interval=0.1,
        message="the standby takes the released Lease",
    )
    handover_s = took_over_at - stopped_at
    print(f"handover after a clean stop: {handover_s:.1f} s")
    # At the standby's next retry, not after the lease duration.
    assert handover_s <= RETRY_PERIOD_S + 1.5, handover_s

    standby.wait_ready()
    since = int(time.time()) - 1
    la = request_restart(standby, c.id, timeout=60)
    assert (la["action"], la["state"]) == ("restart", "Succeeded")
    assert restart_counts(docker_client, [c.id], since) == Counter({c.id: 1})


def test_lease_taken_away_fences_then_the_instance_stands_by_and_leads_again(
    service_factory, run_container, docker_client, api_client, namespace
):
    """Another holder appears in the Lease (as after renewals that did not land in time):
    the instance stops acting at once, stands by, and - since that holder never renews -
    takes the Lease back after the lease duration and starts again as a fresh start."""
    svc = service_factory()
    c = run_container(stop_timeout=1)
    svc.wait_status(c.id, "running")
    coordination = k8s.CoordinationV1Api(api_client)

    def steal() -> bool:
        lease = coordination.read_namespaced_lease(LEASE, namespace)
        lease.spec.holder_identity = "thief"
        coordination.replace_namespaced_lease(LEASE, namespace, lease)  # carries its RV
        return True

    wait_for(steal, timeout=10, ignore=(ApiException,), message="Lease rewritten")
    wait_for(
        lambda: (
            "lost the leadership of namespace" in svc.log_since_start()
            and "is held by thief" in svc.log_since_start()
        ),
        timeout=2 * RETRY_PERIOD_S + 5,
        message="the instance fences and stands by",
    )
    assert svc.running, "fencing stops acting, not the process"
    # A client asks meanwhile; its write passes once the instance leads again and has
    # registered its webhook server (the stopped server's configuration refuses writes
    # until then, docs/webhook.md) ...
    since = int(time.time()) - 1
    wait_for(
        lambda: svc.annotate(c.id, "restart"),
        timeout=LEASE_DURATION_S + 3 * RETRY_PERIOD_S + 40,
        interval=0.2,
        ignore=(ApiException,),
        message="request written",
    )
    # ... and is carried out exactly once when the instance leads again.
    obj = svc.wait_mirror(
        c.id,
        lambda m: ACTION_ANNOTATION not in annotations(m),
        timeout=LEASE_DURATION_S + 3 * RETRY_PERIOD_S + 40,
        message="request completed after the instance led again",
    )
    la = (obj.get("status") or {}).get("lastAction") or {}
    assert (la.get("action"), la.get("state")) == ("restart", "Succeeded"), la
    assert lease_holder(api_client, namespace) not in (None, "", "thief")
    assert svc.log_since_start().count("dockmirror running") == 2
    assert restart_counts(docker_client, [c.id], since) == Counter({c.id: 1})


def test_apiserver_outage_past_the_renew_deadline_fences_then_renews_at_once(
    service_factory, run_container, docker_client, api_client, namespace
):
    """Renewals fail for longer than the renew deadline: the leader stops acting (it
    cannot know whether another instance took over) but keeps running; when the
    apiserver answers again the Lease still names it, so it leads again at once and
    repairs what changed in Docker meanwhile. Stops and starts only this worktree's
    apiserver (``scripts/devenv stop-apiserver``); the Docker engine is not touched."""
    svc = service_factory()
    c = run_container(stop_timeout=1)
    svc.wait_status(c.id, "running")
    holder = lease_holder(api_client, namespace)
    stopped = False
    try:
        devenv("stop-apiserver")
        stopped = True
        wait_for(
            lambda: "lost the leadership of namespace" in svc.log_since_start(),
            timeout=10 + 2 * RETRY_PERIOD_S + 10,
            message="the leader fences itself",
        )
        assert svc.running
        c.stop(timeout=0)  # a Docker change while nobody mirrors
        devenv("start-apiserver")
        stopped = False
    finally:
        if stopped:
            devenv("start-apiserver")
    svc.wait_status(c.id, "exited", timeout=90)
    assert lease_holder(api_client, namespace) == holder  # renewed, not re-acquired
    assert svc.log_since_start().count("dockmirror running") == 2
    assert svc.running


def devenv(*args: str) -> None:
    result = subprocess.run(
        [str(DEVENV_SCRIPT), *args], capture_output=True, text=True, cwd=REPO_ROOT, timeout=180
    )
    assert result.returncode == 0, (
        f"scripts/devenv {' '.join(args)} failed:\n{result.stdout}\n{result.stderr}"
    )

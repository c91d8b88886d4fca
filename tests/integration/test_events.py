"""kubectl shows what happened (issue 13 point 6), against the real apiserver.

``kubectl describe container/<id>`` lists the Events whose ``involvedObject.uid`` is the
Container's uid; a repeated transition (pause, unpause, pause again within minutes)
shows both pause outcomes and every condition change within seconds.
"""

from __future__ import annotations

import re
import time

import pytest
from kubernetes import client as k8s

from actors.domain.names import EVENT_REPORTING_CONTROLLER
from tests.support.wait import wait_for

pytestmark = pytest.mark.integration

#: How long an Event may take to appear: the writer sends it right after the annotation
#: removal; seconds, never the 5-minute series refresh.
VISIBLE_WITHIN_S = 15.0


def describe_rows(devenv, namespace: str, name: str) -> list[tuple[str, str, str, str]]:
    """(type, reason, from, message) of the Events section of ``kubectl describe``."""
    out = devenv.kubectl("describe", f"container/{name}", "-n", namespace, check=True).stdout
    rows = []
    section = out.split("\nEvents:", 1)[1] if "\nEvents:" in out else ""
    for line in section.splitlines()[3:]:  # after the header and its underline
        parts = re.split(r"\s{2,}", line.strip())
        if len(parts) >= 5:
            kind, reason, _age, source, message = parts[:5]
            rows.append((kind, reason, source, message))
    return rows


def test_describe_shows_pause_unpause_pause(service, run_container, devenv, api_client):
    c = run_container()
    service.wait_status(c.id, "running")
    for action in ("pause", "unpause", "pause"):
        la = service.request(c.id, action)  # returns once lastAction is written
        assert (la["action"], la["state"]) == (action, "Succeeded")
    done = time.monotonic()

    def complete():
        rows = describe_rows(devenv, service.namespace, c.id)
        outcomes = [r for r in rows if r[1] == "ActionSucceeded"]
        paused = [r for r in rows if r[1] == "ConditionChanged" and r[3] == "Container is paused"]
        resumed = [
            r for r in rows if r[1] == "ConditionChanged" and r[3] == "Container is not paused"
        ]
        if (
            sum(r[3] == "pause succeeded" for r in outcomes) == 2
            and sum(r[3] == "unpause succeeded" for r in outcomes) == 1
            and len(paused) == 2
            and len(resumed) >= 1  # also at creation, when the Paused condition appears
        ):
            return rows
        return None

    rows = wait_for(
        complete, timeout=VISIBLE_WITHIN_S, interval=0.2, message="describe shows every Event"
    )
    took = time.monotonic() - done
    print(f"second pause's Events visible in describe {took:.1f} s after its outcome")
    assert {r[2] for r in rows} == {EVENT_REPORTING_CONTROLLER}

    # The same through the events API: each pause regards another mirror version, and
    # none folded into a series.
    uid = service.mirror(c.id)["metadata"]["uid"]
    items = (
        k8s.EventsV1Api(api_client)
        .list_namespaced_event(service.namespace, field_selector=f"regarding.uid={uid}")
        .items
    )
    pauses = [e for e in items if e.reason == "ActionSucceeded" and e.action == "pause"]
    assert len(pauses) == 2
    assert len({e.regarding.resource_version for e in pauses}) == 2
    assert all(e.series is None for e in pauses)
    assert all(e.regarding.uid == uid for e in items)

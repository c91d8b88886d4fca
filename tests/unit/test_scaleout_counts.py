"""scripts/scaleout.py's pure counting of Kubernetes writes in a journal (no devenv)."""

from __future__ import annotations

import sys
from pathlib import Path

from messages.journal import Effect, Note, Received

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "scripts"))
import scaleout


def test_counts_only_kube_writes_inside_the_window():
    entries = [
        Effect(ts_ns=10, target="kube", op="apply_status"),
        Effect(ts_ns=11, target="kube", op="apply_status", outcome="conflict"),  # still a write
        Effect(ts_ns=12, target="kube", op="get"),  # a read
        Effect(ts_ns=13, target="kube", op="list_mirrors"),  # a read
        Effect(ts_ns=14, target="docker", op="pause"),  # not the apiserver
        Effect(ts_ns=15, target="kube", op="create_event"),
        Note(ts_ns=16, text="retry"),
        Received(ts_ns=17, msg_kind="sync_container"),
        Effect(ts_ns=9, target="kube", op="apply_status"),  # before the window
        Effect(ts_ns=20, target="kube", op="apply_status"),  # at the (exclusive) end
    ]
    assert scaleout.count_kube_writes(entries, 10, 20) == {"apply_status": 2, "create_event": 1}


def test_per_unit_divides_and_totals_event_writes_separately():
    out = scaleout.per_unit({"apply_status": 3, "create_event": 2, "update_event_series": 1}, 2)
    assert out == {
        "apply_status": 1.5,
        "create_event": 1.0,
        "update_event_series": 0.5,
        "total": 3.0,
        "events": 1.5,
    }

"""The bench's floor and cost arithmetic (scripts/benchmarks/cost.py): no devenv needed."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "scripts"))

from benchmarks import cost, stats

from actors.domain.names import CONTAINERS, GROUP

# A real /proc/<pid>/stat line, with a command name holding a space and a ")".
STAT = (
    "4242 (py thon) x) S 1 4242 4242 0 -1 4194560 5012 0 0 0 {utime} {stime} 0 0 20 0 "
    "9 0 123456 456789012 23000 18446744073709551615 1 1 0 0 0 0 0 16781312 2 0 0 0 17 1 "
    "0 0 0 0 0"
)


def stat(utime: int, stime: int) -> str:
    return STAT.format(utime=utime, stime=stime)


def test_cpu_seconds_reads_utime_and_stime_after_the_last_parenthesis():
    assert cost.cpu_seconds(stat(150, 50), 100) == pytest.approx(2.0)
    assert cost.cpu_seconds(stat(0, 0), 100) == 0.0


def test_cpu_delta_between_two_readings():
    assert cost.cpu_delta(stat(100, 20), stat(340, 80), 100) == pytest.approx(3.0)
    with pytest.raises(ValueError):
        cost.cpu_delta(stat(340, 80), stat(100, 20), 100)


def test_cpu_seconds_rejects_malformed_lines():
    with pytest.raises(ValueError):
        cost.cpu_seconds("no parenthesis here", 100)
    with pytest.raises(ValueError):
        cost.cpu_seconds("1 (x) S 1 2", 100)


def sample(group: str, resource: str, verb: str, value: str, *, code: str = "200", sub="") -> str:
    """One ``apiserver_request_total`` line as kube-apiserver writes it."""
    labels = (
        f'code="{code}",component="apiserver",dry_run="",group="{group}",'
        f'resource="{resource}",scope="resource",subresource="{sub}",verb="{verb}",'
        'version="v1"'
    )
    return f"apiserver_request_total{{{labels}}} {value}"


OURS = GROUP
METRICS = "\n".join(
    [
        "# HELP apiserver_request_total [STABLE] Counter of apiserver requests",
        "# TYPE apiserver_request_total counter",
        sample(OURS, CONTAINERS, "PATCH", "10"),
        sample(OURS, CONTAINERS, "PATCH", "5", sub="status"),
        sample(OURS, CONTAINERS, "PATCH", "1", sub="status", code="409"),
        sample(OURS, CONTAINERS, "APPLY", "7", sub="status"),
        sample("events.k8s.io", "events", "POST", "2", code="201"),
        sample("", "namespaces", "GET", "99"),
        'apiserver_request_total{code="200",group="",resource="",subresource="/readyz",'
        'verb="GET"} 4',
        f'apiserver_request_duration_seconds_count{{group="{OURS}",verb="PATCH"}} 1000',
        sample(OURS, CONTAINERS, "GET", "NaNx"),
    ]
)


def test_request_counts_sum_our_groups_by_verb():
    assert cost.request_counts(METRICS) == {"PATCH": 16.0, "APPLY": 7.0, "POST": 2.0}
    assert cost.request_counts(METRICS, groups=frozenset({""})) == {"GET": 103.0}
    assert cost.request_counts("") == {}


def test_delta_by_verb_drops_quiet_verbs_and_survives_a_restart():
    before = {"PATCH": 16.0, "APPLY": 7.0, "GET": 3.0}
    after = {"PATCH": 46.0, "APPLY": 17.0, "GET": 3.0, "POST": 4.0, "PUT": 2.0}
    assert cost.delta_by_verb(before, after) == {
        "APPLY": 10.0,
        "PATCH": 30.0,
        "POST": 4.0,
        "PUT": 2.0,
    }
    assert cost.delta_by_verb({"PATCH": 100.0}, {"PATCH": 5.0}) == {"PATCH": 5.0}


def test_delta_by_verb_from_prometheus_text():
    old = sample(OURS, CONTAINERS, "APPLY", "7", sub="status")
    later = METRICS.replace(old, sample(OURS, CONTAINERS, "APPLY", "27", sub="status"))
    assert cost.delta_by_verb(cost.request_counts(METRICS), cost.request_counts(later)) == {
        "APPLY": 20.0
    }


def _window(**kw) -> cost.Window:
    base = dict(
        seconds=12.0,
        actions=100,
        client_writes=100,
        service_cpu_s=0.8,
        apiserver_cpu_s=3.2,
        requests={"PATCH": 300.0, "APPLY": 100.0, "POST": 10.0, "GET": 5.0},
        rate=10.0,
    )
    base.update(kw)
    return cost.Window(**base)


def test_cost_of_a_window_takes_the_client_writes_out():
    c = cost.cost_of(_window())
    assert c.service_cpu_ms_per_action == pytest.approx(8.0)
    assert c.apiserver_cpu_ms_per_action == pytest.approx(32.0)
    # 300 PATCH - 100 client writes, + 100 APPLY + 10 POST + 5 GET over 100 actions
    assert c.kube_requests_per_action == pytest.approx(3.15)
    assert c.by_verb == {"PATCH": 2.0, "APPLY": 1.0, "POST": 0.1, "GET": 0.05}
    assert c.throughput_per_cpu_s == pytest.approx(25.0)  # 100 actions / 4 CPU-s
    # 4.1 writes per action (the client's included) at 10 actions/s
    assert c.write_rate == pytest.approx(41.0)


def test_cost_of_missing_readings_is_none_not_an_error():
    c = cost.cost_of(_window(apiserver_cpu_s=None, requests=None))
    assert c.service_cpu_ms_per_action == pytest.approx(8.0)
    assert c.apiserver_cpu_ms_per_action is None
    assert c.throughput_per_cpu_s is None
    assert c.kube_requests_per_action is None
    assert c.write_rate is None
    assert c.by_verb == {}
    assert cost.cost_of(_window(rate=None)).write_rate is None
    idle = cost.cost_of(_window(actions=0, client_writes=0))
    assert idle.service_cpu_ms_per_action is None
    assert idle.kube_requests_per_action is None


def test_floor_results_ratios_and_suffix():
    ours = cost.cost_of(_window())
    base = cost.cost_of(_window(service_cpu_s=0.4, apiserver_cpu_s=1.6, requests={"PATCH": 300.0}))
    out = cost.floor_results(
        latency_ours=[0.02, 0.03, 0.04],
        latency_floor=[0.01, 0.02, 0.02],
        parallel_stop_ours=4.4,
        parallel_stop_docker=4.0,
        write_rate_bare=200.0,
        ours=ours,
        baseline=base,
        key_suffix="_webhook",
    )
    assert set(out) == {k + "_webhook" for k in cost.FLOOR_KEYS}
    assert out["floor_action_latency_p50_webhook"] == stats.result(0.03, 0.02, "s")
    assert out["floor_action_latency_p50_webhook"]["ratio"] == 1.5
    assert out["docker_parallel_stop_s_webhook"]["ratio"] == 1.1
    assert out["apiserver_write_rate_webhook"]["ratio"] == pytest.approx(0.205)
    assert out["service_cpu_ms_per_action_webhook"]["ratio"] == 2.0
    assert out["apiserver_cpu_ms_per_action_webhook"] == stats.result(32.0, 16.0, "ms")
    assert out["throughput_per_cpu_s_webhook"]["ratio"] == 0.5  # higher is better
    requests = out["kube_requests_per_action_webhook"]
    assert requests["ours"] == pytest.approx(3.15)
    assert requests["baseline"] == pytest.approx(2.0)
    assert requests["by_verb"] == {"ours": ours.by_verb, "baseline": {"PATCH": 2.0}}
    for key, record in out.items():
        assert {"ours", "baseline", "unit", "ratio"} <= set(record), key


def test_floor_results_without_measurements_keeps_every_key():
    out = cost.floor_results(
        latency_ours=None,
        latency_floor=[],
        parallel_stop_ours=None,
        parallel_stop_docker=None,
        write_rate_bare=None,
        ours=None,
        baseline=None,
    )
    assert list(out) == list(cost.FLOOR_KEYS)
    assert all(r["ratio"] is None for r in out.values())


def test_required_keys_follow_the_modes():
    both = cost.required_keys(cost.MODES)
    assert both[: len(stats.SCENARIOS)] == list(stats.SCENARIOS)
    assert "service_cpu_ms_per_action" in both
    assert "service_cpu_ms_per_action_webhook" in both
    assert len(both) == len(stats.SCENARIOS) + 2 * len(cost.FLOOR_KEYS)
    webhook_only = cost.required_keys(["webhook"])  # the suffix names the mode
    assert "service_cpu_ms_per_action_webhook" in webhook_only
    assert "service_cpu_ms_per_action" not in webhook_only
    assert cost.required_keys(["policy"]) == both[: len(stats.SCENARIOS) + len(cost.FLOOR_KEYS)]


def test_targets_of_issue_14():
    results = cost.floor_results(
        latency_ours=[0.02, 0.021, 0.05],
        latency_floor=[0.02, 0.02, 0.02],
        parallel_stop_ours=4.0,
        parallel_stop_docker=4.0,
        write_rate_bare=100.0,
        ours=cost.cost_of(_window()),
        baseline=None,
    )
    by = {(c.scenario, c.text): c.ok for c in cost.check_targets(results, ["policy"])}
    assert by[("floor_action_latency_p50", "<= 1.1x floor")] is True
    assert by[("floor_action_latency_p99", "<= 1.5x floor")] is False
    assert by[("docker_parallel_stop_s", "<= 1.1x floor")] is True
    assert by[("service_cpu_ms_per_action", "<= 5 ms")] is False  # 8 ms
    assert by[("apiserver_cpu_ms_per_action", "<= 20 ms")] is False  # 32 ms
    webhook = cost.check_targets({}, ["policy", "webhook"])
    assert {c.scenario for c in webhook if c.scenario.endswith("_webhook")} == {
        "floor_action_latency_p50_webhook",
        "floor_action_latency_p99_webhook",
        "docker_parallel_stop_s_webhook",
    }
    assert all(c.ok is None for c in webhook)
    assert {c.scenario for c in cost.check_targets({}, ["webhook"])} == {
        "floor_action_latency_p50_webhook",
        "floor_action_latency_p99_webhook",
        "docker_parallel_stop_s_webhook",
    }


def test_json_writes_the_required_keys_of_both_modes(tmp_path):
    results = {"action_latency_p50": stats.result(0.03, 0.02, "s")}
    results.update(
        cost.floor_results(
            latency_ours=[0.03],
            latency_floor=[0.02],
            parallel_stop_ours=4.0,
            parallel_stop_docker=3.9,
            write_rate_bare=100.0,
            ours=None,
            baseline=None,
        )
    )
    keys = cost.required_keys(cost.MODES)
    missing = stats.missing_keys(results, keys)
    assert "full_sync_s" in missing and "service_cpu_ms_per_action_webhook" in missing
    assert "floor_action_latency_p50" not in missing
    out = tmp_path / "out.json"
    stats.write_json(out, results, keys)
    data = json.loads(out.read_text())
    assert list(data) == keys
    assert data["floor_action_latency_p50"]["ratio"] == 1.5
    assert data["throughput_per_cpu_s_webhook"] == stats.result(None, None, "")

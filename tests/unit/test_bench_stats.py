"""The bench's pure helpers (scripts/benchmarks/stats.py): no devenv needed."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "scripts"))

from benchmarks import stats


def test_percentile_interpolates_like_numpy_linear():
    assert stats.percentile([3.0, 1.0, 2.0], 50) == 2.0
    assert stats.percentile([1.0, 2.0, 3.0, 4.0], 50) == pytest.approx(2.5)
    assert stats.percentile(range(1, 101), 99) == pytest.approx(99.01)
    assert stats.percentile([7.0], 99) == 7.0
    assert stats.percentile([1.0, 9.0], 0) == 1.0
    assert stats.percentile([1.0, 9.0], 100) == 9.0


def test_percentile_rejects_nothing_and_bad_q():
    with pytest.raises(ValueError):
        stats.percentile([], 50)
    with pytest.raises(ValueError):
        stats.percentile([1.0], 101)


def test_result_ratio_is_ours_over_baseline():
    assert stats.result(2.0, 4.0, "s") == {"ours": 2.0, "baseline": 4.0, "unit": "s", "ratio": 0.5}
    assert stats.result(2.0, None, "s")["ratio"] is None
    assert stats.result(2.0, 0.0, "s")["ratio"] is None
    missing = stats.result(None, 1.0, "s")
    assert missing == {"ours": None, "baseline": 1.0, "unit": "s", "ratio": None}


def _all_passing() -> dict:
    return {
        "action_latency_p50": stats.result(0.11, 0.1, "s"),
        "action_latency_p99": stats.result(0.14, 0.1, "s"),
        "single_stop_s": stats.result(3.1, 3.1, "s"),
        "parallel_stop_s": stats.result(4.0, 155.0, "s"),
        "action_throughput": stats.result(60.0, 10.0, "actions/s"),
        "mirror_latency_p50_n10": stats.result(0.05, None, "s"),
        "mirror_latency_p50_n1000": stats.result(0.07, None, "s"),
        "full_sync_s": stats.result(12.0, None, "s"),
        "rss_mb_idle_n1000": stats.result(120.0, None, "MB"),
        "threads_idle_n1000": stats.result(20, None, "threads"),
        "action_latency_p50_logs": stats.result(0.11, 0.1, "s"),
        "action_latency_p99_logs": stats.result(0.14, 0.1, "s"),
    }


def test_targets_all_met():
    checks = stats.check_targets(_all_passing())
    assert checks and all(c.ok for c in checks), [c for c in checks if not c.ok]


def test_targets_missed_and_unknown():
    results = _all_passing()
    results["parallel_stop_s"] = stats.result(20.0, 100.0, "s")  # 5x only, > 1.5x single
    results["threads_idle_n1000"] = stats.result(161, None, "threads")
    del results["mirror_latency_p50_n10"]
    by = {(c.scenario, c.text): c.ok for c in stats.check_targets(results)}
    assert by[("parallel_stop_s", "<= 1.5x single_stop_s")] is False
    assert by[("parallel_stop_s", ">= 10x faster than baseline")] is False
    assert by[("threads_idle_n1000", "< 64")] is False
    assert by[("mirror_latency_p50_n1000", "<= 1.5x n10")] is None
    assert by[("action_throughput", ">= 3x baseline")] is True


def test_log_followers_target_compares_with_no_followers():
    results = _all_passing()
    results["action_latency_p50_logs"] = stats.result(0.13, 0.1, "s")  # 1.3x
    by = {(c.scenario, c.text): c.ok for c in stats.check_targets(results)}
    assert by[("action_latency_p50_logs", "<= 1.2x without followers")] is False
    assert by[("action_latency_p99_logs", "<= 1.5x without followers")] is True


def test_table_has_every_row_and_verdicts():
    results = _all_passing()
    results["threads_idle_n1000"] = stats.result(161, None, "threads")
    table = stats.format_table(results)
    lines = table.splitlines()
    assert lines[0].startswith("| scenario")
    assert len(lines) == 2 + len(stats.SCENARIOS)
    assert "MISS < 64" in table
    assert "| -" in table  # no baseline renders as "-"


def test_json_has_every_key_even_when_missing(tmp_path):
    results = _all_passing()
    del results["full_sync_s"]
    assert stats.missing_keys(results) == ["full_sync_s"]
    out = tmp_path / "out.json"
    stats.write_json(out, results)
    data = json.loads(out.read_text())
    assert list(data) == list(stats.SCENARIOS)
    assert data["full_sync_s"] == {"ours": None, "baseline": None, "unit": "", "ratio": None}
    for record in data.values():
        assert set(record) == {"ours", "baseline", "unit", "ratio"}

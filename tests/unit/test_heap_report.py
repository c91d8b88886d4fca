"""actors.infra.heap_report: the opt-in tracemalloc growth report."""

from __future__ import annotations

import logging
import tracemalloc

import pytest

from actors.infra.heap_report import ENV_VAR, HeapGrowthReporter


@pytest.fixture(autouse=True)
def _stop_tracing():
    yield
    tracemalloc.stop()


@pytest.mark.parametrize("value", ["", "0", "-5", "soon"])
def test_off_unless_a_positive_number_of_seconds(monkeypatch, value):
    monkeypatch.setenv(ENV_VAR, value)
    assert HeapGrowthReporter.from_env() is None
    assert not tracemalloc.is_tracing()


def test_reports_the_site_that_grew(monkeypatch, caplog):
    monkeypatch.setenv(ENV_VAR, "60")
    reporter = HeapGrowthReporter.from_env()
    assert reporter is not None and tracemalloc.is_tracing()
    reporter.interval_s = 0  # report on every call
    caplog.set_level(logging.INFO, logger="dockmirror.heap")
    reporter.maybe_report()
    assert "heap baseline" in caplog.text
    hoard = [bytearray(1024) for _ in range(2000)]  # about 2 MB from this line
    reporter.maybe_report()
    assert "heap growth since baseline" in caplog.text
    assert "test_heap_report.py" in caplog.text
    assert len(hoard) == 2000

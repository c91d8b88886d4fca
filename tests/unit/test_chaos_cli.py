"""scripts/chaos command line (no devenv needed)."""

from __future__ import annotations

import subprocess
import sys

import pytest

from scripts.chaos import parse_args
from scripts.chaoslib.campaigns import FULL, QUICK, scaled


def test_only_selects_campaigns_and_rejects_unknown() -> None:
    args = parse_args(["--quick", "--only", "sigkill,bad-input"])
    assert args.quick and args.names == ["sigkill", "bad-input"]
    assert len(parse_args([]).names) == 6
    with pytest.raises(SystemExit):
        parse_args(["--only", "nope"])


def test_full_mode_meets_the_issue_sizes() -> None:
    assert FULL["sigkill"].kills >= 100 and FULL["sigkill"].containers == 30
    assert FULL["soak"].budget == 10_000 and FULL["soak"].containers == 50
    assert QUICK["soak"].budget < FULL["soak"].budget


def test_scaled_keeps_minimums() -> None:
    small = scaled(FULL["sigkill"], 0.001)
    assert small.kills == 1 and small.containers == 3


def test_help_runs() -> None:
    out = subprocess.run(
        [sys.executable, "scripts/chaos.py", "--help"], capture_output=True, text=True, check=True
    )
    assert "--quick" in out.stdout and "--json" in out.stdout

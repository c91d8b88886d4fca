"""The real service's state files: private modes, start-up fix-ups and refusals.

Unit tests cover the rules (tests/unit/test_state_dir.py); these check that the real
process applies them before it does anything else, and that a refusal is one line and
exit code 2 rather than a traceback.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.support.service import Service


def mode(path: Path) -> int:
    return stat.S_IMODE(os.lstat(path).st_mode)


def test_start_tightens_loose_state_files_including_an_old_ledger(
    service_factory: Callable[..., Service],
) -> None:
    # Webhook mode: the webhook's TLS files are checked too (policy mode has none).
    svc = service_factory(start=False, extra_args=("--admission", "webhook"))
    svc.state_dir.mkdir(parents=True)
    svc.state_dir.chmod(0o755)
    ledger = svc.state_dir / f"actions-{svc.namespace}.jsonl"
    # A ledger of a version before the dispatch record moved into the cluster: no longer
    # read, but still ours, so its mode is checked like the others.
    ledger.write_bytes(b'{"container_id":"' + b"0" * 64 + b'","dispatch_ns":1,"op":"dispatch"}\n')
    ledger.chmod(0o644)
    svc.trace_file.write_bytes(b"")
    svc.trace_file.chmod(0o644)

    svc.start()

    assert mode(svc.state_dir) == 0o700
    assert mode(ledger) == 0o600
    assert mode(svc.trace_file) == 0o600
    tls = svc.state_dir / "webhook-tls"
    assert mode(tls) == 0o700
    assert mode(tls / "ca.key") == 0o600 and mode(tls / "tls.key") == 0o600
    log = svc.log_since_start()
    assert f"directory {svc.state_dir} had mode 0755; changed to 0700" in log
    assert f"file {ledger} had mode 0644; changed to 0600" in log
    assert "Traceback" not in log
    assert svc.stop() == 0


@pytest.mark.skipif(os.geteuid() != 0, reason="chown to another uid needs root")
def test_ledger_of_another_owner_refuses_the_start_in_one_line(
    service_factory: Callable[..., Service],
) -> None:
    svc = service_factory(start=False)
    svc.state_dir.mkdir(parents=True, mode=0o700)
    ledger = svc.state_dir / f"actions-{svc.namespace}.jsonl"
    ledger.write_bytes(b"")
    os.chown(ledger, 65534, 65534)

    svc.start(wait_ready=False)

    assert svc.wait_exit(timeout=60) == 2
    log = svc.log_since_start()
    assert "Traceback" not in log
    [line] = [text for text in log.splitlines() if text.startswith("dockmirror: ")]
    assert f"file {ledger} is owned by uid 65534" in line and "chown" in line
    assert ledger.stat().st_uid == 65534  # not adopted

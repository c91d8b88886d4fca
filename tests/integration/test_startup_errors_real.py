"""Configuration errors at start against the real apiserver: one line, exit 2, at once."""

from __future__ import annotations

import base64
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from actors.infra.certs import ensure_certificates
from tests.support.devenv import REPO_ROOT, Devenv
from tests.support.identity import mint_user_kubeconfig

pytestmark = pytest.mark.integration


def run_service(devenv: Devenv, tmp_path: Path, kubeconfig: Path) -> subprocess.CompletedProcess:
    """Start the real service; it must give up by itself long before --startup-timeout."""
    return subprocess.run(
        [
            sys.executable,
            str(REPO_ROOT / "supervisor.py"),
            "--kubeconfig",
            str(kubeconfig),
            "--docker-host",
            devenv.docker_host,
            "--namespace",
            "no-permission-test",
            "--state-dir",
            str(tmp_path / "state"),
            "--startup-timeout",
            "600",
        ],
        capture_output=True,
        text=True,
        timeout=120,  # far below --startup-timeout: a 403 must not be waited out
        cwd=REPO_ROOT,
    )


def test_user_without_permissions_gets_one_line_naming_verb_and_resource(
    devenv: Devenv, tmp_path: Path
) -> None:
    kubeconfig = mint_user_kubeconfig(
        "some-user", tmp_path, admin_kubeconfig=devenv.kubeconfig
    ).kubeconfig
    done = run_service(devenv, tmp_path, kubeconfig)
    assert done.returncode == 2, done.stderr
    errors = [line for line in done.stderr.splitlines() if line.startswith("dockmirror: ")]
    assert len(errors) == 1, done.stderr
    assert "Traceback" not in done.stderr
    line = errors[0]
    # The first call at start is the leader election's read of the namespace's Lease.
    assert line.startswith(
        'dockmirror: missing permission: get leases.coordination.k8s.io in namespace "'
        'no-permission-test" ('
    ), line
    assert 'User "some-user" cannot get resource "leases"' in line
    assert line.endswith(
        "apply what `dockmirror rbac --namespace no-permission-test --user some-user` prints"
    )


def test_certificate_of_an_unknown_ca_is_rejected_as_credentials(
    devenv: Devenv, tmp_path: Path
) -> None:
    """A client certificate the apiserver cannot verify authenticates nobody: 401."""
    kubeconfig = mint_user_kubeconfig(
        "some-user", tmp_path, admin_kubeconfig=devenv.kubeconfig
    ).kubeconfig
    text = kubeconfig.read_text()
    # Replace the user's certificate and key by the webhook CA's own pair: valid PEM,
    # signed by a CA the apiserver does not trust.
    bundle = ensure_certificates(tmp_path / "other-ca")
    config = yaml.safe_load(text)
    config["users"][0]["user"] = {
        "client-certificate-data": base64.b64encode(bundle.cert_path.read_bytes()).decode(),
        "client-key-data": base64.b64encode(bundle.key_path.read_bytes()).decode(),
    }
    kubeconfig.write_text(yaml.safe_dump(config))
    done = run_service(devenv, tmp_path, kubeconfig)
    assert done.returncode == 2, done.stderr
    errors = [line for line in done.stderr.splitlines() if line.startswith("dockmirror: ")]
    assert len(errors) == 1 and "Traceback" not in done.stderr, done.stderr
    assert errors[0].startswith("dockmirror: credentials rejected by the apiserver https://")
    assert "(401 Unauthorized)" in errors[0]

"""Extra Docker engines for tests, started and stopped through ``scripts/devenv``.

Each engine is its own dockerd under ``.devenv/engines/<name>/`` (docs/dev-environment.md,
"Extra engines"): own socket, data root and containerd, no bridge, ``busybox:local``
imported. The main engine at ``/var/run/docker.sock`` is never touched.
"""

from __future__ import annotations

import subprocess
from dataclasses import dataclass

import docker

from tests.support.devenv import DEVENV_SCRIPT, REPO_ROOT, DevenvUnavailable, parse_env

#: A container command that exits at once on SIGTERM (busybox ``sleep`` as PID 1 ignores
#: it), so stopping a container, or its whole engine, takes no grace period.
QUICK_STOP_SLEEP = ["sh", "-c", "trap 'exit 0' TERM; sleep 3600 & wait"]


@dataclass(frozen=True)
class ExtraEngine:
    """One extra engine: its devenv name and its ``DOCKER_HOST``."""

    name: str
    docker_host: str

    def client(self, timeout: float = 60) -> docker.DockerClient:
        """A new docker SDK client for this engine (the caller closes it)."""
        return docker.DockerClient(base_url=self.docker_host, timeout=timeout)


def _devenv(*args: str, timeout: float = 180) -> subprocess.CompletedProcess[str]:
    """Run ``scripts/devenv ARGS``; raises DevenvUnavailable with its output on failure."""
    try:
        res = subprocess.run(
            [str(DEVENV_SCRIPT), *args],
            capture_output=True,
            text=True,
            timeout=timeout,
            cwd=REPO_ROOT,
        )
    except subprocess.TimeoutExpired as e:
        raise DevenvUnavailable(f"scripts/devenv {' '.join(args)} timed out") from e
    if res.returncode != 0:
        raise DevenvUnavailable(
            f"scripts/devenv {' '.join(args)} exited {res.returncode}\n--- stdout\n"
            f"{res.stdout}\n--- stderr\n{res.stderr}"
        )
    return res


def engines_up(*names: str) -> list[ExtraEngine]:
    """Start the named engines (idempotent; existing data is kept) and describe them."""
    _devenv("engine-up", *names)
    out = []
    for name in names:
        env = parse_env(_devenv("engine-env", name).stdout)
        out.append(ExtraEngine(name, env["DOCKER_HOST"]))
    return out


def engines_down(*names: str) -> None:
    """Stop the named engines, keeping their data (an engine outage)."""
    _devenv("engine-down", *names)


def engines_remove(*names: str) -> None:
    """Stop the named engines and delete their data (a clean slate)."""
    _devenv("engine-rm", *names)

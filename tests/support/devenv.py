"""Access to the local dev environment (Docker engine + kube-apiserver) from tests.

``scripts/devenv up`` does the work; this module runs it and describes the result.
"""

from __future__ import annotations

import re
import subprocess
import uuid
from dataclasses import dataclass
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
DEVENV_SCRIPT = REPO_ROOT / "scripts" / "devenv"
TEST_LABEL = "dockmirror.test"


class DevenvUnavailable(RuntimeError):
    """``scripts/devenv up`` failed; the message carries its output."""


@dataclass(frozen=True)
class Devenv:
    repo_root: Path
    kubeconfig: Path
    docker_host: str
    kubectl_path: Path

    def env(self) -> dict[str, str]:
        """Environment variables that point clients at this devenv."""
        return {"KUBECONFIG": str(self.kubeconfig), "DOCKER_HOST": self.docker_host}

    def kubectl(
        self, *args: str, input: str | None = None, check: bool = False, timeout: float = 60
    ) -> subprocess.CompletedProcess[str]:
        """Run the devenv's kubectl against its kubeconfig; returns the CompletedProcess."""
        return subprocess.run(
            [str(self.kubectl_path), "--kubeconfig", str(self.kubeconfig), *args],
            input=input,
            capture_output=True,
            text=True,
            check=check,
            timeout=timeout,
        )


def parse_env(text: str) -> dict[str, str]:
    """The ``export NAME=value`` lines of ``scripts/devenv env`` (or ``engine-env``)."""
    out = {}
    for line in text.splitlines():
        m = re.fullmatch(r"export (\w+)=(.*)", line.strip())
        if m:
            out[m.group(1)] = m.group(2)
    return out


def start_devenv(timeout: float = 3000) -> Devenv:
    """Run ``scripts/devenv up`` (idempotent) and return the environment's coordinates.

    Raises DevenvUnavailable with the script's output if it cannot start.
    """
    try:
        up = subprocess.run(
            [str(DEVENV_SCRIPT), "up"],
            capture_output=True,
            text=True,
            timeout=timeout,
            cwd=REPO_ROOT,
        )
    except subprocess.TimeoutExpired as e:
        raise DevenvUnavailable(f"scripts/devenv up timed out after {timeout:.0f}s") from e
    if up.returncode != 0:
        raise DevenvUnavailable(
            f"scripts/devenv up exited {up.returncode}\n--- stdout\n{up.stdout}\n"
            f"--- stderr\n{up.stderr}"
        )
    env = parse_env(
        subprocess.run(
            [str(DEVENV_SCRIPT), "env"], capture_output=True, text=True, check=True
        ).stdout
    )
    dev = Devenv(
        repo_root=REPO_ROOT,
        kubeconfig=Path(env["KUBECONFIG"]),
        docker_host=env["DOCKER_HOST"],
        kubectl_path=REPO_ROOT / ".devenv" / "bin" / "kubectl",
    )
    for path in (dev.kubeconfig, dev.kubectl_path):
        if not path.exists():
            raise DevenvUnavailable(f"scripts/devenv up succeeded but {path} is missing")
    return dev


def unique_name(prefix: str, hint: str, max_len: int = 63) -> str:
    """A DNS-1123 label ``<prefix>-<hint>-<random>`` of at most max_len characters."""
    suffix = uuid.uuid4().hex[:6]
    hint = re.sub(r"[^a-z0-9]+", "-", hint.lower()).strip("-")
    room = max_len - len(prefix) - len(suffix) - 2
    hint = hint[:room].strip("-") or "x"
    return f"{prefix}-{hint}-{suffix}"

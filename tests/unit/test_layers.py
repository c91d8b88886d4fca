"""The layer rules of docs/architecture.md ("Layers"), checked on the import statements.

Static: every module under ``messages/`` and ``actors/`` is parsed (not imported), and
each import is judged by the importing module's layer.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

#: Third-party packages that do I/O or run threads: only ports (and the layers that own
#: threads or servers) may import them.
SDKS = {"docker", "kubernetes", "requests", "urllib3", "pykka", "prometheus_client"}

#: Modules outside actors/ports that still import the kubernetes SDK, with why. Empty
#: since issue 12 point 5: every Kubernetes call goes through the port.
KUBE_SDK_OUTSIDE_PORTS: set[str] = set()


def modules(*paths: str) -> list[Path]:
    """Python files under each directory of ``paths`` (a file path stands for itself)."""
    found = []
    for name in paths:
        path = ROOT / name
        found.extend([path] if path.is_file() else path.rglob("*.py"))
    return sorted(found)


def imports_of(path: Path) -> set[str]:
    """Every module name imported by ``path`` (top-level or nested imports)."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module)
            if node.module in {"actors", "actors.domain", "actors.infra", "actors.ports"}:
                names.update(f"{node.module}.{alias.name}" for alias in node.names)
    return names


def rel(path: Path) -> str:
    return path.relative_to(ROOT).as_posix()


@pytest.mark.parametrize("path", modules("messages"), ids=rel)
def test_messages_import_nothing_of_ours(path: Path) -> None:
    bad = {n for n in imports_of(path) if n.split(".")[0] in SDKS | {"actors"}}
    bad -= {"msgspec"}
    assert not bad, f"{rel(path)} imports {sorted(bad)}"


@pytest.mark.parametrize("path", modules("actors/domain"), ids=rel)
def test_domain_is_pure(path: Path) -> None:
    names = imports_of(path)
    if rel(path) in KUBE_SDK_OUTSIDE_PORTS:
        names = {n for n in names if n.split(".")[0] != "kubernetes"}
    sdk = {n for n in names if n.split(".")[0] in SDKS | {"cryptography"}}
    ours = {n for n in names if n.startswith("actors.") and not n.startswith("actors.domain")}
    assert not sdk, f"{rel(path)} imports an SDK: {sorted(sdk)}"
    assert not ours, f"{rel(path)} imports outside the domain: {sorted(ours)}"


@pytest.mark.parametrize("path", modules("actors", "supervisor.py"), ids=rel)
def test_only_ports_import_the_docker_and_kubernetes_sdks(path: Path) -> None:
    if rel(path).startswith("actors/ports/"):
        return
    allowed = {"kubernetes"} if rel(path) in KUBE_SDK_OUTSIDE_PORTS else set()
    sdk = {n for n in imports_of(path) if n.split(".")[0] in {"docker", "kubernetes"} - allowed}
    assert not sdk, f"{rel(path)} imports {sorted(sdk)}: only actors/ports talks to them"


def test_known_exceptions_are_still_needed() -> None:
    """An entry of the exception list that no longer imports the SDK must be removed."""
    stale = {
        m
        for m in KUBE_SDK_OUTSIDE_PORTS
        if not any(n.split(".")[0] == "kubernetes" for n in imports_of(ROOT / m))
    }
    assert not stale, f"remove from KUBE_SDK_OUTSIDE_PORTS: {sorted(stale)}"

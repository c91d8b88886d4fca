"""Test-side Docker removal that tolerates the service removing the same container."""

from __future__ import annotations

import docker
import docker.errors
from docker.models.containers import Container


def force_remove(container: Container) -> None:
    """``docker rm -f`` that accepts "already gone" and "already being removed".

    A running dockmirror force-removes a container when its mirror is deleted, so a
    test's own removal can meet Docker's 404 or its 409 "removal of container ... is
    already in progress". Any other error is raised.
    """
    try:
        container.remove(force=True)
    except docker.errors.NotFound:
        pass
    except docker.errors.APIError as exc:
        if exc.status_code != 409 or "already in progress" not in str(exc):
            raise

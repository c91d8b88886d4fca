"""An in-memory Lease store with the apiserver's optimistic concurrency.

Same interface as :class:`actors.runtime.leader.LeaseClient`; several clients may share one
:class:`FakeLeaseServer`, like two dockmirror instances sharing one apiserver. Like the
real apiserver: ``create`` of an existing Lease is 409, ``update`` with a stale or
missing resourceVersion is 409 (an update without one is unconditional on the real
server; the elector never sends one, so the fake refuses it to catch that bug), of a
missing Lease 404; every write bumps the resourceVersion. ``fail_next`` makes the next
requests raise, as an unreachable apiserver would.
"""

from __future__ import annotations

import threading

from actors.ports.kube_port import KubeConflict, KubeError, KubeNotFound, KubeUnavailable
from actors.runtime.leader import LeaseSpec


class FakeLeaseServer:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.spec: LeaseSpec | None = None
        self.rv = 0
        self.writes: list[tuple[str, LeaseSpec]] = []
        self.failures: list[KubeError] = []

    def fail_next(self, count: int = 1, error: KubeError | None = None) -> None:
        with self.lock:
            self.failures.extend([error or KubeUnavailable(503, "apiserver down")] * count)

    def _maybe_fail(self) -> None:
        if self.failures:
            raise self.failures.pop(0)


class FakeLeaseClient:
    def __init__(self, server: FakeLeaseServer, namespace: str = "ns", name: str = "dockmirror"):
        self.server = server
        self.namespace = namespace
        self.name = name

    def get(self) -> tuple[LeaseSpec | None, str | None]:
        s = self.server
        with s.lock:
            s._maybe_fail()
            if s.spec is None:
                return None, None
            return s.spec, str(s.rv)

    def create(self, spec: LeaseSpec) -> str | None:
        s = self.server
        with s.lock:
            s._maybe_fail()
            if s.spec is not None:
                raise KubeConflict(409, "leases.coordination.k8s.io already exists")
            s.spec, s.rv = spec, s.rv + 1
            s.writes.append(("create", spec))
            return str(s.rv)

    def update(self, spec: LeaseSpec, rv: str | None) -> str | None:
        s = self.server
        with s.lock:
            s._maybe_fail()
            if s.spec is None:
                raise KubeNotFound(404, "lease not found")
            if rv != str(s.rv):
                raise KubeConflict(409, "the object has been modified")
            s.spec, s.rv = spec, s.rv + 1
            s.writes.append(("update", spec))
            return str(s.rv)

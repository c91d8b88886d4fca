"""Domain logic: pure functions and data over the contract (docs/contract.md).

Rule: nothing here does I/O, starts a thread or imports an SDK (docker, kubernetes,
pykka). Status mapping, admission decisions, CRD and RBAC manifests, retry arithmetic and
time formats are functions of their inputs (clocks are injected), so they are tested
exhaustively without fakes.
"""

"""Benchmarks of dockmirror against a single-threaded baseline (``scripts/bench``).

Modules: :mod:`stats` (pure: percentiles, targets, table, JSON), :mod:`baseline` (the
straight-loop reference implementation of the action protocol), :mod:`harness`
(containers, processes, watch client against the devenv), :mod:`scenarios` (the
measurements and the CLI), :mod:`floor` (the floors and the admission-mode passes),
:mod:`meters` (CPU from /proc, requests from the apiserver's /metrics) and :mod:`cost`
(pure: their arithmetic and the new keys). See docs/performance.md.
"""

"""Benchmarks of dockmirror against a single-threaded baseline (``scripts/bench``).

Modules: :mod:`stats` (pure: percentiles, targets, table, JSON), :mod:`baseline` (the
straight-loop reference implementation of the action protocol), :mod:`harness`
(containers, processes, watch client against the devenv), :mod:`scenarios` (the
measurements and the CLI). See docs/performance.md.
"""

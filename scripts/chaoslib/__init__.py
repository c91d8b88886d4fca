"""Chaos campaigns for dockmirror (issue 7): ``scripts/chaos`` drives them, docs/reliability.md
explains them. ``invariants`` is pure (unit-tested); the rest drives the real devenv."""

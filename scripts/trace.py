#!/usr/bin/env python3
"""Thin wrapper: the journal viewer lives in ``actors/service/trace_cli.py`` (installed as
``dockmirror-trace``); this runs it from a checkout with any python3 (standard library
only, no install needed)."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from actors.service.trace_cli import main

if __name__ == "__main__":
    sys.exit(main())

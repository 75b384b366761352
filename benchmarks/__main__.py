"""``python -m benchmarks``: the same as ``benchmarks/run.py``."""

from benchmarks.cli import main

raise SystemExit(main())

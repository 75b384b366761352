"""Run the benchmarks: ``.venv/bin/python benchmarks/run.py [--jobs N] [--runs R] [--out FILE]``.

Also available as ``python -m benchmarks``. See ``--help``.
"""

import sys
from pathlib import Path


def _main() -> int:
    # Run as a script, this file's folder is on sys.path, not the repository.
    root = str(Path(__file__).resolve().parent.parent)
    if root not in sys.path:
        sys.path.insert(0, root)
    from benchmarks.cli import main

    return main()


if __name__ == "__main__":
    raise SystemExit(_main())

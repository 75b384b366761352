"""The ``queuekit`` console script: the library's command line on this container's hosts."""

from __future__ import annotations

import sys
from collections.abc import Sequence

from containers.host import open_host
from queuekit.cli import main as cli_main


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``queuekit`` console script."""
    return cli_main(argv, open_host)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())

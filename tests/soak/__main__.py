"""``python -m tests.soak [--jobs N] ...`` (``make soak``): the chaos soak, one summary line.

Exit status 0 when every promise held (0 lost, duplicates within the bound, RSS flat),
1 otherwise (the problems are printed; the workers' logs are kept and named).
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys

from tests.soak.soak import SoakConfig, failures, soak, workdir


def main(argv: list[str] | None = None) -> int:
    """Run the soak from the command line."""
    defaults = SoakConfig()
    parser = argparse.ArgumentParser(prog="python -m tests.soak", description=__doc__)
    parser.add_argument("--jobs", type=int, default=defaults.jobs)
    parser.add_argument("--rate", type=float, default=defaults.rate,
                        help="jobs per second, both producers together")
    parser.add_argument("--concurrency", type=int, default=defaults.concurrency)
    parser.add_argument("--kill-every", type=float, default=defaults.kill_every)
    parser.add_argument("--redis-restarts", type=int, default=defaults.redis_restarts)
    parser.add_argument("--deadline", type=float, default=defaults.deadline,
                        help="seconds the whole soak may take")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, stream=sys.stderr,
                        format="%(asctime)s %(name)s %(levelname)s %(message)s")
    logging.getLogger("queuekit").setLevel(logging.WARNING)
    config = SoakConfig(jobs=args.jobs, rate=args.rate, concurrency=args.concurrency,
                        kill_every=args.kill_every, redis_restarts=args.redis_restarts,
                        deadline=args.deadline)
    with workdir() as folder:
        result = asyncio.run(soak(config, folder))
        sys.stdout.write(result.summary() + "\n")  # the soak's output
        problems = failures(result)
        for problem in problems:
            sys.stdout.write(f"FAILED: {problem}\n")
        if problems:
            sys.stdout.write(f"worker logs: {folder}\n")
            raise SystemExit(1)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

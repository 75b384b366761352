"""Rules of the tree that import-linter does not check: module size, and what the
in-memory backend loads."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import queuekit

#: No module passes this many lines (one job per module): the library's, the tests' and
#: the benchmarks'.
MAX_LINES = 400
SOURCE = Path(queuekit.__file__).resolve().parent
ROOT = SOURCE.parents[1]
TREES = ("src/queuekit", "src/containers", "tests", "benchmarks")


def test_no_module_passes_400_lines() -> None:
    sizes = {path.relative_to(ROOT).as_posix(): len(path.read_text().splitlines())
             for tree in TREES for path in (ROOT / tree).rglob("*.py")}
    # the whole tree was found
    assert sum(name.startswith("src/queuekit/") for name in sizes) > 40
    assert {"benchmarks/report.py", "tests/soak/soak.py"} <= sizes.keys()
    too_long = {name: lines for name, lines in sizes.items() if lines > MAX_LINES}
    assert not too_long, f"split these modules (over {MAX_LINES} lines): {too_long}"


def test_the_memory_backend_runs_without_loading_bullmq() -> None:
    probe = (
        "import asyncio, sys\n"
        "import queuekit\n"
        "from queuekit.testing import InMemoryQueueService\n"
        "async def main():\n"
        "    qs = InMemoryQueueService()\n"
        "    job = await qs.add_job('bank-sync', 'sync', {'userId': 'u', 'accountId': 'a',"
        " 'syncType': 'full'})\n"
        "    await qs.close()\n"
        "    return job.id\n"
        "print(asyncio.run(main()), 'bullmq' in sys.modules)\n"
    )
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True,
                         check=True).stdout.split()
    assert out == ["1", "False"]
    # ... and the Redis names are still there for those who use them.
    loaded = subprocess.run(
        [sys.executable, "-c", "import queuekit, sys; queuekit.RedisQueueService; "
                               "print('bullmq' in sys.modules)"],
        capture_output=True, text=True, check=True).stdout.split()
    assert loaded == ["True"]

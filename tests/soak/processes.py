"""The soak's processes: a ``queuekit worker`` it can SIGKILL and restart, the Node BullMQ
producer whose acknowledged adds it collects, and the job options both producers share."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path
from typing import IO

from tests.soak.plugin import SOAK_QUEUE

ROOT = Path(__file__).resolve().parents[2]
QUEUEKIT = Path(sys.executable).with_name("queuekit")
NODE_DIR = ROOT / "tests" / "interop" / "node"
PREFIX = "soak"
#: Job options of both producers: room for retries caused by the faults, quick backoff,
#: every finished job kept (the end check reads them all).
ATTEMPTS = 10
BACKOFF_MS = 100
KEEP = 10_000_000
#: Worker timings: a killed worker's jobs come back within ~lock + stalled interval; a


def rss_of(pid: int) -> int:
    """Resident set size of process ``pid`` in bytes (Linux)."""
    with open(f"/proc/{pid}/statm", encoding="ascii") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


class Worker:
    """One ``queuekit worker`` process; its log goes to a file."""

    def __init__(self, config: Path, concurrency: int, log_path: Path) -> None:
        env = {k: v for k, v in os.environ.items() if not k.startswith("QUEUEKIT_")}
        env["PYTHONPATH"] = str(ROOT)
        self._log: IO[bytes] = log_path.open("ab")
        self.process = subprocess.Popen(
            [str(QUEUEKIT), "worker", "--config", str(config), "--concurrency",
             str(concurrency)], cwd=ROOT, env=env, stdout=self._log, stderr=subprocess.STDOUT)

    @property
    def pid(self) -> int:
        """The process id."""
        return self.process.pid

    def kill(self) -> None:
        """SIGKILL, this pid only."""
        if self.process.poll() is None:
            os.kill(self.pid, signal.SIGKILL)
            self.process.wait(10)
        self._log.close()

    def stop(self) -> int | None:
        """SIGTERM (graceful), SIGKILL after 15 s; the exit status."""
        if self.process.poll() is None:
            os.kill(self.pid, signal.SIGTERM)
            try:
                self.process.wait(15)
            except subprocess.TimeoutExpired:
                os.kill(self.pid, signal.SIGKILL)
                self.process.wait(10)
        self._log.close()
        return self.process.returncode


class NodeProducer:
    """``node soak_producer.mjs``: its acknowledged adds arrive as JSON lines."""

    def __init__(self, port: int, first: int, count: int, rate: float) -> None:
        self.args = {"port": port, "prefix": PREFIX, "queue": SOAK_QUEUE, "first": first,
                     "count": count, "rate": rate,
                     "jobOptions": {"attempts": ATTEMPTS,
                                    "backoff": {"type": "fixed", "delay": BACKOFF_MS},
                                    "removeOnComplete": {"count": KEEP},
                                    "removeOnFail": {"count": KEEP}}}
        self.acked: dict[str, int] = {}
        self.errors = 0
        self.process: asyncio.subprocess.Process | None = None

    async def run(self) -> None:
        """Start the producer and collect its acknowledgements until it is done."""
        node = shutil.which("node")
        if node is None:
            raise RuntimeError("node is not on PATH (the soak needs Node BullMQ)")
        self.process = await asyncio.create_subprocess_exec(
            node, str(NODE_DIR / "soak_producer.mjs"), json.dumps(self.args), cwd=NODE_DIR,
            stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE)
        assert self.process.stdout is not None
        async for line in self.process.stdout:
            message = json.loads(line)
            if message["event"] == "added":
                self.acked.update((str(job_id), int(n)) for job_id, n in message["jobs"])
            elif message["event"] == "done":
                self.errors = int(message["errors"])
            elif message["event"] == "error":
                raise RuntimeError(f"node producer failed: {message['message']}")
        if await self.process.wait() != 0:
            raise RuntimeError(f"node producer exited with {self.process.returncode}")

    def stop(self) -> None:
        """Kill the producer (by pid) if it still runs."""
        if self.process is not None and self.process.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                self.process.kill()

"""Node BullMQ, driven through ``node benchmarks/node/*.mjs '<json>'`` subprocesses.

The Node packages (``bullmq`` and ``ioredis``, pinned in ``benchmarks/node/package.json``
and its lock file) are installed into the git-ignored ``benchmarks/node/node_modules``
with npm, only when that folder is missing.
"""

from __future__ import annotations

import json
import logging
import shutil
import subprocess
from contextlib import AbstractAsyncContextManager
from typing import Any, Final

from benchmarks.common import NODE_DIR, job_options
from benchmarks.implementations import (
    Settings,
    SliceSession,
    child_session,
    worker_running,
    worker_timeout,
)
from benchmarks.measure import WorkerReport
from benchmarks.procs import JsonLineProcess

log = logging.getLogger(__name__)

NPM_TIMEOUT_S: Final = 600


class NodeUnavailableError(RuntimeError):
    """Node or the Node packages cannot be used here."""


def ensure_node_modules() -> None:
    """Install the Node packages with npm unless ``node_modules`` exists already."""
    if shutil.which("node") is None:
        raise NodeUnavailableError("node is not on PATH (apt-get install nodejs npm)")
    if (NODE_DIR / "node_modules").is_dir():
        return
    npm = shutil.which("npm")
    if npm is None:
        raise NodeUnavailableError("npm is not on PATH (apt-get install npm)")
    command = "ci" if (NODE_DIR / "package-lock.json").is_file() else "install"
    log.info("installing the Node packages: npm %s in %s", command, NODE_DIR)
    completed = subprocess.run(
        [npm, command, "--no-audit", "--no-fund"],
        cwd=NODE_DIR,
        capture_output=True,
        text=True,
        timeout=NPM_TIMEOUT_S,
        check=False,
    )
    if completed.returncode != 0:
        raise NodeUnavailableError(f"npm {command} failed: {completed.stderr.strip()[-2000:]}")


def _package_version(name: str) -> str:
    try:
        manifest = json.loads((NODE_DIR / "node_modules" / name / "package.json").read_text())
    except (OSError, json.JSONDecodeError):
        return "not installed"
    return str(manifest.get("version", "?"))


def node_version() -> str:
    """``node --version``, or ``not installed``."""
    node = shutil.which("node")
    if node is None:
        return "not installed"
    completed = subprocess.run(
        [node, "--version"], capture_output=True, text=True, check=False, timeout=30
    )
    return completed.stdout.strip() or "unknown"


class NodeImplementation:
    """:class:`~benchmarks.implementations.Implementation` for Node BullMQ."""

    key = "node"
    label = "Node BullMQ"

    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        node = shutil.which("node")
        if node is None:
            raise NodeUnavailableError("node is not on PATH")
        self._node = node

    def versions(self) -> dict[str, str]:
        return {
            "node": node_version(),
            "bullmq (npm)": _package_version("bullmq"),
            "ioredis": _package_version("ioredis"),
        }

    def _process(self, script: str, arguments: dict[str, Any], name: str) -> JsonLineProcess:
        return JsonLineProcess(
            [self._node, str(NODE_DIR / script), json.dumps(arguments)], cwd=NODE_DIR, name=name
        )

    async def _produce(self, scenario: str, queue: str, jobs: int, **extra: Any) -> dict[str, Any]:
        arguments = {
            "scenario": scenario,
            "redisUrl": self._settings.redis_url,
            "queue": queue,
            "jobs": jobs,
            "jobOptions": job_options(self._settings.job_options),
            **extra,
        }
        async with self._process("producer.mjs", arguments, f"node producer {scenario}") as child:
            return await child.expect_event("result", worker_timeout(jobs))

    def open_adder(
        self, queue: str, warm_up_index: int
    ) -> AbstractAsyncContextManager[SliceSession]:
        arguments = {
            "scenario": "session",
            "redisUrl": self._settings.redis_url,
            "queue": queue,
            "warmUpIndex": warm_up_index,
            "jobOptions": job_options(self._settings.job_options),
        }
        child = self._process("producer.mjs", arguments, "node producer session")
        return child_session(child, self._settings.ready_timeout_s)

    def open_worker(
        self, queue: str, concurrency: int
    ) -> AbstractAsyncContextManager[SliceSession]:
        arguments = {
            "redisUrl": self._settings.redis_url,
            "queue": queue,
            "concurrency": concurrency,
            "expect": 0,
            "rssAt": [],
            "session": True,
            "jobOptions": job_options(self._settings.job_options),
        }
        child = self._process("worker.mjs", arguments, "node worker session")
        return child_session(child, self._settings.ready_timeout_s)

    async def preload(self, queue: str, jobs: int, chunk: int) -> None:
        await self._produce("preload", queue, jobs, chunk=chunk)

    def _worker(
        self, queue: str, jobs: int, concurrency: int, rss_checkpoints: list[int]
    ) -> JsonLineProcess:
        arguments = {
            "redisUrl": self._settings.redis_url,
            "queue": queue,
            "concurrency": concurrency,
            "expect": jobs,
            "rssAt": rss_checkpoints,
        }
        return self._process("worker.mjs", arguments, "node worker")

    async def run_worker_process(
        self, queue: str, jobs: int, concurrency: int, rss_checkpoints: list[int],
        delayed_remain: bool = False,
    ) -> WorkerReport:
        if delayed_remain:  # only the scheduler scenario asks, and Node has no side for it
            raise NotImplementedError("the Node side measures no job schedulers")
        async with self._worker(queue, jobs, concurrency, rss_checkpoints) as worker:
            await worker.expect_event("ready", self._settings.ready_timeout_s)
            result = await worker.expect_event("result", worker_timeout(jobs))
        return WorkerReport.from_json(result)

    def running_worker(self, queue: str) -> AbstractAsyncContextManager[None]:
        return worker_running(self._worker(queue, 0, 1, []), self._settings.ready_timeout_s)

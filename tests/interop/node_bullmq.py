"""Node BullMQ for the interop tests: installed with npm, driven as child processes.

The Node packages (``bullmq`` 6, ``ioredis``, and ``bullmq-otel`` with the OpenTelemetry
SDK for the tracing tests, pinned in ``tests/interop/node/package.json``
and its lock file) are installed with ``npm ci`` into the git-ignored
``tests/interop/node/node_modules`` when it is missing or does not match the lock file.
Each script in that folder takes one JSON argument and prints JSON lines on stdout.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import shutil
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

NODE_DIR: Final = Path(__file__).resolve().parent / "node"
#: Seconds ``npm ci`` may take on a fresh machine (downloads a handful of packages).
NPM_TIMEOUT: Final = 240
#: Seconds a Node script may take to start and report (importing bullmq takes ~0.4 s).
START_TIMEOUT: Final = 20.0
_PINNED = ("bullmq", "ioredis", "bullmq-otel", "@opentelemetry/sdk-trace-node")


class NodeSetupError(RuntimeError):
    """Node, npm or the Node packages cannot be used here."""


class NodeScriptError(AssertionError):
    """A Node script failed, exited early or said something unexpected."""


@dataclass(frozen=True)
class NodeBullMQ:
    """An installed Node BullMQ: the ``node`` binary and the package versions."""

    node: str
    node_version: str
    versions: dict[str, str]


def _version(manifest: Path) -> str | None:
    try:
        return str(json.loads(manifest.read_text())["version"])
    except (OSError, ValueError, KeyError):
        return None


def _locked_versions() -> dict[str, str]:
    lock = json.loads((NODE_DIR / "package-lock.json").read_text())
    return {name: str(lock["packages"][f"node_modules/{name}"]["version"]) for name in _PINNED}


def _installed_versions() -> dict[str, str | None]:
    return {name: _version(NODE_DIR / "node_modules" / name / "package.json")
            for name in _PINNED}


def ensure_node_bullmq() -> NodeBullMQ:
    """Check node and npm, run ``npm ci`` when needed, return what is installed.

    Raises :class:`NodeSetupError` with a message that says what to install.
    """
    node = shutil.which("node")
    if node is None:
        raise NodeSetupError("`node` is not on PATH; the Node interop tests need Node.js 20+ "
                             "and npm (e.g. apt-get install -y nodejs npm)")
    completed = subprocess.run([node, "--version"], capture_output=True, text=True,
                               timeout=30, check=False)
    node_version = completed.stdout.strip()
    try:
        major = int(node_version.lstrip("v").split(".")[0])
    except ValueError:
        major = 0
    if major < 20:
        raise NodeSetupError(f"Node.js 20+ is needed for bullmq 6, found {node_version!r} "
                             f"at {node}")
    locked = _locked_versions()
    if _installed_versions() != locked:
        npm = shutil.which("npm")
        if npm is None:
            raise NodeSetupError(f"`npm` is not on PATH; it installs Node BullMQ into "
                                 f"{NODE_DIR / 'node_modules'} (e.g. apt-get install -y npm)")
        try:
            done = subprocess.run([npm, "ci", "--no-audit", "--no-fund"], cwd=NODE_DIR,
                                  capture_output=True, text=True, timeout=NPM_TIMEOUT,
                                  check=False)
        except subprocess.TimeoutExpired as exc:
            raise NodeSetupError(f"`npm ci` in {NODE_DIR} did not finish within "
                                 f"{NPM_TIMEOUT} s (is the npm registry reachable?)") from exc
        if done.returncode != 0:
            raise NodeSetupError(f"`npm ci` in {NODE_DIR} failed with status "
                                 f"{done.returncode}: {done.stderr.strip()[-2000:]}")
        installed = _installed_versions()
        if installed != locked:
            raise NodeSetupError(f"`npm ci` in {NODE_DIR} installed {installed}, "
                                 f"the lock file pins {locked}")
    return NodeBullMQ(node=node, node_version=node_version, versions=locked)


class NodeProcess:
    """One ``node <script>.mjs '<json>'`` child; stdout is read as JSON lines."""

    def __init__(self, argv: list[str], name: str) -> None:
        self.argv = argv
        self.name = name
        self._process: asyncio.subprocess.Process | None = None
        self._stderr: asyncio.Task[bytes] | None = None

    async def start(self) -> None:
        self._process = await asyncio.create_subprocess_exec(
            *self.argv, cwd=NODE_DIR, stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        )
        assert self._process.stderr is not None
        # Drain stderr all along, so a chatty child never blocks on a full pipe.
        self._stderr = asyncio.ensure_future(self._process.stderr.read())

    @property
    def pid(self) -> int:
        assert self._process is not None, f"{self.name} was not started"
        return self._process.pid

    async def _stderr_tail(self) -> str:
        if self._stderr is None:
            return ""
        with contextlib.suppress(Exception):
            data = await asyncio.wait_for(asyncio.shield(self._stderr), timeout=2)
            return data.decode(errors="replace").strip()[-2000:]
        return "(stderr unavailable)"

    async def read(self, timeout: float) -> dict[str, Any] | None:
        """The next JSON message, or None at the end of stdout (the child exited)."""
        assert self._process is not None and self._process.stdout is not None
        deadline = time.monotonic() + timeout
        while True:
            remaining = deadline - time.monotonic()
            try:
                line = await asyncio.wait_for(self._process.stdout.readline(),
                                              max(remaining, 0.001))
            except TimeoutError:
                raise NodeScriptError(f"{self.name} (pid {self.pid}) said nothing within "
                                      f"{timeout:g} s") from None
            if not line:
                return None
            try:
                message = json.loads(line)
            except json.JSONDecodeError:
                continue  # not ours (a library's console output)
            if isinstance(message, dict):
                if message.get("event") == "error":
                    raise NodeScriptError(f"{self.name} failed: {message.get('message')}")
                return message

    async def expect(self, event: str, timeout: float = START_TIMEOUT) -> dict[str, Any]:
        """The next message, which must be ``{"event": event, ...}``."""
        message = await self.read(timeout)
        if message is None:
            code = await self.wait(5)
            raise NodeScriptError(f"{self.name} exited with status {code} before "
                                  f"{event!r}: {await self._stderr_tail()}")
        if message.get("event") != event:
            raise NodeScriptError(f"{self.name}: expected {event!r}, got {message!r}")
        return message

    async def read_all(self, timeout: float) -> list[dict[str, Any]]:
        """Every message until the child exits with status 0 (within ``timeout`` s)."""
        deadline = time.monotonic() + timeout
        messages: list[dict[str, Any]] = []
        while (message := await self.read(deadline - time.monotonic())) is not None:
            messages.append(message)
        code = await self.wait(max(deadline - time.monotonic(), 1.0))
        if code != 0:
            raise NodeScriptError(f"{self.name} exited with status {code}: "
                                  f"{await self._stderr_tail()}")
        return messages

    async def wait(self, timeout: float) -> int:
        """The exit status; NodeScriptError if the child still runs after ``timeout`` s."""
        assert self._process is not None
        try:
            return await asyncio.wait_for(self._process.wait(), timeout)
        except TimeoutError:
            raise NodeScriptError(f"{self.name} (pid {self.pid}) still runs after "
                                  f"{timeout:g} s") from None

    async def stop(self) -> None:
        """End the child by its pid (SIGTERM, then SIGKILL) unless it has exited."""
        process = self._process
        if process is None:
            return
        if process.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                process.terminate()
            try:
                await asyncio.wait_for(process.wait(), 5)
            except TimeoutError:
                with contextlib.suppress(ProcessLookupError):
                    process.kill()
                await process.wait()
        if self._stderr is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._stderr, 2)


class NodeRunner:
    """Starts the Node scripts against the test's redis-server; stops them all at the end."""

    def __init__(self, env: NodeBullMQ, port: int) -> None:
        self.env = env
        self.port = port
        self._started: list[NodeProcess] = []

    async def start(self, script: str, **arguments: Any) -> NodeProcess:
        """Start ``script`` with ``arguments`` (plus the server's port) as its JSON argument."""
        argv = [self.env.node, str(NODE_DIR / script),
                json.dumps({"port": self.port, **arguments})]
        child = NodeProcess(argv, f"node {script}")
        self._started.append(child)
        await child.start()
        return child

    async def add_jobs(self, prefix: str, queue: str,
                       jobs: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """Add ``jobs`` ({name, data, opts}) with Node BullMQ; their views right after."""
        producer = await self.start("producer.mjs", prefix=prefix, queue=queue, jobs=jobs)
        added: list[dict[str, Any]] = (await producer.expect("added"))["jobs"]
        assert await producer.wait(START_TIMEOUT) == 0
        return added

    async def get_jobs(self, prefix: str, queue: str,
                       ids: list[str]) -> list[dict[str, Any] | None]:
        """The jobs ``ids`` as Node BullMQ reads them back (None for a missing one)."""
        reader = await self.start("inspect.mjs", prefix=prefix, queue=queue, ids=ids)
        jobs: list[dict[str, Any] | None] = (await reader.expect("jobs"))["jobs"]
        assert await reader.wait(START_TIMEOUT) == 0
        return jobs

    async def stop_all(self) -> None:
        """Stop every process started here that still runs (each by its own pid)."""
        for child in self._started:
            await child.stop()

    async def schedulers(self, prefix: str, queue: str, *,
                         upsert: list[dict[str, Any]] | None = None,
                         remove: list[str] | None = None) -> dict[str, Any]:
        """Upsert ({id, repeat, template}) and remove job schedulers with Node BullMQ; its
        ``getJobSchedulers()`` afterwards (``{"upserted", "removed", "schedulers"}``)."""
        script = await self.start("schedulers.mjs", prefix=prefix, queue=queue,
                                  upsert=upsert or [], remove=remove or [])
        answer = await script.expect("schedulers")
        assert await script.wait(START_TIMEOUT) == 0
        return answer

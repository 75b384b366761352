"""Child processes that report JSON lines on stdout (Python and Node workers, Node producers)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any

from benchmarks.common import REPO_ROOT

log = logging.getLogger(__name__)


class BenchChildError(RuntimeError):
    """A benchmark child process failed or said something unexpected."""


class JsonLineProcess:
    """A child process whose stdout is a sequence of JSON objects, one per line.

    Always stop it with :meth:`close` or :meth:`kill`, or use ``async with``, which waits
    for a normal exit and kills the child by its pid when the block raised.
    """

    def __init__(
        self,
        argv: Sequence[str],
        *,
        cwd: Path,
        env: Mapping[str, str] | None = None,
        name: str = "child",
    ) -> None:
        self._argv = list(argv)
        self._cwd = cwd
        self._env = dict(env) if env is not None else None
        self._name = name
        self._process: asyncio.subprocess.Process | None = None
        self._stderr_task: asyncio.Task[bytes] | None = None

    async def start(self) -> None:
        """Start the child process."""
        self._process = await asyncio.create_subprocess_exec(
            *self._argv,
            cwd=self._cwd,
            env=self._env,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        assert self._process.stderr is not None
        # Drain stderr concurrently so a chatty child never blocks on a full pipe.
        self._stderr_task = asyncio.ensure_future(self._process.stderr.read())
        log.debug("%s started as pid %d: %s", self._name, self._process.pid, self._argv)

    async def __aenter__(self) -> JsonLineProcess:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if exc_type is None:
            await self.close()
        else:
            await self.kill()

    async def _stderr_text(self) -> str:
        if self._stderr_task is None:
            return ""
        with contextlib.suppress(Exception):
            data = await asyncio.wait_for(asyncio.shield(self._stderr_task), timeout=2)
            return data.decode(errors="replace").strip()[-2000:]
        return ""

    async def read_message(self, wait_s: float) -> dict[str, Any]:
        """The next JSON object on stdout (non-JSON lines are logged and skipped)."""
        process = self._require()
        assert process.stdout is not None
        async with asyncio.timeout(wait_s):
            while True:
                line = await process.stdout.readline()
                if not line:
                    await process.wait()
                    stderr = await self._stderr_text()
                    raise BenchChildError(
                        f"{self._name} exited with status {process.returncode} "
                        f"before reporting: {stderr}"
                    )
                text = line.decode(errors="replace").strip()
                try:
                    message = json.loads(text)
                except json.JSONDecodeError:
                    log.debug("%s: %s", self._name, text)
                    continue
                if isinstance(message, dict):
                    return message

    async def expect_event(self, event: str, wait_s: float) -> dict[str, Any]:
        """The next message, which must be ``{"event": event, ...}``."""
        message = await self.read_message(wait_s)
        if message.get("event") == "error":
            raise BenchChildError(f"{self._name} failed: {message.get('message')}")
        if message.get("event") != event:
            raise BenchChildError(f"{self._name}: expected {event!r}, got {message!r}")
        return message

    async def send(self, message: dict[str, Any]) -> None:
        """Write ``message`` as one JSON line on the child's stdin."""
        process = self._require()
        assert process.stdin is not None
        process.stdin.write(json.dumps(message).encode() + b"\n")
        await process.stdin.drain()

    def close_stdin(self) -> None:
        """Tell the child to finish (children in run-until-stopped mode read stdin to EOF)."""
        process = self._require()
        if process.stdin is not None and not process.stdin.is_closing():
            process.stdin.close()

    async def close(self, wait_s: float = 30.0) -> None:
        """Wait for the child to exit; kill it by pid if it does not in ``wait_s`` s."""
        process = self._process
        if process is None:
            return
        with contextlib.suppress(ProcessLookupError, OSError):
            self.close_stdin()
        try:
            await asyncio.wait_for(process.wait(), timeout=wait_s)
        except TimeoutError:
            log.warning("%s (pid %d) did not exit; killing it", self._name, process.pid)
            with contextlib.suppress(ProcessLookupError):
                process.kill()
            await process.wait()
        if self._stderr_task is not None:
            with contextlib.suppress(Exception):
                await self._stderr_task
        if process.returncode not in (0, None):
            log.warning("%s exited with status %s", self._name, process.returncode)

    async def kill(self) -> None:
        """Kill the child by its pid now."""
        process = self._process
        if process is not None and process.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                process.kill()
            await process.wait()

    def _require(self) -> asyncio.subprocess.Process:
        if self._process is None:
            raise BenchChildError(f"{self._name} was not started")
        return self._process


def python_env() -> dict[str, str]:
    """Environment for a Python child: the repository (and ``src/``) on ``PYTHONPATH``."""
    env = dict(os.environ)
    paths = [str(REPO_ROOT)]
    if (REPO_ROOT / "src").is_dir():
        paths.append(str(REPO_ROOT / "src"))
    if env.get("PYTHONPATH"):
        paths.append(env["PYTHONPATH"])
    env["PYTHONPATH"] = os.pathsep.join(paths)
    return env

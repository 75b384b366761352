"""A throw-away ``redis-server`` on a free loopback port, owned by the benchmark.

The benchmark never touches a Redis it did not start: it runs its own server with
persistence off (``--save "" --appendonly no``) in a temporary directory and stops it
by pid when it is done, also when the run fails.
"""

from __future__ import annotations

import logging
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path
from types import TracebackType

log = logging.getLogger(__name__)

_START_ATTEMPTS = 3


class RedisServerError(RuntimeError):
    """The benchmark's own redis-server could not be started."""


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _ping(port: int, timeout: float) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
            sock.sendall(b"PING\r\n")
            return sock.recv(16).startswith(b"+PONG")
    except OSError:
        return False


class RedisServer:
    """Start ``redis-server`` on a free port of 127.0.0.1; stop it on exit.

    Use as a context manager::

        with RedisServer() as server:
            ...  # server.url == "redis://127.0.0.1:<port>/0"
    """

    def __init__(self, executable: str = "redis-server", startup_timeout: float = 10.0) -> None:
        self._executable = executable
        self._startup_timeout = startup_timeout
        self._process: subprocess.Popen[bytes] | None = None
        self._data_dir: Path | None = None
        self.port = 0

    @property
    def url(self) -> str:
        """The ``redis://`` URL of the running server."""
        return f"redis://127.0.0.1:{self.port}/0"

    @property
    def pid(self) -> int | None:
        """Pid of the server process while it runs."""
        return self._process.pid if self._process is not None else None

    def start(self) -> None:
        """Start the server and wait until it answers PING."""
        executable = shutil.which(self._executable)
        if executable is None:
            raise RedisServerError(
                f"{self._executable!r} is not on PATH; install Redis (apt-get install redis-server)"
            )
        self._data_dir = Path(tempfile.mkdtemp(prefix="queuekit-bench-redis-"))
        last_error = ""
        for _ in range(_START_ATTEMPTS):
            # Another process can take the port between probing and binding: retry.
            self.port = _free_port()
            self._process = subprocess.Popen(
                [
                    executable,
                    "--port",
                    str(self.port),
                    "--bind",
                    "127.0.0.1",
                    "--save",
                    "",
                    "--appendonly",
                    "no",
                    "--dir",
                    str(self._data_dir),
                    "--logfile",
                    str(self._data_dir / "redis.log"),
                    "--daemonize",
                    "no",
                ],
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
            if self._wait_ready():
                log.info("redis-server pid %d listening on %s", self._process.pid, self.url)
                return
            last_error = self._log_tail()
            self._terminate()
        self._remove_data_dir()
        raise RedisServerError(f"redis-server did not start: {last_error}")

    def _wait_ready(self) -> bool:
        assert self._process is not None
        deadline = time.monotonic() + self._startup_timeout
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                return False
            if _ping(self.port, timeout=0.5):
                return True
            time.sleep(0.02)  # polling the server's state until it accepts connections
        return False

    def _log_tail(self) -> str:
        if self._data_dir is None:
            return ""
        try:
            lines = (self._data_dir / "redis.log").read_text(errors="replace").splitlines()
        except OSError:
            return "(no log)"
        return " | ".join(lines[-3:])

    def _terminate(self) -> None:
        process, self._process = self._process, None
        if process is None or process.poll() is not None:
            return
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            log.warning("redis-server pid %d ignored SIGTERM; killing it", process.pid)
            process.kill()
            process.wait()

    def _remove_data_dir(self) -> None:
        if self._data_dir is not None:
            shutil.rmtree(self._data_dir, ignore_errors=True)
            self._data_dir = None

    def stop(self) -> None:
        """Stop the server by its pid and remove its data directory."""
        pid = self.pid
        self._terminate()
        self._remove_data_dir()
        if pid is not None:
            log.info("redis-server pid %d stopped", pid)

    def __enter__(self) -> RedisServer:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

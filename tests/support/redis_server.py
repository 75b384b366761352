"""Start and stop private ``redis-server`` processes for tests (never the shared 6379)."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import redis


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class RedisServer:
    """One private redis-server on loopback, with its own data directory."""

    port: int = field(default_factory=free_port)
    password: str | None = None
    extra_args: tuple[str, ...] = ()
    data_dir: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="qk-redis-")))
    process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        """``redis://`` URL of this server (with the password when one is set)."""
        auth = f":{self.password}@" if self.password else ""
        return f"redis://{auth}127.0.0.1:{self.port}/0"

    @property
    def pid(self) -> int:
        """The server's process id."""
        assert self.process is not None
        return self.process.pid

    def start(self, timeout: float = 10.0) -> RedisServer:
        """Start the server and wait until it answers PING; fail loudly otherwise."""
        binary = shutil.which("redis-server")
        if binary is None:
            raise RuntimeError("redis-server is not on PATH; `make test` installs it "
                               "(apt-get install -y redis-server)")
        args = [binary, "--port", str(self.port), "--bind", "127.0.0.1",
                "--dir", str(self.data_dir), "--save", "", "--appendonly", "no",
                "--daemonize", "no", "--logfile", str(self.data_dir / "redis.log"),
                *self.extra_args]
        if self.password:
            args += ["--requirepass", self.password]
        self.process = subprocess.Popen(args, stdout=subprocess.DEVNULL,
                                        stderr=subprocess.DEVNULL)
        client = redis.Redis(host="127.0.0.1", port=self.port, password=self.password,
                             socket_connect_timeout=0.2, socket_timeout=1.0)
        deadline = time.monotonic() + timeout
        try:
            while True:
                if self.process.poll() is not None:
                    log = (self.data_dir / "redis.log")
                    text = log.read_text() if log.exists() else ""
                    raise RuntimeError(f"redis-server on port {self.port} exited with "
                                       f"{self.process.returncode}: {text[-2000:]}")
                try:
                    if client.ping():
                        return self
                except redis.exceptions.ConnectionError:
                    pass
                except redis.exceptions.BusyLoadingError:
                    pass
                if time.monotonic() > deadline:
                    raise RuntimeError(f"redis-server on port {self.port} did not answer "
                                       f"within {timeout} s")
                time.sleep(0.02)
        finally:
            client.close()

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 10.0) -> None:
        """Stop this server (only this pid) and wait for it to exit."""
        if self.process is None or self.process.poll() is not None:
            return
        os.kill(self.process.pid, sig)
        try:
            self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout)

    def restart(self) -> None:
        """Stop and start again on the same port and data directory."""
        self.stop()
        self.start()

    def client(self) -> redis.Redis:
        """A synchronous client for assertions."""
        return redis.Redis(host="127.0.0.1", port=self.port, password=self.password,
                           decode_responses=True)

    def cleanup(self) -> None:
        """Stop the server and delete its data directory."""
        self.stop()
        shutil.rmtree(self.data_dir, ignore_errors=True)

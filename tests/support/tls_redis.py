"""A private TLS-only ``redis-server`` with certificates made by ``trustme``, and ACL users.

The server listens on ``--tls-port`` only (``--port 0``); the default user has an admin
password, so every test connection authenticates as the ACL user it means to test.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import redis
import trustme

from tests.support.redis_server import free_port

ADMIN_PASSWORD = "admin-Secret-9f2"


@dataclass
class TlsRedisServer:
    """One TLS redis-server on loopback; ``ca_file`` is the CA that signed its certificate."""

    client_certs: str = "optional"  # redis-server --tls-auth-clients: yes | optional | no
    port: int = field(default_factory=free_port)
    directory: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="qk-tls-")))
    process: subprocess.Popen[bytes] | None = None

    def __post_init__(self) -> None:
        self.ca = trustme.CA()
        server = self.ca.issue_cert("127.0.0.1", "localhost")
        self.ca_file = self._write("ca.pem", self.ca.cert_pem.bytes())
        self.cert_file = self._write("server.pem", b"".join(
            blob.bytes() for blob in server.cert_chain_pems))
        self.key_file = self._write("server.key", server.private_key_pem.bytes())
        client = self.ca.issue_cert("queuekit-client")
        self.client_cert_file = self._write("client.pem", b"".join(
            blob.bytes() for blob in client.cert_chain_pems))
        self.client_key_file = self._write("client.key", client.private_key_pem.bytes())
        other = trustme.CA()
        self.other_ca_file = self._write("other-ca.pem", other.cert_pem.bytes())

    def _write(self, name: str, data: bytes) -> str:
        path = self.directory / name
        path.write_bytes(data)
        path.chmod(0o600)
        return str(path)

    def url(self, user: str | None = None, password: str | None = None) -> str:
        """``rediss://`` URL, with credentials when given."""
        auth = f"{user or ''}:{password}@" if password else ""
        return f"rediss://{auth}127.0.0.1:{self.port}/0"

    def admin(self) -> redis.Redis:
        """A synchronous admin client (default user) that trusts the server's CA."""
        return redis.Redis(host="127.0.0.1", port=self.port, password=ADMIN_PASSWORD,
                           ssl=True, ssl_ca_certs=self.ca_file,
                           ssl_certfile=self.client_cert_file,
                           ssl_keyfile=self.client_key_file, socket_connect_timeout=1,
                           socket_timeout=2, decode_responses=True)

    def start(self, timeout: float = 10.0) -> TlsRedisServer:
        binary = shutil.which("redis-server")
        if binary is None:
            raise RuntimeError("redis-server is not on PATH")
        self.process = subprocess.Popen(
            [binary, "--port", "0", "--tls-port", str(self.port), "--bind", "127.0.0.1",
             "--tls-cert-file", self.cert_file, "--tls-key-file", self.key_file,
             "--tls-ca-cert-file", self.ca_file, "--tls-auth-clients", self.client_certs,
             "--requirepass", ADMIN_PASSWORD, "--dir", str(self.directory), "--save", "",
             "--appendonly", "no", "--logfile", str(self.directory / "redis.log")],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + timeout
        while True:
            if self.process.poll() is not None:
                log = (self.directory / "redis.log").read_text()
                raise RuntimeError(f"TLS redis-server exited: {log[-2000:]}")
            client = self.admin()
            try:
                if client.ping():
                    return self
            except redis.exceptions.ConnectionError:
                pass
            finally:
                client.close()
            if time.monotonic() > deadline:
                raise RuntimeError("TLS redis-server did not answer")
            time.sleep(0.05)

    def add_user(self, name: str, password: str, *rules: str) -> None:
        """``ACL SETUSER name reset on >password rules...``."""
        client = self.admin()
        try:
            client.execute_command(  # type: ignore[no-untyped-call]
                "ACL", "SETUSER", name, "reset", "on", f">{password}", *rules)
        finally:
            client.close()

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            os.kill(self.process.pid, signal.SIGTERM)
            self.process.wait(10)
        shutil.rmtree(self.directory, ignore_errors=True)

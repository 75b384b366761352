"""A private Redis Cluster on loopback for tests: 3 masters and 3 replicas.

Each node is a :class:`RedisServer` started with ``--cluster-enabled yes`` and its own
data directory; ``redis-cli --cluster create`` joins them. ``cluster-node-timeout`` is
1 s so a killed master's replica takes over in about two seconds.
"""

from __future__ import annotations

import functools
import random
import shutil
import socket
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

import redis
from redis.cluster import RedisCluster

from tests.support.redis_server import RedisServer

#: Milliseconds before the cluster declares a silent master failed.
NODE_TIMEOUT_MS = 1000


def _free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def _ephemeral_range() -> tuple[int, int]:
    """The kernel's range of ports for outgoing connections (Linux's default if unknown)."""
    try:
        low, high = Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()
        return int(low), int(high)
    except (OSError, ValueError):
        return 32768, 60999


@functools.cache
def _candidate_ports() -> tuple[int, ...]:
    """Ports whose bus port (+10000) is valid, both outside the ephemeral range: a port
    found free there can still be taken by any outgoing connection before Redis binds it
    (a cluster failed to start so). All valid ports if the range leaves none."""
    low, high = _ephemeral_range()
    valid = range(10000, 55536)  # the bus port must be <= 65535
    outside = tuple(p for p in valid
                    if not (low <= p <= high or low <= p + 10000 <= high))
    return outside or tuple(valid)


def cluster_port(taken: set[int]) -> int:
    """A free port whose cluster bus port (+10000) is free too.

    ``taken`` holds the ports (and bus ports) already handed out, not yet listening.
    """
    candidates = _candidate_ports()
    while True:
        port = random.choice(candidates)
        if {port, port + 10000} & taken:
            continue
        if _free(port) and _free(port + 10000):
            taken.update((port, port + 10000))
            return port


def _node(taken: set[int]) -> RedisServer:
    server = RedisServer(port=cluster_port(taken))
    server.extra_args = ("--cluster-enabled", "yes", "--cluster-node-timeout",
                         str(NODE_TIMEOUT_MS), "--cluster-config-file",
                         str(server.data_dir / f"nodes-{server.port}.conf"))
    return server


@dataclass
class RedisClusterServers:
    """Six ``redis-server`` processes joined into one cluster (3 shards, 1 replica each)."""

    masters: int = 3
    nodes: list[RedisServer] = field(default_factory=list)

    @property
    def url(self) -> str:
        """A ``redis://`` URL of one node (any node will do for a cluster client)."""
        return self.nodes[0].url

    def node(self, port: int) -> RedisServer:
        """The node listening on ``port``."""
        return next(n for n in self.nodes if n.port == port)

    def start(self, timeout: float = 30.0) -> RedisClusterServers:
        """Start the nodes, create the cluster, wait until every slot is served."""
        cli = shutil.which("redis-cli")
        if cli is None:
            raise RuntimeError("redis-cli is not on PATH (apt-get install -y redis-tools)")
        taken: set[int] = set()
        self.nodes = [_node(taken) for _ in range(self.masters * 2)]
        for index in range(len(self.nodes)):
            self.nodes[index] = self._start_node(self.nodes[index], taken)
        result = subprocess.run(
            [cli, "--cluster", "create", *(f"127.0.0.1:{n.port}" for n in self.nodes),
             "--cluster-replicas", "1", "--cluster-yes"],
            capture_output=True, text=True, timeout=timeout, check=False)
        if result.returncode != 0:
            raise RuntimeError(f"redis-cli --cluster create failed: {result.stdout[-2000:]}"
                               f"{result.stderr[-2000:]}")
        self.wait_ok(timeout)
        return self

    @staticmethod
    def _start_node(node: RedisServer, taken: set[int], tries: int = 5) -> RedisServer:
        """Start ``node``; on a port taken meanwhile, another node on other ports."""
        for _ in range(tries - 1):
            try:
                node.start()
                return node
            except RuntimeError as exc:
                if "Address already in use" not in str(exc):
                    raise
                node.cleanup()
                node = _node(taken)
        node.start()
        return node

    def wait_ok(self, timeout: float = 30.0) -> None:
        """Wait until every running node says ``cluster_state:ok``, there are ``masters``
        shards, and each master has an online replica."""
        deadline = time.monotonic() + timeout
        while True:
            if self._all_ok():
                return
            if time.monotonic() > deadline:
                raise RuntimeError(f"the test cluster was not ok within {timeout} s")
            time.sleep(0.1)

    def _all_ok(self) -> bool:
        for node in self.nodes:
            if node.process is None or node.process.poll() is not None:
                continue
            client = node.client()
            try:
                info = client.cluster("INFO")  # parsed into a dict
                if info.get("cluster_state") != "ok":
                    return False
                if int(info.get("cluster_size", 0)) != self.masters:
                    return False
                # Every master has its replica online again (a restarted node resyncs
                # first): the next failover needs one to promote.
                if client.role()[0] == "master":
                    replication = client.info("replication")
                    if int(replication.get("connected_slaves", 0)) < 1:
                        return False
                    if replication.get("slave0", {}).get("state") != "online":
                        return False
            except redis.exceptions.RedisError:
                return False
            finally:
                client.close()
        return True

    def client(self) -> RedisCluster:
        """A synchronous cluster client for assertions."""
        return RedisCluster(host="127.0.0.1", port=self.nodes[0].port, decode_responses=True)

    def master_of(self, key: str) -> RedisServer:
        """The node that currently serves ``key``'s slot as master."""
        client = self.client()
        try:
            node = client.get_node_from_key(key)  # type: ignore[no-untyped-call]
            return self.node(int(node.port))
        finally:
            client.close()

    def cleanup(self) -> None:
        """Stop every node (by pid) and delete the data directories."""
        for node in self.nodes:
            node.cleanup()

"""``queuekit worker --processes N``: real supervisor and worker processes on the test
Redis. Every process is ended by pid; the tests check that none is left behind."""

from __future__ import annotations

import collections
import os
import re
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TypeVar

import pytest

from queuekit import JobState, QueueRegistry, RedisQueueService, load_settings
from tests.support.configs import PROJECT_ROOT, write_config
from tests.support.pid_plugin import PID_QUEUE, PidJobData
from tests.support.redis_server import RedisServer, free_port
from tests.support.waiting import eventually

pytestmark = pytest.mark.slow

QUEUEKIT = Path(sys.executable).with_name("queuekit")
PID_PLUGIN = "tests.support.pid_plugin"
STARTED = re.compile(r"worker process (\d+) started \(pid (\d+)\)")


class Supervised:
    """One ``queuekit worker --processes N`` subprocess, its output in a file."""

    def __init__(self, args: list[str], log: Path, env: dict[str, str]) -> None:
        self.log = log
        full_env = dict(os.environ, PYTHONPATH=str(PROJECT_ROOT), **env)
        full_env.pop("QUEUEKIT_CONFIG", None)
        with log.open("wb") as out:
            self.process = subprocess.Popen([str(QUEUEKIT), "worker", *args], env=full_env,
                                            stdout=out, stderr=subprocess.STDOUT,
                                            cwd=PROJECT_ROOT)
        self.pid = self.process.pid

    def output(self) -> str:
        return self.log.read_text()

    def started(self) -> dict[int, list[int]]:
        """Pids of each worker process index, in start order."""
        found: dict[int, list[int]] = collections.defaultdict(list)
        for index, pid in STARTED.findall(self.output()):
            found[int(index)].append(int(pid))
        return dict(found)

    def current_pids(self) -> list[int]:
        return [pids[-1] for _, pids in sorted(self.started().items())]

    def children(self) -> set[int]:
        """Every child process of the supervisor right now (workers, resource tracker)."""
        path = Path(f"/proc/{self.pid}/task/{self.pid}/children")
        return {int(p) for p in path.read_text().split()} if path.exists() else set()

    def signal(self, sig: int) -> None:
        if self.process.poll() is None:
            os.kill(self.pid, sig)

    def wait(self, timeout: float = 60) -> int:
        return self.process.wait(timeout)


def alive(pid: int) -> bool:
    """Whether ``pid`` is a running (not zombie) process."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def kill_all(pids: set[int]) -> None:
    for pid in pids:
        if alive(pid):
            os.kill(pid, signal.SIGKILL)


Spawn = Callable[..., Supervised]


@pytest.fixture
def spawn(tmp_path: Path) -> Iterator[Spawn]:
    started: list[Supervised] = []
    seen: set[int] = set()

    def start(args: list[str], **env: str) -> Supervised:
        supervised = Supervised(args, tmp_path / f"supervisor-{len(started)}.log", env)
        started.append(supervised)
        return supervised

    yield start
    for supervised in started:  # whatever a failed test left: by pid, children first
        seen |= supervised.children() | {pid for pids in supervised.started().values()
                                         for pid in pids}
        kill_all(seen)
        supervised.signal(signal.SIGKILL)
        supervised.process.wait(10)


async def client(redis_server: RedisServer, prefix: str) -> RedisQueueService:
    registry = QueueRegistry()
    registry.register(PID_QUEUE, PidJobData)
    # Keep every completed job (BullMQ's default keeps the last 100) for the checks.
    return await RedisQueueService.connect(
        load_settings(redis={"url": redis_server.url, "prefix": prefix},
                      jobs={"remove_on_complete": {"count": 1000}}), registry)


def config_for(tmp_path: Path, redis_server: RedisServer, prefix: str, **worker: object) -> str:
    return str(write_config(tmp_path / "worker.yaml", redis_server.url, prefix, [PID_PLUGIN],
                            worker={"lock_duration": 2000, "stalled_interval": 1000,
                                    **worker}))


async def started_workers(supervised: Supervised, count: int) -> list[int]:
    await eventually(lambda: _value(supervised.started()), lambda s: len(s) == count,
                     timeout=60, interval=0.1)
    return supervised.current_pids()


T = TypeVar("T")


async def _value(value: T) -> T:
    return value


def metric_total(port: int, name: str) -> float:
    text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
    return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
               if line.startswith(f"{name}{{") and f'queue="{PID_QUEUE}"' in line)


async def test_three_processes_run_300_jobs_once_each_and_stop_on_sigterm(
    redis_server: RedisServer, key_prefix: str, tmp_path: Path, spawn: Spawn,
) -> None:
    runs = tmp_path / "runs.txt"
    port = free_port()
    supervised = spawn(["--config", config_for(tmp_path, redis_server, key_prefix),
                        "--processes", "3", "--metrics-port", str(port),
                        "--metrics-host", "127.0.0.1"], QK_RUNS_FILE=str(runs))
    pids = await started_workers(supervised, 3)
    qs = await client(redis_server, key_prefix)
    try:
        # Every process is connected before the jobs come, so all of them can take some;
        # health counts the workers of every process the same way.
        await eventually(lambda: qs.count_workers(PID_QUEUE), lambda n: n == 3, timeout=60,
                         interval=0.1)
        jobs = await qs.add_jobs(PID_QUEUE, [("n", {"userId": "u1", "n": n})
                                             for n in range(300)])
        infos = [await qs.wait_for_job(PID_QUEUE, job.id, timeout=60) for job in jobs]
    finally:
        await qs.close()
    assert [i.state for i in infos] == [JobState.COMPLETED] * 300
    ran_in = collections.Counter(i.return_value.data["pid"] for i in infos)
    assert len(ran_in) >= 2
    assert set(ran_in) <= set(pids)
    lines = [line.split() for line in runs.read_text().splitlines()]
    assert collections.Counter(job_id for job_id, _ in lines) == {j.id: 1 for j in jobs}
    # One endpoint for all processes: the supervisor sums their counters.
    assert metric_total(port, "queuekit_jobs_completed_total") == 300

    children = supervised.children()
    assert set(pids) <= children
    supervised.signal(signal.SIGTERM)
    assert supervised.wait() == 0
    await eventually(lambda: _value([pid for pid in children if alive(pid)]),
                     lambda left: not left, timeout=15, interval=0.1)
    out = supervised.output()
    assert "received SIGTERM; stopping 3 worker process(es)" in out
    assert out.count("all workers stopped") == 3  # each child shut down gracefully
    assert "all worker processes stopped" in out


async def test_a_killed_child_is_replaced_and_jobs_keep_completing(
    redis_server: RedisServer, key_prefix: str, tmp_path: Path, spawn: Spawn,
) -> None:
    supervised = spawn(["--config", config_for(tmp_path, redis_server, key_prefix),
                        "--processes", "2"])
    first, second = await started_workers(supervised, 2)
    qs = await client(redis_server, key_prefix)
    try:
        before = await qs.add_jobs(PID_QUEUE, [("n", {"userId": "u1", "n": n})
                                               for n in range(100)])
        await qs.wait_for_job(PID_QUEUE, before[10].id, timeout=60)
        os.kill(first, signal.SIGKILL)
        await eventually(lambda: _value(supervised.started().get(1, [])),
                         lambda p: len(p) == 2, timeout=60, interval=0.1)
        replacement = supervised.started()[1][-1]
        after = await qs.add_jobs(PID_QUEUE, [("n", {"userId": "u1", "n": n})
                                              for n in range(100, 150)])
        # The killed child's active jobs come back once their 2 s locks expire.
        infos = [await qs.wait_for_job(PID_QUEUE, job.id, timeout=60)
                 for job in before + after]
        await eventually(lambda: qs.count_workers(PID_QUEUE), lambda n: n == 2, timeout=60,
                         interval=0.1)
    finally:
        await qs.close()
    assert [i.state for i in infos] == [JobState.COMPLETED] * 150
    assert replacement not in (first, second)
    assert not alive(first)
    out = supervised.output()
    assert f"worker process 1 (pid {first}) exited (killed by SIGKILL); restarting it" in out
    supervised.signal(signal.SIGTERM)
    assert supervised.wait() == 0
    assert not alive(replacement)
    assert not alive(second)


async def test_kill_9_of_the_supervisor_takes_its_children_with_it(
    redis_server: RedisServer, key_prefix: str, tmp_path: Path, spawn: Spawn,
) -> None:
    supervised = spawn(["--config", config_for(tmp_path, redis_server, key_prefix),
                        "--processes", "2"])
    pids = await started_workers(supervised, 2)
    children = supervised.children()
    assert set(pids) <= children
    supervised.signal(signal.SIGKILL)
    supervised.wait()
    # PR_SET_PDEATHSIG: each child gets SIGTERM and shuts down gracefully (5 s timeout).
    await eventually(lambda: _value([pid for pid in children if alive(pid)]),
                     lambda left: not left, timeout=20, interval=0.1)


async def test_a_crash_loop_ends_with_a_clear_error_and_a_non_zero_exit(
    redis_server: RedisServer, key_prefix: str, tmp_path: Path, spawn: Spawn,
) -> None:
    started = time.monotonic()
    supervised = spawn(["--config", config_for(tmp_path, redis_server, key_prefix),
                        "--processes", "2", "--max-restarts", "2"], QK_CRASH_AT_START="1")
    code = supervised.wait(90)
    out = supervised.output()
    assert code == 2
    assert "exited (exit code 7); restarting it in 0.5 s" in out
    assert "more than --max-restarts 2: giving up (a crash loop" in out
    assert re.search(r"queuekit: worker process \d \(pid \d+\) exited \(exit code 7\); "
                     r"3 exits within 60 s", out)
    assert time.monotonic() - started < 60
    assert not [pid for pids in supervised.started().values() for pid in pids if alive(pid)]


async def test_children_that_cannot_start_stop_the_supervisor_at_once(
    key_prefix: str, tmp_path: Path, spawn: Spawn,
) -> None:
    unreachable = f"redis://127.0.0.1:{free_port()}/0"
    config = write_config(tmp_path / "worker.yaml", unreachable, key_prefix, [PID_PLUGIN])
    supervised = spawn(["--config", str(config), "--processes", "2"])
    assert supervised.wait(60) == 2
    out = supervised.output()
    assert "cannot start: cannot connect to Redis" in out
    assert "could not start (exit code 2" in out
    assert "restarting" not in out

"""The events reader's dispatch, without Redis: final events wake the waiters of their job
only, in every reply shape (redis-py's RESP2 lists and RESP3 maps, the raw flat field
lists of the reader's own XREAD), and closing wakes all."""

from __future__ import annotations

import asyncio
from typing import Any

from redis.asyncio import Redis
from redis.exceptions import NoScriptError, ResponseError

from queuekit import JobState, QueueRegistry
from queuekit.redis.final_reads import SCAN, SCRIPT, SHA, FinalReads
from queuekit.redis.waiters import QueueEventReader


def unused_client() -> Redis:
    raise AssertionError("these tests never start the XREAD loop")


def reader() -> QueueEventReader:
    found = QueueEventReader(unused_client, "bull:q:events", "q")
    found._ready.set()  # as if the loop had learned the stream's position
    found._task = asyncio.ensure_future(asyncio.sleep(3600))  # a running loop, stand-in
    return found


async def stop(found: QueueEventReader) -> None:
    assert found._task is not None
    found._task.cancel()
    await found.aclose()


def entries(*events: tuple[str, str]) -> list[tuple[str, dict[str, Any]]]:
    return [(f"1-{i}", {"event": name, "jobId": job_id})
            for i, (name, job_id) in enumerate(events)]


async def test_final_events_wake_the_waiters_of_that_job_only() -> None:
    found = reader()
    a1, a2, b = await found.watch("a"), await found.watch("a"), await found.watch("b")
    found._dispatch([("bull:q:events", entries(("active", "b"), ("completed", "a")))])

    assert await a1.changed(1) and await a2.changed(1)
    assert not await b.changed(0.01)  # `active` is not final
    found._dispatch({"bull:q:events": entries(("failed", "b"))})  # RESP3 shape
    assert await b.changed(1)
    assert found._cursor == "1-0"
    # The reader's own XREAD (no redis-py parsing): fields as a flat list.
    assert found._dispatch({"bull:q:events": [("2-0", ["event", "completed", "jobId", "b"])]})
    assert await b.changed(1)
    assert not found._dispatch([("bull:q:events", [("3-0", ["event", "completed",
                                                            "jobId", "nobody"])])])
    await stop(found)


async def test_a_forgotten_watch_is_not_woken_and_closing_wakes_the_rest() -> None:
    found = reader()
    gone, kept = await found.watch("a"), await found.watch("c")
    await gone.aclose()
    found._dispatch([("bull:q:events", entries(("removed", "a")))])
    assert not await gone.changed(0.01)
    assert found._watches == {"c": found._watches["c"]}

    await stop(found)
    assert await kept.changed(1)  # the caller re-reads and meets the closed service
    late = await found.watch("d")  # after close: woken at once, no loop started
    assert await late.changed(0.01)
    assert not found.running


def final_reads() -> FinalReads:
    return FinalReads("bull:q:", lambda raw: raw.to_info("q", QueueRegistry()))


async def test_a_wake_hands_over_its_read_once_and_a_later_wake_replaces_it() -> None:
    found = reader()
    watch = await found.watch("a")
    (info,) = final_reads().parse([[["a", "completed", ["name", "n", "finishedOn", "5"]]]]
                                  ).values()
    found._dispatch([("bull:q:events", entries(("completed", "a")))], {"a": info})
    assert await watch.changed(1)
    assert watch.take_read() is info
    assert watch.take_read() is None  # once
    found._dispatch([("bull:q:events", entries(("completed", "a")))], {"a": info})
    found._dispatch([("bull:q:events", entries(("removed", "a")))])  # no read: re-read
    assert await watch.changed(1) and watch.take_read() is None
    # A read of another job is not handed to this one.
    found._dispatch([("bull:q:events", entries(("completed", "a")))], {"b": info})
    assert await watch.changed(1) and watch.take_read() is None
    await stop(found)


def test_final_reads_parse_the_script_answer_and_reload_a_lost_script() -> None:
    reads = final_reads()
    (first,) = reads.commands("1-0", ["a", "b"])
    assert first[:9] == ("EVALSHA", SHA, 3, "bull:q:events", "bull:q:completed",
                         "bull:q:failed", "1-0", SCAN, "bull:q:")
    assert first[9:] == ("a", "b")
    found = reads.parse([[["a", "failed", ["name", "sync", "failedReason", "boom",
                                           "attemptsMade", "2", "data", '{"x": 1}']],
                          ["b", "completed", []]]])  # a hash gone meanwhile: no read
    assert list(found) == ["a"]
    assert (found["a"].state, found["a"].failed_reason, found["a"].attempts_made,
            found["a"].data) == (JobState.FAILED, "boom", 2, {"x": 1})
    assert reads.parse([NoScriptError("NOSCRIPT No matching script")]) == {}
    load, call = reads.commands("1-0", ["a"])
    assert load == ("SCRIPT", "LOAD", SCRIPT) and call[1] == SHA
    assert reads.parse(["OK", []]) == {} and len(reads.commands("1-0", [])) == 1
    assert reads.enabled
    assert reads.parse([ResponseError("ERR unknown command")]) == {}
    assert not reads.enabled

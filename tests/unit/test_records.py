"""The bookkeeping done while an add is in flight (``records.built_while``)."""

from __future__ import annotations

import asyncio

import pytest

from queuekit import records


async def test_a_failed_build_leaves_the_add_to_finish_on_its_own() -> None:
    finished = asyncio.Event()

    async def add() -> str:  # holds a connection until it has run to its end
        await asyncio.sleep(0)
        finished.set()
        return "1"

    def build() -> str:
        raise MemoryError("no room for the record")

    pending = add()
    with pytest.raises(MemoryError):
        records.built_while(pending, build)
    async with asyncio.timeout(5):
        await finished.wait()
    assert not records._finishing or all(task.done() for task in records._finishing)


async def test_a_build_returns_what_it_built() -> None:
    async def add() -> str:
        return "7"

    pending = add()
    assert records.built_while(pending, lambda: "record") == "record"
    assert await pending == "7"

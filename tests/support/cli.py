"""Running the ``queuekit`` command line inside a test."""

from __future__ import annotations

import asyncio

import pytest

from containers.cli import main


async def cli(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    """Run ``queuekit ARGS`` in a thread (it runs its own event loop)."""
    code = await asyncio.to_thread(main, list(args))
    captured = capsys.readouterr()
    return code, captured.out, captured.err

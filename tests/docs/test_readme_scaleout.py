"""The README's sync-processor snippet runs as written."""

from __future__ import annotations

from tests.docs.test_readme import run

SYNC = "Sync processors: CPU work off the event loop"


async def test_sync_processor_snippet_runs() -> None:
    namespace = await run(SYNC, {"__name__": "readme_sync"})
    assert namespace["info"].return_value.success

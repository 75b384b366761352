"""queuekit.tracing without a backend: the off switch, and bad carriers."""

from __future__ import annotations

import json

import pytest
from opentelemetry import trace

from queuekit import tracing
from queuekit.records import RawJob
from queuekit.redis.wire import trace_metadata, with_trace_metadata
from tests.support.otel import span_exporter, spans_named


def test_no_tracer_without_a_configured_provider(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(trace, "get_tracer_provider", trace.ProxyTracerProvider)
    assert tracing.tracer() is None
    monkeypatch.setattr(trace, "get_tracer_provider", trace.NoOpTracerProvider)
    assert tracing.tracer() is None
    # and the consumer side costs one shared no-op context
    raw = RawJob(id="1", name="n", data={}, state="active")
    assert tracing.consume(None, "q", raw) is tracing.consume(None, "q", raw)


@pytest.mark.parametrize("metadata", ["not json", '"a string"', "[1]"])
def test_malformed_metadata_starts_a_new_trace(metadata: str,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    exporter = span_exporter(monkeypatch)
    tracer = tracing.tracer()
    assert tracer is not None
    raw = RawJob(id="7", name="n", data={}, state="active", trace_metadata=metadata)
    with tracing.consume(tracer, "q", raw):
        pass
    [span] = spans_named(exporter, "process q")
    assert span.parent is None


def test_omit_context_and_the_wire_field() -> None:
    opts = with_trace_metadata({"attempts": 1}, '{"traceparent":"x"}')
    assert opts == {"attempts": 1, "tm": '{"traceparent":"x"}'}
    assert with_trace_metadata(opts, None) is opts
    assert trace_metadata(opts) == '{"traceparent":"x"}'
    assert trace_metadata({**opts, "omc": True}) is None
    assert trace_metadata({"tm": {"traceparent": "x"}}) is None  # never a dict on the wire


def test_producer_span_hook_yields_the_metadata_to_store(
        monkeypatch: pytest.MonkeyPatch) -> None:
    exporter = span_exporter(monkeypatch)
    tracer = tracing.tracer()
    assert tracer is not None
    with tracing.producer_span(tracer, "addFlow", "reports",
                               attributes={"bullmq.job.name": "m"}) as (
            span, metadata):
        assert span.get_span_context().span_id == trace.get_current_span().get_span_context(
            ).span_id
    [flow] = spans_named(exporter, "addFlow reports")
    assert flow.context is not None
    assert f"{flow.context.span_id:016x}" in json.loads(metadata)["traceparent"]


def test_queuekit_runs_without_opentelemetry_installed() -> None:
    import subprocess
    import sys

    code = (
        "import sys, asyncio; sys.modules['opentelemetry'] = None\n"
        "from queuekit.testing import InMemoryQueueService\n"
        "from queuekit import tracing\n"
        "assert tracing.tracer() is None\n"
        "async def main():\n"
        "    qs = InMemoryQueueService()\n"
        "    qs.create_worker('reports', lambda job: asyncio.sleep(0))\n"
        "    job = await qs.add_job('reports', 'r', {'userId': 'u', 'reportType': 'monthly',"
        " 'startDate': '2026-01-01', 'endDate': '2026-01-31'})\n"
        "    info = await qs.wait_for_job('reports', job.id, 5)\n"
        "    assert info.state == 'completed', info\n"
        "    await qs.close()\n"
        "asyncio.run(main())\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=60, check=False)
    assert done.returncode == 0, done.stderr

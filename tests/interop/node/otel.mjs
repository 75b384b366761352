// Node BullMQ with bullmq-otel, tracing into an in-memory exporter.
// Argument: {port, prefix, queue, mode: "produce" | "work", jobs: [{name, data, opts}], expect}.
// produce: adds `jobs` with a Queue that has telemetry; prints {"event": "added", "jobs":
//   [{id, opts}], "spans": [...]}.
// work: prints {"event": "ready"}, runs a Worker with telemetry until `expect` jobs
//   completed, then prints {"event": "spans", "spans": [...]}.
// A span is {name, kind, traceId, spanId, parentSpanId, attributes}.
import { Queue, Worker } from 'bullmq';
import { BullMQOtel } from 'bullmq-otel';
import { InMemorySpanExporter, SimpleSpanProcessor } from '@opentelemetry/sdk-trace-base';
import { NodeTracerProvider } from '@opentelemetry/sdk-trace-node';
import { connection, emit, parseArgs, runMain } from './common.mjs';

const exporter = new InMemorySpanExporter();
// register(): the AsyncLocalStorage context manager and the W3C trace-context propagator.
new NodeTracerProvider({ spanProcessors: [new SimpleSpanProcessor(exporter)] }).register();

function spans() {
  return exporter.getFinishedSpans().map((span) => ({
    name: span.name,
    kind: span.kind,
    traceId: span.spanContext().traceId,
    spanId: span.spanContext().spanId,
    parentSpanId: span.parentSpanContext?.spanId ?? null,
    attributes: span.attributes,
  }));
}

await runMain(async () => {
  const args = parseArgs();
  const telemetry = new BullMQOtel({ tracerName: 'interop-node', version: '1.0.0' });
  const opts = { connection: connection(args), prefix: args.prefix, telemetry };
  if (args.mode === 'produce') {
    const queue = new Queue(args.queue, opts);
    const added = [];
    for (const spec of args.jobs) {
      const job = await queue.add(spec.name, spec.data, spec.opts ?? {});
      added.push({ id: job.id, opts: job.opts });
    }
    await queue.close();
    emit({ event: 'added', jobs: added, spans: spans() });
    return;
  }
  let completed = 0;
  let finish;
  const finished = new Promise((resolve) => { finish = resolve; });
  const worker = new Worker(args.queue, async (job) => ({ success: true, data: { id: job.id } }),
    { ...opts, drainDelay: 5 });
  worker.on('completed', () => { completed += 1; if (completed >= args.expect) finish(); });
  worker.on('error', (err) => emit({ event: 'error', message: String(err?.stack ?? err) }));
  await worker.waitUntilReady();
  emit({ event: 'ready' });
  await finished;
  await worker.close();
  emit({ event: 'spans', spans: spans() });
});

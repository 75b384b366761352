// A Node BullMQ QueueEvents listener. Argument: {port, prefix, queue, until}.
// Reads the queue's event stream from its start (the test's prefix is new, so nothing of
// other tests is there), prints each event as {"event": "queue-event", "type", ...args},
// and exits after `until` jobs have completed or failed.
import { QueueEvents } from 'bullmq';
import { connection, emit, parseArgs, runMain } from './common.mjs';

const TYPES = ['added', 'waiting', 'delayed', 'active', 'progress', 'completed', 'failed',
               'retries-exhausted', 'stalled'];

await runMain(async () => {
  const args = parseArgs();
  const events = new QueueEvents(args.queue, {
    connection: connection(args), prefix: args.prefix, lastEventId: '0-0', blockingTimeout: 1000,
  });
  let finished = 0;
  let finish;
  const done = new Promise((resolve) => { finish = resolve; });
  for (const type of TYPES) {
    events.on(type, (eventArgs) => {
      emit({ event: 'queue-event', type, ...eventArgs });
      if (type === 'completed' || type === 'failed') {
        finished += 1;
        if (finished >= args.until) finish();
      }
    });
  }
  events.on('error', (err) => emit({ event: 'error', message: String(err?.stack ?? err) }));
  await events.waitUntilReady();
  emit({ event: 'ready' });
  await done;
  await events.close();
});

// The soak's Node BullMQ producer (driven by tests/soak/soak.py).
// Argument: {port, prefix, queue, first, count, rate, jobOptions}. Job n (first <= n <
// first + count) gets the payload of tests/soak/soak.py's job_spec(n). Adds `rate` jobs per
// second, several in flight; prints {"event": "added", "jobs": [[id, n], ...]} about every
// 100 ms for the adds that Redis acknowledged, then {"event": "done"}.
import { Queue } from 'bullmq';
import { connection, emit, parseArgs, runMain } from './common.mjs';

const IN_FLIGHT = 8;

export function jobSpec(n) {
  const kind = n % 200 === 13 ? 'fail' : n % 50 === 7 ? 'retry' : 'ok';
  const data = { userId: `user-${n % 97}`, n, kind, failTimes: kind === 'retry' ? 2 : 0, source: 'node' };
  const delay = n % 10 === 3 ? 200 + (n % 1800) : 0;
  return { data, delay };
}

await runMain(async () => {
  const args = parseArgs();
  const queue = new Queue(args.queue, { connection: connection(args), prefix: args.prefix });
  queue.on('error', () => {}); // reconnects by itself while Redis restarts
  let acked = [];
  let errors = 0;
  const flush = () => {
    if (acked.length) emit({ event: 'added', jobs: acked });
    acked = [];
  };
  const timer = setInterval(flush, 100);
  const started = performance.now();
  let next = args.first;
  const end = args.first + args.count;
  const lane = async () => {
    while (next < end) {
      const n = next++;
      const due = started + ((n - args.first) * 1000) / args.rate;
      const wait = due - performance.now();
      if (wait > 0) await new Promise((resolve) => setTimeout(resolve, wait));
      const { data, delay } = jobSpec(n);
      for (;;) {
        try {
          const job = await queue.add('soak', data, { ...args.jobOptions, delay });
          acked.push([job.id, n]);
          break;
        } catch (err) {
          errors += 1; // not acknowledged: add it again (a new job)
          await new Promise((resolve) => setTimeout(resolve, 50));
        }
      }
    }
  };
  await Promise.all(Array.from({ length: IN_FLIGHT }, lane));
  clearInterval(timer);
  flush();
  emit({ event: 'done', errors });
  await queue.close();
});

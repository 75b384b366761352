// Node BullMQ workers for flows on several queues; exits after `expect` finished jobs
// (completed or failed). Argument: {port, prefix, queues: [...], expect, fail: [accountId]}.
// Every processor returns {success, data: {queue, children: await job.getChildrenValues()}};
// a job whose data.accountId is in `fail` throws. Prints {"event": "ready"}, one
// {"event": "job"} per attempt, then {"event": "done"}.
import { Worker } from 'bullmq';
import { connection, emit, parseArgs, runMain } from './common.mjs';

await runMain(async () => {
  const args = parseArgs();
  let finished = 0;
  let finish;
  const done = new Promise((resolve) => { finish = resolve; });
  const count = () => { finished += 1; if (finished >= args.expect) finish(); };
  const workers = args.queues.map((name) => {
    const worker = new Worker(name, async (job) => {
      const children = await job.getChildrenValues();
      emit({ event: 'job', queue: job.queueName, id: job.id, parentKey: job.parentKey ?? null,
             children, seenAt: Date.now() });
      if ((args.fail ?? []).includes(job.data?.accountId)) {
        throw new Error(`node worker failed ${job.data.accountId}`);
      }
      return { success: true, data: { queue: job.queueName, children } };
    }, { connection: connection(args), prefix: args.prefix, drainDelay: 5 });
    worker.on('completed', count);
    worker.on('failed', (job) => { if (job?.finishedOn) count(); }); // failed for good
    worker.on('error', (err) => emit({ event: 'error', message: String(err?.stack ?? err) }));
    return worker;
  });
  await Promise.all(workers.map((w) => w.waitUntilReady()));
  emit({ event: 'ready' });
  await done;
  await Promise.all(workers.map((w) => w.close()));
  emit({ event: 'done', finished });
});

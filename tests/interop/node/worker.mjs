// A Node BullMQ worker on one or more queues that exits after `expect` completed jobs.
// Argument: {port, prefix, queues: [...], expect, progress, failAttempts, cluster, prefixes}. Prints
// {"event": "ready"}, then {"event": "job", ...} for each attempt it runs (as the processor
// sees the job), then {"event": "done"}. The processor throws on a job's first `failAttempts`
// attempts; otherwise it reports `progress` and returns a NestJS JobResult.
import { Worker } from 'bullmq';
import { connection, emit, parseArgs, prefixOf, runMain } from './common.mjs';

await runMain(async () => {
  const args = parseArgs();
  let completed = 0;
  let finish;
  const finished = new Promise((resolve) => { finish = resolve; });
  const workers = args.queues.map((name) => {
    const worker = new Worker(name, async (job) => {
      emit({
        event: 'job', queue: job.queueName, id: job.id, name: job.name, data: job.data,
        dataKeys: Object.keys(job.data), opts: job.opts, attemptsMade: job.attemptsMade,
        attemptsStarted: job.attemptsStarted, seenAt: Date.now(),
      });
      if (job.attemptsMade < (args.failAttempts ?? 0)) {
        throw new Error(`node worker failed attempt ${job.attemptsMade + 1}`);
      }
      await job.updateProgress(args.progress ?? 100);
      return { success: true, message: `processed by node bullmq on ${job.queueName}`,
               data: { queue: job.queueName, jobId: job.id } };
    }, { connection: connection(args), prefix: prefixOf(args, name), drainDelay: 5, autorun: false });
    worker.on('completed', () => { completed += 1; if (completed >= args.expect) finish(); });
    worker.on('error', (err) => emit({ event: 'error', message: String(err?.stack ?? err) }));
    return worker;
  });
  await Promise.all(workers.map((w) => w.waitUntilReady()));
  // "ready" before the first job: a job already due (a scheduler's run) must not be
  // reported ahead of it, so the workers start only now.
  emit({ event: 'ready' });
  const running = workers.map((w) => w.run());
  await finished;
  await Promise.all(workers.map((w) => w.close()));
  await Promise.all(running);
  emit({ event: 'done', completed });
});

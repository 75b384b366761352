// Worker of the Node BullMQ side, one process per measurement.
// Argument (JSON): {redisUrl, queue, concurrency, expect, rssAt}. With expect = 0 it runs
// until its stdin is closed. Prints {"event": "ready"}, then {"event": "result", ...} with
// the keys of benchmarks.measure.WorkerReport.
import { Queue, Worker } from 'bullmq';
import { connectionFrom, emit, parseArgs, runMain, seconds, sleep } from './common.mjs';

const IDLE_POLL_MS = 1;

function stdinClosed() {
  return new Promise((resolve) => {
    process.stdin.on('end', resolve);
    process.stdin.resume();
  });
}

await runMain(async () => {
  const args = parseArgs();
  const connection = connectionFrom(args.redisUrl);
  const countsQueue = new Queue(args.queue, { connection });
  await countsQueue.waitUntilReady();

  const checkpoints = new Set(args.rssAt);
  const report = {
    event: 'result', processed: 0, failed: 0, elapsed_s: null,
    rss_start: process.memoryUsage.rss(), rss_at: {}, rss_end: 0,
  };
  let allSeen;
  const allSeenPromise = new Promise((resolve) => { allSeen = resolve; });

  // The clock starts just before the worker exists, as in benchmarks.measure.run_worker.
  const started = performance.now();
  const worker = new Worker(args.queue, async () => {
    report.processed += 1;
    if (checkpoints.has(report.processed)) report.rss_at[report.processed] = process.memoryUsage.rss();
    if (args.expect && report.processed >= args.expect) allSeen();
    return { success: true };
  }, { connection, concurrency: args.concurrency });
  worker.on('error', (err) => process.stderr.write(`worker error: ${err}\n`));
  await worker.waitUntilReady();
  emit({ event: 'ready' });

  if (args.expect) {
    await allSeenPromise;
    let counts;
    for (;;) {
      counts = await countsQueue.getJobCounts('waiting', 'active', 'delayed', 'prioritized', 'failed');
      if (counts.waiting + counts.active + counts.delayed + counts.prioritized === 0) break;
      await sleep(IDLE_POLL_MS);
    }
    report.elapsed_s = seconds(started);
    report.failed = counts.failed;
  } else {
    await stdinClosed();
  }
  report.rss_end = process.memoryUsage.rss();
  const closing = performance.now();
  await worker.close();
  await countsQueue.close();
  report.close_s = seconds(closing);
  emit(report);
});

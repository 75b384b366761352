// Worker of the Node BullMQ side, one process per measurement.
// Argument (JSON): {redisUrl, queue, concurrency, expect, rssAt, session, jobOptions}. With
// expect = 0 it runs until its stdin is closed. Prints {"event": "ready"}, then
// {"event": "result", ...} with the keys of benchmarks.measure.WorkerReport.
// With session = true (benchmarks/interleave.py) the queue is paused before the worker
// starts; a stdin line {"op": "fill", first, count} adds those jobs to the paused queue,
// {"op": "process", count} resumes it, waits until count more jobs are done and pauses it
// again; each is answered with {"event": "slice", "seconds": ...} (a process's: from
// resuming to done), as benchmarks.measure.serve_worker_slices does for the Python sides.
import { createInterface } from 'node:readline';
import { Queue, Worker } from 'bullmq';
import { addInChunks, connectionFrom, emit, parseArgs, runMain, seconds, sleep } from './common.mjs';

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
  let allSeenPromise = new Promise((resolve) => { allSeen = resolve; });
  let target = args.expect;
  if (args.session) await countsQueue.pause();

  const drained = async () => {
    let counts;
    for (;;) {
      counts = await countsQueue.getJobCounts('waiting', 'active', 'delayed', 'prioritized', 'failed');
      if (counts.waiting + counts.active + counts.delayed + counts.prioritized === 0) return counts;
      await sleep(IDLE_POLL_MS);
    }
  };

  // The clock starts just before the worker exists, as in benchmarks.measure.run_worker.
  const started = performance.now();
  const worker = new Worker(args.queue, async () => {
    report.processed += 1;
    if (checkpoints.has(report.processed)) report.rss_at[report.processed] = process.memoryUsage.rss();
    if (target && report.processed >= target) allSeen();
    return { success: true };
  }, { connection, concurrency: args.concurrency });
  worker.on('error', (err) => process.stderr.write(`worker error: ${err}\n`));
  await worker.waitUntilReady();
  emit({ event: 'ready' });

  if (args.session) {
    for await (const line of createInterface({ input: process.stdin })) {
      if (!line.trim()) continue;
      const { op, first, count } = JSON.parse(line);
      const started = performance.now();
      let took;
      if (op === 'fill') {
        await addInChunks(countsQueue, args.jobOptions, first, count, 1000); // paused: untouched
        took = seconds(started);
      } else if (op === 'process') {
        target = report.processed + count;
        allSeenPromise = new Promise((resolve) => { allSeen = resolve; });
        await countsQueue.resume();
        await allSeenPromise;
        report.failed = (await drained()).failed;
        took = seconds(started);
        await countsQueue.pause(); // after the clock: the next fill waits unseen
      } else {
        throw new Error(`unknown op ${op}`);
      }
      emit({ event: 'slice', seconds: took });
    }
  } else if (args.expect) {
    await allSeenPromise;
    const counts = await drained();
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

// Helpers of the Node side of queuekit's interop tests (driven by tests/interop/node_bullmq.py).
// Every script takes one JSON argument and writes JSON lines on stdout.

import { Cluster } from 'ioredis';

/** BullMQ connection options for the test's redis-server (BullMQ makes its own ioredis clients).
 *  With `cluster: true` an ioredis Cluster seeded with that node (queuekit's `redis.cluster`). */
export function connection(args) {
  if (args.cluster) {
    return new Cluster([{ host: '127.0.0.1', port: args.port }],
                       { redisOptions: { maxRetriesPerRequest: null } });
  }
  return { host: '127.0.0.1', port: args.port, maxRetriesPerRequest: null };
}

/** The prefix of one queue: `prefixes[queue]` when given (a hash tag per queue on a cluster). */
export function prefixOf(args, queue) {
  return args.prefixes?.[queue] ?? args.prefix;
}

export function emit(message) {
  process.stdout.write(`${JSON.stringify(message)}\n`);
}

export function parseArgs() {
  if (process.argv.length < 3) throw new Error("usage: node <script>.mjs '<json arguments>'");
  return JSON.parse(process.argv[2]);
}

/** What the tests compare: a job as Node BullMQ reads it. */
export async function jobView(job) {
  return {
    id: job.id,
    queue: job.queueName,
    name: job.name,
    data: job.data,
    dataKeys: Object.keys(job.data ?? {}),
    opts: job.opts,
    state: await job.getState(),
    progress: job.progress,
    attemptsMade: job.attemptsMade,
    attemptsStarted: job.attemptsStarted,
    returnvalue: job.returnvalue,
    failedReason: job.failedReason ?? null,
    stacktrace: job.stacktrace ?? [],
    timestamp: job.timestamp,
    processedOn: job.processedOn ?? null,
    finishedOn: job.finishedOn ?? null,
  };
}

/** Run `main`, report an error as {"event": "error"} and exit with the right status. */
export async function runMain(main) {
  try {
    await main();
    process.exit(0);
  } catch (err) {
    emit({ event: 'error', message: String(err?.stack ?? err) });
    process.exit(1);
  }
}

// Helpers shared by the Node side of the queuekit benchmarks (driven by benchmarks/node_side.py).
// Each script takes one JSON argument and writes JSON lines on stdout.

export const JOB_NAME = 'sync-transactions';

/** The job data of job `index`: the same BankSyncJobData the Python sides add. */
export function payload(index) {
  return { userId: `user-${index}`, accountId: `acct-${index}`, syncType: 'incremental' };
}

/** Add jobs `first .. first + count - 1` to `queue` in addBulk calls of `chunk` jobs. */
export async function addInChunks(queue, jobOptions, first, count, chunk) {
  const end = first + count;
  for (let start = first; start < end; start += chunk) {
    const batch = [];
    for (let i = start; i < Math.min(start + chunk, end); i++) {
      batch.push({ name: JOB_NAME, data: payload(i), opts: jobOptions });
    }
    await queue.addBulk(batch);
  }
}

/** BullMQ connection options for a redis:// URL (BullMQ creates its own ioredis clients). */
export function connectionFrom(redisUrl) {
  const url = new URL(redisUrl);
  const db = url.pathname.length > 1 ? Number(url.pathname.slice(1)) : 0;
  return { host: url.hostname, port: Number(url.port || 6379), db };
}

export function emit(message) {
  process.stdout.write(`${JSON.stringify(message)}\n`);
}

export function parseArgs() {
  if (process.argv.length < 3) {
    throw new Error('usage: node <script>.mjs \'<json arguments>\'');
  }
  return JSON.parse(process.argv[2]);
}

export const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

export const seconds = (startedMs) => (performance.now() - startedMs) / 1000;

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

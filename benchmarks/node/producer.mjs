// Producer scenarios of the Node BullMQ side: add-one, in-flight, bulk, preload, latency.
// Argument (JSON): {scenario, redisUrl, queue, jobs, window, chunk, samples, warmup, jobOptions}.
// Prints {"event": "result", "seconds": ...} or {"event": "result", "latencies_ms": [...]}.
import { Queue, QueueEvents } from 'bullmq';
import { Redis } from 'ioredis';
import { JOB_NAME, connectionFrom, emit, parseArgs, payload, runMain, seconds } from './common.mjs';

const COMPLETION_TIMEOUT_MS = 30000;

function makeAdd(queue, jobOptions) {
  return (index) => queue.add(JOB_NAME, payload(index), jobOptions);
}

async function addInChunks(queue, jobOptions, jobs, chunk) {
  for (let first = 0; first < jobs; first += chunk) {
    const count = Math.min(chunk, jobs - first);
    const batch = [];
    for (let i = first; i < first + count; i++) {
      batch.push({ name: JOB_NAME, data: payload(i), opts: jobOptions });
    }
    await queue.addBulk(batch);
  }
}

/** Waits for `completed` events of the queue's BullMQ event stream, as the Python watcher. */
class CompletionWatcher {
  constructor(redisUrl, stream) {
    this.client = new Redis(redisUrl, { maxRetriesPerRequest: null });
    this.stream = stream;
    this.lastId = '0-0';
  }

  /** Read on from the stream's last entry (skip the events of earlier jobs). */
  async seekEnd() {
    const last = await this.client.xrevrange(this.stream, '+', '-', 'COUNT', 1);
    this.lastId = last.length ? last[0][0] : '0-0';
  }

  async waitCompleted(jobId) {
    const deadline = Date.now() + COMPLETION_TIMEOUT_MS;
    while (Date.now() < deadline) {
      const reply = await this.client.xread('COUNT', 100, 'BLOCK', 1000, 'STREAMS', this.stream, this.lastId);
      for (const [, entries] of reply ?? []) {
        for (const [entryId, flat] of entries) {
          this.lastId = entryId;
          const fields = {};
          for (let i = 0; i < flat.length; i += 2) fields[flat[i]] = flat[i + 1];
          if (fields.jobId !== jobId) continue;
          if (fields.event === 'completed') return;
          if (fields.event === 'failed') throw new Error(`job ${jobId} failed: ${fields.failedReason}`);
        }
      }
    }
    throw new Error(`job ${jobId} did not complete within ${COMPLETION_TIMEOUT_MS} ms`);
  }

  close() {
    return this.client.quit();
  }
}

const scenarios = {
  async 'add-one'(queue, args) {
    const add = makeAdd(queue, args.jobOptions);
    await add(args.jobs); // warm-up: connection and script loading stay out of the timing
    const started = performance.now();
    for (let i = 0; i < args.jobs; i++) await add(i);
    return { seconds: seconds(started) };
  },

  async 'in-flight'(queue, args) {
    const add = makeAdd(queue, args.jobOptions);
    await add(args.jobs);
    let next = 0;
    // `window` lanes, each starting its next add as soon as its previous one resolved.
    const lane = async () => {
      while (next < args.jobs) await add(next++);
    };
    const started = performance.now();
    await Promise.all(Array.from({ length: args.window }, lane));
    return { seconds: seconds(started) };
  },

  async bulk(queue, args) {
    await makeAdd(queue, args.jobOptions)(args.jobs);
    const started = performance.now();
    await addInChunks(queue, args.jobOptions, args.jobs, args.chunk);
    return { seconds: seconds(started) };
  },

  async preload(queue, args) {
    await addInChunks(queue, args.jobOptions, args.jobs, args.chunk);
    return {};
  },

  async latency(queue, args) {
    const add = makeAdd(queue, args.jobOptions);
    const sample = async (wait) => {
      const latencies = [];
      for (let i = 0; i < args.warmup + args.samples; i++) {
        const started = performance.now();
        const job = await add(i);
        await wait(job);
        if (i >= args.warmup) latencies.push(performance.now() - started);
      }
      return latencies;
    };
    // The application's way first: job.waitUntilFinished on a QueueEvents of the queue.
    const events = new QueueEvents(queue.name, { connection: connectionFrom(args.redisUrl) });
    let app;
    try {
      await events.waitUntilReady();
      app = await sample((job) => job.waitUntilFinished(events, COMPLETION_TIMEOUT_MS));
    } finally {
      await events.close();
    }
    // Then the same stream reader as the Python sides.
    const watcher = new CompletionWatcher(args.redisUrl, queue.keys.events);
    try {
      await watcher.seekEnd();
      const stream = await sample((job) => watcher.waitCompleted(job.id));
      return { latencies_ms: app, stream_latencies_ms: stream };
    } finally {
      await watcher.close();
    }
  },
};

await runMain(async () => {
  const args = parseArgs();
  const scenario = scenarios[args.scenario];
  if (!scenario) throw new Error(`unknown scenario ${args.scenario}`);
  const queue = new Queue(args.queue, { connection: connectionFrom(args.redisUrl) });
  try {
    await queue.waitUntilReady();
    emit({ event: 'result', ...(await scenario(queue, args)) });
  } finally {
    await queue.close();
  }
});

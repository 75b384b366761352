// Producer scenarios of the Node BullMQ side: session, preload, latency.
// Argument (JSON): {scenario, redisUrl, queue, jobs, chunk, samples, warmup, warmUpIndex, jobOptions}.
// session: one warm-up add, then {"event": "ready"}; then one command per stdin line,
// {"op": "add-one" | "in-flight" | "bulk", first, count, window?, chunk?}, each answered with
// {"event": "slice", "seconds": ...}, until stdin ends (the Python side's Adder protocol).
// preload prints {"event": "result"}, latency {"event": "result", "latencies_ms": [...]}.
import { createInterface } from 'node:readline';
import { Queue, QueueEvents } from 'bullmq';
import { Redis } from 'ioredis';
import {
  JOB_NAME, addInChunks, connectionFrom, emit, parseArgs, payload, runMain, seconds,
} from './common.mjs';

const COMPLETION_TIMEOUT_MS = 30000;

function makeAdd(queue, jobOptions) {
  return (index) => queue.add(JOB_NAME, payload(index), jobOptions);
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

/** The timed slices of a session: jobs `first .. first + count - 1`, as measure.py adds them. */
const slices = {
  async 'add-one'(queue, add, jobOptions, { first, count }) {
    for (let i = first; i < first + count; i++) await add(i);
  },

  async 'in-flight'(queue, add, jobOptions, { first, count, window }) {
    let next = first;
    const end = first + count;
    // `window` lanes, each starting its next add as soon as its previous one resolved.
    const lane = async () => {
      while (next < end) await add(next++);
    };
    await Promise.all(Array.from({ length: window }, lane));
  },

  async bulk(queue, add, jobOptions, { first, count, chunk }) {
    await addInChunks(queue, jobOptions, first, count, chunk);
  },
};

const scenarios = {
  async session(queue, args) {
    const add = makeAdd(queue, args.jobOptions);
    await add(args.warmUpIndex); // connection and script loading stay out of the timing
    emit({ event: 'ready' });
    for await (const line of createInterface({ input: process.stdin })) {
      if (!line.trim()) continue;
      const command = JSON.parse(line);
      const slice = slices[command.op];
      if (!slice) throw new Error(`unknown op ${command.op}`);
      const started = performance.now();
      await slice(queue, add, args.jobOptions, command);
      emit({ event: 'slice', seconds: seconds(started) });
    }
    return {};
  },

  async preload(queue, args) {
    await addInChunks(queue, args.jobOptions, 0, args.jobs, args.chunk);
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

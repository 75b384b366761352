// Producer scenarios of the Node BullMQ side: session, preload.
// Argument (JSON): {scenario, redisUrl, queue, jobs, chunk, warmUpIndex, jobOptions}.
// session: one warm-up add, then {"event": "ready"}; then one command per stdin line,
// {"op": "add-one" | "in-flight" | "bulk" | "latency", first, count, window?, chunk?, wait?},
// each answered with {"event": "slice", "seconds": ..., "latencies_ms"?: [...]}, until stdin
// ends (benchmarks/producer_proc.py speaks the same). preload prints {"event": "result"}.
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

  // `count` jobs added one at a time, each waited for while a worker runs elsewhere:
  // wait "app" is the application's way (job.waitUntilFinished on a QueueEvents), "stream"
  // the same reader of the events stream as the Python sides.
  async latency(queue, add, jobOptions, { count, wait }, waits) {
    const until = await waits.get(wait);
    const latencies = [];
    for (let i = 0; i < count; i++) {
      const started = performance.now();
      const job = await add(i);
      await until(job);
      latencies.push(performance.now() - started);
    }
    return { latencies_ms: latencies };
  },
};

/** The waits of the latency slices, each opened on first use (and closed at the end). */
class Waits {
  constructor(queue, redisUrl) {
    this.queue = queue;
    this.redisUrl = redisUrl;
    this.events = null;
    this.watcher = null;
  }

  async get(kind) {
    if (kind === 'app') {
      if (!this.events) {
        this.events = new QueueEvents(this.queue.name, { connection: connectionFrom(this.redisUrl) });
        await this.events.waitUntilReady();
      }
      return (job) => job.waitUntilFinished(this.events, COMPLETION_TIMEOUT_MS);
    }
    if (kind !== 'stream') throw new Error(`unknown wait ${kind}`);
    if (!this.watcher) {
      this.watcher = new CompletionWatcher(this.redisUrl, this.queue.keys.events);
      await this.watcher.seekEnd();
    }
    return (job) => this.watcher.waitCompleted(job.id);
  }

  async close() {
    await this.events?.close();
    await this.watcher?.close();
  }
}

const scenarios = {
  async session(queue, args) {
    const add = makeAdd(queue, args.jobOptions);
    await add(args.warmUpIndex); // connection and script loading stay out of the timing
    emit({ event: 'ready' });
    const waits = new Waits(queue, args.redisUrl);
    try {
      for await (const line of createInterface({ input: process.stdin })) {
        if (!line.trim()) continue;
        const command = JSON.parse(line);
        const slice = slices[command.op];
        if (!slice) throw new Error(`unknown op ${command.op}`);
        const started = performance.now();
        const extra = await slice(queue, add, args.jobOptions, command, waits);
        emit({ event: 'slice', seconds: seconds(started), ...extra });
      }
    } finally {
      await waits.close();
    }
    return {};
  },

  async preload(queue, args) {
    await addInChunks(queue, args.jobOptions, 0, args.jobs, args.chunk);
    return {};
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

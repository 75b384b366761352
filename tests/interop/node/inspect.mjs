// Reads jobs back as Node BullMQ sees them. Argument: {port, prefix, queue, ids: [...]}.
// Prints {"event": "jobs", "jobs": [<jobView or null>...]}.
import { Job, Queue } from 'bullmq';
import { connection, emit, jobView, parseArgs, runMain } from './common.mjs';

await runMain(async () => {
  const args = parseArgs();
  const queue = new Queue(args.queue, { connection: connection(args), prefix: args.prefix });
  const jobs = [];
  for (const id of args.ids) {
    const job = await Job.fromId(queue, id);
    jobs.push(job ? await jobView(job) : null);
  }
  emit({ event: 'jobs', jobs });
  await queue.close();
});

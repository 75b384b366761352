// Adds jobs to one queue. Argument: {port, prefix, queue, jobs: [{name, data, opts}]}.
// Prints {"event": "added", "jobs": [<jobView>...]} (ids and states right after the add).
import { Queue } from 'bullmq';
import { connection, emit, jobView, parseArgs, runMain } from './common.mjs';

await runMain(async () => {
  const args = parseArgs();
  const queue = new Queue(args.queue, { connection: connection(args), prefix: args.prefix });
  const added = [];
  for (const spec of args.jobs) {
    const job = await queue.add(spec.name, spec.data, spec.opts ?? {});
    added.push(await jobView(job));
  }
  emit({ event: 'added', jobs: added });
  await queue.close();
});

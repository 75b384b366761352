// Job schedulers with Node BullMQ. Argument: {port, prefix, queue, upsert?: [{id, repeat,
// template: {name, data, opts}}], remove?: [id]}. Upserts and removes (in that order), then
// prints {"event": "schedulers", "upserted": [<job id>...], "removed": [bool...],
// "schedulers": await queue.getJobSchedulers()}.
import { Queue } from 'bullmq';
import { connection, emit, parseArgs, runMain } from './common.mjs';

await runMain(async () => {
  const args = parseArgs();
  const queue = new Queue(args.queue, { connection: connection(args), prefix: args.prefix });
  const upserted = [];
  for (const spec of args.upsert ?? []) {
    const job = await queue.upsertJobScheduler(spec.id, spec.repeat, spec.template);
    upserted.push(job?.id ?? null);
  }
  const removed = [];
  for (const id of args.remove ?? []) removed.push(await queue.removeJobScheduler(id));
  emit({ event: 'schedulers', upserted, removed, schedulers: await queue.getJobSchedulers() });
  await queue.close();
});

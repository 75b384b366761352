// Queue controls from Node BullMQ. Argument: {port, prefix, queue, action} where action is
// "pause", "resume", "isPaused" or "dedupJobId" (with `dedupId`). Prints
// {"event": "control", "action": ..., "result": ...}.
import { Queue } from 'bullmq';
import { connection, emit, parseArgs, runMain } from './common.mjs';

await runMain(async () => {
  const args = parseArgs();
  const queue = new Queue(args.queue, { connection: connection(args), prefix: args.prefix });
  let result = null;
  if (args.action === 'pause') await queue.pause();
  else if (args.action === 'resume') await queue.resume();
  else if (args.action === 'isPaused') result = await queue.isPaused();
  else if (args.action === 'dedupJobId') result = await queue.getDeduplicationJobId(args.dedupId);
  else throw new Error(`unknown action ${args.action}`);
  emit({ event: 'control', action: args.action, result });
  await queue.close();
});

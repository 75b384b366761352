// Adds one flow with Node BullMQ's FlowProducer. Argument: {port, prefix, flow} where
// flow is {name, queueName, data, opts, children: [...]}. Prints {"event": "added", "tree"}
// with each node's {id, queue, children}.
import { FlowProducer } from 'bullmq';
import { connection, emit, parseArgs, runMain } from './common.mjs';

function view(node) {
  return { id: node.job.id, queue: node.job.queueName,
           children: (node.children ?? []).map(view) };
}

await runMain(async () => {
  const args = parseArgs();
  const producer = new FlowProducer({ connection: connection(args), prefix: args.prefix });
  const tree = await producer.add(args.flow);
  emit({ event: 'added', tree: view(tree) });
  await producer.close();
});

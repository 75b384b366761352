import { Queue, Worker } from 'bullmq';
const name = 'nodew' + Date.now();
const connection = { host: '127.0.0.1', port: 6412 };
const q = new Queue(name, { connection });
const opts = { attempts: 3, backoff: { type: 'exponential', delay: 1000 }, removeOnComplete: { count: 100, age: 86400 }, removeOnFail: { count: 500 } };
const N = 10000;
for (let f = 0; f < N; f += 1000) { const b = []; for (let i = f; i < f + 1000; i++) b.push({ name: 'sync-transactions', data: { userId: `user-${i}`, accountId: `acct-${i}`, syncType: 'incremental' }, opts }); await q.addBulk(b); }
let n = 0; let done; const p = new Promise(r => done = r);
const c0 = process.cpuUsage(); const t0 = performance.now();
const w = new Worker(name, async () => { n++; if (n >= N) done(); return { success: true }; }, { connection, concurrency: 1 });
await p;
const el = performance.now() - t0; const c = process.cpuUsage(c0);
console.log(`node c=1: ${(el*1000/N).toFixed(1)} us/job wall, cpu ${((c.user+c.system)/N).toFixed(1)} (user ${(c.user/N).toFixed(1)} sys ${(c.system/N).toFixed(1)})`);
await w.close(); await q.obliterate({ force: true }); await q.close();

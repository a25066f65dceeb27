// BullMQ drain and end-to-end benchmark: the peer Sentinel's `sentinel bench jobs` is compared with.
// Usage: node drain.js <redis-url> <jobs> <concurrency,...>
// Drain: <jobs> no-op jobs added with addBulk first, then one Worker (no-op processor,
// removeOnComplete) empties the queue; the rate is jobs / (last completed - first started).
// End to end: the worker is running while jobs are added one by one (64 concurrent adders).
'use strict';
const { Queue, Worker } = require('bullmq');

const [url = 'redis://127.0.0.1:6379', jobsArg = '20000', concArg = '1,10,50'] = process.argv.slice(2);
const jobs = Number(jobsArg);
const u = new URL(url);
const connection = { host: u.hostname, port: Number(u.port || 6379), maxRetriesPerRequest: null };

async function run(concurrency) {
  const name = `bench-${process.pid}-${concurrency}-${Date.now()}`;
  const queue = new Queue(name, { connection });
  const opts = { removeOnComplete: true, removeOnFail: true };
  let t = process.hrtime.bigint();
  for (let i = 0; i < jobs; i += 1000) {
    const n = Math.min(1000, jobs - i);
    await queue.addBulk(Array.from({ length: n }, (_, k) => ({ name: 'noop', data: { i: i + k }, opts })));
  }
  const bulk = jobs / (Number(process.hrtime.bigint() - t) / 1e9);

  let first = null;
  let done = 0;
  let finished;
  const allDone = new Promise((resolve) => { finished = resolve; });
  const worker = new Worker(name, async () => { if (first === null) first = process.hrtime.bigint(); }, { connection, concurrency });
  worker.on('completed', () => { done += 1; if (done === jobs) finished(process.hrtime.bigint()); });
  const last = await allDone;
  const drain = jobs / (Number(last - first) / 1e9);

  done = 0;
  const again = new Promise((resolve) => { finished = resolve; });
  t = process.hrtime.bigint();
  let next = 0;
  const adders = Array.from({ length: 64 }, async () => {
    while (next < jobs) { next += 1; await queue.add('noop', { i: next }, opts); }
  });
  await Promise.all(adders);
  const single = jobs / (Number(process.hrtime.bigint() - t) / 1e9);
  const end = await again;
  const e2e = jobs / (Number(end - t) / 1e9);
  await worker.close();
  await queue.obliterate({ force: true });
  await queue.close();
  console.log(`| bullmq | ${concurrency} | ${jobs} | ${bulk.toFixed(0)} | ${drain.toFixed(0)} | ${single.toFixed(0)} | ${e2e.toFixed(0)} |`);
}

(async () => {
  console.log('| tool | concurrency | jobs | bulk add (jobs/s) | drain (jobs/s) | single add (jobs/s) | end-to-end (jobs/s) |');
  console.log('|---|---:|---:|---:|---:|---:|---:|');
  for (const c of concArg.split(',').map(Number)) await run(c);
  process.exit(0);
})().catch((e) => { console.error(e); process.exit(1); });

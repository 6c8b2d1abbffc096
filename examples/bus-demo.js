'use strict';

// The bus in one file: a forkline cluster of three workers that publish and subscribe, enqueue and process jobs,
// and ask and answer requests, all through `bus`. `node examples/bus-demo.js` runs it local-only (no broker: the
// primary routes everything); `FORKLINE_BUS_URL=redis://127.0.0.1:6379 node examples/bus-demo.js` runs it through a
// Redis (npm install ioredis). examples/job-queue.js shows two hosts sharing one queue.

const { cluster, bus } = require('forkline');

const WORKERS = 3;

if (cluster.isPrimary) {
  for (let i = 0; i < WORKERS; i++) cluster.fork();
  let ready = 0;
  let finished = 0;
  let jobs = 0;
  cluster.on('message', (worker, message) => {
    // Once every worker has its listeners in place, one broadcast starts them all.
    if (message === 'ready' && ++ready === WORKERS)
      cluster.broadcast({ note: 'hello from the primary of ' + bus.host });
    if (message === 'job done') jobs++;
    if (message === 'finished') finished++;
    if (finished === WORKERS && jobs === WORKERS) cluster.disconnect();
  });
} else {
  const id = cluster.worker.id;
  const log = (...args) => console.log(`[worker ${id}, pid ${process.pid}]`, ...args);
  let news = 0;
  let answered = false;
  const finishedYet = () => news === WORKERS && answered && process.send('finished');

  (async () => {
    await bus.subscribe('news', (message, { host, pid }) => {
      log(`news from ${host}/${pid}:`, message);
      news++;
      finishedYet();
    });
    bus.process('jobs', async (job, { attempt }) => {
      log(`job ${job.n} (attempt ${attempt})`);
      process.send('job done');
    });
    bus.respond('square', (n) => n * n);
    process.send('ready');
  })();

  // cluster.broadcast() arrives as a plain message.
  process.on('message', async (message) => {
    log('broadcast:', message);
    await bus.publish('news', `worker ${id} is up`);
    await bus.enqueue('jobs', { n: id });
    log(`${id}² =`, await bus.request('square', id));
    answered = true;
    finishedYet();
  });
}

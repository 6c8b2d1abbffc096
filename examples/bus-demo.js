'use strict';

// The bus in one file: `node examples/bus-demo.js` runs one host in local-only mode (no broker);
// `FORKLINE_BUS_URL=redis://127.0.0.1:6379 node examples/bus-demo.js` in two terminals runs two hosts on one Redis
// (npm install ioredis), and then every message, job and request crosses between them.

const { cluster, bus } = require('..');

if (cluster.isPrimary) {
  for (let i = 0; i < 3; i++) cluster.fork();
  setTimeout(() => cluster.broadcast({ note: 'hello from the primary of ' + bus.host }), 1000);
  setTimeout(() => cluster.disconnect(), 3000);
} else {
  const id = cluster.worker.id;
  const log = (...args) => console.log(`[worker ${id}, pid ${process.pid}]`, ...args);
  process.on('message', (message) => log('broadcast:', message));
  (async () => {
    await bus.subscribe('news', (message, { host, pid }) => log(`news from ${host}/${pid}:`, message));
    bus.process('jobs', async (job, { attempt }) => log(`job ${job.n} (attempt ${attempt})`));
    bus.respond('square', (n) => n * n);
    await new Promise((resolve) => setTimeout(resolve, 300));
    await bus.publish('news', `worker ${id} is up`);
    await bus.enqueue('jobs', { n: id });
    log(`${id}² =`, await bus.request('square', id));
  })();
}

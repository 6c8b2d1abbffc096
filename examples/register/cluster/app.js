'use strict';

// An HTTP server on node:cluster, written without forkline: the primary forks the workers and counts, from their
// messages, the requests they served; SIGTERM stops it gracefully. PORT (default 0: any free port), HOST (default
// 127.0.0.1) and WORKERS (default: one per core, at least 2) set it up.

const cluster = require('node:cluster');
const http = require('node:http');
const os = require('node:os');

if (cluster.isPrimary) {
  const workers = Number(process.env.WORKERS) || Math.max(2, os.availableParallelism());
  const served = {};
  let listening = 0;
  for (let i = 0; i < workers; i++) cluster.fork();
  cluster.on('message', (worker, message) => {
    if (message.served) served[worker.id] = (served[worker.id] || 0) + 1;
  });
  cluster.on('listening', (worker, address) => {
    if (++listening === workers) console.log(`listening on ${address.address}:${address.port}`);
  });
  cluster.on('exit', (worker, code, signal) => {
    if (!worker.exitedAfterDisconnect) console.error(`worker ${worker.id} died (${signal || code})`);
  });
  process.on('SIGTERM', () => {
    cluster.disconnect(() => {
      const total = Object.values(served).reduce((a, b) => a + b, 0);
      console.log(`served ${total} requests: ${JSON.stringify(served)}`);
    });
  });
} else {
  const server = http.createServer((req, res) => {
    process.send({ served: req.url });
    res.end(`hello from worker ${cluster.worker.id}\n`);
  });
  server.listen(Number(process.env.PORT) || 0, process.env.HOST || '127.0.0.1');
}

'use strict';

// A cluster primary (forkline's cluster) under the policy argv[2] (rr or reuseport): two HTTP workers, then N
// sequential requests, each on a new connection. Prints one JSON line: the policy it ran, the status codes, how many
// answers each worker gave, and the socket each worker holds. Killed workers and a hard bound on its time make sure
// no worker outlives it.
const http = require('node:http');
const path = require('node:path');
const { cluster } = require('forkline');

const N = 20;
const POLICIES = { rr: cluster.SCHED_RR, reuseport: cluster.SCHED_REUSEPORT };
const workers = [];
const finish = (result, code) => {
  for (const worker of workers) if (!worker.isDead()) worker.process.kill('SIGKILL');
  process.stdout.write(`${JSON.stringify(result)}\n`);
  process.exit(code);
};
setTimeout(() => finish({ error: 'timed out' }, 1), 150_000).unref();
process.on('uncaughtException', (err) => finish({ error: err.stack }, 1));

const get = (port) =>
  new Promise((resolve, reject) => {
    http
      .get({ host: '127.0.0.1', port, agent: false }, (res) => {
        let body = '';
        res.on('data', (chunk) => (body += chunk));
        res.on('end', () => resolve({ status: res.statusCode, body }));
      })
      .on('error', reject);
  });

cluster.schedulingPolicy = POLICIES[process.argv[2]];
cluster.setupPrimary({ exec: path.join(__dirname, 'worker.js') });
(async () => {
  const sockets = [];
  const listening = [];
  for (let i = 0; i < 2; i++) {
    const worker = cluster.fork();
    workers.push(worker);
    sockets.push(new Promise((resolve) => worker.once('message', (m) => resolve(m.socket))));
    listening.push(new Promise((resolve) => worker.once('listening', (address) => resolve(address.port))));
  }
  const ports = await Promise.all(listening);
  const result = {
    policy: cluster.schedulingPolicy,
    ports,
    sockets: await Promise.all(sockets),
    statuses: {},
    byWorker: {},
  };
  const ids = new Map(workers.map((w) => [`pid ${w.process.pid}`, w.id]));
  for (let i = 0; i < N; i++) {
    const { status, body } = await get(ports[0]);
    result.statuses[status] = (result.statuses[status] ?? 0) + 1;
    const id = ids.get(body) ?? body;
    result.byWorker[id] = (result.byWorker[id] ?? 0) + 1;
  }
  const exits = workers.map((worker) => new Promise((resolve) => worker.process.once('exit', resolve)));
  await new Promise((resolve) => cluster.disconnect(resolve));
  await Promise.all(exits);
  result.exits = workers.map((w) => [w.process.exitCode, w.exitedAfterDisconnect]);
  finish(result, 0);
})();

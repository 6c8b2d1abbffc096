'use strict';

// Benchmark cluster primary: forks WORKERS unmodified HTTP workers (http-worker.js) with node:cluster or forkline's
// cluster and a given scheduling policy, and says where they listen once every worker's 'listening' event fired.
//
//   node bench/children/cluster-primary.js <node|forkline> <rr|none|reuseport> [workers=2]
//
// Standalone it prints `port <port>` on stdout and runs until SIGINT/SIGTERM. Forked by bench.js (an IPC channel to
// its parent) it sends { ready: true, port, policy, pids } instead, and shuts the workers down and exits when that
// channel disconnects. A worker that dies before the shutdown is an error: it is reported and the primary exits 1.

const net = require('node:net');
const path = require('node:path');

const [implName, policyName, workersArg = '2'] = process.argv.slice(2);
const WORKERS = Number(workersArg);
const POLICIES = { rr: ['SCHED_RR', 2], none: ['SCHED_NONE', 1], reuseport: ['SCHED_REUSEPORT', 3] };
if (!['node', 'forkline'].includes(implName) || !POLICIES[policyName] || !(WORKERS >= 1)) {
  console.error('usage: node bench/children/cluster-primary.js <node|forkline> <rr|none|reuseport> [workers=2]');
  process.exit(2);
}
const HOST = '127.0.0.1';

function loadCluster() {
  if (implName === 'node') return require('node:cluster');
  const forkline = require('../..');
  if (typeof forkline.cluster !== 'object' || forkline.cluster === null) {
    throw new Error("require('forkline').cluster is not there (yet)");
  }
  return forkline.cluster;
}

const report = (msg) => {
  if (process.send) process.send(msg);
  else if (msg.ready) console.log(`port ${msg.port}`);
  else if (msg.error) console.error(`cluster-primary: ${msg.error}`);
};

// A free port on HOST: every worker listens on the same explicit port (not 0), so that a policy where each worker
// binds its own socket (SO_REUSEPORT) does not depend on how port 0 is shared.
function freePort() {
  return new Promise((resolve, reject) => {
    const probe = net.createServer();
    probe.once('error', reject);
    probe.listen(0, HOST, () => {
      const { port } = probe.address();
      probe.close(() => resolve(port));
    });
  });
}

async function main() {
  const cluster = loadCluster();
  const [constName, constValue] = POLICIES[policyName];
  const policy = cluster[constName] ?? constValue;
  if (implName === 'node' && cluster[constName] === undefined) {
    throw new Error(`node:cluster has no ${constName}`);
  }
  cluster.schedulingPolicy = policy;
  cluster.setupPrimary({ exec: path.join(__dirname, 'http-worker.js') });
  const port = await freePort();

  let shuttingDown = false;
  const pending = new Set();
  for (let k = 0; k < WORKERS; k++) {
    const worker = cluster.fork({ PORT: String(port), HOST });
    pending.add(worker.id);
    worker.on('exit', (code, signal) => {
      if (shuttingDown) return;
      report({ error: `worker ${worker.id} (pid ${worker.process.pid}) exited (code ${code}, signal ${signal})` });
      process.exit(1);
    });
    worker.on('error', (err) => {
      if (shuttingDown) return;
      report({ error: `worker ${worker.id}: ${err.code ?? ''} ${err.message}` });
      process.exit(1);
    });
  }
  cluster.on('listening', (worker, address) => {
    if (address.port !== port) {
      report({ error: `worker ${worker.id} listens on port ${address.port}, expected ${port}` });
      process.exit(1);
    }
    pending.delete(worker.id);
    if (pending.size !== 0) return;
    if (cluster.schedulingPolicy !== policy) {
      report({
        error: `schedulingPolicy is ${cluster.schedulingPolicy} once forked, expected ${policy} (${constName})`,
      });
      process.exit(1);
    }
    const workers = Object.values(cluster.workers);
    report({
      ready: true,
      port,
      impl: implName,
      policy: cluster.schedulingPolicy,
      pids: workers.map((w) => w.process.pid),
    });
  });

  const shutdown = () => {
    if (shuttingDown) return;
    shuttingDown = true;
    const workers = Object.values(cluster.workers);
    let left = workers.length;
    if (left === 0) process.exit(0);
    for (const worker of workers) {
      worker.once('exit', () => {
        if (--left === 0) process.exit(0);
      });
      worker.process.kill('SIGTERM');
    }
    setTimeout(() => {
      for (const worker of workers) worker.process.kill('SIGKILL');
      process.exit(0);
    }, 2000).unref();
  };
  if (process.send) process.on('disconnect', shutdown);
  process.on('SIGINT', shutdown);
  process.on('SIGTERM', shutdown);
}

main().catch((err) => {
  report({ error: err.message });
  process.exit(1);
});

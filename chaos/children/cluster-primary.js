'use strict';

// A forkline cluster primary for the kill-primary scenario, run as its own process and SIGKILLed by the chaos
// parent. argv: <policy: rr|none|reuseport> <workers> [slowMs]. Workers run http-worker.js and share our stdout (the
// chaos parent's pipe), where everyone writes one line per event, synchronously: `fork <pid>` (us, per worker),
// `ready {"port","pids"}` (us, once every worker listens), and the workers' own lines.

const fs = require('node:fs');
const path = require('node:path');
// argv[5] 'node': node:cluster instead (the oracle, to compare by hand).
const cluster =
  process.argv[5] === 'node' ? require('node:cluster') : require(path.join(__dirname, '..', '..')).cluster;

const [policy, workers, slowMs = '0'] = process.argv.slice(2);
const note = (line) => fs.writeSync(1, `${line}\n`);

cluster.schedulingPolicy = { rr: cluster.SCHED_RR, none: cluster.SCHED_NONE, reuseport: cluster.SCHED_REUSEPORT }[
  policy
];
cluster.setupPrimary({ exec: path.join(__dirname, 'http-worker.js'), silent: false });
const pids = [];
let listening = 0;
let port = null;
cluster.on('fork', (worker) => {
  pids.push(worker.process.pid);
  note(`fork ${worker.process.pid}`);
});
cluster.on('listening', (worker, address) => {
  port = address.port;
  if (++listening === Number(workers)) note(`ready ${JSON.stringify({ port, pids })}`);
});
for (let i = 0; i < Number(workers); i++) cluster.fork({ SLOW_MS: slowMs });
// Should the chaos parent die without killing us, do not linger: a normal exit disconnects the workers.
setTimeout(() => process.exit(3), 60_000);

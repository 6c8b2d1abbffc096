'use strict';

// One host of the bus benchmark: a cluster primary and its workers, in this one file.
//   node bus-host.js <impl> <url> <namespace> <host> <workers>
// impl 'forkline': forkline's cluster primary with its bus (one set of Redis connections for the host, the workers
// on IPC); 'forkline-direct': the same, with each worker publishing through a connection of its own. impl 'baseline': node:cluster, and each worker wires itself to Redis by hand, as apps do today: its own
// ioredis publisher and subscriber (and, for the queue, its own blocking connection popping a list).
// The primary passes the orchestrator's commands (bus-bench.js) on to its workers and their reports back.

const [impl, url, namespace, host, workerCount] = process.argv.slice(2);
// 'forkline-direct': the same with `directPublish` (each worker publishes through a connection of its own).
const forkline = impl.startsWith('forkline');
const cluster = forkline ? require('../..').cluster : require('node:cluster');
const stamps = require('./redis-stamps');

// Tracing the latency scenario's extra trips (redis-stamps.js), in the primary and each worker alike.
const tracing = { on: false, publish: [], listen: [] };
const traceOps = {
  traceStart({ topic }) {
    Object.assign(tracing, { on: true, publish: [], listen: [] });
    stamps.start(topic);
  },
  traceStop() {
    tracing.on = false;
    return { ...stamps.stop(), publish: tracing.publish, listen: tracing.listen };
  },
};

if (cluster.isPrimary) {
  if (forkline) cluster.setupPrimary({ bus: { url, namespace, host, directPublish: impl === 'forkline-direct' } });
  const workers = [];
  let online = 0;
  for (let i = 0; i < Number(workerCount); i++) {
    const worker = cluster.fork({ BENCH_WORKER: String(i) });
    workers.push(worker);
    worker.on('message', (message) => {
      if (message.up) {
        if (++online === workers.length) process.send({ up: true, pids: workers.map((w) => w.process.pid) });
      } else process.send({ ...message, worker: i });
    });
  }
  process.on('message', (message) => {
    if (message.to === 'primary') return process.send({ id: message.id, ...traceOps[message.op](message) });
    for (const [i, worker] of workers.entries()) if (message.to === 'all' || message.to === i) worker.send(message);
  });
  process.on('disconnect', () => {
    for (const worker of workers) worker.process.kill('SIGKILL');
    process.exit(0);
  });
} else {
  const index = Number(process.env.BENCH_WORKER);
  const transport = forkline ? forklineWorker() : baselineWorker(`baseline:${namespace}:${host}:${index}`);
  const ops = {
    ...traceOps,
    // Counts messages on `topic`; says when each of `marks` (counts) is reached.
    async sub({ topic, marks }) {
      let count = 0;
      await transport.subscribe(topic, () => {
        if (marks.includes(++count)) process.send({ ev: 'fanDone', mark: count });
      });
    },
    // Answers every 'ping' with the same message on 'pong'.
    async pong() {
      await transport.subscribe('ping', (m) => {
        if (tracing.on) tracing.listen.push(stamps.now());
        transport.publish('pong', m);
      });
    },
    // n round trips ping → pong, one at a time; one-way latency is half of each.
    async ping({ n, warm }) {
      let waiting = null;
      await transport.subscribe('pong', (m) => waiting && waiting(m));
      const oneWay = [];
      for (let i = 0; i < warm + n; i++) {
        const t0 = process.hrtime.bigint();
        const back = new Promise((resolve) => (waiting = resolve));
        if (tracing.on) tracing.publish.push(stamps.now());
        await transport.publish('ping', { i });
        const m = await back;
        if (m.i !== i) throw new Error(`pong ${m.i} for ping ${i}`);
        if (i >= warm) oneWay.push(Number(process.hrtime.bigint() - t0) / 2e3);
      }
      return { oneWay };
    },
    // Processes 'jobs' one at a time, reporting how many were done every 20 ms.
    async proc() {
      let done = 0;
      let told = 0;
      setInterval(() => {
        if (done === told) return;
        process.send({ ev: 'jobs', n: done - told });
        told = done;
      }, 20);
      transport.process('jobs', () => {
        done++;
      });
    },
  };
  process.on('message', async (message) => {
    const result = await ops[message.op](message);
    process.send({ id: message.id, ...result });
  });
  transport.ready().then(() => process.send({ up: true }));
}

function forklineWorker() {
  const bus = require('../../lib/bus');
  return {
    ready: async () => {},
    subscribe: (topic, listener) => bus.subscribe(topic, listener),
    publish: (topic, m) => bus.publish(topic, m),
    process: (queue, handler) => bus.process(queue, handler, { concurrency: 1 }),
  };
}

function baselineWorker(name) {
  const Redis = require('ioredis');
  const pub = new Redis(url, { connectionName: `${name}:pub` });
  const sub = new Redis(url, { connectionName: `${name}:sub` });
  const listeners = new Map();
  sub.on('message', (channel, text) => {
    const listener = listeners.get(channel);
    if (listener) listener(JSON.parse(text));
  });
  return {
    ready: () => Promise.all([pub.ping(), sub.ping()]),
    async subscribe(topic, listener) {
      listeners.set(`${namespace}:${topic}`, listener);
      await sub.subscribe(`${namespace}:${topic}`);
    },
    publish: (topic, m) => pub.publish(`${namespace}:${topic}`, JSON.stringify(m)),
    // A list popped with BRPOP on a connection of its own: the usual hand-wired task queue.
    process(queue, handler) {
      const block = new Redis(url, { connectionName: `${name}:block` });
      (async () => {
        for (;;) {
          const [, text] = await block.brpop(`${namespace}:${queue}`, 0);
          await handler(JSON.parse(text));
        }
      })();
    },
  };
}

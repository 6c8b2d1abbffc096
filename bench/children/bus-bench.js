'use strict';

// The bus benchmark's orchestrator, forked by bench/scenarios/bus.js once per measurement:
//   node bus-bench.js <impl> <url> <mode> <workers per host>
// It starts 2 hosts (bus-host.js, each in a process group of its own), says { ready: true }, then on { go: params }
// runs one measurement and answers { result }. On disconnect it kills the hosts and exits. It is also the standalone
// publisher of the fan-out and the producer of the queue (forkline: `bus.connect()`; baseline: an ioredis client).

const { fork } = require('node:child_process');
const path = require('node:path');
const Redis = require('ioredis');

const [impl, url, mode, workersPerHost] = process.argv.slice(2);
const namespace = `bench${process.pid}`;
const HOSTS = ['h0', 'h1'];

const hosts = HOSTS.map((name) => {
  const child = fork(path.join(__dirname, 'bus-host.js'), [impl, url, namespace, name, workersPerHost], {
    detached: true,
  });
  const host = { name, child, up: null, replies: new Map(), listeners: new Set(), ids: 0 };
  host.up = new Promise((resolve) => {
    child.on('message', (message) => {
      if (message.up) return resolve(message);
      if (message.id !== undefined) return host.replies.get(message.id)?.(message);
      for (const listener of host.listeners) listener(message);
    });
  });
  return host;
});

function command(host, to, op, args = {}) {
  const count = to === 'all' ? Number(workersPerHost) : 1;
  const id = ++host.ids;
  return new Promise((resolve) => {
    const replies = [];
    host.replies.set(id, (reply) => {
      replies.push(reply);
      if (replies.length === count) {
        host.replies.delete(id);
        resolve(to === 'all' ? replies : replies[0]);
      }
    });
    host.child.send({ to, op, id, ...args });
  });
}

function killHosts() {
  for (const host of hosts) {
    try {
      process.kill(-host.child.pid, 'SIGKILL');
    } catch {
      // gone
    }
  }
}

// The publisher / producer of this process.
async function client() {
  if (impl.startsWith('forkline')) {
    const bus = require('../../lib/bus');
    await bus.connect({ url, namespace, host: 'bench-orchestrator' });
    return { publish: (topic, m) => bus.publish(topic, m), enqueue: (queue, job) => bus.enqueue(queue, job) };
  }
  const redis = new Redis(url);
  return {
    publish: (topic, m) => redis.publish(`${namespace}:${topic}`, JSON.stringify(m)),
    enqueue: (queue, job) => redis.lpush(`${namespace}:${queue}`, JSON.stringify(job)),
  };
}

// At most `window` operations in flight.
async function windowed(n, window, op) {
  let next = 0;
  const lane = async () => {
    while (next < n) await op(next++);
  };
  await Promise.all(Array.from({ length: Math.min(window, n) }, lane));
}

async function connectionsPerHost() {
  const admin = new Redis(url);
  const list = await admin.client('LIST');
  admin.disconnect();
  const prefix = (host) =>
    impl.startsWith('forkline') ? `name=forkline:${namespace}:${host}:` : `name=baseline:${namespace}:${host}:`;
  return Math.max(...HOSTS.map((host) => list.split('\n').filter((line) => line.includes(prefix(host))).length));
}

// Per trip (one ping in flight at a time, so the k-th stamp of each step is the k-th trip's), µs: the publishing
// worker's publish() → its PUBLISH handed to ioredis (forkline: the IPC hop and the gateway), → a subscriber
// connection of the other host emitting it (Redis, and waiting for a CPU), → the subscribing worker's listener
// (forkline: the gateway and the IPC hop).
function hops(publish, write, read, listen) {
  const trips = publish.length;
  if (write.length !== trips || read.length !== trips || listen.length !== trips) {
    throw new Error(
      `stamps: ${trips} publishes, ${write.length} writes, ${read.length} reads, ${listen.length} listens`,
    );
  }
  const each = (from, to) => from.map((t, i) => to[i] - t);
  return { toBroker: each(publish, write), broker: each(write, read), fromBroker: each(read, listen) };
}

const runs = {
  // n timed round trips, then `traced` more with every process noting its steps (redis-stamps.js), for the hops.
  async latency({ n, warm, traced }) {
    await command(hosts[1], 0, 'pong');
    const { oneWay } = await command(hosts[0], 0, 'ping', { n, warm });
    // Per host: [the primary's reply, the workers' replies].
    const everyone = (op, args) =>
      Promise.all(
        hosts.map((host) => Promise.all([command(host, 'primary', op, args), command(host, 'all', op, args)])),
      );
    await everyone('traceStart', { topic: 'ping' });
    await command(hosts[0], 0, 'ping', { n: traced, warm: 0 });
    const [[primary0, workers0], [primary1, workers1]] = await everyone('traceStop');
    const all = (replies, key) => replies.flatMap((reply) => reply[key]);
    return {
      oneWay,
      hops: hops(
        all(workers0, 'publish'),
        all([primary0, ...workers0], 'write'),
        all([primary1, ...workers1], 'read'),
        all(workers1, 'listen'),
      ),
    };
  },

  // A warm-up of `warm` messages (JIT, connections) everyone must have got, then `n` timed.
  async fanout({ n, warm }) {
    const pub = await client();
    const subscribers = HOSTS.length * Number(workersPerHost);
    const reached = new Map();
    const waiters = new Map();
    const marks = [warm, warm + n];
    const mark = (count) => new Promise((resolve) => waiters.set(count, resolve));
    for (const host of hosts) {
      host.listeners.add((message) => {
        if (message.ev !== 'fanDone') return;
        const count = (reached.get(message.mark) ?? 0) + 1;
        reached.set(message.mark, count);
        if (count === subscribers) waiters.get(message.mark)();
      });
    }
    const warmed = mark(warm);
    const finished = mark(warm + n);
    await Promise.all(hosts.map((host) => command(host, 'all', 'sub', { topic: 'fan', marks })));
    const payload = 'x'.repeat(64);
    await windowed(warm, 256, (i) => pub.publish('fan', { i, payload }));
    await warmed;
    const t0 = process.hrtime.bigint();
    await windowed(n, 256, (i) => pub.publish('fan', { i: warm + i, payload }));
    await finished;
    const seconds = Number(process.hrtime.bigint() - t0) / 1e9;
    return { seconds, delivered: (n * subscribers) / seconds, connections: await connectionsPerHost() };
  },

  async queue({ n }) {
    const producer = await client();
    await windowed(n, 256, (i) => producer.enqueue('jobs', { i }));
    let total = 0;
    let allDone;
    const done = new Promise((resolve) => (allDone = resolve));
    for (const host of hosts) {
      host.listeners.add((message) => {
        if (message.ev === 'jobs' && (total += message.n) >= n) allDone();
      });
    }
    const t0 = process.hrtime.bigint();
    await Promise.all(hosts.map((host) => command(host, 'all', 'proc')));
    await done;
    const seconds = Number(process.hrtime.bigint() - t0) / 1e9;
    return { seconds, jobs: n / seconds, connections: await connectionsPerHost() };
  },
};

process.on('disconnect', () => {
  killHosts();
  process.exit(0);
});
process.on('exit', killHosts);

Promise.all(hosts.map((host) => host.up)).then(() => process.send({ ready: true }));
process.on('message', async ({ go }) => {
  try {
    process.send({ result: await runs[mode](go) });
  } catch (err) {
    process.send({ error: err.stack });
  }
});

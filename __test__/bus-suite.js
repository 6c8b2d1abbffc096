'use strict';

// The bus suite's cases, shared by the deployments: bus.test.js (one redis-server), bus-cluster.test.js (a 3-primary
// Redis Cluster) and bus-sentinel.test.js (a primary and a replica under three sentinels). Each "host" is a forkline
// cluster primary of its own (its own process group) with 2 to 6 workers (fixtures/bus-host.js).
//
// A deployment (the `where` object, filled in by the file's before()) gives:
//   env                 what the fixture needs to reach the broker (BUS_URL, BUS_CLUSTER, BUS_SENTINELS...)
//   settings            the same as bus settings, for bus.connect() in this process
//   numsub(channel)     subscriber connections of a channel, over every node (sharded or classic)
//   publish(ch, text)   a raw publish (SPUBLISH where the bus shards pub/sub)
//   clientList()        CLIENT LIST of every node, one string
//   nodes               how many primaries (1 for one server or Sentinel)
//   cli                 the launcher's arguments and environment for `forkline cluster`, or null to skip that case

const assert = require('node:assert');
const { fork } = require('node:child_process');
const Redis = require('ioredis');
const { test } = require('node:test');
const { fixture, tmpDir } = require('./helpers');

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

async function until(what, check, ms = 20_000) {
  const deadline = Date.now() + ms;
  while (!check()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await sleep(20);
  }
}

let namespaces = 0;
const ns = () => `t${process.pid}-${++namespaces}`;

// A host: the primary forked detached (its own process group, so that kill() takes its workers too).
class Host {
  static async start(t, where, { workers = 2, namespace, local = false, ...settings } = {}) {
    const env = { ...process.env, BUS_WORKERS: String(workers), BUS_NAMESPACE: namespace };
    if (!local) Object.assign(env, where.env);
    for (const [key, value] of Object.entries(settings)) {
      if (value !== undefined) env[`BUS_${key.replace(/[A-Z]/g, (c) => `_${c}`).toUpperCase()}`] = String(value);
    }
    const child = fork(fixture('bus-host.js'), [], {
      env,
      detached: true,
      stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
    });
    const host = new Host(child);
    t.after(() => host.kill());
    await until('the host to start', () => host.info !== null || host.exited, 30_000);
    if (host.info === null) throw new Error('the host exited before it was ready');
    return host;
  }

  constructor(child) {
    this.child = child;
    this.info = null;
    this.events = [];
    this.replies = new Map();
    this.exited = false;
    this.ids = 0;
    child.on('exit', () => (this.exited = true));
    child.on('message', (message) => {
      if (message.op === 'ready' && message.host) this.info = message;
      else if (message.id !== undefined) this.replies.get(message.id)?.push(message);
      else if (message.ev) this.events.push(message);
    });
  }

  get pids() {
    return this.info.pids;
  }

  // Sends a command; resolves with the replies (one per worker addressed).
  async cmd(to, op, args = {}, ms = 20_000) {
    const id = ++this.ids;
    const replies = [];
    this.replies.set(id, replies);
    this.child.send({ to, op, id, ...args });
    const expected = to === 'all' ? this.pids.length : 1;
    await until(`replies to ${op}`, () => replies.length >= expected, ms);
    this.replies.delete(id);
    return to === 'all' ? replies : replies[0];
  }

  of(ev, filter = () => true) {
    return this.events.filter((e) => e.ev === ev && filter(e));
  }

  kill() {
    try {
      process.kill(-this.child.pid, 'SIGKILL');
    } catch {
      // gone
    }
  }
}

// The broker connections of `host` (named forkline:<ns>:<host>:<role>): how many, or how many per role.
async function connectionsOf(where, host, byRole = false) {
  const list = await where.clientList();
  const names = list
    .split('\n')
    .map((line) => /name=(\S*)/.exec(line)?.[1] ?? '')
    .filter((name) => name.includes('forkline:') && name.includes(`:${host}:`))
    // A Cluster client reads the slot map now and then through a connection of a moment.
    .filter((name) => !name.startsWith('ioredis-cluster(refresher)'));
  if (!byRole) return names.length;
  const count = { cmd: 0, sub: 0, block: 0, other: 0 };
  for (const name of names) {
    const role = name.slice(name.lastIndexOf(':') + 1);
    count[role in count ? role : 'other']++;
  }
  return count;
}

// The cases every deployment runs. `where` is filled in by the caller's before(); `skip` as node:test takes it.
function busCases(where, skip) {
  const start = (t, options) => Host.start(t, where, options);

  test(
    'pub/sub between workers of different hosts: every subscriber once, in order per publisher',
    { skip, timeout: 40_000 },
    async (t) => {
      const namespace = ns();
      const [a, b] = await Promise.all([start(t, { namespace }), start(t, { namespace, workers: 3 })]);
      await Promise.all([a.cmd('all', 'sub', { topic: 'news' }), b.cmd('all', 'sub', { topic: 'news' })]);
      const N = 200;
      const [fromA, fromB] = await Promise.all([
        a.cmd(0, 'pub', { topic: 'news', n: N, tag: 'a' }),
        b.cmd(2, 'pub', { topic: 'news', n: N, tag: 'b' }),
      ]);
      assert.deepStrictEqual([fromA.codes, fromB.codes], [[], []]);
      const subscribers = [...a.pids.map((pid) => [a, pid]), ...b.pids.map((pid) => [b, pid])];
      await until(
        'every message everywhere',
        () => a.of('msg').length + b.of('msg').length >= 2 * N * subscribers.length,
      );
      await sleep(200); // Anything extra (a duplicate) would show up now.
      for (const [host, pid] of subscribers) {
        const index = host.pids.indexOf(pid);
        const got = host.of('msg', (e) => e.worker === index);
        for (const tag of ['a', 'b']) {
          const seqs = got.filter((e) => e.m.tag === tag).map((e) => e.m.seq);
          assert.deepStrictEqual(seqs, [...Array(N).keys()], `worker ${pid}: messages of ${tag} once each, in order`);
        }
      }
      // Bus traffic is internal messages: a worker's plain 'message' listener saw none of it.
      assert.strictEqual(a.of('broadcast').length + b.of('broadcast').length, 0);
      // One broker subscription per topic per host, however many listeners; the last one out unsubscribes.
      const numsub = () => where.numsub(`${namespace}:t:news`);
      assert.strictEqual(await numsub(), 2);
      await a.cmd(0, 'unsub', { topic: 'news' });
      assert.strictEqual(await numsub(), 2);
      await a.cmd(1, 'unsub', { topic: 'news' });
      assert.strictEqual(await numsub(), 1);
      const fromAInB = b.of('msg', (e) => e.m.tag === 'a')[0].from;
      assert.strictEqual(fromAInB.host, a.info.host);
      assert.strictEqual(fromAInB.pid, a.pids[0]);
      assert.strictEqual(fromAInB.topic, 'news');
    },
  );

  test(
    'cluster.broadcast reaches every worker of every host as a plain message',
    { skip, timeout: 40_000 },
    async (t) => {
      const namespace = ns();
      const [a, b] = await Promise.all([start(t, { namespace }), start(t, { namespace, workers: 3 })]);
      const reply = await a.cmd('primary', 'broadcast', { m: { hello: 'all' } });
      assert.strictEqual(reply.code, undefined);
      await until('the broadcast everywhere', () => a.of('broadcast').length === 2 && b.of('broadcast').length === 3);
      for (const e of [...a.of('broadcast'), ...b.of('broadcast')]) assert.deepStrictEqual(e.m, { hello: 'all' });
    },
  );

  test(
    'a queue spread over hosts: each job done once; a throw retries, then <queue>:dead',
    { skip, timeout: 40_000 },
    async (t) => {
      const namespace = ns();
      const [a, b] = await Promise.all([start(t, { namespace }), start(t, { namespace })]);
      await Promise.all([
        a.cmd('all', 'proc', { queue: 'work', concurrency: 2, delay: 10 }),
        b.cmd('all', 'proc', { queue: 'work', concurrency: 2, delay: 10 }),
        a.cmd(0, 'proc', { queue: 'work:dead' }),
      ]);
      const N = 80;
      const jobs = [...Array(N).keys()].map((n) => ({ n }));
      jobs.push({ n: 'flaky', fail: 1 }, { n: 'poison', fail: 99 });
      const { ids } = await a.cmd(1, 'enq', { queue: 'work', jobs });
      assert.strictEqual(new Set(ids).size, jobs.length);
      const done = () => [...a.of('jobDone'), ...b.of('jobDone')].filter((e) => e.queue === 'work');
      await until('every job', () => done().length >= N + 1);
      await until('the poison job in work:dead', () => a.of('job', (e) => e.queue === 'work:dead').length === 1);
      await sleep(300);
      const doneOf = done().map((e) => e.job.n);
      assert.deepStrictEqual(
        doneOf.filter((n) => n !== 'flaky').sort((x, y) => x - y),
        [...Array(N).keys()],
      );
      assert.strictEqual(doneOf.filter((n) => n === 'flaky').length, 1);
      assert.ok(a.of('jobDone').length > 0 && b.of('jobDone').length > 0, 'both hosts took jobs');
      const flaky = [...a.of('job'), ...b.of('job')].filter((e) => e.job.n === 'flaky').map((e) => e.info.attempt);
      assert.deepStrictEqual(flaky.sort(), [1, 2]);
      const poison = [...a.of('job'), ...b.of('job')].filter((e) => e.job.n === 'poison' && e.queue === 'work');
      assert.deepStrictEqual(poison.map((e) => e.info.attempt).sort(), [1, 2, 3]);
      const dead = a.of('job', (e) => e.queue === 'work:dead')[0];
      assert.deepStrictEqual(dead.job, { n: 'poison', fail: 99 });
      assert.match(dead.info.error, /failing attempt 3/);
      assert.strictEqual(dead.info.id, ids[ids.length - 1]);
    },
  );

  test(
    'kill -9 of a whole host with jobs in its handlers: another host does them',
    { skip, timeout: 40_000 },
    async (t) => {
      const namespace = ns();
      const doomed = await start(t, { namespace, claimTimeout: 1000 });
      await doomed.cmd('all', 'proc', { queue: 'slow', concurrency: 2, hang: true });
      const { ids } = await doomed.cmd(0, 'enq', { queue: 'slow', jobs: [1, 2, 3, 4, 5, 6].map((n) => ({ n })) });
      await until('the doomed host to hold 4 jobs', () => doomed.of('job').length === 4);
      doomed.kill();
      await until('the doomed host to die', () => doomed.exited);
      const rescuer = await start(t, { namespace, claimTimeout: 1000 });
      await rescuer.cmd('all', 'proc', { queue: 'slow', concurrency: 2 });
      await until('every job done by the rescuer', () => rescuer.of('jobDone').length >= 6);
      await sleep(300);
      const doneIds = rescuer.of('jobDone').map((e) => e.info.id);
      assert.deepStrictEqual([...doneIds].sort(), [...ids].sort());
      const redone = rescuer.of('jobDone').filter((e) => doomed.of('job').some((d) => d.job.n === e.job.n));
      assert.strictEqual(redone.length, 4);
      for (const e of redone) assert.strictEqual(e.info.attempt, 2, 'a job whose host died counts one attempt');
    },
  );

  test(
    'request/reply across hosts, spread over responders; FORKLINE_BUS_TIMEOUT without one',
    { skip, timeout: 40_000 },
    async (t) => {
      const namespace = ns();
      const [a, b] = await Promise.all([start(t, { namespace }), start(t, { namespace, workers: 3 })]);
      await b.cmd('all', 'resp', { topic: 'add' });
      const replies = [];
      for (let i = 0; i < 12; i++) {
        const r = await a.cmd(i % 2, 'req', { topic: 'add', m: { a: i, b: 1 } });
        assert.strictEqual(r.code, undefined);
        assert.strictEqual(r.reply.sum, i + 1);
        replies.push(r.reply.pid);
      }
      assert.ok(replies.every((pid) => b.pids.includes(pid)));
      assert.ok(new Set(replies).size >= 2, 'requests spread over responders');
      const none = await a.cmd(0, 'req', { topic: 'nobody', m: 1, timeout: 300 });
      assert.strictEqual(none.code, 'FORKLINE_BUS_TIMEOUT');
    },
  );

  test('broker connections per host: the same with 2 and with 6 workers', { skip, timeout: 60_000 }, async (t) => {
    const counts = [];
    for (const workers of [2, 6]) {
      const namespace = ns();
      const host = await start(t, { namespace, workers });
      await host.cmd('all', 'sub', { topic: 'a' });
      await host.cmd('all', 'sub', { topic: 'b' });
      await host.cmd('all', 'proc', { queue: 'q' });
      await host.cmd('all', 'resp', { topic: 'r' });
      await host.cmd(0, 'req', { topic: 'r', m: { a: 1, b: 2 } });
      counts.push(await connectionsOf(where, host.info.host, true));
      host.kill();
    }
    // Per role: on one server one each (a blocking one once the host reads a stream); on a Cluster, a command
    // connection and a subscriber per node the host has used, and a blocking one per stream it reads (q and r).
    for (const count of counts) {
      assert.ok(count.cmd >= 1 && count.cmd <= where.nodes, `cmd ${count.cmd}`);
      assert.ok(count.sub >= 1 && count.sub <= where.nodes, `sub ${count.sub}`);
      assert.strictEqual(count.block, where.nodes === 1 ? 1 : 2);
      assert.strictEqual(count.other, 0);
    }
    if (where.nodes === 1) assert.deepStrictEqual(counts[1], counts[0]);
  });

  test(
    'bad input: topic names, size, handles, undecodable broker messages; namespaces apart',
    { skip, timeout: 40_000 },
    async (t) => {
      const namespace = ns();
      const [a, other] = await Promise.all([start(t, { namespace }), start(t, { namespace: ns() })]);
      assert.strictEqual((await a.cmd(0, 'pubOne', { topic: 'has space', m: 1 })).code, 'ERR_INVALID_ARG_VALUE');
      assert.strictEqual(
        (await a.cmd(0, 'pubOne', { topic: 'big', size: 2 * 1024 * 1024 })).code,
        'FORKLINE_BUS_MESSAGE_TOO_LARGE',
      );
      assert.strictEqual((await a.cmd(0, 'pubOne', { topic: 'h', handle: true })).code, 'FORKLINE_BUS_HANDLE');
      await Promise.all([a.cmd('all', 'sub', { topic: 'x' }), other.cmd('all', 'sub', { topic: 'x' })]);
      await where.publish(`${namespace}:t:x`, 'not\na bus\nmessage{');
      await until('an error event on the bus', () => a.of('busError').length === 1);
      assert.strictEqual(a.of('busError')[0].code, 'FORKLINE_BUS_MALFORMED_MESSAGE');
      // Several messages in one broker message (one publisher's tick): a bad one is an error, the others arrive.
      await where.publish(`${namespace}:t:x`, 'elsewhere:1\n7\n{"tag":"batch","n":1}\n{nope\n{"tag":"batch","n":2}');
      await until('a second error event', () => a.of('busError').length === 2);
      assert.strictEqual(a.of('busError')[1].code, 'FORKLINE_BUS_MALFORMED_MESSAGE');
      await until('the good ones of the batch', () => a.of('msg').length === 4);
      for (const worker of [0, 1]) {
        const got = a.of('msg', (e) => e.worker === worker).map((e) => [e.m.n, e.from.host, e.from.pid]);
        assert.deepStrictEqual(got, [
          [1, 'elsewhere:1', 7],
          [2, 'elsewhere:1', 7],
        ]);
      }
      await a.cmd(0, 'pub', { topic: 'x', n: 3, tag: 'ns' });
      await until('delivery within the namespace', () => a.of('msg').length === 10);
      await sleep(300);
      assert.strictEqual(other.of('msg').length, 0, 'another namespace sees nothing');
      assert.strictEqual(a.exited, false);
    },
  );

  test(
    '`forkline cluster` with the broker and a standalone process (`bus.connect`) on one bus',
    { skip: skip || (where.cli === null && 'no launcher setting for this deployment'), timeout: 40_000 },
    async (t) => {
      const namespace = ns();
      const bus = require('../lib/bus');
      assert.strictEqual(await bus.connect({ ...where.settings, namespace }), bus);
      t.after(() => bus.close());
      assert.strictEqual(bus.role, 'standalone');
      const hellos = new Map();
      const done = [];
      await bus.subscribe('hello', (m, info) => hellos.set(info.pid, m.role));
      await bus.subscribe('done', (m) => done.push(m.job.n));
      const { args, env } = where.cli;
      const cli = fork(require.resolve('..'), ['cluster', '-w', '2', ...args, fixture('bus-cli-app.js')], {
        // A control directory of this test's own: the bus files run at once and each starts this app, whose
        // control socket is named after it.
        env: { ...process.env, ...env, FORKLINE_BUS_NAMESPACE: namespace, FORKLINE_CONTROL_DIR: tmpDir(t) },
        detached: true,
        stdio: ['ignore', 'pipe', 'pipe', 'ipc'],
      });
      // What the launcher and its workers print, for the message of a failure below.
      let output = '';
      for (const stream of [cli.stdout, cli.stderr]) stream.on('data', (chunk) => (output += chunk));
      t.after(() => {
        try {
          process.kill(-cli.pid, 'SIGKILL');
        } catch {
          // gone
        }
      });
      let exit = null;
      cli.on('exit', (code, signal) => (exit = { code, signal }));
      await until('hello from both workers', () => hellos.size === 2 || exit !== null).catch((error) => {
        error.message += `; hellos from ${JSON.stringify([...hellos])}; the launcher printed:\n${output}`;
        throw error;
      });
      assert.strictEqual(exit, null, `the launcher ended early; it printed:\n${output}`);
      assert.deepStrictEqual([...hellos.values()], ['worker', 'worker']);
      for (let n = 0; n < 4; n++) await bus.enqueue('cli-jobs', { n });
      await until('the jobs done by the workers', () => done.length === 4);
      assert.deepStrictEqual(done.sort(), [0, 1, 2, 3]);
    },
  );

  test(
    'a worker killed mid-job: its host gives the job to another worker at once',
    { skip, timeout: 40_000 },
    async (t) => {
      const namespace = ns();
      const host = await start(t, { namespace });
      await host.cmd(0, 'proc', { queue: 'w', hang: true });
      const { ids } = await host.cmd(1, 'enq', { queue: 'w', jobs: [{ n: 1 }] });
      await until('the job in worker 0', () => host.of('job').length === 1);
      await host.cmd(1, 'proc', { queue: 'w' });
      process.kill(host.pids[0], 'SIGKILL');
      await until('the job redone by worker 1', () => host.of('jobDone').length === 1);
      const done = host.of('jobDone')[0];
      assert.strictEqual(done.worker, 1);
      assert.strictEqual(done.info.id, ids[0]);
      assert.strictEqual(done.info.attempt, 2);
    },
  );

  test(
    'quick handlers get their jobs in batches: every job once, attempts and ids kept',
    { skip, timeout: 40_000 },
    async (t) => {
      const namespace = ns();
      const [a, b] = await Promise.all([start(t, { namespace, workers: 3 }), start(t, { namespace })]);
      await Promise.all([a.cmd('all', 'proc', { queue: 'quick' }), b.cmd('all', 'proc', { queue: 'quick' })]);
      const N = 600;
      const { ids } = await a.cmd(0, 'enq', { queue: 'quick', jobs: [...Array(N).keys()].map((n) => ({ n })) });
      const done = () => [...a.of('jobDone'), ...b.of('jobDone')];
      await until('every quick job', () => done().length >= N);
      await sleep(300);
      assert.deepStrictEqual(
        done()
          .map((e) => e.job.n)
          .sort((x, y) => x - y),
        [...Array(N).keys()],
      );
      assert.deepStrictEqual(
        done()
          .map((e) => e.info.id)
          .sort(),
        [...ids].sort(),
      );
      assert.ok(done().every((e) => e.info.attempt === 1));
    },
  );

  test(
    'after cluster.disconnect() a primary lets go of the broker and ends by itself',
    { skip, timeout: 40_000 },
    async (t) => {
      const host = await start(t, { namespace: ns(), workers: 3 });
      await host.cmd('all', 'sub', { topic: 'x' });
      await host.cmd('all', 'proc', { queue: 'q' });
      await host.cmd('primary', 'disconnect');
      await until('the primary to exit', () => host.exited);
      assert.strictEqual(await connectionsOf(where, host.info.host), 0);
    },
  );
}

// Fills `where` for a Redis Cluster (redis-server.js's RedisCluster); resolves with an admin client over its nodes
// and whether its pub/sub is sharded (SPUBLISH known: Redis 7 and not renamed away).
async function clusterDeployment(where, cluster) {
  const admin = new Redis.Cluster(
    cluster.nodes.map(({ port }) => ({ host: '127.0.0.1', port })),
    { redisOptions: { maxRetriesPerRequest: 1 } },
  );
  admin.on('error', () => {});
  await new Promise((resolve) => admin.once('ready', resolve));
  const everyNode = (...args) => Promise.all(admin.nodes('master').map((node) => node.call(...args)));
  const sharded = Array.isArray((await admin.call('COMMAND', 'INFO', 'SPUBLISH'))[0]);
  Object.assign(where, {
    nodes: cluster.nodes.length,
    env: { BUS_CLUSTER: cluster.urls.join(',') },
    settings: { cluster: cluster.urls },
    async numsub(channel) {
      const replies = await everyNode('PUBSUB', sharded ? 'SHARDNUMSUB' : 'NUMSUB', channel);
      return replies.reduce((sum, reply) => sum + Number(reply[1]), 0);
    },
    publish: (channel, text) => (sharded ? admin.spublish(channel, text) : admin.publish(channel, text)),
    clientList: async () => (await everyNode('CLIENT', 'LIST')).join('\n'),
    cli: { args: [], env: { FORKLINE_BUS_CLUSTER: cluster.urls.join(',') } },
  });
  return { admin, sharded, everyNode };
}

module.exports = { Host, busCases, clusterDeployment, until, sleep, ns, connectionsOf };

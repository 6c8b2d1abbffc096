'use strict';

// The bus through Sentinel (`bus: { sentinels, name }`): a primary, its replica and three sentinels (redis-server.js),
// the shared cases (bus-suite.js), then the primary is killed (kill -9) mid-traffic and the bus must come through the
// failover: subscriptions back, every publish either delivered or rejected with FORKLINE_BUS_UNAVAILABLE, every job
// whose enqueue() resolved (durability 'replicated') done. Without redis-server and redis-cli on PATH these tests are
// skipped, except under CI=true, where that is a failure.

const assert = require('node:assert');
const { test, before, after } = require('node:test');
const Redis = require('ioredis');
const { RedisSentinels, redisToolsMissing, waitFor } = require('./redis-server');
const { Host, busCases, until, sleep, ns } = require('./bus-suite');

const missing = redisToolsMissing();
if (missing && process.env.CI) throw new Error(`${missing} (CI must install it: see .ci/run)`);
const skip = missing ? `${missing}; Sentinel tests skipped` : false;

let set;
let admin;

// The deployment as bus-suite.js sees it (the launcher takes one URL: no case for it here).
const where = { nodes: 1, cli: null };

before(async () => {
  if (skip) return;
  set = await RedisSentinels.create();
  const sentinels = set.urls;
  admin = new Redis({
    sentinels: set.sentinels.map(({ port }) => ({ host: '127.0.0.1', port })),
    name: set.name,
    maxRetriesPerRequest: 1,
  });
  admin.on('error', () => {});
  Object.assign(where, {
    env: { BUS_SENTINELS: sentinels.join(','), BUS_SENTINEL_NAME: set.name },
    settings: { sentinels, name: set.name },
    numsub: async (channel) => (await admin.pubsub('NUMSUB', channel))[1],
    publish: (channel, text) => admin.publish(channel, text),
    clientList: () => admin.client('LIST'),
  });
});

after(async () => {
  if (admin) admin.disconnect();
  if (set) await set.destroy();
});

busCases(where, skip);

// Last: it leaves the set with a new primary and no replica.
test(
  'the primary killed mid-traffic: subscriptions come back, publishes arrive or reject, replicated jobs are done',
  { skip, timeout: 90_000 },
  async (t) => {
    const namespace = ns();
    const settings = { namespace, durability: 'replicated', replicationTimeout: 500, pendingTimeout: 15_000 };
    const [a, b] = await Promise.all([Host.start(t, where, settings), Host.start(t, where, settings)]);
    await b.cmd('all', 'sub', { topic: 'live' });
    await b.cmd('all', 'proc', { queue: 'kept', concurrency: 2 });
    // Worker 0 of host a publishes, worker 1 enqueues, every 5 ms, without waiting for the outcomes.
    await Promise.all([
      a.cmd(0, 'loop', { topic: 'live', tag: 'p', every: 5 }),
      a.cmd(1, 'loop', { queue: 'kept', tag: 'j', every: 5 }),
    ]);
    const got = (worker) => b.of('msg', (e) => e.worker === worker).map((e) => e.m.seq);
    await until('traffic before the failover', () => got(1).length >= 50 && b.of('jobDone').length >= 50);
    const old = await set.primary();
    await old.kill();
    await waitFor('the sentinels to name the replica', async () => (await set.primaryPort()) !== old.port, 30_000);
    // Subscriptions come back: messages published after the failover reach both workers of b.
    const last = Math.max(...got(0), ...got(1));
    await until(
      'messages again after the failover',
      () => [0, 1].every((w) => got(w).filter((seq) => seq > last).length >= 50),
      40_000,
    );
    const [pubs, jobs] = await Promise.all([a.cmd(0, 'stopLoop', { tag: 'p' }), a.cmd(1, 'stopLoop', { tag: 'j' })]);
    for (const [seq, code] of [...pubs.outcomes, ...jobs.outcomes]) {
      assert.ok(code === null || code === 'FORKLINE_BUS_UNAVAILABLE', `seq ${seq}: ${code}`);
    }
    // Every publish that resolved arrived, once, at both subscribers (one that rejected may have arrived too).
    await sleep(300);
    const resolved = pubs.outcomes.filter(([, code]) => code === null).map(([seq]) => seq);
    for (const worker of [0, 1]) {
      const seqs = got(worker);
      assert.strictEqual(new Set(seqs).size, seqs.length, `worker ${worker}: no message twice`);
      const missed = resolved.filter((seq) => !seqs.includes(seq));
      assert.deepStrictEqual(missed, [], `worker ${worker}: every resolved publish arrived`);
    }
    // Every job whose enqueue resolved is done (at least once).
    const ids = jobs.outcomes.filter(([, code]) => code === null).map(([, , id]) => id);
    assert.ok(ids.length >= 50);
    await until(
      'every job whose enqueue resolved',
      () => {
        const done = new Set(b.of('jobDone').map((e) => e.info.id));
        return ids.every((id) => done.has(id));
      },
      30_000,
    );
  },
);

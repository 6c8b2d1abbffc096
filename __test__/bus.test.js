'use strict';

// The bus (lib/bus/) on one real redis-server started here (redis-server.js): the shared cases (bus-suite.js) and
// what only one server shows (a restart of the server, local-only mode, no ioredis). The other deployments:
// bus-cluster.test.js, bus-sentinel.test.js. Without redis-server on PATH these tests are skipped, except under
// CI=true, where that is a failure.

const assert = require('node:assert');
const { test, before, after } = require('node:test');
const Redis = require('ioredis');
const { RedisServer, redisServerPath } = require('./redis-server');
const { Host, busCases, until, sleep } = require('./bus-suite');

const HAVE_REDIS = redisServerPath() !== null;
if (!HAVE_REDIS && process.env.CI) throw new Error('redis-server is not on PATH (CI must install it: see .ci/run)');
const skip = HAVE_REDIS ? false : 'redis-server is not on PATH (apt-get install redis-server); bus tests skipped';

let redis;
let admin;
let namespaces = 0;
const ns = () => `s${process.pid}-${++namespaces}`;

// The deployment as bus-suite.js sees it.
const where = { nodes: 1 };

before(async () => {
  if (skip) return;
  redis = await RedisServer.create();
  admin = new Redis(redis.url, { lazyConnect: true, maxRetriesPerRequest: 1 });
  admin.on('error', () => {});
  await admin.connect();
  Object.assign(where, {
    env: { BUS_URL: redis.url },
    settings: { url: redis.url },
    numsub: async (channel) => (await admin.pubsub('NUMSUB', channel))[1],
    publish: (channel, text) => admin.publish(channel, text),
    clientList: () => admin.client('LIST'),
    cli: { args: ['--bus', redis.url], env: {} },
  });
});

after(async () => {
  if (admin) admin.disconnect();
  if (redis) await redis.destroy();
});

busCases(where, skip);

test(
  'redis-server stopped and restarted: subscriptions resume, queued jobs survive',
  { skip, timeout: 40_000 },
  async (t) => {
    const namespace = ns();
    const [a, b] = await Promise.all([
      Host.start(t, where, { namespace, pendingTimeout: 500 }),
      Host.start(t, where, { namespace, pendingTimeout: 500 }),
    ]);
    await Promise.all([a.cmd('all', 'sub', { topic: 'live' }), b.cmd('all', 'sub', { topic: 'live' })]);
    const { ids } = await a.cmd(0, 'enq', { queue: 'kept', jobs: [{ n: 1 }, { n: 2 }, { n: 3 }] });
    await redis.stop();
    // Meanwhile: local delivery works, the remote publish waits, then fails with FORKLINE_BUS_UNAVAILABLE.
    const down = await a.cmd(0, 'pub', { topic: 'live', n: 1, tag: 'down' });
    assert.deepStrictEqual(down.codes, ['FORKLINE_BUS_UNAVAILABLE']);
    assert.strictEqual(a.of('msg', (e) => e.m.tag === 'down').length, 2);
    assert.strictEqual(b.of('msg', (e) => e.m.tag === 'down').length, 0);
    await redis.start();
    const deadline = Date.now() + 15_000;
    let n = 0;
    while (b.of('msg', (e) => e.m.tag === 'up').length === 0) {
      if (Date.now() > deadline) throw new Error('no message crossed hosts after the restart');
      await a.cmd(0, 'pub', { topic: 'live', n: 1, tag: 'up' });
      n++;
      await sleep(100);
    }
    await b.cmd('all', 'proc', { queue: 'kept' });
    await until('the jobs queued before the restart', () => b.of('jobDone').length >= 3);
    assert.deepStrictEqual(
      b
        .of('jobDone')
        .map((e) => e.info.id)
        .sort(),
      [...ids].sort(),
    );
    assert.ok(n >= 1);
  },
);

test(
  'local-only mode (no URL): pub/sub, queue, request/reply and broadcast within the host',
  { timeout: 30_000 },
  async (t) => {
    const host = await Host.start(t, where, { namespace: 'local', local: true, workers: 3 });
    await host.cmd('all', 'sub', { topic: 'here' });
    await host.cmd('all', 'proc', { queue: 'jobs' });
    await host.cmd(2, 'resp', { topic: 'add' });
    await host.cmd(0, 'pub', { topic: 'here', n: 20, tag: 'l' });
    await until('local messages', () => host.of('msg').length === 60);
    for (let i = 0; i < 3; i++) {
      assert.deepStrictEqual(
        host.of('msg', (e) => e.worker === i).map((e) => e.m.seq),
        [...Array(20).keys()],
      );
    }
    await host.cmd(1, 'enq', { queue: 'jobs', jobs: [...Array(9).keys()].map((n) => ({ n })) });
    await until('local jobs', () => host.of('jobDone').length === 9);
    assert.deepStrictEqual(
      host
        .of('jobDone')
        .map((e) => e.job.n)
        .sort(),
      [...Array(9).keys()],
    );
    const r = await host.cmd(0, 'req', { topic: 'add', m: { a: 2, b: 3 } });
    assert.deepStrictEqual(r.reply, { sum: 5, pid: host.pids[2] });
    assert.strictEqual((await host.cmd(0, 'req', { topic: 'none', m: 1, timeout: 200 })).code, 'FORKLINE_BUS_TIMEOUT');
    await host.cmd('primary', 'broadcast', { m: { b: 1 } });
    await until('local broadcast', () => host.of('broadcast').length === 3);
  },
);

test(
  'a broker URL without ioredis installed: FORKLINE_BUS_NO_CLIENT naming the package',
  { timeout: 20_000 },
  async () => {
    // The child hides ioredis from require(), as on a machine where it was never installed.
    const script = `
    const Module = require('node:module');
    const load = Module._load;
    Module._load = function (request, ...rest) {
      if (request === 'ioredis') throw Object.assign(new Error("Cannot find module 'ioredis'"), { code: 'MODULE_NOT_FOUND' });
      return load.call(this, request, ...rest);
    };
    const bus = require(${JSON.stringify(require.resolve('../lib/bus'))});
    bus.connect({ url: 'redis://127.0.0.1:1' }).then(
      () => console.log('connected'),
      (err) => console.log(JSON.stringify({ code: err.code, message: err.message })),
    );`;
    const { execFileSync } = require('node:child_process');
    const out = JSON.parse(execFileSync(process.execPath, ['-e', script], { encoding: 'utf8', timeout: 10_000 }));
    assert.strictEqual(out.code, 'FORKLINE_BUS_NO_CLIENT');
    assert.match(out.message, /npm install ioredis/);
  },
);

test(
  'directPublish: workers publish through connections of their own, every subscriber gets it through the broker',
  { skip, timeout: 40_000 },
  async (t) => {
    const namespace = ns();
    const [a, b] = await Promise.all([
      Host.start(t, where, { namespace, directPublish: true, pendingTimeout: 500 }),
      Host.start(t, where, { namespace }),
    ]);
    await Promise.all([a.cmd('all', 'sub', { topic: 'd' }), b.cmd('all', 'sub', { topic: 'd' })]);
    const N = 100;
    const sent = await a.cmd(0, 'pub', { topic: 'd', n: N, tag: 'direct' });
    assert.deepStrictEqual(sent.codes, []);
    await until('every message everywhere', () => a.of('msg').length + b.of('msg').length >= 4 * N);
    await sleep(200);
    for (const host of [a, b]) {
      for (const worker of [0, 1]) {
        const seqs = host.of('msg', (e) => e.worker === worker).map((e) => e.m.seq);
        assert.deepStrictEqual(seqs, [...Array(N).keys()], 'once each, in order, on its own host too');
      }
    }
    assert.strictEqual(b.of('msg')[0].from.host, a.info.host);
    assert.strictEqual(b.of('msg')[0].from.pid, a.pids[0]);
    // Its own connection, named as the host's, role `pub`, once the worker has published.
    const pubs = (await admin.client('LIST')).split('\n').filter((line) => line.includes(`:${a.info.host}:pub`));
    assert.strictEqual(pubs.length, 1);
    const big = await a.cmd(0, 'pubOne', { topic: 'big', size: 2 * 1024 * 1024 });
    assert.strictEqual(big.code, 'FORKLINE_BUS_MESSAGE_TOO_LARGE');
    // The broker away: the publish waits pendingTimeout, then rejects (nothing is delivered, here either).
    await redis.stop();
    t.after(async () => {
      if (redis.child === null) await redis.start();
    });
    const down = await a.cmd(0, 'pub', { topic: 'd', n: 1, tag: 'down' });
    assert.deepStrictEqual(down.codes, ['FORKLINE_BUS_UNAVAILABLE']);
    await redis.start();
    await sleep(200);
    assert.strictEqual(a.of('msg', (e) => e.m.tag === 'down').length, 0);
  },
);

test(
  'settings: one deployment, Sentinel needs a name, URLs, durability, directPublish data',
  { timeout: 20_000 },
  () => {
    // In a process of its own: the bus keeps the settings it was given.
    const script = `
    const bus = require(${JSON.stringify(require.resolve('../lib/bus'))});
    const cases = {
      two: { url: 'redis://a:1', cluster: ['redis://b:2'] },
      noName: { sentinels: ['redis://a:26379'] },
      empty: { cluster: [] },
      notRedis: { cluster: 'http://a:1' },
      durability: { url: 'redis://a:1', durability: 'always' },
      wait: { url: 'redis://a:1', replicationTimeout: 0 },
      tls: { url: 'redis://a:1', directPublish: true, redisOptions: { tls: { ca: Buffer.from('x') } } },
      direct: { url: 'redis://a:1', directPublish: 'yes' },
    };
    (async () => {
      const out = {};
      for (const [name, settings] of Object.entries(cases)) {
        out[name] = await bus.connect(settings).then(() => 'connected', (err) => err.code);
      }
      console.log(JSON.stringify(out));
    })();`;
    const { execFileSync } = require('node:child_process');
    const out = JSON.parse(execFileSync(process.execPath, ['-e', script], { encoding: 'utf8', timeout: 10_000 }));
    assert.deepStrictEqual(out, {
      two: 'ERR_INVALID_ARG_VALUE',
      noName: 'ERR_INVALID_ARG_VALUE',
      empty: 'ERR_INVALID_ARG_VALUE',
      notRedis: 'ERR_INVALID_ARG_VALUE',
      durability: 'ERR_INVALID_ARG_VALUE',
      wait: 'ERR_OUT_OF_RANGE',
      tls: 'ERR_INVALID_ARG_VALUE',
      direct: 'ERR_INVALID_ARG_TYPE',
    });
  },
);

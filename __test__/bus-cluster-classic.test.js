'use strict';

// The bus on a Redis Cluster without sharded pub/sub, as Redis 6 is: three primaries whose SPUBLISH, SSUBSCRIBE and
// SUNSUBSCRIBE are renamed away (`rename-command`), so that the bus finds no sharded pub/sub and uses classic
// PUBLISH/SUBSCRIBE, which every node passes on to every other. The shared cases (bus-suite.js), and one publisher's
// first messages in order: its publishes all go through the connection of the channel's node
// (lib/bus/transports/publish_order.js). Without redis-server and redis-cli on PATH these tests are skipped, except
// under CI=true, where that is a failure.

const assert = require('node:assert');
const { test, before, after } = require('node:test');
const { RedisCluster, redisToolsMissing } = require('./redis-server');
const { Host, busCases, clusterDeployment, until, ns } = require('./bus-suite');

const missing = redisToolsMissing();
if (missing && process.env.CI) throw new Error(`${missing} (CI must install it: see .ci/run)`);
const skip = missing ? `${missing}; Redis Cluster tests skipped` : false;

const WITHOUT_SHARDED = ['SPUBLISH', 'SSUBSCRIBE', 'SUNSUBSCRIBE'].flatMap((name) => ['--rename-command', name, '']);

let cluster;
let admin;

// The deployment as bus-suite.js sees it.
const where = { nodes: 3 };

before(async () => {
  if (skip) return;
  cluster = await RedisCluster.create({ extra: WITHOUT_SHARDED });
  let sharded;
  ({ admin, sharded } = await clusterDeployment(where, cluster));
  assert.strictEqual(sharded, false, 'the nodes have no sharded pub/sub');
});

after(async () => {
  if (admin) admin.disconnect();
  if (cluster) await cluster.destroy();
});

busCases(where, skip);

test(
  "a publisher's first messages, from a host started just before, arrive in order",
  { skip, timeout: 40_000 },
  async (t) => {
    const namespace = ns();
    const [a, b] = await Promise.all([Host.start(t, where, { namespace }), Host.start(t, where, { namespace })]);
    await b.cmd('all', 'sub', { topic: 'first' });
    await a.cmd(0, 'loop', { topic: 'first', tag: 'f', every: 2 });
    const got = () => b.of('msg', (e) => e.worker === 0).map((e) => e.m.seq);
    await until('100 messages', () => got().length >= 100);
    const { outcomes } = await a.cmd(0, 'stopLoop', { tag: 'f' });
    for (const [seq, code] of outcomes) assert.strictEqual(code, null, `seq ${seq}`);
    await until('every message', () => got().length === outcomes.length);
    assert.deepStrictEqual(
      got(),
      outcomes.map(([seq]) => seq),
    );
  },
);

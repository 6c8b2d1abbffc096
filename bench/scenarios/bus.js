'use strict';

// The bus (forkline/bus) against the hand-wired baseline: node:cluster workers each with their own ioredis publisher
// and subscriber (and, for the queue, their own blocking connection popping a Redis list). Two hosts of 4 workers
// (bench/children/bus-host.js, each a cluster primary in a process group of its own) share one redis-server that
// prepare() starts (from PATH, a temp dir, append-only file on). The forked child of each measurement is the
// orchestrator (bench/children/bus-bench.js): it starts the hosts and is the standalone publisher / producer.

const { spawnSync } = require('node:child_process');
const nodeChildProcess = require('node:child_process');
const { fmtRate, track, median, percentile } = require('../harness');

const WORKERS_PER_HOST = 4;
let redis = null;
let redisMissing = null;

const IMPL_NAMES = {
  baseline: 'hand-wired ioredis',
  forkline: 'forkline bus',
  'forkline-direct': 'forkline bus, directPublish',
};
const impl = (name) => ({
  name: IMPL_NAMES[name],
  impl: name,
  fork: (...args) => nodeChildProcess.fork(...args),
  unavailable: () => redisMissing,
});
const IMPLS = [impl('baseline'), impl('forkline')];
// The opt-in latency mode (each worker publishes through a connection of its own) in a row of its own.
const DIRECT_IMPLS = [impl('baseline'), impl('forkline-direct')];

const fmtMicros = (v) => v.toFixed(0);
const fmtCount = (v) => String(Math.round(v));

// Where one publish → deliver goes, from extra traced trips after the timed ones (bench/children/redis-stamps.js):
// p50 of each hop of the ping's way. forkline's first and last hops hold its gateways and IPC; the baseline's, a
// worker's own ioredis.
const HOP_ROWS = [
  ['toBroker', "hop 1: publish() → the PUBLISH handed to ioredis (forkline: IPC + the publisher's gateway)"],
  ['broker', 'hop 2: → a subscriber connection of the other host has it (Redis, waiting for a CPU)'],
  ['fromBroker', "hop 3: → the subscribing worker's listener (forkline: the subscriber's gateway + IPC)"],
].map(([key, what]) => ({ name: `${what}, p50 µs`, key, higherIsBetter: false, format: fmtMicros }));

function scenario(id, mode, params, rows, quickParams, impls = IMPLS) {
  const names = impls.map((i) => i.name);
  return {
    id,
    mode,
    impls,
    child: 'bus-bench.js',
    childArgs: (_, i) => [i.impl, redis.url, mode, String(WORKERS_PER_HOST)],
    params,
    quickParams,
    rows: rows.map((row) => ({ ...row, impls: names })),
    timeoutSeconds: 60,
    async run(session, p) {
      session.child.send({ go: p });
      const reply = await session.next();
      if (reply.error) throw new Error(reply.error);
      const result = reply.result;
      if (result.oneWay) {
        const sorted = result.oneWay.sort((a, b) => a - b);
        const hopMedians = Object.entries(result.hops).map(([hop, values]) => [hop, median(values)]);
        return { p50: percentile(sorted, 0.5), p99: percentile(sorted, 0.99), ...Object.fromEntries(hopMedians) };
      }
      return result;
    },
  };
}

const scenarios = [
  scenario(
    'bus-latency',
    'latency',
    { n: 2000, warm: 200, traced: 500 },
    [
      { name: 'publish → deliver across hosts, p50 µs', key: 'p50', higherIsBetter: false, format: fmtMicros },
      { name: 'publish → deliver across hosts, p99 µs', key: 'p99', higherIsBetter: false, format: fmtMicros },
      ...HOP_ROWS,
    ],
    { n: 300, warm: 50, traced: 100 },
  ),
  scenario(
    'bus-latency-direct',
    'latency',
    { n: 2000, warm: 200, traced: 500 },
    [
      { name: 'publish → deliver with directPublish, p50 µs', key: 'p50', higherIsBetter: false, format: fmtMicros },
      { name: 'publish → deliver with directPublish, p99 µs', key: 'p99', higherIsBetter: false, format: fmtMicros },
      ...HOP_ROWS.map((row) => ({ ...row, name: row.name.replace('hop', 'directPublish hop') })),
    ],
    { n: 300, warm: 50, traced: 100 },
    DIRECT_IMPLS,
  ),
  scenario(
    'bus-fanout',
    'fanout',
    { n: 20_000, warm: 5000 },
    [
      { name: 'fan-out, msgs/s delivered', key: 'delivered', higherIsBetter: true, format: fmtRate },
      { name: 'fan-out, connections per host', key: 'connections', higherIsBetter: false, format: fmtCount },
    ],
    { n: 3000, warm: 1000 },
  ),
  scenario(
    'bus-queue',
    'queue',
    { n: 20_000 },
    [
      { name: 'queue, jobs/s through 2 hosts', key: 'jobs', higherIsBetter: true, format: fmtRate },
      { name: 'queue, connections per host', key: 'connections', higherIsBetter: false, format: fmtCount },
    ],
    { n: 3000 },
  ),
];

async function prepare() {
  if (spawnSync('redis-server', ['--version']).error) {
    redisMissing = 'redis-server is not on PATH';
    return;
  }
  try {
    require.resolve('ioredis');
  } catch {
    redisMissing = 'ioredis is not installed (npm install)';
    return;
  }
  const { RedisServer } = require('../../__test__/redis-server');
  redis = await RedisServer.create();
  track(redis.child);
  process.once('exit', () => {
    redis.child?.kill('SIGKILL');
    require('node:fs').rmSync(redis.dir, { recursive: true, force: true });
  });
}

// Issue #24's targets: queue jobs/s ≥ 1.5x the baseline's, publish → deliver p50 ≤ 1.5x the baseline's.
const TARGETS = [
  { scenario: 'bus-queue', key: 'jobs', what: 'queue jobs/s ≥ 1.5x the baseline', met: (f, b) => f / b >= 1.5 },
  {
    scenario: 'bus-latency',
    key: 'p50',
    what: 'publish → deliver p50 ≤ 1.5x the baseline',
    met: (f, b) => f <= 1.5 * b,
  },
];

function targetLines(group) {
  const out = [];
  for (const target of TARGETS) {
    const measured = group.find(({ scenario: s }) => s.id === target.scenario);
    if (measured === undefined) continue;
    const [base, ours] = IMPLS.map(({ name }) =>
      measured.runs[name].filter((r) => !r.error && !r.skipped).map((r) => r.values[target.key]),
    );
    if (base.length === 0 || ours.length === 0) continue;
    const [b, f] = [median(base), median(ours)];
    out.push(`${target.what}: ${(f / b).toFixed(2)}x of it, ${target.met(f, b) ? 'met' : 'missed'}`);
  }
  return out;
}

function section(lines, group, tableRows) {
  lines.push('');
  lines.push(`## forkline bus vs hand-wired ioredis: 2 hosts × ${WORKERS_PER_HOST} workers, one redis-server`);
  lines.push('');
  lines.push('| row | hand-wired ioredis | forkline bus | forkline/baseline |');
  lines.push('|---|---:|---:|---:|');
  tableRows(group);
  lines.push('');
  const verdicts = targetLines(group);
  if (verdicts.length > 0) lines.push(`Targets (issue #24): ${verdicts.join('; ')}.`, '');
  const sizes = group.map(({ scenario: s, params }) => `${s.id} ${JSON.stringify(params)}`).join(', ');
  lines.push(
    'forkline/baseline > 1 means forkline is better (for µs and connections, lower is better and the ratio is ' +
      'baseline/forkline). Baseline: node:cluster, each worker with its own ioredis publisher and subscriber ' +
      '(and a BRPOP connection for the queue). forkline: its cluster primary is the host gateway (one set of ' +
      "connections per host, workers on IPC; a tick's publishes by one process to one topic are one broker message). " +
      'Latency: a worker of host 0 publishes `ping`, a worker of host 1 ' +
      'publishes it back on `pong`; one-way = half the round trip (the directPublish rows: each forkline worker ' +
      'publishes through a broker connection of its own, opt-in). Fan-out: one standalone publisher, every worker ' +
      'of both hosts subscribed, 64-byte payloads, 256 publishes in flight, timed after a warm-up that every ' +
      'subscriber received; msgs/s counts deliveries. Queue: jobs ' +
      'enqueued first (Redis Streams for forkline, a list for the baseline), then every worker processes one at a ' +
      'time (a no-op handler; forkline hands a quick handler its jobs in batches and acknowledges them in batches). ' +
      `Sizes: ${sizes}.`,
  );
  lines.push('');
}

module.exports = { scenarios, prepare, section };

'use strict';

// The cluster primary: forkline's `cluster` against node:cluster as the oracle (over 600 lines on purpose: many
// short scenarios sharing the runner below). Each scenario is a primary program in fixtures/cluster-*.js, run as its
// own process with the implementation named on its command line ('node' or 'forkline'); it prints its observations
// as one JSON line. Where Node has an answer (events, their order and arguments, states, errors), forkline's
// observations must equal node:cluster's; forkline's own features (SCHED_REUSEPORT, settings.restart, 'giveup',
// reload()) are asserted directly.
// What of this file needs the native core: skipped, with the reason, under the portable backend.
const test = require('./helpers').withNativeOnly(require('node:test'), {
  'FORKLINE_SCHED_BATCH=0 leaves the round-robin acceptor thread SCHED_OTHER':
    "the native round-robin acceptor's thread",
  'forkline: two workers on port 0 serve 200 requests under reuseport':
    'SCHED_REUSEPORT (the portable backend uses round-robin: portable.test.js)',
});
const assert = require('node:assert');
const { spawn } = require('node:child_process');
const fs = require('node:fs');
const net = require('node:net');
const os = require('node:os');
const path = require('node:path');
const util = require('node:util');
const { procState, statFields, sleep, BACKEND } = require('./helpers');

const FIXTURES = path.join(__dirname, 'fixtures');
const IMPLS = ['node', 'forkline'];
const TIMEOUT = 30_000; // per test; each primary run is bounded by its own guard (20-25 s) and by runPrimary

// The pids of all descendants of `pid` (from /proc), so that nothing a primary started can outlive a test.
function descendants(pid) {
  const children = new Map();
  for (const entry of fs.readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    const fields = statFields(entry);
    if (fields === null) continue; // gone meanwhile
    const ppid = Number(fields[1]);
    if (!children.has(ppid)) children.set(ppid, []);
    children.get(ppid).push(Number(entry));
  }
  const out = [];
  const walk = (p) => {
    for (const c of children.get(p) || []) {
      out.push(c);
      walk(c);
    }
  };
  walk(pid);
  return out;
}

function killQuietly(pid) {
  try {
    process.kill(pid, 'SIGKILL');
  } catch {
    // already gone
  }
}

// Runs fixtures/<name> as a primary with `impl` and resolves {code, signal, result, stderr}; `result` is its last
// stdout line parsed as JSON. The primary and all its descendants are killed when the test ends, and after `timeout`
// ms the primary is killed (its result then says so).
function runPrimary(t, name, impl, args = [], { env = {}, timeout = 22_000 } = {}) {
  const childEnv = { ...process.env, ...env };
  for (const key of ['NODE_UNIQUE_ID', 'NODE_CHANNEL_FD', 'NODE_TEST_CONTEXT']) delete childEnv[key];
  if (!('NODE_CLUSTER_SCHED_POLICY' in env)) delete childEnv.NODE_CLUSTER_SCHED_POLICY;
  const primary = spawn(process.execPath, [path.join(FIXTURES, name), impl, ...args.map(String)], {
    env: childEnv,
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  // Only while the primary is unreaped: after that its pid may be another test's process, and the descendants
  // found through it that process's children.
  const cleanup = () => {
    if (typeof primary.pid !== 'number' || primary.exitCode !== null || primary.signalCode !== null) return;
    for (const pid of descendants(primary.pid)) killQuietly(pid);
    killQuietly(primary.pid);
  };
  if (t) t.after(cleanup);
  let stdout = '';
  let stderr = '';
  primary.stdout.setEncoding('utf8').on('data', (chunk) => (stdout += chunk));
  primary.stderr.setEncoding('utf8').on('data', (chunk) => (stderr += chunk));
  let timedOut = false;
  const timer = setTimeout(() => {
    timedOut = true;
    cleanup();
  }, timeout);
  return new Promise((resolve) => {
    primary.on('close', (code, signal) => {
      clearTimeout(timer);
      const line = stdout.trim().split('\n').pop();
      let result = null;
      try {
        result = JSON.parse(line);
      } catch {
        // reported below
      }
      resolve({ name, impl, args, env, code, signal, result, stdout, stderr, timedOut });
    });
  });
}

// The result of a run that must have succeeded; otherwise fails with everything the primary said.
function okResult(run) {
  const what = `${run.name} ${run.impl} ${run.args.join(' ')} ${JSON.stringify(run.env)}`;
  assert.ok(
    run.code === 0 && run.result && !run.result.error,
    `${what}: primary failed (code ${run.code}, signal ${run.signal}${run.timedOut ? ', killed by the test' : ''})\n` +
      `result: ${JSON.stringify(run.result)}\nstdout: ${run.stdout.slice(-2000)}\nstderr: ${run.stderr.slice(-3000)}`,
  );
  return run.result;
}

// node:cluster's answer for a scenario, run once per file and shared by the node and forkline tests.
const oracleRuns = new Map();
function oracle(t, name, args = [], options = {}) {
  const key = JSON.stringify([name, args, options.env]);
  if (!oracleRuns.has(key)) oracleRuns.set(key, runPrimary(null, name, 'node', args, options));
  return oracleRuns.get(key).then(okResult);
}

// Runs a scenario with `impl`; for 'node' that is the (shared) oracle run.
async function scenario(t, impl, name, args = [], options = {}) {
  if (impl === 'node') return oracle(t, name, args, options);
  return okResult(await runPrimary(t, name, impl, args, options));
}

// node:cluster vs forkline on one scenario: resolves [nodeResult, forklineResult] with forkline's run and the
// oracle's in parallel.
function compare(t, name, args = [], options = {}) {
  return Promise.all([oracle(t, name, args, options), scenario(t, 'forkline', name, args, options)]);
}

// A scenario's event list, grouped by worker id (which worker goes first is up to the scheduler).
function byWorker(events) {
  const out = {};
  for (const event of events) {
    const id = typeof event[1] === 'number' ? event[1] : event[1].id;
    (out[id] = out[id] || []).push(event);
  }
  return out;
}

function ipv6Available() {
  return new Promise((resolve) => {
    const server = net.createServer();
    server.once('error', () => resolve(false));
    server.listen(0, '::1', () => server.close(() => resolve(true)));
  });
}

// ---------------------------------------------------------------------------------------------------------------

test('require("forkline").cluster and require("forkline/cluster") are the same primary-side cluster', () => {
  const forkline = require('..');
  assert.strictEqual(typeof forkline.cluster, 'object', 'forkline.cluster is missing');
  assert.strictEqual(require('forkline/cluster'), forkline.cluster, "package.json exports './cluster'");
  assert.notStrictEqual(forkline.cluster, require('node:cluster'));
});

for (const [label, policyEnv, expected] of [
  ['default', undefined, { node: 2, forkline: 2 }],
  ['rr', 'rr', { node: 2, forkline: 2 }],
  ['none', 'none', { node: 1, forkline: 1 }],
  ['reuseport', 'reuseport', { node: 2, forkline: 3 }], // node:cluster knows no 'reuseport' and falls back to RR
]) {
  test(
    `cluster API surface (NODE_CLUSTER_SCHED_POLICY ${label}) matches node:cluster`,
    { timeout: TIMEOUT },
    async (t) => {
      const options = policyEnv === undefined ? {} : { env: { NODE_CLUSTER_SCHED_POLICY: policyEnv } };
      const [nodeResult, forklineResult] = await compare(t, 'cluster-api.js', [], options);
      assert.strictEqual(nodeResult.surface.schedulingPolicy, expected.node);
      assert.strictEqual(forklineResult.surface.schedulingPolicy, expected.forkline, 'schedulingPolicy from env');
      assert.deepStrictEqual(forklineResult.extra, { SCHED_REUSEPORT: 3, reload: 'function' });
      const { schedulingPolicy: a, ...forklineSurface } = forklineResult.surface;
      const { schedulingPolicy: b, ...nodeSurface } = nodeResult.surface;
      assert.deepStrictEqual(forklineSurface, nodeSurface);
      assert.deepStrictEqual(
        { ...forklineResult, surface: null, extra: null },
        { ...nodeResult, surface: null, extra: null },
      );
    },
  );
}

test(
  'per-worker inspector ports, from the primary debugPort or settings.inspectPort, as node:cluster',
  { timeout: TIMEOUT },
  async (t) => {
    const [nodeResult, forklineResult] = await compare(t, 'cluster-inspect.js');
    assert.deepStrictEqual(
      nodeResult.offsets.map((info) => info.execArgv.at(-1)),
      [1, 2, 3].map((n) => `--inspect-port=${nodeResult.primaryDebugPort + n}`),
    );
    assert.strictEqual(nodeResult.nullPort.code, 'ERR_SOCKET_BAD_PORT');
    assert.deepStrictEqual(forklineResult, nodeResult);
  },
);

test(
  'workers send handles in every order (the same socket twice, closed, then plain): all arrive, all exit',
  { timeout: TIMEOUT },
  async (t) => {
    const [nodeResult, forklineResult] = await compare(t, 'cluster-handle-orders.js');
    assert.deepStrictEqual(nodeResult['same socket twice'], {
      got: [
        ['a', 'Socket'],
        ['b', null],
      ],
      code: 0,
      signal: null,
      state: 'dead',
    });
    assert.deepStrictEqual(forklineResult, nodeResult);
  },
);

test(
  "a worker that dies while connections are handed to it gets 'close' with channel null, every time",
  { timeout: TIMEOUT },
  async (t) => {
    const [nodeResult, forklineResult] = await compare(t, 'cluster-close-under-load.js', [3]);
    const expected = (how, code, signal) => ({ how, code, signal, channel: null });
    assert.deepStrictEqual(nodeResult, [
      ...Array(3).fill(expected('SIGKILL', null, 'SIGKILL')),
      ...Array(3).fill(expected('exit', 0, null)),
    ]);
    assert.deepStrictEqual(forklineResult, nodeResult);
  },
);

// 1. Event order.
const EVENTS_IN_ORDER = [
  'cluster:fork',
  'online',
  'cluster:online',
  'listening',
  'cluster:listening',
  'disconnect',
  'cluster:disconnect',
  'exit',
  'cluster:exit',
];
const EVENTS_EXIT_FIRST = [...EVENTS_IN_ORDER.slice(0, 5), 'exit', 'cluster:exit', 'disconnect', 'cluster:disconnect'];
for (const impl of IMPLS) {
  test(
    `${impl}: fork → online → listening → disconnect → exit, on workers and cluster, via cluster.disconnect(cb)`,
    {
      timeout: TIMEOUT,
    },
    async (t) => {
      const result = await scenario(t, impl, 'cluster-events.js');
      if (impl === 'node') {
        // Facts of Node's, checked so that the oracle itself is known to say what we think it says. The worker's
        // 'disconnect' comes before its 'exit', except now and then under load, when Node sees the exit first.
        const names = result.perWorker[1].map((e) => e[0]);
        assert.ok(
          [EVENTS_IN_ORDER, EVENTS_EXIT_FIRST].some((order) => util.isDeepStrictEqual(names, order)),
          names.join(', '),
        );
        assert.deepStrictEqual(result.log.find((e) => e[0] === 'disconnect callback')[1], {
          workers: 0,
          exitedAfterDisconnect: [true, true],
        });
        return;
      }
      // forkline's order is always Node's usual one: its channel's end is read before the child's exit is handled.
      for (const id of ['1', '2']) {
        assert.deepStrictEqual(
          result.perWorker[id].map((e) => e[0]),
          EVENTS_IN_ORDER,
          `worker ${id}'s events`,
        );
      }
      const nodeResult = await oracle(t, 'cluster-events.js');
      const usual = ['1', '2'].every((id) =>
        util.isDeepStrictEqual(
          nodeResult.perWorker[id].map((e) => e[0]),
          EVENTS_IN_ORDER,
        ),
      );
      if (!usual) {
        // The worker states in the events' arguments follow the order: compared when Node's run had its usual one.
        t.diagnostic("node:cluster saw a worker's exit before its disconnect this time: arguments not compared");
        assert.deepStrictEqual(result.log, nodeResult.log);
        return;
      }
      for (const id of ['1', '2']) {
        assert.deepStrictEqual(result.perWorker[id], nodeResult.perWorker[id], `worker ${id}'s events and their args`);
      }
      assert.deepStrictEqual(result.log, nodeResult.log);
      assert.deepStrictEqual(result, nodeResult);
    },
  );
}

test('FORKLINE_SCHED_BATCH=0 leaves the round-robin acceptor thread SCHED_OTHER', { timeout: TIMEOUT }, async (t) => {
  const result = await scenario(t, 'forkline', 'cluster-http.js', ['rr', 20], { env: { FORKLINE_SCHED_BATCH: '0' } });
  assert.deepStrictEqual(result.statuses, { 200: 20 });
  assert.deepStrictEqual(result.reactorPolicies, [0]);
});

// 2. HTTP served under each policy.
for (const policy of ['rr', 'none', 'reuseport']) {
  for (const impl of policy === 'reuseport' ? ['forkline'] : IMPLS) {
    test(`${impl}: two workers on port 0 serve 200 requests under ${policy}`, { timeout: TIMEOUT }, async (t) => {
      const result = await scenario(t, impl, 'cluster-http.js', [policy, 200]);
      assert.strictEqual(result.policy, { rr: 2, none: 1, reuseport: 3 }[policy]);
      assert.strictEqual(
        result.workerSockets,
        { rr: 'none', none: 'shared', reuseport: 'one each' }[policy],
        'the listening socket(s) the workers hold',
      );
      assert.strictEqual(result.ports[0], result.ports[1], `both workers on one port: ${result.ports}`);
      assert.ok(result.ports[0] > 0);
      assert.deepStrictEqual(result.addresses, [
        { addressType: 4, address: '127.0.0.1', port: 'number' },
        { addressType: 4, address: '127.0.0.1', port: 'number' },
      ]);
      if (result.backlogs === null) t.diagnostic('listen backlog not checked: no ss(8) here');
      else {
        // Node listens with `backlog || 511` (lib/net.js setupListenHandle), also for the workers' backlog of 0.
        assert.ok(result.backlogs.length > 0, 'ss sees the listening socket');
        for (const backlog of result.backlogs) assert.strictEqual(backlog, 511, `listen backlog: ${result.backlogs}`);
      }
      assert.deepStrictEqual(result.errors, {}, 'failed requests');
      assert.deepStrictEqual(result.statuses, { 200: 200 });
      // forkline's round-robin acceptor keeps its wake-ups from preempting the workers: its thread is SCHED_BATCH
      // (the portable backend has no acceptor thread: Node's primary accepts on its JS thread).
      if (impl === 'forkline' && policy === 'rr' && BACKEND === 'native') {
        assert.deepStrictEqual(result.reactorPolicies, [3]);
      } else for (const p of result.reactorPolicies) assert.strictEqual(p, 0, 'SCHED_OTHER without round-robin');
      const total = Object.values(result.byWorker).reduce((a, b) => a + b, 0);
      assert.strictEqual(total, 200, `every answer from one of the workers: ${JSON.stringify(result.byWorker)}`);
      if (policy !== 'none') {
        // RR alternates; with reuseport the kernel hashes 200 different source ports over the two sockets.
        assert.ok(result.byWorker[1] > 0 && result.byWorker[2] > 0, `both answer: ${JSON.stringify(result.byWorker)}`);
      }
      assert.deepStrictEqual(result.exits, [
        [0, null, true],
        [0, null, true],
      ]);
    });
  }
}

// 3. Listen forms.
const FORMS = ['ipv4', 'ipv6', 'unix', 'two', 'exclusive'];
for (const impl of IMPLS) {
  test(
    `${impl}: listen forms (IPv4, IPv6, Unix path, two servers, exclusive) match node:cluster`,
    {
      timeout: TIMEOUT,
    },
    async (t) => {
      const hasIpv6 = await ipv6Available();
      const forms = FORMS.filter((f) => f !== 'ipv6' || hasIpv6);
      if (!hasIpv6) t.diagnostic('IPv6 skipped: cannot listen on ::1 here');
      const results = await Promise.all(forms.map((form) => scenario(t, impl, 'cluster-listen.js', [form])));
      const nodeResults = await Promise.all(forms.map((form) => oracle(t, 'cluster-listen.js', [form])));
      forms.forEach((form, i) => {
        const result = results[i];
        const expectedAnswer =
          form === 'exclusive' ? { status: 200, byThisWorker: true } : { status: 200, byAWorker: true };
        for (const id of ['1', '2']) {
          for (const answer of result.answers[id])
            assert.deepStrictEqual(answer, expectedAnswer, `${form}: worker ${id}`);
        }
        // One port per server index across workers, except with exclusive: each worker its own.
        assert.deepStrictEqual(
          result.samePortAcrossWorkers,
          form === 'two' ? [true, true] : [form !== 'exclusive'],
          `${form}: same port across workers`,
        );
        assert.deepStrictEqual(result.distinctPortsWithinWorker, [true, true], `${form}`);
        if (form === 'unix') assert.strictEqual(result.sockLeft, false, 'the socket path is removed at the end');
        assert.deepStrictEqual(result, nodeResults[i], `${form}: forkline vs node:cluster`);
      });
    },
  );
}

// 4. EADDRINUSE.
for (const impl of IMPLS) {
  test(
    `${impl}: a worker listening on a taken port gets EADDRINUSE, as from node:cluster`,
    {
      timeout: TIMEOUT,
    },
    async (t) => {
      const holder = net.createServer();
      t.after(() => holder.close());
      await new Promise((resolve) => holder.listen(0, '127.0.0.1', resolve));
      const port = holder.address().port;
      const policies = impl === 'forkline' ? ['rr', 'none', 'reuseport'] : ['rr', 'none'];
      const runs = policies.map((policy) =>
        // Not the shared oracle: the port is this test's.
        runPrimary(t, 'cluster-eaddrinuse.js', impl, [port], { env: { NODE_CLUSTER_SCHED_POLICY: policy } }).then(
          okResult,
        ),
      );
      const nodeRun = runPrimary(t, 'cluster-eaddrinuse.js', 'node', [port], {
        env: { NODE_CLUSTER_SCHED_POLICY: 'rr' },
      });
      const [nodeResult, ...results] = await Promise.all([nodeRun.then(okResult), ...runs]);
      assert.deepStrictEqual(nodeResult, {
        listening: 0,
        message: { listenError: { code: 'EADDRINUSE', syscall: 'bind', address: '127.0.0.1', samePort: true } },
        stateAfterError: 'online',
        exit: [0, null, true],
      });
      policies.forEach((policy, i) => assert.deepStrictEqual(results[i], nodeResult, `policy ${policy}`));
    },
  );
}

// 5. Crashes, restart and giveup.
for (const impl of IMPLS) {
  test(
    `${impl}: a crashing worker (exit 3, throw) emits disconnect and exit with its code`,
    {
      timeout: TIMEOUT,
    },
    async (t) => {
      const result = await scenario(t, impl, 'cluster-crash.js', ['crash']);
      const events = byWorker(result.events);
      const exit = (id) => events[id].find((e) => e[0] === 'exit');
      assert.deepStrictEqual(exit(1).slice(2), [3, null]);
      assert.deepStrictEqual(exit(2).slice(2), [1, null]);
      assert.strictEqual(exit(1)[1].exitedAfterDisconnect, false);
      assert.deepStrictEqual(result.workersLeft, []);
      if (impl === 'node') return;
      const nodeResult = await oracle(t, 'cluster-crash.js', ['crash']);
      assert.deepStrictEqual(events, byWorker(nodeResult.events));
    },
  );
}

test(
  'forkline: settings.restart = true replaces a crashed worker (same env), not a killed or disconnected one',
  {
    timeout: TIMEOUT,
  },
  async (t) => {
    const result = await scenario(t, 'forkline', 'cluster-crash.js', ['restart']);
    const events = byWorker(result.events);
    // Worker 1 crashes; worker 2 replaces it with the same env and is killed; worker 3 is forked and disconnected.
    assert.deepStrictEqual(
      events[1].map((e) => e[0]),
      ['fork', 'online', 'message', 'disconnect', 'exit'],
    );
    assert.deepStrictEqual(events[1].at(-1).slice(2), [3, null]);
    assert.strictEqual(events[1].at(-1)[1].exitedAfterDisconnect, false);
    assert.deepStrictEqual(events[2][0], ['fork', 2], 'a replacement is forked');
    assert.ok(
      events[2].some((e) => e[0] === 'online'),
      'the replacement comes online',
    );
    assert.deepStrictEqual(
      events[2].find((e) => e[0] === 'message'),
      ['message', 2, { tag: 'same env' }],
      'with the same env',
    );
    assert.deepStrictEqual(events[2].at(-1).slice(2), [null, 'SIGTERM']);
    assert.strictEqual(result.forksAfterKill, 2, 'no restart after worker.kill()');
    assert.strictEqual(result.forks, 3, 'no restart after cluster.disconnect()');
    assert.deepStrictEqual(events[3].at(-1).slice(2), [0, null]);
    assert.deepStrictEqual(result.workersLeft, []);
  },
);

test(
  "forkline: restart {maxRestarts: 2, windowMs: 10000} gives up once with 'giveup' and forks no more",
  {
    timeout: TIMEOUT,
  },
  async (t) => {
    const result = await scenario(t, 'forkline', 'cluster-crash.js', ['giveup']);
    const giveups = result.events.filter((e) => e[0] === 'giveup');
    assert.strictEqual(giveups.length, 1, `one 'giveup': ${JSON.stringify(result.events)}`);
    assert.strictEqual(result.forksAtGiveup, 3, 'the first worker and 2 restarts');
    assert.strictEqual(result.forks, 3, 'no fork after giveup');
    assert.strictEqual(result.giveupWorkerIsLastForked, true, "'giveup' names the last worker that died");
    assert.deepStrictEqual(giveups[0][1], 3);
    // deaths: the count of deaths in the window (3 > maxRestarts), or their list.
    assert.ok(
      result.deaths === 3 || (result.deaths && result.deaths.array === 3),
      `deaths: ${JSON.stringify(result.deaths)}`,
    );
    const exits = result.events.filter((e) => e[0] === 'exit');
    assert.deepStrictEqual(
      exits.map((e) => [e[1].id, e[2], e[3], e[1].exitedAfterDisconnect]),
      [
        [1, 3, null, false],
        [2, 3, null, false],
        [3, 3, null, false],
      ],
    );
    assert.strictEqual(result.alive, 0);
    assert.deepStrictEqual(result.workersLeft, []);
  },
);

// 6. Graceful disconnect with requests in flight.
for (const policy of ['rr', 'none']) {
  for (const impl of IMPLS) {
    test(`${impl}: worker.disconnect() lets in-flight requests finish (${policy})`, { timeout: TIMEOUT }, async (t) => {
      const options = { env: { NODE_CLUSTER_SCHED_POLICY: policy } };
      const result = await scenario(t, impl, 'cluster-graceful.js', [], options);
      assert.deepStrictEqual(result.answers, [
        [200, true],
        [200, true],
        [200, true],
        [200, true],
      ]);
      const exitAt = result.order.findIndex((e) => e[0] === 'exit');
      assert.ok(result.order.indexOf('4 answers') < exitAt, `answers before exit: ${JSON.stringify(result.order)}`);
      assert.deepStrictEqual(result.order[exitAt], ['exit', 0, null, true]);
      assert.strictEqual(result.lateRequest, 'ECONNREFUSED', 'no new connection once disconnecting');
      if (impl === 'node') return;
      const nodeResult = await oracle(t, 'cluster-graceful.js', [], options);
      const withoutAnswers = (r) => ({ ...r, order: r.order.filter((e) => e !== '4 answers') });
      assert.deepStrictEqual(withoutAnswers(result), withoutAnswers(nodeResult));
    });
  }
}

// 7. Rolling restart under load.
function checkReload(result) {
  assert.strictEqual(result.returnsPromise, true, 'reload() returns a Promise');
  assert.strictEqual(result.cbCalls, 1, 'reload(cb) calls cb once');
  assert.ok(result.requests.during > 0 && result.requests.after >= 40, JSON.stringify(result.requests));
  assert.deepStrictEqual(result.failures, [], 'no request fails during reload');
  assert.strictEqual(result.afterByOld, 0, 'no answer from an old worker after reload()');
  assert.strictEqual(result.afterByUnknown, 0);
  assert.ok(result.afterByFresh >= 40);
  assert.strictEqual(result.freshWorkers, 2);
  assert.strictEqual(result.freshAreNew, true);
  assert.deepStrictEqual(result.oldWorkers, [
    { dead: true, exit: [0, null], exitedAfterDisconnect: true },
    { dead: true, exit: [0, null], exitedAfterDisconnect: true },
  ]);
  // Rolling: each old worker is disconnected only once its replacement listens, so two others are listening.
  for (const id of [1, 2]) {
    const disconnect = result.events.find((e) => e[0] === 'disconnect' && e[1] === id);
    assert.ok(
      disconnect[2].othersListening >= 2,
      `capacity at worker ${id}'s disconnect: ${JSON.stringify(disconnect)}`,
    );
  }
  assert.strictEqual(result.events.filter((e) => e[0] === 'fork').length, 4);
  checkRolling(result);
}

// One at a time: old worker 1 has exited before worker 2's replacement (worker 4) is forked, and all old workers
// have exited when reload() resolves.
function checkRolling(result) {
  const at = (kind, id) => result.events.findIndex((e) => e[0] === kind && e[1] === id);
  assert.ok(
    at('exit', 1) >= 0 && at('exit', 1) < at('fork', 4),
    `worker 1 exits before worker 4 is forked: ${JSON.stringify(result.events)}`,
  );
  assert.deepStrictEqual(result.oldDeadAtResolve, [true, true], 'the old workers have exited when reload() resolves');
}

test(
  'node: a userland rolling restart under load drops nothing with node:cluster RR (baseline)',
  {
    timeout: TIMEOUT,
  },
  async (t) => {
    const result = await scenario(t, 'node', 'cluster-reload.js', [], { env: { NODE_CLUSTER_SCHED_POLICY: 'rr' } });
    if (await resetsOnlyByClose(result)) {
      // node:cluster's own: a connection the primary had just handed to the old worker, not read by it yet when it
      // disconnected, is closed by this Node's server.close() (forkline's reload() hands such connections on).
      t.skip(
        `${result.failures.length} ECONNRESET during the userland restart: this Node's server.close() closes them`,
      );
      return;
    }
    checkReload(result);
  },
);

test(
  'forkline: cluster.reload() under load (RR): no failed request, only new workers answer after',
  {
    timeout: TIMEOUT,
  },
  async (t) => {
    checkReload(await scenario(t, 'forkline', 'cluster-reload.js', [], { env: { NODE_CLUSTER_SCHED_POLICY: 'rr' } }));
  },
);

test(
  'forkline: cluster.reload() under load (reuseport): no failed request, only new workers answer after',
  {
    timeout: TIMEOUT,
  },
  async (t) => {
    const result = await scenario(t, 'forkline', 'cluster-reload.js', [], {
      env: { NODE_CLUSTER_SCHED_POLICY: 'reuseport' },
    });
    if (await resetsOnlyByClose(result)) {
      // Not the accept queue: the primary keeps a copy of every worker's socket, so what is queued on the old
      // worker's goes to the others. These are connections the old worker had accepted itself and not read yet
      // when it disconnected: this Node's server.close() closes them (nodejs/node#63470). Under reuse-port the
      // primary never held them, so it cannot hand them on as round-robin does.
      t.skip(
        `${result.failures.length} ECONNRESET during reload: connections the old worker had accepted but not read, which ` +
          "this Node's server.close() closes",
      );
      return;
    }
    checkReload(result);
  },
);

// Whether a reload's only failures are ECONNRESETs, on a Node whose server.close() closes the connections that have
// sent no request yet.
async function resetsOnlyByClose(result) {
  const { failures } = result;
  return failures.length > 0 && failures.every((f) => f.error === 'ECONNRESET') && (await closeDropsFreshConnections());
}

// Whether this Node's http server.close() also closes the connections that have not sent a request yet (Node 26:
// nodejs/node#63470), asked of a real server: a cluster worker that disconnects then closes those it was handed.
let dropsFresh;
function closeDropsFreshConnections() {
  dropsFresh ??= new Promise((resolve) => {
    const server = require('node:http').createServer((req, res) => res.end());
    server.listen(0, '127.0.0.1', () => {
      const client = net.connect(server.address().port, '127.0.0.1');
      client.on('error', () => {});
      server.once('connection', () => {
        server.close();
        const timer = setTimeout(() => finish(false), 1000);
        const finish = (dropped) => {
          clearTimeout(timer);
          client.destroy();
          server.closeAllConnections();
          resolve(dropped);
        };
        client.once('close', () => finish(true));
      });
    });
  });
  return dropsFresh;
}

// A temp folder for a scenario's files, removed when the test ends (the primary may have been killed).
function tempDir(t) {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'forkline-cluster-test-'));
  t.after(() => fs.rmSync(dir, { recursive: true, force: true }));
  return dir;
}

// One connection handed to the worker a reload replaces, its request sent once that worker has closed its server
// (fixtures/cluster-reload.js 'slow' and 'busy').
for (const mode of ['slow', 'busy']) {
  const what = {
    slow: 'the old worker took before its request came',
    busy: 'handed to the old worker in the same turn as its disconnect',
  }[mode];
  const options = { env: { NODE_CLUSTER_SCHED_POLICY: 'rr' } };

  test(
    `node: a userland rolling restart with node:cluster RR and a connection ${what} (reproduction)`,
    {
      timeout: TIMEOUT,
    },
    async (t) => {
      const { answer } = await scenario(t, 'node', 'cluster-reload.js', [mode, tempDir(t)], options);
      const dropping = await closeDropsFreshConnections();
      if (mode === 'slow') {
        // The old worker keeps it and answers, unless this Node's server.close() closes it: node:cluster loses it.
        assert.deepStrictEqual(answer.status === 200, !dropping, JSON.stringify(answer));
        if (answer.status === 200) assert.strictEqual(answer.by, 'old');
      } else if (!dropping) {
        assert.deepStrictEqual(answer, { status: 200, by: 'old', error: null });
      }
      t.diagnostic(`node:cluster: ${JSON.stringify(answer)}`);
    },
  );

  test(`forkline: cluster.reload() answers a connection ${what}`, { timeout: TIMEOUT }, async (t) => {
    const result = await scenario(t, 'forkline', 'cluster-reload.js', [mode, tempDir(t)], options);
    // The old worker answers it; where this Node's server.close() closes it unread, the new one does.
    assert.strictEqual(result.answer.status, 200, JSON.stringify(result.answer));
    assert.strictEqual(result.answer.error, null);
    if (mode === 'slow') assert.strictEqual(result.answer.by, (await closeDropsFreshConnections()) ? 'fresh' : 'old');
    else assert.ok(['old', 'fresh'].includes(result.answer.by), JSON.stringify(result.answer));
    assert.deepStrictEqual(result.old, { exit: [0, null], exitedAfterDisconnect: true });
  });
}

test(
  'a connection the old worker takes in the same turn as its disconnect goes to one worker only, as node:cluster ' +
    '(the server speaks first)',
  { timeout: TIMEOUT },
  async (t) => {
    const options = { env: { NODE_CLUSTER_SCHED_POLICY: 'rr' } };
    const [nodeResult, forklineResult] = await compare(t, 'cluster-reload.js', ['greet', tempDir(t)], options);
    assert.deepStrictEqual(nodeResult, { events: nodeResult.events, greetings: ['old'], error: null });
    assert.deepStrictEqual(forklineResult.greetings, nodeResult.greetings, 'one greeting, from the old worker');
    assert.strictEqual(forklineResult.error, null);
  },
);

test(
  "forkline: cluster.reload() of workers that never listen waits for 'online'; restart does not fight it",
  {
    timeout: TIMEOUT,
  },
  async (t) => {
    const result = await scenario(t, 'forkline', 'cluster-reload.js', ['idle']);
    assert.deepStrictEqual(
      result.tagsOfReplacements,
      [
        [3, 'a'],
        [4, 'b'],
      ],
      "each replacement has its old worker's env",
    );
    assert.deepStrictEqual(result.workers, [
      [3, 'online', true],
      [4, 'online', true],
    ]);
    assert.deepStrictEqual(result.oldWorkers, [
      [true, 0, null, true],
      [true, 0, null, true],
    ]);
    assert.strictEqual(result.forks, 4, 'settings.restart does not re-fork workers that reload() disconnected');
    assert.strictEqual(result.forksAfterDisconnect, 4);
    assert.strictEqual(result.emptyReloadResolved, true, 'reload() with no worker resolves');
    assert.strictEqual(result.forksAfterEmptyReload, 4);
    checkRolling(result);
  },
);

// 8. Messages, kill, disconnect, states.
for (const impl of IMPLS) {
  test(
    `${impl}: worker.send / process.send, 'message' args, kill() → SIGTERM, state transitions`,
    {
      timeout: TIMEOUT,
    },
    async (t) => {
      const result = await scenario(t, impl, 'cluster-messages.js');
      const killed = result.log[1];
      assert.deepStrictEqual(killed.find((e) => e[0] === 'exit').slice(1, 3), [null, 'SIGTERM']);
      assert.deepStrictEqual(killed.at(-1), ['send after exit', 'ERR_IPC_CHANNEL_CLOSED']);
      assert.deepStrictEqual(result.log[2].find((e) => e[0] === 'exit').slice(1, 3), [0, null]);
      assert.deepStrictEqual(result.workersLeft, []);
      if (impl === 'node') return;
      const nodeResult = await oracle(t, 'cluster-messages.js');
      for (const id of ['1', '2', '3']) assert.deepStrictEqual(result.log[id], nodeResult.log[id], `worker ${id}`);
    },
  );
}

// 9. fds and processes.
for (const policy of ['rr', 'none', 'reuseport']) {
  for (const impl of policy === 'reuseport' ? ['forkline'] : IMPLS) {
    test(`${impl}: no fd leak and no leftover process in the primary (${policy})`, { timeout: TIMEOUT }, async (t) => {
      const result = await scenario(t, impl, 'cluster-fds.js', [], { env: { NODE_CLUSTER_SCHED_POLICY: policy } });
      for (const c of [result.cycle1, result.cycle2]) {
        assert.strictEqual(c.ok, 30);
        assert.deepStrictEqual(c.exits, [
          [0, null],
          [null, 'SIGTERM'],
          [null, 'SIGKILL'],
        ]);
        assert.strictEqual(c.workersLeft, 0);
        assert.deepStrictEqual(c.procStates, [null, null, null], 'workers reaped (no zombie) by the primary');
      }
      assert.ok(
        result.after2 <= result.after1,
        `fd leak per cluster cycle: ${result.after1} → ${result.after2}\n${(result.leaked || []).join('\n')}`,
      );
      // One-time fds (Node's SIGCHLD pipe is 1) are fine, a handful at most.
      assert.ok(
        result.after1 - result.start <= 4,
        `${result.after1 - result.start} fds kept after the first cycle:\n${(result.oneTime || []).join('\n')}`,
      );
      for (const pid of [...result.cycle1.pids, ...result.cycle2.pids]) assert.strictEqual(procState(pid), null);
    });
  }
}

// In a worker, require('forkline').cluster is node's own worker-side cluster.
for (const impl of IMPLS) {
  test(
    `${impl}: one-file program; in the worker require('forkline').cluster is node:cluster`,
    {
      timeout: TIMEOUT,
    },
    async (t) => {
      const result = await scenario(t, impl, 'cluster-onefile.js');
      assert.deepStrictEqual(result, {
        primary: { isPrimary: true, isWorker: false, workerId: 1 },
        worker: {
          isWorker: true,
          isPrimary: false,
          isMaster: false,
          sameAsNodeCluster: true,
          workerId: 1,
          workerState: 'online',
        },
        answeredByWorker: true,
      });
    },
  );
}

// Nothing left behind by any primary of this file.
for (const kind of ['udp4', 'tcp']) {
  test(
    `workers listening on an fd of the primary's (${kind}): as node:cluster (Node's test-cluster-dgram-bind-fd)`,
    { timeout: TIMEOUT },
    async (t) => {
      const [node, forkline] = await compare(t, 'cluster-listen-fd.js', [kind]);
      assert.strictEqual(node.received, 10);
      assert.deepStrictEqual(forkline, node);
    },
  );
}

for (const policy of ['rr', 'none']) {
  test(`a worker's listen backlog is the primary's (${policy}): as node:cluster`, { timeout: TIMEOUT }, async (t) => {
    const [node, forkline] = await compare(t, 'cluster-backlog.js', [policy]);
    if (node.backlogs === null) return t.skip('no ss(8) here');
    assert.ok(node.backlogs.includes(127), `node: ${node.backlogs}`);
    assert.deepStrictEqual(forkline, node);
  });
}

test('no primary or worker of this file is left running', { timeout: TIMEOUT }, async () => {
  await sleep(200);
  const left = descendants(process.pid).filter((pid) => procState(pid) !== 'Z');
  assert.deepStrictEqual(left, [], `still running: ${left.join(', ')}`);
});

// A worker that closes its server and listens on the port again while another worker still serves it gets back in.
// Node 22 changed how the primary finds that port's server (by port, no longer by listen index, for a fixed port):
// forkline's primary follows the running Node (lib/node_version.js clusterKeyByPort).
for (const policy of ['rr', 'none']) {
  test(`a worker listens again on a port another worker serves, as this Node's cluster (${policy})`, async (t) => {
    const options = { env: { NODE_CLUSTER_SCHED_POLICY: policy } };
    const [node, forkline] = await compare(t, 'cluster-relisten.js', [], options);
    assert.deepStrictEqual(node, { relisten: 'listening', failed: 0, answeredBy: [0, 1] });
    assert.deepStrictEqual(forkline, node);
  });
}

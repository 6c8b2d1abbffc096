'use strict';

// The portable backend (lib/backend.js, lib/portable/): Node's own channel and cluster with forkline's JS-level
// features, where the native addon cannot load or FORKLINE_BACKEND=portable says so. Every scenario runs in a process
// of its own with the backend set by its environment (or from a copy of the package without its addon), so these
// tests run the same in both passes of npm test. The rest of the suite runs again under FORKLINE_BACKEND=portable
// (npm run test:portable), skipping what needs the native core.
const test = require('node:test');
const assert = require('node:assert');
const { spawn, spawnSync } = require('node:child_process');
const fs = require('node:fs');
const path = require('node:path');
const { fixture, tmpDir, killQuietly, processRef } = require('./helpers');

const ROOT = path.join(__dirname, '..');
const PARENT = fixture('portable-parent.js');

// The environment of a process under test: ours, without the backend choice or tracing of this test run.
function envWith(extra) {
  const env = { ...process.env, ...extra };
  for (const key of [
    'FORKLINE_BACKEND',
    'NODE_DEBUG',
    'NODE_TEST_CONTEXT',
    'FORKLINE_CHILD_RUNTIME',
    'FORKLINE_BUSY_POLL',
  ]) {
    if (!(key in extra)) delete env[key];
  }
  for (const key of ['NODE_CLUSTER_SCHED_POLICY', 'NODE_UNIQUE_ID', 'NODE_CHANNEL_FD', 'NODE_OPTIONS']) {
    if (!(key in extra)) delete env[key];
  }
  return env;
}

// Runs `node args...` to its end: { code, stdout, stderr, result } (result: the last stdout line as JSON).
function run(t, args, env = {}, timeout = 30_000) {
  const child = spawn(process.execPath, args, { env: envWith(env), stdio: ['ignore', 'pipe', 'pipe'] });
  t.after(() => killQuietly(child));
  let stdout = '';
  let stderr = '';
  child.stdout.setEncoding('utf8').on('data', (d) => (stdout += d));
  child.stderr.setEncoding('utf8').on('data', (d) => (stderr += d));
  const timer = setTimeout(() => killQuietly(child), timeout);
  return new Promise((resolve) => {
    child.on('close', (code) => {
      clearTimeout(timer);
      let result = null;
      try {
        result = JSON.parse(stdout.trim().split('\n').pop());
      } catch {
        // left null: the caller's assertion shows the output
      }
      resolve({ code, stdout, stderr, result });
    });
  });
}

// A portable-parent.js scenario under FORKLINE_BACKEND=portable; its result, once it succeeded.
async function scenario(t, name, env = {}) {
  const out = await run(t, [PARENT, name], { FORKLINE_BACKEND: 'portable', ...env });
  assert.ok(out.code === 0 && out.result && !out.result.error, `${name}: ${out.stdout}\n${out.stderr}`);
  return { ...out.result, stderr: out.stderr };
}

const lines = (text, pattern) => text.split('\n').filter((line) => pattern.test(line));

test('require("forkline").backend: native when the addon loads, portable when forced; ESM; a bad value', async (t) => {
  const probe = `const f = require(${JSON.stringify(ROOT)}); console.log(f.backend, typeof f.fork, typeof f.cluster.fork)`;
  for (const [value, expected] of [
    [undefined, 'native'],
    ['native', 'native'],
    ['portable', 'portable'],
  ]) {
    const out = await run(t, ['-e', probe], value === undefined ? {} : { FORKLINE_BACKEND: value });
    assert.deepStrictEqual([out.code, out.stdout, out.stderr], [0, `${expected} function function\n`, ''], value);
  }
  const esm = `import { backend, fork } from ${JSON.stringify(`file://${ROOT}/index.js`)}; console.log(backend, typeof fork)`;
  const out = await run(t, ['--input-type=module', '-e', esm], { FORKLINE_BACKEND: 'portable' });
  assert.deepStrictEqual([out.code, out.stdout], [0, 'portable function\n'], out.stderr);

  // Forced, the addon is not even loaded: nothing of it can be used by mistake.
  const maps = `require(${JSON.stringify(ROOT)}); console.log(/forkline\\.node/.test(require('fs').readFileSync('/proc/self/maps', 'utf8')))`;
  for (const [value, loaded] of [
    ['portable', 'false'],
    ['native', 'true'],
  ]) {
    const mapped = await run(t, ['-e', maps], { FORKLINE_BACKEND: value });
    assert.strictEqual(mapped.stdout, `${loaded}\n`, `${value}: ${mapped.stderr}`);
  }

  const bad = await run(t, ['-e', probe], { FORKLINE_BACKEND: 'rust' });
  assert.strictEqual(bad.code, 1);
  assert.match(bad.stderr, /ERR_INVALID_ARG_VALUE.*env\.FORKLINE_BACKEND' must be one of: 'native', 'portable'/s);
});

// The package as it would be on a system without a binary: index.js, package.json and lib/, and no forkline.node.
function copyWithoutAddon(t) {
  const dir = path.join(tmpDir(t), 'forkline');
  fs.mkdirSync(dir);
  for (const file of ['index.js', 'package.json']) fs.copyFileSync(path.join(ROOT, file), path.join(dir, file));
  fs.cpSync(path.join(ROOT, 'lib'), path.join(dir, 'lib'), { recursive: true });
  return dir;
}

test('an addon that cannot load: the portable backend serves, said on one NODE_DEBUG line', async (t) => {
  const copy = copyWithoutAddon(t);
  for (const broken of [false, true]) {
    // No binary at all, then one that is not a library.
    if (broken) fs.writeFileSync(path.join(copy, 'forkline.node'), 'not an ELF file');
    const out = await run(t, [PARENT, 'roundtrip', copy], { NODE_DEBUG: 'forkline' });
    assert.strictEqual(out.code, 0, out.stdout + out.stderr);
    assert.deepStrictEqual(out.result, { backend: 'portable', reply: { hello: 'portable' }, answered: true });
    const said = lines(out.stderr, /backend: /);
    assert.strictEqual(said.length, 1, out.stderr);
    assert.match(
      said[0],
      /^FORKLINE \d+: backend: portable \(forkline: cannot load its native addon, \.\/forkline\.node \(/,
    );
    assert.doesNotMatch(said[0], /Build it from source/);
    // Without NODE_DEBUG, nothing is said.
    const quiet = await run(t, [PARENT, 'roundtrip', copy]);
    assert.deepStrictEqual([quiet.code, quiet.stderr], [0, '']);
  }
  // Forced native, the load error is thrown, with how to build the addon.
  const forced = await run(t, ['-e', `require(${JSON.stringify(copy)})`], { FORKLINE_BACKEND: 'native' });
  assert.strictEqual(forced.code, 1);
  assert.match(forced.stderr, /forkline: cannot load its native addon, \.\/forkline\.node .*Build it from source/);
});

test('what needs the native core, asked for in code, throws FORKLINE_UNSUPPORTED and spawns nothing', async (t) => {
  const result = await scenario(t, 'unsupported');
  const unsupported = (what) => ({
    name: 'Error',
    code: 'FORKLINE_UNSUPPORTED',
    message: `${what} needs forkline's native core; this process runs the portable backend (FORKLINE_BACKEND=portable)`,
  });
  assert.deepStrictEqual(result.maxMessageSize, unsupported('fork() option maxMessageSize'));
  assert.deepStrictEqual(result.maxMessageSizeInArgs, unsupported('fork() option maxMessageSize'));
  assert.deepStrictEqual(result.childRuntime, unsupported("fork() option childRuntime: 'forkline'"));
  assert.deepStrictEqual(result.spawn, unsupported("fork() option childRuntime: 'forkline'"));
  assert.deepStrictEqual(result.clusterFork, unsupported("cluster setting childRuntime: 'forkline'"));
  // Bad values are the same errors as under the native backend.
  assert.strictEqual(result.maxMessageSizeBad.code, 'ERR_OUT_OF_RANGE');
  assert.strictEqual(result.childRuntimeBad.code, 'ERR_INVALID_ARG_VALUE');
  assert.strictEqual(result.busyPollBad.code, 'ERR_OUT_OF_RANGE');
  assert.deepStrictEqual([result.workers, result.children], [0, 0]);
});

test('process defaults and busyPoll fall back to Node: its channel, no runtime, round-robin; one line each', async (t) => {
  const env = { FORKLINE_CHILD_RUNTIME: 'forkline', FORKLINE_BUSY_POLL: '100', NODE_CLUSTER_SCHED_POLICY: 'reuseport' };
  const result = await scenario(t, 'fallbacks', { ...env, NODE_DEBUG: 'forkline:backend' });
  // The children have Node's channel, and were never asked to start forkline's runtime (no FORKLINE_CHANNEL_FD,
  // no preload in NODE_OPTIONS): only the variables of the test are in their env.
  const own = ['FORKLINE_BACKEND', 'FORKLINE_BUSY_POLL', 'FORKLINE_CHILD_RUNTIME'];
  for (const report of result.reports) assert.deepStrictEqual(report, { stats: null, envKeys: own });
  // SCHED_REUSEPORT, asked for by the environment, is round-robin once set up: one port, both workers answer.
  assert.deepStrictEqual(
    [result.policyBefore, result.policyAfter, result.samePort, result.byWorker, result.answers],
    [3, 2, true, 2, 6],
  );
  const said = lines(result.stderr, /^FORKLINE:BACKEND /).map((line) => line.replace(/^FORKLINE:BACKEND \d+: /, ''));
  assert.deepStrictEqual(said, [
    'portable (FORKLINE_BACKEND=portable)',
    "FORKLINE_CHILD_RUNTIME=forkline: children run on Node's channel",
    "FORKLINE_BUSY_POLL is ignored: Node's channel waits",
    "SCHED_REUSEPORT is round-robin: Node's cluster has no SO_REUSEPORT sockets",
  ]);
});

test("stats(), 'drain' and 'close' after disconnect() over Node's channel", async (t) => {
  const result = await scenario(t, 'stats');
  assert.deepStrictEqual(result.falses, [false, false], 'send() says false past the high-water mark');
  assert.ok(result.queued > 128 * 1024, `bytes queued behind the socket: ${result.queued}`);
  assert.strictEqual(result.afterDrain, 0);
  assert.deepStrictEqual(result.replies, [4 * 1024 * 1024, 'b']);
  assert.strictEqual(result.late, 'ERR_IPC_CHANNEL_CLOSED');
  assert.deepStrictEqual(result.errors, ['ERR_IPC_DISCONNECTED']);
  assert.deepStrictEqual(result.events, ['disconnect', 'exit', 'close']);
  assert.strictEqual(result.channel, null);
  // Kept once the channel closed: what crossed, in json lines.
  const wire = (...messages) => messages.reduce((n, m) => n + Buffer.byteLength(JSON.stringify(m)) + 1, 0);
  assert.deepStrictEqual(result.stats, {
    messagesSent: 3,
    bytesSent: wire('a', 'x'.repeat(4 * 1024 * 1024), 'b'),
    handlesSent: 0,
    messagesReceived: 3,
    bytesReceived: wire('a', 4 * 1024 * 1024, 'b'),
    handlesReceived: 0,
    bytesQueued: 0,
    errors: { ERR_IPC_CHANNEL_CLOSED: 1, ERR_IPC_DISCONNECTED: 1 },
    backpressureEvents: 3,
  });
});

test("cluster over node:cluster: stats(), restart, reload, 'giveup', and their trace", async (t) => {
  const result = await scenario(t, 'cluster', { NODE_DEBUG: 'forkline:cluster' });
  // Round-robin hands each connection to a worker: what stats() counts, as the native acceptor does.
  const handed = result.served.map((w) => w.connections.handed);
  assert.strictEqual(handed[0] + handed[1], 8, JSON.stringify(result.served));
  for (const w of result.served) {
    assert.deepStrictEqual([w.state, w.restarts, w.connections.refused], ['listening', 0, 0]);
    assert.ok(w.channel.messagesSent >= w.connections.handed && w.channel.handlesSent === w.connections.handed);
  }
  // Worker 1 died and was forked again (worker 3, one restart); reload replaced 2 and 3 by 4 and 5, keeping counts.
  assert.deepStrictEqual(
    result.reloaded.map((w) => [w.id, w.restarts]),
    [
      [4, 0],
      [5, 1],
    ],
  );
  const giveups = result.events.filter((e) => e[0] === 'giveup');
  assert.strictEqual(giveups.length, 1, JSON.stringify(result.events));
  assert.deepStrictEqual(
    result.events.filter((e) => e[0] === 'fork').map((e) => e[1]),
    [1, 2, 3, 4, 5, 6],
    'the first of the last two deaths is restarted; the second is one too many',
  );
  const traced = lines(result.stderr, /^FORKLINE:CLUSTER /).map((line) => line.replace(/^FORKLINE:CLUSTER \d+: /, ''));
  for (const pattern of [
    /^fork worker 1 pid \d+$/,
    new RegExp(`^worker 2 serves .*:${result.port}|^worker 2 serves 127\\.0\\.0\\.1:0:4:.* \\(rr\\)$`),
    /^restart after 1 deaths: worker 1$/,
    /^reload replace: worker 2 -> 4$/,
    /^reload done$/,
    /^giving up: 3 deaths, last worker \d+$/,
  ]) {
    assert.ok(
      traced.some((line) => pattern.test(line)),
      `${pattern} in\n${traced.join('\n')}`,
    );
  }
});

test("NODE_DEBUG=forkline traces a fork/send/exit cycle over Node's channel", async (t) => {
  const out = await run(t, [fixture('trace-parent.js')], { FORKLINE_BACKEND: 'portable', NODE_DEBUG: 'forkline' });
  assert.deepStrictEqual([out.code, out.stdout], [0, 'done\n'], out.stderr);
  const steps = out.stderr
    .split('\n')
    .filter(Boolean)
    .map((line) =>
      line
        .replace(/^FORKLINE \d+: /, '')
        .replace(/pid \d+/, 'pid N')
        .replace(/: [1-9]\d* bytes/, ': B bytes'),
    );
  assert.deepStrictEqual(
    steps.map((line) => line.replace(/spawn pid N: .*/, 'spawn pid N')),
    [
      'backend: portable (FORKLINE_BACKEND=portable)',
      'channel: spawn pid N',
      'channel: open (child pid N, json)',
      'channel: handle send (child pid N): net.Server',
      'channel: handle ack (child pid N)',
      'channel: backpressure on (child pid N): B bytes queued',
      'channel: backpressure off (child pid N): 0 bytes queued',
      'channel: closed (child pid N): disconnect',
      'channel: closed (child pid N): eof',
      'channel: exit pid N: code 0 signal null',
    ],
  );
});

test('the launcher and its control socket in the portable backend: status, reload, stop', async (t) => {
  const dir = path.join(tmpDir(t), 'ctl');
  const env = envWith({ FORKLINE_BACKEND: 'portable', FORKLINE_CONTROL_DIR: dir, HOST: '127.0.0.1', PORT: '0' });
  const launcher = spawn(
    process.execPath,
    [ROOT, 'cluster', '-w', '2', '-n', 'app', fixture('cluster-worker-http.js')],
    {
      env,
      stdio: ['ignore', 'ignore', 'pipe'],
    },
  );
  t.after(() => killQuietly(launcher));
  let stderr = '';
  launcher.stderr.setEncoding('utf8').on('data', (d) => (stderr += d));
  const exited = new Promise((resolve) => launcher.on('close', (code) => resolve(code)));
  const ctl = (...args) => spawnSync(process.execPath, [ROOT, ...args], { env, encoding: 'utf8', timeout: 20_000 });
  let status;
  const deadline = Date.now() + 20_000;
  for (;;) {
    const out = ctl('status', 'app', '--json');
    status = out.status === 0 ? JSON.parse(out.stdout) : null;
    if (status && status.workers.length === 2 && status.workers.every((w) => w.state === 'listening')) break;
    assert.ok(Date.now() < deadline, `no two listening workers: ${out.stderr}\n${stderr}`);
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
  const workers = status.workers.map((w) => processRef(w.pid));
  t.after(() => workers.forEach((w) => killQuietly(w)));
  assert.strictEqual(status.pid, launcher.pid);
  for (const w of status.workers) {
    assert.strictEqual(typeof w.channel.messagesReceived, 'number');
    assert.strictEqual(typeof w.rss, 'number');
  }
  assert.deepStrictEqual(
    [ctl('reload', 'app').stdout, ctl('status', 'app').stdout.split('\n')[0]],
    ['reloaded app\n', `app (primary pid ${launcher.pid}, 2 workers)`],
  );
  assert.strictEqual(ctl('stop', 'app').stdout, 'stopping app\n');
  assert.strictEqual(await exited, 0, stderr);
});

test("forkline/register in the portable mode: it serves the forks; node:cluster stays Node's, said once", async (t) => {
  // A program that never names forkline: a fork and a cluster worker through node:child_process and node:cluster.
  const program = `
    const cp = require('node:child_process');
    const cluster = require('node:cluster');
    const child = cp.fork(${JSON.stringify(fixture('echo.js'))});
    const stats = typeof child.channel.stats;
    child.send('hi');
    child.once('message', (reply) => {
      child.kill();
      cluster.setupPrimary({ exec: ${JSON.stringify(fixture('echo.js'))} });
      const worker = cluster.fork();
      worker.once('online', () => {
        const workerStats = typeof worker.process.channel.stats;
        console.log(JSON.stringify({ reply, stats, reload: typeof cluster.reload, workerStats, pid: process.pid }));
        worker.kill();
      });
    });`;
  const out = await run(t, ['-r', path.join(ROOT, 'register.js'), '-e', program], {
    FORKLINE_BACKEND: 'portable',
    NODE_DEBUG: 'forkline:register',
  });
  assert.strictEqual(out.code, 0, out.stderr);
  // The forks are forkline's (the channel has stats()), the workers' too (Node's primary forks through
  // node:child_process), but the cluster is Node's (no reload()): its primary works on node:cluster itself.
  const { pid, ...result } = out.result;
  assert.deepStrictEqual(result, { reply: 'hi', stats: 'function', reload: 'undefined', workerStats: 'function' });
  // Once per process: the worker (which inherits the flag) may say it too before it is killed.
  const ours = new RegExp(`^FORKLINE:REGISTER ${pid}: `);
  const said = lines(out.stderr, /portable backend/)
    .filter((line) => ours.test(line))
    .map((line) => line.replace(ours, ''));
  assert.deepStrictEqual(said, [
    "forkline runs its portable backend, whose cluster is Node's own: node:cluster stays Node's own",
  ]);
});

'use strict';

// forkline/register (lib/register.js): programs that never name forkline, run with `--import forkline/register` or
// `-r forkline/register` (on the command line or in NODE_OPTIONS) and nothing else changed. Each fixture program
// (fixtures/register/) runs in an app directory of its own, laid out as a user's: forkline and two libraries that
// fork in its node_modules. Then the example projects (examples/register/: mocha --parallel, vitest --pool=forks,
// jest, AVA, a node:cluster app) run as their users run them, without and with the flag; FORKLINE_REGISTER_REPORT
// shows that forkline's fork served each, with the messages its channels counted.

const test = require('node:test');
const assert = require('node:assert');
const fs = require('node:fs');
const path = require('node:path');
const { spawn } = require('node:child_process');
const { tmpDir } = require('./helpers');
const examples = require('../examples/register/run.js');

const ROOT = path.join(__dirname, '..');
const FIXTURES = path.join(__dirname, 'fixtures', 'register');

// An app directory: the fixtures, node_modules/forkline (this repository) and the libraries of fixtures/register/libs.
function app(t, { forkline = 'link' } = {}) {
  const dir = tmpDir(t);
  for (const file of fs.readdirSync(FIXTURES)) {
    if (fs.statSync(path.join(FIXTURES, file)).isFile())
      fs.copyFileSync(path.join(FIXTURES, file), path.join(dir, file));
  }
  const modules = path.join(dir, 'node_modules');
  fs.cpSync(path.join(FIXTURES, 'libs'), modules, { recursive: true });
  if (forkline === 'link') {
    fs.symlinkSync(ROOT, path.join(modules, 'forkline'), 'dir');
  } else {
    // A copy of the package whose addon is not one: what a platform without a binary looks like.
    const copy = path.join(modules, 'forkline');
    fs.mkdirSync(copy);
    for (const file of ['package.json', 'index.js', 'register.js', 'register.mjs']) {
      fs.copyFileSync(path.join(ROOT, file), path.join(copy, file));
    }
    fs.cpSync(path.join(ROOT, 'lib'), path.join(copy, 'lib'), { recursive: true });
    fs.writeFileSync(path.join(copy, 'forkline.node'), 'not an addon');
  }
  return dir;
}

// The environment of a fixture run: nothing of this process's NODE_OPTIONS or forkline settings.
function cleanEnv(extra = {}) {
  const env = { ...process.env };
  for (const key of Object.keys(env)) {
    if (key === 'NODE_OPTIONS' || key === 'NODE_DEBUG' || key === 'NODE_TEST_CONTEXT' || key.startsWith('FORKLINE_')) {
      delete env[key];
    }
  }
  return { ...env, ...extra };
}

// Runs `node ...args` in `cwd`; resolves to { code, signal, stdout, stderr, json } (json: stdout's last line parsed).
function node(t, cwd, args, env = {}) {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, args, { cwd, env: cleanEnv(env), stdio: ['ignore', 'pipe', 'pipe'] });
    t.after(() => child.exitCode === null && child.signalCode === null && child.kill('SIGKILL'));
    let stdout = '';
    let stderr = '';
    child.stdout.setEncoding('utf8').on('data', (d) => (stdout += d));
    child.stderr.setEncoding('utf8').on('data', (d) => (stderr += d));
    child.on('error', reject);
    child.on('close', (code, signal) => {
      const last = stdout.trim().split('\n').pop();
      let json = null;
      try {
        json = JSON.parse(last);
      } catch {
        // Not JSON: the assertions on code and stderr say why.
      }
      resolve({ code, signal, stdout, stderr, json });
    });
  });
}

function assertClean(result) {
  assert.strictEqual(result.code, 0, `exit ${result.code ?? result.signal}\n${result.stdout}\n${result.stderr}`);
  assert.ok(result.json, `no JSON on stdout:\n${result.stdout}\n${result.stderr}`);
}

// Each fork went to forkline, echoed, and its channel counted the message each way.
function assertServed(forks, expectedLabels) {
  assert.deepStrictEqual(
    forks.map((f) => f.label),
    expectedLabels,
  );
  for (const fork of forks) {
    assert.deepStrictEqual(
      { label: fork.label, echoed: fork.echoed, forkline: fork.forkline, node: fork.node },
      { label: fork.label, echoed: true, forkline: true, node: false },
    );
    assert.ok(fork.sent >= 1 && fork.received >= 1, `${fork.label}: stats ${fork.sent}/${fork.received}`);
  }
}

const BOTH = {
  ran: true,
  requested: ['child_process', 'cluster'],
  replaced: ['child_process', 'cluster'],
  skipped: {},
};

test('ESM: static named, default and dynamic imports, libraries in node_modules, bindings made before the flag', async (t) => {
  const dir = app(t);
  const r = await node(t, dir, [
    '-r',
    './early.cjs',
    '--import',
    './early.mjs',
    '--import',
    'forkline/register',
    'surface.mjs',
  ]);
  assertClean(r);
  const out = r.json;
  assert.deepStrictEqual(out.registered, BOTH);
  assertServed(out.forks, [
    'static named',
    'static default',
    'dynamic named',
    'dynamic default',
    'require',
    'require unprefixed',
    'esm library in node_modules',
    'cjs library in node_modules',
    'spawn with ipc',
    'named import made before the register',
    'default import made before the register',
    'module object kept before the register',
  ]);
  // spawn() without a channel, exec*() and the rest are Node's own, untouched.
  assert.deepStrictEqual(out.spawnWithoutIpc, { node: true, forkline: false, code: 0 });
  assert.deepStrictEqual(out.execFile, { node: true, err: null, stdout: '1\n' });
  assert.deepStrictEqual(out.replaced, { fork: true, spawn: true });
  for (const [key, same] of Object.entries(out.untouched)) assert.ok(same, `child_process.${key} was changed`);
  assert.ok(Object.keys(out.untouched).length >= 6, JSON.stringify(out.untouched));
  assert.deepStrictEqual(out.cluster, {
    isPrimary: true,
    forklines: true,
    named: true,
    dynamic: true,
    required: true,
    earlyNamed: true,
    earlyDefault: true,
  });
});

test('CommonJS: -r forkline/register, in NODE_OPTIONS too', async (t) => {
  const dir = app(t);
  const labels = ['require', 'destructured', 'cjs library in node_modules', 'spawn with ipc'];
  const cli = await node(t, dir, ['-r', './early.cjs', '-r', 'forkline/register', 'surface.cjs']);
  assertClean(cli);
  assert.deepStrictEqual(cli.json.registered, BOTH);
  assertServed(cli.json.forks, [...labels, 'module object kept before the register']);
  assert.deepStrictEqual(cli.json.cluster, { isPrimary: true, forklines: true });
  // Every property of forkline's cluster is on Node's object from the start, not only once forkline's is loaded.
  assert.deepStrictEqual(cli.json.clusterKeys.before, cli.json.clusterKeys.after);
  const nodeKeys = Reflect.ownKeys(require('node:cluster')).map(String);
  const forklineKeys = Reflect.ownKeys(require('..').cluster).map(String);
  assert.deepStrictEqual(cli.json.clusterKeys.after.sort(), [...new Set([...nodeKeys, ...forklineKeys])].sort());

  const env = await node(t, dir, ['surface.cjs'], { NODE_OPTIONS: '--require forkline/register' });
  assertClean(env);
  assert.deepStrictEqual(env.json.registered, BOTH);
  assertServed(env.json.forks, labels);
});

test('without the flag nothing is replaced', async (t) => {
  const r = await node(t, app(t), ['surface.cjs']);
  assertClean(r);
  assert.deepStrictEqual(r.json.registered, { ran: false, requested: [], replaced: [], skipped: {} });
  for (const fork of r.json.forks) assert.deepStrictEqual([fork.forkline, fork.node], [false, true], fork.label);
  assert.deepStrictEqual(r.json.cluster, { isPrimary: true, forklines: false });
});

test("node:cluster: the primary is forkline's cluster, a worker keeps Node's worker side", async (t) => {
  const r = await node(t, app(t), ['--import', 'forkline/register', 'cluster-app.mjs']);
  assertClean(r);
  const out = r.json;
  assert.deepStrictEqual(out.registered, BOTH);
  assert.deepStrictEqual([out.cluster, out.forklineChannel], [true, true]);
  // The worker's hello and 20 echoes, on forkline's channel.
  assert.ok(out.channel.messagesSent >= 20 && out.channel.messagesReceived >= 21, JSON.stringify(out.channel));
  assert.deepStrictEqual(out.worker.registered, {
    ran: true,
    requested: ['child_process', 'cluster'],
    replaced: ['child_process'],
    skipped: { cluster: "this process is a cluster worker: node:cluster stays Node's worker side" },
  });
  assert.deepStrictEqual([out.worker.isWorker, out.worker.id, out.worker.hasStats], [true, 1, false]);

  // node:cluster left as Node's: its primary forks through child_process.fork, so its workers still get forkline's
  // channel, under Node's own cluster protocol.
  const cpOnly = await node(t, app(t), ['--import', 'forkline/register', 'cluster-app.mjs'], {
    FORKLINE_REGISTER: 'child_process',
  });
  assertClean(cpOnly);
  assert.deepStrictEqual(cpOnly.json.registered.replaced, ['child_process']);
  assert.deepStrictEqual([cpOnly.json.cluster, cpOnly.json.forklineChannel], [false, true]);
  assert.ok(cpOnly.json.channel.messagesReceived >= 21, JSON.stringify(cpOnly.json.channel));
  assert.deepStrictEqual([cpOnly.json.worker.isWorker, cpOnly.json.worker.id], [true, 1]);
});

test('FORKLINE_REGISTER picks the modules; an unknown name is reported once', async (t) => {
  const dir = app(t);
  const run = (value) => node(t, dir, ['-r', 'forkline/register', 'surface.cjs'], { FORKLINE_REGISTER: value });

  const cp = await run('child_process');
  assertClean(cp);
  assert.deepStrictEqual(cp.json.registered.replaced, ['child_process']);
  assertServed(cp.json.forks, ['require', 'destructured', 'cjs library in node_modules', 'spawn with ipc']);
  assert.strictEqual(cp.json.cluster.forklines, false);

  const cluster = await run('node:cluster');
  assertClean(cluster);
  assert.deepStrictEqual(cluster.json.registered.replaced, ['cluster']);
  for (const fork of cluster.json.forks) assert.strictEqual(fork.forkline, false, fork.label);
  assert.strictEqual(cluster.json.cluster.forklines, true);

  const none = await run('none');
  assertClean(none);
  assert.deepStrictEqual(none.json.registered, { ran: true, requested: [], replaced: [], skipped: {} });
  for (const fork of none.json.forks) assert.strictEqual(fork.forkline, false, fork.label);

  const unknown = await run('child_process, workers');
  assertClean(unknown);
  assert.deepStrictEqual(unknown.json.registered.replaced, ['child_process']);
  const warnings = unknown.stderr.split('\n').filter((line) => line.includes('FORKLINE_REGISTER'));
  assert.strictEqual(warnings.length, 1, unknown.stderr);
  assert.match(warnings[0], /unknown module workers/);
});

test('registering twice is harmless', async (t) => {
  const dir = app(t);
  const r = await node(t, dir, ['-r', 'forkline/register', '--import', 'forkline/register', 'surface.cjs'], {
    NODE_OPTIONS: '--require forkline/register',
    NODE_DEBUG: 'forkline:register',
  });
  assertClean(r);
  assert.deepStrictEqual(r.json.registered, BOTH);
  assertServed(r.json.forks, ['require', 'destructured', 'cjs library in node_modules', 'spawn with ipc']);
  // One "replaced" line per process that ran it: this one first, then each child's after the trace line of its
  // fork (a child answers only once it has started, and each exits before the next is forked). Not told apart by
  // pid: a child's pid may come back for the next one.
  const own = r.stderr.split('\n').filter((line) => line.startsWith('FORKLINE:REGISTER '));
  const kinds = own.map((line) =>
    / replaced /.test(line) ? 'replaced' : / (fork|spawn) .* from /.test(line) ? 'trace' : line,
  );
  assert.deepStrictEqual(kinds, ['replaced', ...Array(4).fill(['trace', 'replaced']).flat()], r.stderr);
  const pidOf = (line) => line.split(' ')[1];
  const parent = pidOf(own[0]);
  assert.ok(
    own.filter((line, i) => i % 2 === 1).every((line) => pidOf(line) === parent),
    r.stderr,
  );
  assert.ok(
    own.filter((line, i) => i > 0 && i % 2 === 0).every((line) => pidOf(line) !== parent),
    r.stderr,
  );
});

test("NODE_DEBUG=forkline traces each replaced fork with its caller's module", async (t) => {
  const dir = app(t);
  const r = await node(t, dir, ['--import', 'forkline/register', 'surface.mjs'], { NODE_DEBUG: 'forkline' });
  assertClean(r);
  const traces = r.stderr.split('\n').filter((line) => / register: (fork|spawn) /.test(line));
  assert.strictEqual(traces.length, 9, r.stderr);
  const from = (where) => traces.filter((line) => line.includes(' from ') && line.includes(where));
  assert.strictEqual(from(path.join('node_modules', 'pool-cjs', 'index.js')).length, 1, traces.join('\n'));
  assert.strictEqual(from(path.join('node_modules', 'pool-esm', 'index.js')).length, 1, traces.join('\n'));
  assert.strictEqual(from('probe.cjs').length, 7, traces.join('\n'));
  assert.strictEqual(traces.filter((line) => / register: spawn .* \(ipc\) from /.test(line)).length, 1);
});

test('without its addon, the flag leaves Node alone and says why once', async (t) => {
  const dir = app(t, { forkline: 'broken' });
  // Whether this forkline runs without its addon (a portable backend): then the flag must still serve the forks.
  const loads = await node(t, dir, ['-e', "require('forkline'); console.log('{}')"]);
  const portable = loads.code === 0;

  const debug = await node(t, dir, ['-r', 'forkline/register', 'surface.cjs'], { NODE_DEBUG: 'forkline' });
  assertClean(debug);
  if (portable) {
    // The portable backend serves the forks with Node's own ChildProcess class (so `node` is true too) and counts
    // what crossed; its cluster is Node's own primary, so node:cluster stays Node's, said once.
    const labels = debug.json.forks.map((fork) => fork.label);
    assert.deepStrictEqual(labels, ['require', 'destructured', 'cjs library in node_modules', 'spawn with ipc']);
    for (const fork of debug.json.forks) {
      assert.deepStrictEqual([fork.echoed, fork.forkline, fork.node], [true, true, true], fork.label);
      assert.ok(fork.sent >= 1 && fork.received >= 1, `${fork.label}: stats ${fork.sent}/${fork.received}`);
    }
    assert.strictEqual(debug.json.cluster.forklines, false);
    const said = debug.stderr.split('\n').filter((line) => /register: forkline runs its portable backend/.test(line));
    assert.strictEqual(said.length, 1, debug.stderr);
    return;
  }
  for (const fork of debug.json.forks) {
    assert.deepStrictEqual([fork.echoed, fork.forkline, fork.node], [true, false, true], fork.label);
  }
  assert.strictEqual(debug.json.cluster.forklines, false);
  const said = debug.stderr.split('\n').filter((line) => /register: forkline cannot load/.test(line));
  assert.strictEqual(said.length, 1, debug.stderr);
  assert.match(said[0], /node:child_process and node:cluster stay Node's own/);

  // Quiet unless asked: no NODE_DEBUG and no FORKLINE_REGISTER, no output; FORKLINE_REGISTER set, one warning.
  const quiet = await node(t, dir, ['-r', 'forkline/register', 'surface.cjs']);
  assertClean(quiet);
  assert.strictEqual(quiet.stderr, '');
  const explicit = await node(t, dir, ['-r', 'forkline/register', 'surface.cjs'], {
    FORKLINE_REGISTER: 'child_process,cluster',
  });
  assertClean(explicit);
  const warnings = explicit.stderr.split('\n').filter((line) => line.includes('[FORKLINE_REGISTER]'));
  assert.strictEqual(warnings.length, 1, explicit.stderr);
  assert.match(warnings[0], /forkline cannot load/);
});

test('children inherit the flag, also in another directory; FORKLINE_REGISTER_REPORT tells the whole tree', async (t) => {
  const dir = app(t);
  const report = path.join(tmpDir(t), 'report.jsonl');
  const r = await node(t, dir, ['tree.cjs'], {
    NODE_OPTIONS: '--import forkline/register',
    FORKLINE_REGISTER_REPORT: report,
  });
  assertClean(r);
  assert.deepStrictEqual(r.json.self, BOTH);
  assert.strictEqual(fs.realpathSync(r.json.middle.cwd), fs.realpathSync(require('node:os').tmpdir()));
  assert.deepStrictEqual(r.json.middle.registered, BOTH);
  assertServed([r.json.middle.grandchild], ['grandchild']);

  // One record per process: tree.cjs, middle.cjs, echo.js; each parent lists its fork with the channel's counts.
  const records = examples.readReport(report);
  const byScript = Object.fromEntries(records.map((rec) => [path.basename(rec.argv[1]), rec]));
  assert.deepStrictEqual(Object.keys(byScript).sort(), ['echo.js', 'middle.cjs', 'tree.cjs']);
  for (const rec of records) assert.deepStrictEqual(rec.registered, BOTH);
  const [middle] = byScript['tree.cjs'].forks;
  assert.strictEqual(middle.via, 'child_process.fork');
  assert.strictEqual(middle.pid, byScript['middle.cjs'].pid);
  assert.ok(middle.stats.messagesReceived >= 1, JSON.stringify(middle.stats));
  const [echo] = byScript['middle.cjs'].forks;
  assert.strictEqual(echo.pid, byScript['echo.js'].pid);
  assert.deepStrictEqual([echo.stats.messagesSent, echo.stats.messagesReceived], [1, 1]);
  assert.deepStrictEqual(byScript['echo.js'].forks, []);
});

// The example projects, each as its users run it (npm test, node app.js), without and with the flag: one test each,
// so that each has the whole per-test time-out.
for (const name of Object.keys(examples.PROJECTS)) {
  test(`examples/register/${name} passes without and with the flag, and forkline served its workers`, async () => {
    examples.linkForkline();
    const plain = await examples.run(name, { withFlag: false });
    assert.strictEqual(plain.code, 0, `${name} without the flag:\n${plain.stdout}\n${plain.stderr}`);
    // FORKLINE_REGISTER_REPORT was set: without the flag nothing of forkline ran.
    assert.deepStrictEqual(plain.records, []);

    const flagged = await examples.run(name, { withFlag: true });
    assert.strictEqual(flagged.code, 0, `${name} with the flag:\n${flagged.stdout}\n${flagged.stderr}`);
    assert.ok(flagged.records.length >= 2, `${name}: ${flagged.records.length} records`);
    for (const rec of flagged.records) assert.strictEqual(rec.registered.ran, true);
    const forks = examples.forksOf(flagged.records);
    assert.ok(forks.length >= 1, `${name}: forkline forked nothing`);
    for (const fork of forks) {
      assert.strictEqual(fork.via, name === 'cluster' ? 'cluster' : 'child_process.fork', JSON.stringify(fork));
      assert.ok(
        fork.stats.messagesSent >= 1 && fork.stats.messagesReceived >= 1,
        `${name}: ${JSON.stringify(fork.stats)}`,
      );
    }
    if (name === 'cluster') {
      assert.match(flagged.stdout, new RegExp(`served ${flagged.requests} requests`));
      // Each request was a message from a worker, and round-robin handed each connection over as a handle.
      const received = forks.reduce((sum, fork) => sum + fork.stats.messagesReceived, 0);
      const handles = forks.reduce((sum, fork) => sum + fork.stats.handlesSent, 0);
      assert.ok(received >= flagged.requests, `${received} messages for ${flagged.requests} requests`);
      assert.ok(handles >= flagged.requests, `${handles} handles for ${flagged.requests} connections`);
    }
  });
}

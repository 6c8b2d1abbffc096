'use strict';

// spawn() with an 'ipc' slot is served by forkline's channel (#11), whatever the child runs and however it was
// started (a shell included); a spawn without one is Node's own. node:child_process.spawn is the oracle.

const test = require('node:test');
const assert = require('node:assert');
const nodeChildProcess = require('node:child_process');
const forkline = require('..');
const { fixture, once, recordEvents, whenClosed, killQuietly, mustNotCall, BACKEND } = require('./helpers');

const ECHO = fixture('echo.js');
const IPC_ONLY = ['ignore', 'ignore', 'ignore', 'ipc'];
const SPAWNS = { node: nodeChildProcess.spawn, forkline: forkline.spawn };

// Spawns with `spawnFn`, echoes two messages through the channel, lets the child exit 0 and returns its events.
async function echoTwice(t, spawnFn, file, args, options) {
  const child = spawnFn(file, args, options);
  t.after(() => killQuietly(child));
  child.on('close', () => {});
  const log = recordEvents(child);
  child.send({ n: 1 });
  await once(child, 'message');
  child.send('two');
  await once(child, 'message');
  child.send('exit:0');
  await new Promise((resolve) => child.once('close', resolve));
  return { child, log };
}

for (const [label, file, args, extra] of [
  ['node child.js', process.execPath, [ECHO], {}],
  ['through a shell', `"${process.execPath}" "${ECHO}"`, [], { shell: true }],
  ['through a named shell', `"${process.execPath}"`, [`"${ECHO}"`], { shell: '/bin/sh' }],
]) {
  test(
    `spawn() with an 'ipc' slot (${label}) is a forkline ChildProcess with Node's events`,
    { timeout: 20_000 },
    async (t) => {
      const results = {};
      for (const [impl, spawnFn] of Object.entries(SPAWNS)) {
        const { child, log } = await echoTwice(t, spawnFn, file, args, { stdio: IPC_ONLY, ...extra });
        results[impl] = log;
        if (impl === 'forkline') assert.ok(child instanceof forkline.ChildProcess, 'served by forkline');
      }
      assert.deepStrictEqual(results.node, [
        ['spawn'],
        ['message', { n: 1 }],
        ['message', 'two'],
        ['disconnect'],
        ['exit', 0, null],
        ['close', 0, null],
      ]);
      assert.deepStrictEqual(results.forkline, results.node);
    },
  );
}

test('spawn() with stdio pipes beside the ipc slot, and advanced serialization', { timeout: 20_000 }, async (t) => {
  const child = forkline.spawn(process.execPath, [fixture('adv-echo.js')], {
    stdio: ['pipe', 'pipe', 'pipe', 'ipc'],
    serialization: 'advanced',
  });
  t.after(() => killQuietly(child));
  child.on('error', mustNotCall());
  assert.ok(child instanceof forkline.ChildProcess);
  assert.ok(child.stdout && child.stderr && child.stdin, 'piped stdio streams');
  const value = { map: new Map([[1, 'one']]), buf: Buffer.from('hi') };
  child.send(value);
  const [echoed] = await once(child, 'message');
  assert.deepStrictEqual(echoed, value);
  child.disconnect();
  assert.deepStrictEqual(await once(child, 'exit'), [0, null]);
});

test("spawn() without an 'ipc' slot is Node's own spawn", { timeout: 20_000 }, async (t) => {
  const child = forkline.spawn(process.execPath, ['-e', 'process.stdout.write("out")']);
  t.after(() => killQuietly(child));
  assert.ok(child instanceof nodeChildProcess.ChildProcess);
  // forkline's own ChildProcess is another class, except in the portable backend, where it is Node's.
  if (BACKEND === 'native') assert.ok(!(child instanceof forkline.ChildProcess));
  let out = '';
  child.stdout.setEncoding('utf8').on('data', (d) => (out += d));
  assert.deepStrictEqual(await whenClosed(child), [0, null]);
  assert.strictEqual(out, 'out');
});

test('spawn() argument errors are as Node throws them', () => {
  const cases = [
    ['', { stdio: IPC_ONLY }],
    [5, { stdio: IPC_ONLY }],
    ['x\u0000', { stdio: IPC_ONLY }],
    ['x', 5],
    ['x', [], 'nope'],
    ['x', [], { stdio: IPC_ONLY, shell: 5 }],
    ['x', [], { stdio: ['ipc', 'ipc'] }],
    ['x', ['a\u0000'], { stdio: IPC_ONLY }],
  ];
  for (const args of cases) {
    const caught = {};
    for (const [impl, spawnFn] of Object.entries(SPAWNS)) {
      try {
        const child = spawnFn(...args);
        child.on('error', () => {});
        caught[impl] = 'no throw';
      } catch (err) {
        caught[impl] = { name: err.name, code: err.code, message: err.message };
      }
    }
    assert.notStrictEqual(caught.node, 'no throw', JSON.stringify(args));
    assert.deepStrictEqual(caught.forkline, caught.node, JSON.stringify(args));
  }
});

// Node reads only the options object's own properties (`{ __proto__: null, ...options }` in fork() and
// normalizeSpawnArguments), so a polluted Object.prototype changes nothing: Node's
// test-child-process-prototype-tampering. Each of these would break the call if it were read.
const TAMPERED = {
  execPath: '/not/existing/malicious/path',
  execArgv: ['--no-such-flag'],
  cwd: '/not/existing/malicious/path',
  stdio: ['ignore', 'ignore', 'ignore'],
  serialization: 'bogus',
  timeout: 1,
  signal: 'not a signal',
  shell: '/not/existing/shell',
};

function tampered(spawnFn) {
  return (...args) => {
    for (const [key, value] of Object.entries(TAMPERED)) Object.prototype[key] = value; // eslint-disable-line no-extend-native
    try {
      return spawnFn(...args);
    } finally {
      for (const key of Object.keys(TAMPERED)) delete Object.prototype[key];
    }
  };
}

test('options inherited from Object.prototype are ignored, as Node ignores them', { timeout: 30_000 }, async (t) => {
  const calls = {
    fork: { node: nodeChildProcess.fork, forkline: forkline.fork, args: [ECHO, [], {}] },
    spawn: {
      node: nodeChildProcess.spawn,
      forkline: forkline.spawn,
      args: [process.execPath, [ECHO], { stdio: IPC_ONLY }],
    },
  };
  for (const [name, { args, ...impls }] of Object.entries(calls)) {
    const results = {};
    for (const [impl, spawnFn] of Object.entries(impls)) {
      const { child, log } = await echoTwice(t, tampered(spawnFn), ...args);
      results[impl] = log;
      if (impl === 'forkline') assert.ok(child instanceof forkline.ChildProcess, `${name}: served by forkline`);
    }
    assert.strictEqual(results.node.at(-1)[0], 'close', `${name}: node's child ran`);
    assert.deepStrictEqual(results.forkline, results.node, name);
  }
});

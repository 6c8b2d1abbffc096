'use strict';

// What `npm run test:arm64` (scripts/test-arm64.js) runs under an arm64 Node, emulated by qemu-user, in a fresh app
// that installed the packed tarball: forkline as a user gets it, with the linux-arm64-gnu prebuilt binary. A subset
// of the suite, each check against node:child_process (the oracle) where Node has the same feature: JSON and advanced
// round trips, a handle, the child runtime, a cluster serving HTTP round-robin and with reuseport, and malformed input.
// Every Node start costs seconds under emulation, so each test starts few.

const assert = require('node:assert');
const net = require('node:net');
const path = require('node:path');
const { execFile } = require('node:child_process');
const { test } = require('node:test');
const nodeChildProcess = require('node:child_process');
const forkline = require('forkline');

const child = (name) => path.join(__dirname, name);
const QUIET = { stdio: ['ignore', 'ignore', 'inherit', 'ipc'] };

// Forks `name` with `fork`, sends each of `values`, and resolves with the replies, in order, once there are as many
// and the child, told to, has exited with code 0.
async function roundTrip(t, fork, name, values, options = {}) {
  const c = fork(child(name), [], { ...QUIET, ...options });
  t.after(() => c.kill('SIGKILL'));
  const replies = [];
  let done = false;
  const exited = new Promise((resolve) => c.on('exit', (code, signal) => resolve(code ?? signal)));
  const early = exited.then((code) => {
    if (!done) throw new Error(`the child exited early (${code})`);
  });
  const all = new Promise((resolve, reject) => {
    c.on('error', reject);
    c.on('message', (m) => {
      replies.push(m);
      if (replies.length === values.length) resolve();
    });
  });
  for (const v of values) c.send(v);
  await Promise.race([all, early]);
  done = true;
  c.send('exit');
  assert.strictEqual(await exited, 0);
  return replies;
}

test('forkline loaded its linux-arm64-gnu prebuilt binary, in an arm64 Node', () => {
  assert.strictEqual(process.arch, 'arm64');
  const addons = Object.keys(require.cache).filter((file) => file.endsWith('.node'));
  assert.deepStrictEqual(addons, [
    require.resolve('forkline/package.json').replace(/package\.json$/, 'prebuilds/linux-arm64-gnu/forkline.node'),
  ]);
});

test('json round trip: the values come back as through node:child_process', async (t) => {
  const values = [
    { n: 1, s: 'a\u2028b\u2029c 😀 é', nested: { list: [1, 'two', null, true, { x: [] }] } },
    'a string with a\nnewline',
    [0, -1.5, 1e300, '\u0000'],
    null,
    { big: 'y'.repeat(200_000) },
  ];
  const oracle = await roundTrip(t, nodeChildProcess.fork, 'echo.js', values);
  const got = await roundTrip(t, forkline.fork, 'echo.js', values);
  assert.deepStrictEqual(got, oracle);
  assert.deepStrictEqual(got, values);
});

test("advanced round trip, forkline's runtime in the child: a 2 MB buffer (memfd) and V8's types", async (t) => {
  const values = [
    { map: new Map([[1, { a: 1n }]]), set: new Set(['x', 'y']), date: new Date(86_400_000), re: /a+b/gi },
    new Uint8Array([1, 2, 3, 255]),
    [undefined, -0, NaN, Infinity, 2n ** 70n],
    { large: Buffer.alloc(2 * 1024 * 1024, 7) },
  ];
  const options = { serialization: 'advanced' };
  const oracle = await roundTrip(t, nodeChildProcess.fork, 'echo.js', values, options);
  const got = await roundTrip(t, forkline.fork, 'echo.js', values, { ...options, childRuntime: 'forkline' });
  assert.deepStrictEqual(got, oracle);
  assert.deepStrictEqual(got.slice(0, 3), values.slice(0, 3));
  assert.strictEqual(Buffer.compare(Buffer.from(got[3].large), values[3].large), 0);
});

test("the child runtime: forkline's addon loads in the child, 2000 messages keep their order", async (t) => {
  const values = Array.from({ length: 2000 }, (_, seq) => ({ seq }));
  const got = await roundTrip(t, forkline.fork, 'echo.js', ['addons', ...values], { childRuntime: 'forkline' });
  const [addons, ...echoes] = got;
  assert.strictEqual(addons.length, 1);
  assert.match(addons[0], /node_modules\/forkline\/prebuilds\/linux-arm64-gnu\/forkline\.node$/);
  assert.deepStrictEqual(echoes, values);
});

test('a handle: a listening server sent to the child answers there', async (t) => {
  const c = forkline.fork(child('handle-child.js'), [], QUIET);
  t.after(() => c.kill('SIGKILL'));
  const server = net.createServer((socket) => socket.end('parent'));
  await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address();
  const ready = new Promise((resolve, reject) => {
    c.on('error', reject);
    c.on('message', (m) => m === 'ready' && resolve());
  });
  c.send('server', server);
  await ready;
  // Only the child's copy listens now.
  await new Promise((resolve) => server.close(resolve));
  for (let i = 0; i < 3; i++) {
    const answer = await new Promise((resolve, reject) => {
      let data = '';
      net
        .connect(port, '127.0.0.1')
        .on('data', (d) => (data += d))
        .on('end', () => resolve(data))
        .on('error', reject);
    });
    assert.strictEqual(answer, `child ${c.pid}`);
  }
  const exited = new Promise((resolve) => c.on('exit', resolve));
  c.disconnect();
  assert.strictEqual(await exited, 0);
});

// The primary runs in a process of its own (the scheduling policy is set once per process).
function runPrimary(policy) {
  return new Promise((resolve, reject) => {
    execFile(process.execPath, [child('primary.js'), policy], { timeout: 180_000 }, (err, stdout, stderr) => {
      if (err) reject(new Error(`${err.message}\n${stdout}\n${stderr}`));
      else resolve(JSON.parse(stdout));
    });
  });
}

for (const [policy, sockets] of [
  ['rr', 'none'],
  ['reuseport', 'one each'],
]) {
  test(`a cluster serving HTTP, ${policy}: every request answered, by both workers`, async () => {
    const { cluster } = forkline;
    const result = await runPrimary(policy);
    assert.strictEqual(result.policy, policy === 'rr' ? cluster.SCHED_RR : cluster.SCHED_REUSEPORT);
    assert.deepStrictEqual(result.statuses, { 200: 20 });
    // Both workers answered (round-robin alternates; reuseport hashes 20 connections over two sockets).
    assert.deepStrictEqual(Object.keys(result.byWorker).sort(), ['1', '2']);
    assert.strictEqual(result.ports[0], result.ports[1]);
    const [a, b] = result.sockets;
    assert.strictEqual(a === null && b === null ? 'none' : a !== b && a && b ? 'one each' : 'shared', sockets);
    assert.deepStrictEqual(result.exits, [
      [0, true],
      [0, true],
    ]);
  });
}

test('malformed input: error events with a code between the messages in order, and the parent lives on', async (t) => {
  const c = forkline.fork(child('raw-child.js'), [], QUIET);
  t.after(() => c.kill('SIGKILL'));
  const log = [];
  c.on('message', (m) => log.push(['message', m]));
  c.on('error', (err) => log.push(['error', err.code]));
  const closed = new Promise((resolve) => c.on('close', (code) => resolve(code)));
  assert.strictEqual(await closed, 0);
  const MALFORMED = ['error', 'FORKLINE_MALFORMED_MESSAGE'];
  assert.deepStrictEqual(log, [
    ['message', { seq: 0 }],
    MALFORMED,
    ['message', { seq: 1 }],
    MALFORMED,
    ['message', { seq: 2 }],
    MALFORMED,
    ['message', { seq: 3 }],
    ['message', 'end'],
  ]);
});

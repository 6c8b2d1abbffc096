'use strict';

// Handles pipelined between two forkline ends (src/core/channel/handles.rs; off with FORKLINE_HANDLE_PIPELINE=0): a
// runtime child and its forkline parent agree to keep up to 32 handles in flight instead of Node's one at a time; a
// plain node child never sees anything of it. Real processes, real loopback sockets.
const test = require('./helpers').withNativeOnly(require('node:test'), {
  'between two forkline ends many handles are in flight at once and arrive in order, each with its own socket':
    'the child runtime',
  'a runtime child that dies with handles in flight: the same callbacks and events as one at a time, no fd kept':
    'the child runtime',
  'a plain node child still gets one handle at a time: the same send() answers and internal messages as from Node':
    "forkline's parent (the portable backend is Node's)",
  "a handle whose fd was lost comes again in its first place: Node's order, pipelined or not": 'the child runtime',
});
const assert = require('node:assert');
const net = require('node:net');
const path = require('node:path');
const nodeChildProcess = require('node:child_process');
const forkline = require('..');
const fs = require('node:fs');
const { once, waitUntil } = require('./helpers');

// Sockets this process holds (the reactor's own epoll and eventfd come and go with its idle timer: not counted).
function socketFds() {
  let n = 0;
  for (const fd of fs.readdirSync('/proc/self/fd')) {
    try {
      if (fs.readlinkSync(`/proc/self/fd/${fd}`).startsWith('socket:')) n++;
    } catch {
      // The readdir's own fd, gone.
    }
  }
  return n;
}

const CHILD = path.join(__dirname, 'fixtures', 'pipeline-child.js');
// The sender's window (src/core/internal.rs HANDLES_IN_FLIGHT).
const WINDOW = 32;

// A loopback server and `n` connected client sockets; each client's `said` resolves with what the other end wrote
// before closing. Everything is closed when the test ends.
async function connections(t, n) {
  const server = net.createServer({ pauseOnConnect: true });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  const accepted = [];
  server.on('connection', (socket) => accepted.push(socket));
  const clients = await Promise.all(
    Array.from(
      { length: n },
      () =>
        new Promise((resolve, reject) => {
          const socket = net.connect(server.address().port, '127.0.0.1', () => resolve(socket));
          socket.on('error', reject);
        }),
    ),
  );
  while (accepted.length < n) await once(server, 'connection');
  const said = clients.map((client) => {
    let text = '';
    client.setEncoding('latin1');
    client.on('data', (chunk) => (text += chunk));
    return new Promise((resolve) => client.on('close', () => resolve(text)));
  });
  t.after(() => {
    for (const socket of [...clients, ...accepted]) socket.destroy();
    server.close();
  });
  return { accepted, said };
}

function nextMessage(child) {
  return new Promise((resolve, reject) => {
    const onMessage = (msg) => {
      child.off('error', reject);
      resolve(msg);
    };
    child.once('message', onMessage);
    child.once('error', reject);
  });
}

// Forks with pipelining asked for (`FORKLINE_HANDLE_PIPELINE=1`, read by this parent at the fork and inherited by
// the child) or not.
function forkChild(t, forkFn, args = [], options = {}, pipeline = true, script = CHILD) {
  const saved = process.env.FORKLINE_HANDLE_PIPELINE;
  process.env.FORKLINE_HANDLE_PIPELINE = pipeline ? '1' : '0';
  let child;
  try {
    child = forkFn(script, args, options);
  } finally {
    if (saved === undefined) delete process.env.FORKLINE_HANDLE_PIPELINE;
    else process.env.FORKLINE_HANDLE_PIPELINE = saved;
  }
  t.after(() => child.kill('SIGKILL'));
  return child;
}

test(
  'between two forkline ends many handles are in flight at once and arrive in order, each with its own socket',
  { timeout: 30_000 },
  async (t) => {
    const N = 200;
    const { accepted, said } = await connections(t, N);
    const child = forkChild(t, forkline.fork, [], { childRuntime: 'forkline' });
    assert.strictEqual(await nextMessage(child), 'ready');
    // One loop, no waiting: in Node's protocol the third send already says false (the first handle in flight, two
    // queued behind it); pipelined, a whole window goes before anything waits, and the one past it is the handle in
    // flight of Node's protocol.
    const answers = accepted.map((socket, i) => child.send({ i }, socket));
    assert.deepStrictEqual(answers.slice(0, WINDOW + 2), Array(WINDOW + 2).fill(true));
    assert.strictEqual(answers[WINDOW + 2], false, 'the second send queued behind the window says false, as Node');
    child.send('count');
    const { order, internal } = await nextMessage(child);
    assert.deepStrictEqual(
      order,
      accepted.map((_, i) => i),
    );
    // Each socket arrived with its own envelope: connection i was answered `i`.
    assert.deepStrictEqual(
      await Promise.all(said),
      accepted.map((_, i) => `${i}`),
    );
    assert.ok(!internal.includes('NODE_HANDLE_PIPELINE'), "the announce is the core's, never emitted");
    const stats = child.channel.stats();
    assert.strictEqual(stats.handlesSent, N);
  },
);

// Forks a runtime child that SIGKILLs itself after `dieAt` sockets, sends it `n` (with callbacks), and reports what
// the parent saw: each callback's outcome, the events, and how many sockets the child answered.
async function dieMidway(t, { n, dieAt, pipeline }) {
  const { accepted, said } = await connections(t, n);
  const child = forkChild(t, forkline.fork, [String(dieAt)], { childRuntime: 'forkline' }, pipeline);
  assert.strictEqual(await nextMessage(child), 'ready');
  // The listening server, n clients, n accepted sockets and the channel.
  const held = socketFds();
  const events = [];
  for (const event of ['error', 'disconnect', 'exit', 'close']) child.on(event, () => events.push(event));
  const outcomes = new Array(n).fill('none');
  let called = 0;
  let allCalled;
  const callbacks = new Promise((resolve) => (allCalled = resolve));
  accepted.forEach((socket, i) =>
    child.send({ i }, socket, (err) => {
      outcomes[i] = err ? err.code : 'ok';
      if (++called === n) allCalled();
    }),
  );
  await once(child, 'close');
  await callbacks;
  const answered = (await Promise.all(said)).filter((text) => text !== '').length;
  // Every socket handed over (or failed) is closed, every duplicate kept for a handle in flight too, the clients
  // saw their end, and the channel is gone: only the server is left.
  await waitUntil(() => socketFds() <= held - 2 * n - 1, 10_000, `at most ${held - 2 * n - 1} sockets left`);
  return { outcomes, events, answered };
}

test(
  'a runtime child that dies with handles in flight: the same callbacks and events as one at a time, no fd kept',
  { timeout: 40_000 },
  async (t) => {
    const n = 120;
    const dieAt = 50;
    const results = {};
    for (const pipeline of [false, true]) {
      const { outcomes, events, answered } = await dieMidway(t, { n, dieAt, pipeline });
      // Every callback once, in order: sent ones succeed, then the rest fail with EPIPE (the socket is gone).
      const firstFailed = outcomes.indexOf('EPIPE');
      assert.ok(firstFailed >= dieAt, `${pipeline}: a send before the child died failed: ${outcomes}`);
      assert.deepStrictEqual(
        outcomes.slice(firstFailed),
        Array(n - firstFailed).fill('EPIPE'),
        `${pipeline}: ${outcomes}`,
      );
      assert.ok(outcomes.slice(0, firstFailed).every((o) => o === 'ok'));
      assert.strictEqual(answered, dieAt, `${pipeline}: the child answered what it got before dying`);
      results[pipeline] = events;
    }
    assert.deepStrictEqual(results[true], results[false]);
  },
);

test(
  'a plain node child still gets one handle at a time: the same send() answers and internal messages as from Node',
  { timeout: 30_000 },
  async (t) => {
    const N = 40;
    const seen = {};
    for (const [name, forkFn] of [
      ['node:child_process', nodeChildProcess.fork],
      ['forkline', forkline.fork],
    ]) {
      const { accepted, said } = await connections(t, N);
      const child = forkChild(t, forkFn);
      assert.strictEqual(await nextMessage(child), 'ready');
      const answers = accepted.map((socket, i) => child.send({ i }, socket));
      child.send('count');
      const { order, internal } = await nextMessage(child);
      assert.deepStrictEqual(
        await Promise.all(said),
        accepted.map((_, i) => `${i}`),
      );
      seen[name] = { answers, order, internal };
    }
    assert.deepStrictEqual(seen.forkline, seen['node:child_process']);
    assert.deepStrictEqual(seen.forkline.answers.slice(0, 3), [true, true, false], 'one handle at a time');
  },
);

test(
  "a handle whose fd was lost comes again in its first place: Node's order, pipelined or not",
  { timeout: 30_000 },
  async (t) => {
    const seen = {};
    for (const pipeline of [false, true]) {
      const { accepted } = await connections(t, 2);
      const script = path.join(__dirname, 'fixtures', 'pipeline-emfile-child.js');
      const child = forkChild(t, forkline.fork, [], { childRuntime: 'forkline' }, pipeline, script);
      assert.strictEqual(await nextMessage(child), 'hogged');
      // Pipelined, 'm1', the second socket and 'm2' are on their way before the first socket's NACK comes back;
      // the child holds them until that socket comes again.
      child.send('h1', accepted[0]);
      child.send('m1');
      child.send('h2', accepted[1]);
      child.send('m2');
      child.send('done');
      seen[pipeline] = (await nextMessage(child)).got;
    }
    assert.deepStrictEqual(seen[false], ['FORKLINE_FD_LOST', 'h1+Socket', 'm1', 'h2+Socket', 'm2', 'done']);
    assert.deepStrictEqual(seen[true], seen[false]);
  },
);

'use strict';

// Large advanced messages between two forkline ends as memfds (src/core/memfd.rs): negotiated when the channel opens,
// invisible to Node's own ends, and safe against a peer that sends bad fds.
// What of this file needs the native core: skipped, with the reason, under the portable backend.
const test = require('./helpers').withNativeOnly(require('node:test'), {
  'forkline↔forkline: 1 MB and 16 MB Buffers echo intact through a memfd':
    'memfd between two forkline ends (the child runtime)',
  'a large message written before the announce is answered arrives whole, as does the answer':
    'memfd between two forkline ends (the child runtime)',
  'a forkline parent never sends a memfd to a node child, even one that sends the announce':
    "memfd (the native core consumes the announce; Node's channel emits it as 'internalMessage')",
  'bad memfds from a raw peer: each an error with a code, no fd leaked, the messages around them arrive':
    'memfd and maxMessageSize',
});
const assert = require('node:assert');
const fs = require('node:fs');
const path = require('node:path');
const nodeChildProcess = require('node:child_process');
const forkline = require('..');
const { fdCount, assertNoFdLeak, fixture, spawnChild, whenClosed } = require('./helpers');

const MB = 1024 * 1024;
const ANNOUNCE = { cmd: 'NODE_FORKLINE_MEMFD', version: 1 };

// The memfds this process holds open (each channel keeps one file for its large messages).
function memfds() {
  const links = [];
  for (const fd of fs.readdirSync('/proc/self/fd')) {
    try {
      links.push(fs.readlinkSync(`/proc/self/fd/${fd}`));
    } catch {
      // Closed since the listing.
    }
  }
  return links.filter((l) => l.startsWith('/memfd:forkline-message'));
}

// A Buffer of `size` bytes whose content depends on `seed` and the position, so a stale or shifted copy shows.
function pattern(size, seed) {
  const b = Buffer.allocUnsafe(size);
  let i = 0;
  for (; i + 4 <= size; i += 4) b.writeUInt32LE((i * 2654435761 + seed) >>> 0, i);
  for (; i < size; i++) b[i] = seed + i;
  return b;
}

function fork(t, impl, script, options) {
  return spawnChild(t, (...args) => impl.fork(...args), script, [], { serialization: 'advanced', ...options });
}

// The next `n` messages from `child`, rejecting on an 'error'.
function next(child, n) {
  return new Promise((resolve, reject) => {
    const got = [];
    const onMessage = (m) => {
      got.push(m);
      if (got.length === n) {
        child.off('message', onMessage);
        child.off('error', reject);
        resolve(got);
      }
    };
    child.on('message', onMessage);
    child.on('error', reject);
  });
}

// The process's reactor (one epoll and eventfd, kept for good) starts the first time a write does not fit the socket:
// start it before counting fds, with a message larger than a socket holds.
async function startReactor(t) {
  const child = fork(t, forkline, fixture('adv-echo.js'));
  const echoed = next(child, 1);
  child.send(pattern(4 * MB, 0));
  await echoed;
  child.disconnect();
  await whenClosed(child);
}

test('forkline↔forkline: 1 MB and 16 MB Buffers echo intact through a memfd', { timeout: 60_000 }, async (t) => {
  await startReactor(t);
  const before = fdCount();
  const child = fork(t, forkline, fixture('adv-echo.js'), { childRuntime: 'forkline' });
  for (const [size, rounds] of [
    [MB, 8],
    [16 * MB, 3],
    [MB + 3, 2],
  ]) {
    for (let i = 0; i < rounds; i++) {
      const b = pattern(size, size + i);
      const echoed = next(child, 1);
      child.send({ i, b });
      const [back] = await echoed;
      assert.strictEqual(back.i, i);
      assert.ok(Buffer.isBuffer(back.b) && back.b.equals(b), `${size} bytes, round ${i}: intact`);
    }
  }
  // Went by memfd: the parent's end keeps one file for its large messages.
  assert.strictEqual(memfds().length, 1, 'one memfd held by the parent end');

  // Several large and small messages in one tick: one write, in order, each intact (the second large one goes on
  // the socket while the first one's file is in use).
  const batch = ['a', { big: pattern(2 * MB, 1) }, 'b', { big: pattern(MB, 2) }, { big: pattern(300 * 1024, 3) }, 'c'];
  const echoed = next(child, batch.length);
  for (const m of batch) child.send(m);
  const back = await echoed;
  for (const [k, m] of batch.entries()) {
    if (typeof m === 'string') assert.strictEqual(back[k], m);
    else assert.ok(back[k].big.equals(m.big), `batch message ${k} intact`);
  }

  // Once large messages stop, the file goes (after 2 s), and the next large message makes a new one.
  const idleSince = Date.now();
  while (memfds().length > 0) {
    assert.ok(Date.now() - idleSince < 10_000, 'the idle file was let go');
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
  const again = pattern(MB, 9);
  const echoedAgain = next(child, 1);
  child.send({ i: 9, b: again });
  assert.ok((await echoedAgain)[0].b.equals(again), 'intact after the file was let go');
  assert.strictEqual(memfds().length, 1, 'a new file for the next large message');

  child.disconnect();
  await whenClosed(child);
  await assertNoFdLeak(before);
  assert.deepStrictEqual(memfds(), []);
});

test('a large message written before the announce is answered arrives whole, as does the answer', async (t) => {
  // The parent's answer to the runtime's announce is queued while the parent's first (large, socket-bound) message
  // is still going out: it must not land inside it.
  const child = fork(t, forkline, fixture('adv-echo.js'), { childRuntime: 'forkline', silent: true });
  let stderr = '';
  child.stderr.setEncoding('utf8');
  child.stderr.on('data', (d) => (stderr += d));
  const b = pattern(4 * MB, 9);
  const echoed = next(child, 2);
  child.send(b);
  child.send('after');
  const [back, after] = await echoed;
  assert.ok(back.equals(b) && after === 'after');
  child.disconnect();
  await whenClosed(child);
  assert.strictEqual(stderr, '', 'no error in the child');
});

test('a forkline parent never sends a memfd to a node child, even one that sends the announce', async (t) => {
  const child = fork(t, forkline, fixture('memfd-announce.js'));
  const internal = [];
  child.on('internalMessage', (m) => internal.push(m));
  assert.deepStrictEqual(await next(child, 1), ['after']);
  const b = pattern(2 * MB, 7);
  const echoed = next(child, 1);
  child.send({ b });
  const [back] = await echoed;
  assert.ok(back.b.equals(b), 'intact, on the socket');
  assert.deepStrictEqual(memfds(), []);
  assert.deepStrictEqual(internal, [], 'the core consumed the announce');
});

for (const [name, impl] of [
  ['node:child_process', nodeChildProcess],
  ['forkline', forkline],
]) {
  test(`the announce is an internal message a Node end ignores (${name} parent, node child)`, async (t) => {
    const child = fork(t, impl, fixture('memfd-announce.js'));
    const internal = [];
    child.on('internalMessage', (m) => internal.push(m));
    // The child's announce is no 'message' for the parent.
    assert.deepStrictEqual(await next(child, 1), ['after']);
    // Nor is the parent's (sent by hand here) for the child: it sees only 'x', and the announce as internal.
    const got = next(child, 2);
    child.send(ANNOUNCE);
    child.send('x');
    assert.deepStrictEqual(await got, [{ internal: ANNOUNCE }, 'x']);
    if (impl === nodeChildProcess) assert.deepStrictEqual(internal, [ANNOUNCE]);
  });
}

test(
  'bad memfds from a raw peer: each an error with a code, no fd leaked, the messages around them arrive',
  {
    timeout: 20_000,
  },
  async (t) => {
    const before = fdCount();
    const child = forkline.fork(fixture('memfd-raw.py'), [], {
      execPath: 'python3',
      execArgv: [],
      silent: true,
      serialization: 'advanced',
      maxMessageSize: 1024,
    });
    t.after(() => child.kill('SIGKILL'));
    let stdout = '';
    child.stdout.setEncoding('utf8');
    child.stdout.on('data', (d) => (stdout += d));
    const seen = [];
    child.on('message', (m) => seen.push(m));
    child.on('error', (err) => seen.push(err.code));
    await whenClosed(child);
    assert.deepStrictEqual(seen, [
      'm0',
      'from memfd', // a good sealed memfd, from a peer that is not forkline
      'm1',
      'FORKLINE_BAD_MEMFD', // a pipe
      'FORKLINE_BAD_MEMFD', // an unsealed memfd, written again after sending
      'FORKLINE_BAD_MEMFD', // smaller than its marker says
      'FORKLINE_MESSAGE_TOO_LARGE', // above maxMessageSize
      'FORKLINE_MESSAGE_TOO_LARGE', // 2**40 bytes
      'FORKLINE_BAD_MEMFD', // a marker without an fd
      'm2',
      'm3',
      'FORKLINE_STRAY_FD', // a memfd without a marker, closed at EOF
    ]);
    // Not a forkline runtime child: no announce in answer. Every marker with an fd is ACKed, the one without NACKed.
    assert.deepStrictEqual(JSON.parse(stdout), { announce: 0, ack: 6, nack: 1 });
    await assertNoFdLeak(before);
  },
);

'use strict';

// serialization: 'advanced' against real node children, with node:child_process as the oracle.
// What of this file needs the native core: skipped, with the reason, under the portable backend.
const test = require('./helpers').withNativeOnly(require('node:test'), {
  'bad frames: oversized, undecodable and truncated are errors; good frames around them arrive':
    "malformed-input survival and maxMessageSize (Node's channel throws on a bad frame)",
});
const assert = require('node:assert');
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');
const util = require('node:util');
const nodeChildProcess = require('node:child_process');
const forkline = require('..');
const values = require('./fixtures/adv-values');
const wireValues = require('./fixtures/v8-wire-values');
const { fdCount, assertNoFdLeak } = require('./helpers');

const FIXTURES = path.join(__dirname, 'fixtures');
const ECHO = path.join(FIXTURES, 'adv-echo.js');
const IMPLS = [
  ['node:child_process', nodeChildProcess],
  ['forkline', forkline],
];

function forkAdvanced(t, impl, script, options = {}) {
  const child = impl.fork(script, [], { serialization: 'advanced', ...options });
  t.after(() => child.kill('SIGKILL'));
  return child;
}

function collect(child, count) {
  return new Promise((resolve, reject) => {
    const got = [];
    child.on('error', reject);
    child.on('message', (m) => {
      got.push(m);
      if (got.length === count) resolve(got);
    });
  });
}

function assertSameValue(actual, expected, label) {
  assert.ok(util.isDeepStrictEqual(actual, expected), `${label}: ${util.inspect(actual)} != ${util.inspect(expected)}`);
  assert.strictEqual(Object.getPrototypeOf(actual), Object.getPrototypeOf(expected), `${label}: prototype`);
}

for (const [name, impl] of IMPLS) {
  test(`${name}: every V8 value kind round-trips parent → child → parent`, { timeout: 20_000 }, async (t) => {
    const child = forkAdvanced(t, impl, ECHO);
    const sent = values();
    const done = collect(child, sent.length);
    for (const v of sent) child.send(v);
    const got = await done;
    got.forEach((v, i) => assertSameValue(v, sent[i], `value ${i}`));
    const circular = got[6];
    assert.strictEqual(circular.self, circular, 'circular reference kept');
  });

  test(`${name}: values made in the child arrive as themselves`, { timeout: 20_000 }, async (t) => {
    const child = forkAdvanced(t, impl, ECHO);
    const expected = values();
    const done = collect(child, expected.length);
    child.send('values');
    const got = await done;
    got.forEach((v, i) => assertSameValue(v, expected[i], `value ${i}`));
  });
}

test('Buffers of 0 B, 1 MB and 64 MB both ways', { timeout: 60_000 }, async (t) => {
  const child = forkAdvanced(t, forkline, ECHO);
  for (const size of [0, 1 << 20, 64 << 20]) {
    const buf = Buffer.alloc(size);
    for (let i = 0; i < size; i += 4096) buf[i] = (i / 4096) & 0xff;
    const echoed = collect(child, 1);
    child.send(buf);
    const [back] = await echoed;
    assert.ok(Buffer.isBuffer(back), `${size}: a Buffer comes back`);
    assert.ok(back.equals(buf), `${size}: same bytes`);
    child.removeAllListeners('message');
    const made = collect(child, 1);
    child.send({ buffer: size });
    const [fromChild] = await made;
    assert.ok(Buffer.isBuffer(fromChild) && fromChild.equals(buf), `${size}: child-made Buffer`);
    child.removeAllListeners('message');
  }
});

test('the bytes on the wire are the same as node:child_process writes', { timeout: 20_000 }, async (t) => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'forkline-wire-'));
  t.after(() => fs.rmSync(dir, { recursive: true, force: true }));
  const messages = [{ a: 1, s: 'ü😀' }, [1, 2, 3], 'text', 42, Buffer.from('buf'), new Map([[1, 2]]), { cmd: 'X' }];
  for (const serialization of ['advanced', 'json']) {
    const captures = [];
    for (const [name, impl] of IMPLS) {
      const file = path.join(dir, `${serialization}-${name.replace(/\W/g, '_')}`);
      const child = impl.fork(path.join(FIXTURES, 'capture.sh'), [file], {
        execPath: '/bin/sh',
        execArgv: [],
        serialization,
      });
      t.after(() => child.kill('SIGKILL'));
      // 'exit', not 'close': Node never emits 'close' after the parent's disconnect().
      const exited = new Promise((resolve) => child.on('exit', resolve));
      await new Promise((resolve) => child.on('spawn', resolve));
      for (const m of messages) {
        if (serialization === 'json' && (Buffer.isBuffer(m) || m instanceof Map)) continue;
        child.send(m);
      }
      child.disconnect();
      await exited;
      captures.push(fs.readFileSync(file));
    }
    assert.ok(captures[0].length > 0, `${serialization}: something was captured`);
    assert.deepStrictEqual(captures[1], captures[0], `${serialization}: identical bytes`);
  }
});

// Frames of a capture, each with its length prefix.
function framesOf(capture) {
  const frames = [];
  for (let at = 0; at + 4 <= capture.length;) {
    const end = at + 4 + capture.readUInt32BE(at);
    frames.push(capture.subarray(at, end));
    at = end;
  }
  return frames;
}

test(
  'every value kind and random values (seeded) go on the wire as node:child_process writes them',
  { timeout: 30_000 },
  async (t) => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'forkline-wire-'));
    t.after(() => fs.rmSync(dir, { recursive: true, force: true }));
    // What send() takes (Node refuses undefined and a BigInt at the top).
    const sendable = (v) => v !== undefined && typeof v !== 'bigint';
    const messages = [...wireValues.kinds(), ...wireValues.randomValues(26, 300)].filter(sendable);
    const captures = [];
    for (const [name, impl] of IMPLS) {
      const file = path.join(dir, name.replace(/\W/g, '_'));
      const child = impl.fork(path.join(FIXTURES, 'capture.sh'), [file], {
        execPath: '/bin/sh',
        execArgv: [],
        serialization: 'advanced',
      });
      t.after(() => child.kill('SIGKILL'));
      const exited = new Promise((resolve) => child.on('exit', resolve));
      await new Promise((resolve) => child.on('spawn', resolve));
      // Node's disconnect() drops writes still queued: wait for the last one first.
      await new Promise((resolve, reject) => {
        messages.forEach((m, i) =>
          child.send(m, i === messages.length - 1 ? (err) => (err ? reject(err) : resolve()) : undefined),
        );
      });
      child.disconnect();
      await exited;
      captures.push(framesOf(fs.readFileSync(file)));
    }
    const [theirs, mine] = captures;
    assert.strictEqual(theirs.length, messages.length, 'node:child_process wrote every message');
    assert.strictEqual(mine.length, messages.length, 'forkline wrote every message');
    messages.forEach((m, i) => {
      if (!mine[i].equals(theirs[i])) {
        assert.fail(
          `message ${i} ${util.inspect(m, { depth: 1 })}:\n forkline ${mine[i].toString('hex')}\n node     ${theirs[i].toString('hex')}`,
        );
      }
    });
  },
);

test(
  'bad frames: oversized, undecodable and truncated are errors; good frames around them arrive',
  {
    timeout: 20_000,
  },
  async (t) => {
    const fdsBefore = fdCount();
    const child = forkAdvanced(t, forkline, path.join(FIXTURES, 'adv-raw.js'), { maxMessageSize: 1024 });
    const seen = [];
    child.on('message', (m) => seen.push(['message', m]));
    child.on('error', (err) => seen.push(['error', err.code]));
    await new Promise((resolve) => child.on('close', resolve));
    assert.deepStrictEqual(seen, [
      ['message', 'one'],
      ['error', 'FORKLINE_MESSAGE_TOO_LARGE'],
      ['error', 'FORKLINE_MALFORMED_MESSAGE'],
      ['message', 'two'],
      ['error', 'FORKLINE_TRUNCATED_MESSAGE'],
    ]);
    await assertNoFdLeak(fdsBefore);
  },
);

test('a value V8 cannot serialize throws in send(), as in Node', { timeout: 10_000 }, async (t) => {
  for (const [name, impl] of IMPLS) {
    const child = forkAdvanced(t, impl, ECHO);
    assert.throws(() => child.send({ f() {} }), /could not be cloned/, name);
    child.disconnect();
  }
});

test(
  'a message fanned out to several children (sendEncoded) arrives whole at each, whatever is sent between their writes',
  { timeout: 20_000 },
  async (t) => {
    const { sendEncoded } = require('../lib/backend').channel();
    const [a, b, c] = [0, 1, 2].map(() => forkAdvanced(t, forkline, ECHO));
    const shared = { to: 'all', list: [1, 2, 3], text: 'fanned out' };
    const other = { unrelated: 'x'.repeat(200) };
    const echoes = [collect(a, 2), collect(b, 1), collect(c, 1)];
    // a's write comes first, then c's send, then b's write of the same bytes: c's message must not take their place.
    a.send('first');
    process.nextTick(() => c.send(other));
    const memo = new Map();
    sendEncoded(a, shared, memo);
    sendEncoded(b, shared, memo);
    const [fromA, fromB, fromC] = await Promise.all(echoes);
    assert.deepStrictEqual(fromA, ['first', shared]);
    assert.deepStrictEqual(fromB, [shared]);
    assert.deepStrictEqual(fromC, [other]);
  },
);

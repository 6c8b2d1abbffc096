'use strict';

// Message round trips in json serialization, checked against node:child_process's fork() as the oracle.

// What of this file needs the native core: skipped, with the reason, under the portable backend.
const test = require('./helpers').withNativeOnly(require('node:test'), {
  'disconnect() right after many sends: the child gets every message first (forkline)':
    "nothing sent is dropped by disconnect() (Node's disconnect() cancels the writes still queued)",
});
const assert = require('node:assert');
const crypto = require('node:crypto');
const {
  IMPLS,
  fixture,
  mustCall,
  spawnChild,
  once,
  untilDone,
  whenClosed,
  recordEvents,
  sleep,
  assertReaped,
  exposedGc,
} = require('./helpers');

const ECHO = fixture('echo.js');
const SEND_LIST = fixture('send-list.js');
const COUNT = fixture('count.js');
const RAW = fixture('raw.js');
const QUIET = { stdio: ['ignore', 'ignore', 'inherit', 'ipc'] };

// JSON values that survive JSON.stringify unchanged. They reach send-list.js through argv as JSON text, where NUL
// and lone surrogates are ASCII escapes, so argv's rules do not get in the way.
const VALUES = [
  { nested: { a: { b: { c: [1, { d: null, e: [[], {}] }] } } }, empty: {}, list: [] },
  [1, 'two', [3, [4, [5]]], { six: 6 }, null, true, false],
  [],
  {},
  0,
  1.5,
  -273.15,
  1e308,
  5e-324,
  Number.MAX_SAFE_INTEGER,
  -Number.MAX_SAFE_INTEGER,
  2 ** 64,
  true,
  false,
  null,
  '',
  'plain',
  'unicode: é ß ñ 中文 العربية עברית',
  'separators: \u2028 and \u2029 and both\u2028\u2029',
  'emoji: 😀 👍🏽 👨‍👩‍👧‍👦 🇫🇷',
  'escapes: " \\ / \b \f \n \r \t \u0000 \u001f \u007f \u0085 \ufeff',
  'lone surrogates: \ud800 \udfff \udfff\ud800',
  '\n',
  '{"looks":"like json"}\n',
  { 'key with "quotes"\nand newline': 'v', '😀': '\u2028', '': 0, __proto__x: 1 },
  { a: 1, b: { a: 2 }, c: [{ a: 3 }] },
];

// Values whose JSON form differs from themselves (undefined, functions, NaN, -0, Dates, toJSON, ...): both forks
// must apply JSON's rules the same way.
const LOSSY = [
  -0,
  NaN,
  Infinity,
  [undefined, () => {}, NaN, -0],
  { undef: undefined, fn() {}, nan: NaN, inf: -Infinity, date: new Date(0), sym: Symbol('s') },
  { toJSON: () => 'from toJSON' },
  new Date(86_400_000),
  Object.assign(Object.create({ inherited: 1 }), { own: 2 }),
  new Map([[1, 2]]),
  [new Set([1]), /re/g, new Error('e')],
  Buffer.from('buf'),
  new Uint8Array([1, 2, 3]),
  Object.assign([1, 2], { extra: 'dropped' }),
];

async function collect(child, n, event = 'message') {
  const out = [];
  await new Promise((resolve) => {
    child.on(event, (message) => {
      out.push(message);
      if (out.length === n) resolve();
    });
  });
  return out;
}

test('JSON values from the child arrive as with Node', { timeout: 20_000 }, async (t) => {
  const results = {};
  for (const [name, forkFn] of Object.entries(IMPLS)) {
    const child = spawnChild(t, forkFn, SEND_LIST, [JSON.stringify(VALUES)], QUIET);
    results[name] = await collect(child, VALUES.length);
    await untilDone(child);
  }
  assert.deepStrictEqual(results.node, VALUES);
  assert.deepStrictEqual(results.forkline, results.node);
});

test('JSON values round trip parent → child → parent as with Node', { timeout: 20_000 }, async (t) => {
  const values = [...VALUES, ...LOSSY];
  const results = {};
  for (const [name, forkFn] of Object.entries(IMPLS)) {
    const child = spawnChild(t, forkFn, ECHO, [], QUIET);
    for (const value of values) child.send(value);
    results[name] = await collect(child, values.length);
    child.send('exit:0');
    await untilDone(child);
  }
  assert.deepStrictEqual(results.node.slice(0, VALUES.length), VALUES);
  assert.deepStrictEqual(
    results.node,
    values.map((value) => JSON.parse(JSON.stringify(value))),
  );
  assert.deepStrictEqual(results.forkline, results.node);
});

test(
  'multi-byte characters (U+2028, U+2029, emoji) split across writes arrive whole',
  { timeout: 20_000 },
  async (t) => {
    const results = {};
    for (const [name, forkFn] of Object.entries(IMPLS)) {
      const child = spawnChild(t, forkFn, RAW, ['split-utf8'], QUIET);
      child.on('error', (err) => assert.fail(`${name}: ${err.stack}`));
      results[name] = await collect(child, 3);
      await untilDone(child);
    }
    assert.deepStrictEqual(results.forkline, [{ s: 'a\u2028b\u2029c😀d', e: 'é' }, { after: true }, 'end']);
    assert.deepStrictEqual(results.forkline, results.node);
  },
);

test('a 50 MB string each way', { timeout: 30_000 }, async (t) => {
  // Random base64: any lost, repeated or reordered chunk shows.
  const big = crypto.randomBytes(37.5 * 1024 * 1024).toString('base64');
  assert.strictEqual(big.length, 50 * 1024 * 1024);
  const child = spawnChild(t, IMPLS.forkline, ECHO, [], QUIET);
  const sent = mustCall(t, (err) => assert.strictEqual(err, null));
  child.send({ big, tail: 'é😀\u2028' }, sent);
  const [reply] = await once(child, 'message');
  assert.strictEqual(reply.tail, 'é😀\u2028');
  assert.strictEqual(reply.big.length, big.length);
  assert.ok(reply.big === big, '50 MB string came back different');
  child.send('exit:0');
  assert.deepStrictEqual(await whenClosed(child), [0, null]);
});

// Big ASCII lines reach JS as external strings over the channel's own buffer (freed by V8's collector), and big
// sends are queued without copying their unsent tail: every byte must survive collections in between.
test('big ASCII messages survive garbage collections on both sides', { timeout: 30_000 }, async (t) => {
  const gc = exposedGc();
  const child = spawnChild(t, IMPLS.forkline, ECHO, [], QUIET);
  const sent = [];
  const got = [];
  for (let i = 0; i < 24; i++) {
    const s = crypto.randomBytes(384 * 1024).toString('base64');
    sent.push(s);
    child.send({ i, s });
    const [reply] = await once(child, 'message');
    got.push(reply);
    if (i % 4 === 3) gc();
  }
  gc();
  for (let i = 0; i < sent.length; i++) {
    assert.strictEqual(got[i].i, i);
    assert.ok(got[i].s === sent[i], `message ${i} came back different`);
  }
  child.send('exit:0');
  assert.deepStrictEqual(await whenClosed(child), [0, null]);
});

test('100k messages each way arrive in order', { timeout: 30_000 }, async (t) => {
  const N = 100_000;
  const child = spawnChild(t, IMPLS.forkline, COUNT, [String(N)], QUIET);
  child.on('error', (err) => assert.fail(err));
  let expected = 0;
  let outOfOrder = null;
  const done = new Promise((resolve) => {
    child.on('message', (msg) => {
      if (msg === 'done') return resolve();
      if (msg.seq !== expected && outOfOrder === null) outOfOrder = `got ${msg.seq}, expected ${expected}`;
      expected++;
    });
  });
  for (let i = 0; i < N; i++) child.send({ seq: i });
  await done;
  assert.strictEqual(outOfOrder, null);
  assert.strictEqual(expected, N);
  child.send('report');
  const [report] = await once(child, 'message');
  assert.deepStrictEqual(report, { received: N, inOrder: true });
  child.kill();
  await untilDone(child);
});

// Replies made while a batch of messages is emitted leave partly one write each and partly in one write at the
// batch's end (lib/channel.js, EARLY_WRITES_MAX): neither their order nor their callbacks may tell the two apart.
test('replies sent from message listeners keep their order and callbacks, as Node', { timeout: 20_000 }, async (t) => {
  const ROUNDS = 200;
  const IN_FLIGHT = 24;
  const results = {};
  for (const [name, forkFn] of Object.entries(IMPLS)) {
    const child = spawnChild(t, forkFn, ECHO, [], QUIET);
    const replies = [];
    const called = [];
    const done = new Promise((resolve) => {
      child.on('message', (msg) => {
        if (msg.back !== undefined) {
          replies.push(msg.back);
          if (replies.length === ROUNDS * IN_FLIGHT) resolve();
          return;
        }
        // A first trip's echo: answer it from the listener, with a callback.
        const back = msg.round * IN_FLIGHT + msg.k;
        child.send({ back }, (err) => called.push(err ?? back));
        if (msg.k === IN_FLIGHT - 1 && msg.round + 1 < ROUNDS) send(msg.round + 1);
      });
    });
    const send = (round) => {
      for (let k = 0; k < IN_FLIGHT; k++) child.send({ round, k });
    };
    send(0);
    await done;
    await new Promise((resolve) => setImmediate(resolve));
    results[name] = { replies, called };
    child.send('exit:0');
    await untilDone(child);
  }
  const expected = Array.from({ length: ROUNDS * IN_FLIGHT }, (_, i) => i);
  assert.deepStrictEqual(results.forkline, { replies: expected, called: expected });
  assert.deepStrictEqual(results.node, results.forkline);
});

test('send callbacks fire once each, in order, with null; send() returns a boolean', { timeout: 20_000 }, async (t) => {
  const results = {};
  for (const [name, forkFn] of Object.entries(IMPLS)) {
    const child = spawnChild(t, forkFn, ECHO, [], QUIET);
    const order = [];
    const returns = new Set();
    const N = 1000;
    await new Promise((resolve) => {
      for (let i = 0; i < N; i++) {
        const ret = child.send(
          { i },
          mustCall(t, (err) => {
            assert.strictEqual(err, null);
            order.push(i);
            if (order.length === N) resolve();
          }),
        );
        returns.add(typeof ret);
      }
    });
    assert.deepStrictEqual(
      order,
      Array.from({ length: N }, (_, i) => i),
    );
    // A fresh small send goes out at once; 4 MB does not fit in the socket and waits (false), unless the reader
    // drained it all while it was being written (forkline's reactor can: then nothing waits, and true is right).
    const small = child.send('small', mustCall(t));
    const large = child.send('x'.repeat(4 << 20), mustCall(t));
    const allWritten = name === 'forkline' && child.channel.stats().bytesQueued < 128 * 1024;
    results[name] = { returns: [...returns], small, largeIsFalseUnlessWritten: large === false || allWritten };
    await collect(child, N + 2);
    child.send('exit:0');
    await untilDone(child);
  }
  assert.deepStrictEqual(results.forkline, results.node);
  assert.deepStrictEqual(results.forkline, { returns: ['boolean'], small: true, largeIsFalseUnlessWritten: true });
});

test(
  'send(message[, sendHandle][, options][, callback]): every form delivers and calls back, as Node',
  { timeout: 20_000 },
  async (t) => {
    const results = {};
    for (const [name, forkFn] of Object.entries(IMPLS)) {
      const child = spawnChild(t, forkFn, ECHO, [], QUIET);
      const calls = [];
      const callback = (form) => mustCall(t, (err) => calls.push([form, err]));
      child.send('plain');
      child.send('cb', callback('cb'));
      child.send('handle-cb', undefined, callback('handle-cb'));
      child.send('null-handle-cb', null, callback('null-handle-cb'));
      child.send('handle-options-cb', undefined, {}, callback('handle-options-cb'));
      child.send('swallow', undefined, { swallowErrors: true }, callback('swallow'));
      child.send('handle-options', undefined, {});
      const replies = await collect(child, 7);
      child.send('exit:0');
      await untilDone(child);
      results[name] = { replies, calls };
    }
    assert.deepStrictEqual(results.forkline, results.node);
    assert.strictEqual(results.forkline.calls.length, 5);
  },
);

test('several children at once: each one gets its own messages back', { timeout: 20_000 }, async (t) => {
  const children = Array.from({ length: 4 }, () => spawnChild(t, IMPLS.forkline, ECHO, [], QUIET));
  const replies = children.map((child) => collect(child, 1000));
  for (let i = 0; i < 1000; i++) {
    children.forEach((child, c) => child.send({ c, i }));
  }
  const got = await Promise.all(replies);
  got.forEach((list, c) =>
    assert.deepStrictEqual(
      list,
      Array.from({ length: 1000 }, (_, i) => ({ c, i })),
    ),
  );
  for (const child of children) child.send('exit:0');
  await Promise.all(children.map((child) => untilDone(child)));
});

test(
  "send() returns false past the high-water mark and forkline then emits 'drain'",
  { timeout: 20_000 },
  async (t) => {
    const child = spawnChild(t, IMPLS.forkline, ECHO, [], QUIET);
    const drained = new Promise((resolve) => child.once('drain', mustCall(t, resolve)));
    // Until one does not fit: a reader that drains the socket while the write is under way (forkline's runtime
    // reads off its JS thread) can take a whole message in one write, and send() then rightly says true.
    const big = 'x'.repeat(4 << 20);
    let sent = 0;
    while (child.send(big)) assert.ok(++sent < 32, `send() said true for ${sent} messages of 4 MB`);
    sent++;
    await drained;
    assert.strictEqual(child.send('after drain'), true);
    const replies = await collect(child, sent + 1);
    assert.strictEqual(replies[sent], 'after drain');
    child.send('exit:0');
    await untilDone(child);
  },
);

test(
  "messages that arrive before a 'message' listener exists are delivered once one is added",
  { timeout: 20_000 },
  async (t) => {
    const results = {};
    for (const [name, forkFn] of Object.entries(IMPLS)) {
      const child = spawnChild(t, forkFn, COUNT, ['3'], QUIET);
      // Let the messages arrive with no listener (the wait only makes that likely; either way all must arrive).
      await sleep(300);
      results[name] = await collect(child, 4);
      child.kill();
      await untilDone(child);
    }
    assert.deepStrictEqual(results.forkline, [{ seq: 0 }, { seq: 1 }, { seq: 2 }, 'done']);
    assert.deepStrictEqual(results.forkline, results.node);
  },
);

test("{ cmd: 'NODE_...' } is an 'internalMessage', not a 'message', as Node", { timeout: 20_000 }, async (t) => {
  const values = [
    { cmd: 'NODE_TEST', a: 1 },
    { cmd: 'NODE_' },
    { cmd: 'NODEX' },
    { cmd: 'node_lower' },
    { cmd: 5 },
    'NODE_STRING',
    { cmd: 'NODE_OTHER', nested: { cmd: 'x' } },
    'last',
  ];
  const results = {};
  for (const [name, forkFn] of Object.entries(IMPLS)) {
    const child = spawnChild(t, forkFn, SEND_LIST, [JSON.stringify(values)], QUIET);
    const log = recordEvents(child, ['message', 'internalMessage']);
    await untilDone(child);
    results[name] = log;
  }
  assert.deepStrictEqual(results.forkline, results.node);
  assert.deepStrictEqual(
    results.forkline.filter(([event]) => event === 'internalMessage'),
    [
      ['internalMessage', { cmd: 'NODE_TEST', a: 1 }],
      ['internalMessage', { cmd: 'NODE_OTHER', nested: { cmd: 'x' } }],
    ],
  );
});

test(
  'disconnect() right after many sends: the child gets every message first (forkline)',
  { timeout: 20_000 },
  async (t) => {
    // Node may drop writes still queued at disconnect(); forkline documents that it does not.
    const N = 2000;
    const pad = 'p'.repeat(1000);
    const child = spawnChild(t, IMPLS.forkline, fixture('count-until-disconnect.js'), [], {
      stdio: ['ignore', 'pipe', 'inherit', 'ipc'],
    });
    let out = '';
    child.stdout.setEncoding('utf8');
    child.stdout.on('data', (chunk) => (out += chunk));
    const callbacks = mustCall(t, (err) => assert.strictEqual(err, null), N);
    for (let i = 0; i < N; i++) child.send({ seq: i, pad }, callbacks);
    child.disconnect();
    assert.deepStrictEqual(await whenClosed(child), [0, null]);
    assert.deepStrictEqual(JSON.parse(out), { received: N, inOrder: true, bytes: N * pad.length });
    await assertReaped(child.pid);
  },
);

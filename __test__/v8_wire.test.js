'use strict';

// The advanced codec (lib/v8_wire.js) against V8's own serializer and deserializer in this process, which are what
// Node's channel uses: the same bytes for every value, the same values back, the same verdict on damaged frames.
// advanced.test.js checks the bytes on the wire against node:child_process itself.
const test = require('node:test');
const assert = require('node:assert');
const util = require('node:util');
const wire = require('../lib/v8_wire');
const { kinds, randomValues, generator, sameValue } = require('./fixtures/v8-wire-values');

// The JS codec's frame for `value`, copied out, and its slab released as a flush would.
function encodeOne(value) {
  const frame = wire.encode(value);
  const copy = Buffer.from(frame);
  wire.join([frame]);
  return copy;
}

function assertSameBytes(value, label) {
  const mine = encodeOne(value);
  const theirs = wire.v8Encode(value);
  if (!mine.equals(theirs)) {
    assert.fail(
      `${label}: ${util.inspect(value, { depth: 1 })}\n mine   ${mine.toString('hex')}\n theirs ${theirs.toString('hex')}`,
    );
  }
  return theirs;
}

// Reads a frame both ways: the same value, or both throw.
function assertSameRead(frame, label) {
  let mine;
  let theirs;
  let mineErr = null;
  let theirsErr = null;
  try {
    mine = wire.decode(frame, 4, frame.length);
  } catch (err) {
    mineErr = err;
  }
  try {
    theirs = wire.v8Decode(frame, 4, frame.length);
  } catch (err) {
    theirsErr = err;
  }
  assert.strictEqual(
    mineErr === null,
    theirsErr === null,
    `${label}: ${mineErr ?? theirsErr} (${frame.toString('hex')})`,
  );
  if (mineErr === null) {
    assert.ok(sameValue(mine, theirs), `${label}: ${util.inspect(mine)} != ${util.inspect(theirs)}`);
  }
}

test('the JS codec is on in this Node (its self-check against V8 passed)', () => {
  assert.strictEqual(wire.fastPath(), true);
});

test('every value kind: the bytes V8 writes, and the value V8 reads back', () => {
  kinds().forEach((value, i) => {
    const frame = assertSameBytes(value, `kind ${i}`);
    assertSameRead(frame, `kind ${i}`);
    const back = wire.decode(frame, 4, frame.length);
    if (value !== null && typeof value === 'object' && Object.getPrototypeOf(value) !== null) {
      const expected = wire.v8Decode(frame, 4, frame.length);
      assert.strictEqual(Object.getPrototypeOf(back), Object.getPrototypeOf(expected), `kind ${i}: prototype`);
    }
  });
});

test('a shared value and a cycle come back as one object', () => {
  const shared = { s: 1 };
  const loop = { shared, list: [shared] };
  loop.self = loop;
  const frame = encodeOne(loop);
  const back = wire.decode(frame, 4, frame.length);
  assert.strictEqual(back.self, back);
  assert.strictEqual(back.list[0], back.shared);
});

test('a Buffer read back is a view of the frame, as Node makes it', () => {
  const frame = encodeOne({ b: Buffer.from('abcdef') });
  const back = wire.decode(frame, 4, frame.length);
  assert.ok(Buffer.isBuffer(back.b));
  assert.strictEqual(back.b.buffer, frame.buffer);
  assert.strictEqual(back.b.toString(), 'abcdef');
});

test('random values (seeded): the bytes V8 writes, read back as V8 reads them', () => {
  const values = randomValues(21, 3000);
  values.forEach((value, i) => assertSameRead(assertSameBytes(value, `random ${i}`), `random ${i}`));
});

test('damaged frames (seeded): read as V8 reads them, or refused as V8 refuses them', () => {
  const rnd = generator(2126);
  const int = (n) => Math.floor(rnd() * n);
  const frames = [...kinds(), ...randomValues(7, 400)].map((v) => wire.v8Encode(v));
  for (const [n, frame] of frames.entries()) {
    for (let k = 0; k < 8; k++) {
      const bad = Buffer.from(frame);
      const at = 4 + int(bad.length - 4);
      switch (k % 4) {
        case 0:
          bad[at] = int(256);
          break;
        case 1:
          bad[at] ^= 1 << int(8);
          break;
        case 2:
          bad[at] = [0x00, 0x22, 0x49, 0x4e, 0x5e, 0x63, 0x6f, 0x7b, 0x41, 0x24, 0x3b, 0x5c, 0xff][int(13)];
          break;
        default:
          assertSameRead(bad.subarray(0, at), `frame ${n} cut at ${at}`);
          continue;
      }
      assertSameRead(bad, `frame ${n} changed at ${at}`);
    }
  }
});

test('frames of one tick lie side by side and join into one view', () => {
  const a = wire.encode({ a: 1 });
  const b = wire.encode('second');
  const aBytes = Buffer.from(a);
  const joined = wire.join([a, b]);
  assert.strictEqual(joined.buffer, a.buffer);
  assert.strictEqual(joined.byteOffset, a.byteOffset);
  assert.deepStrictEqual(Buffer.from(joined), Buffer.concat([aBytes, wire.v8Encode('second')]));
});

test('once a tick is joined its slab is written again from the start; frames not joined are kept', () => {
  const first = wire.encode({ n: 1 });
  wire.join([first]);
  const again = wire.encode({ n: 2 });
  assert.strictEqual(again.buffer, first.buffer, 'the same slab');
  assert.strictEqual(again.byteOffset, first.byteOffset, 'from its start');
  wire.join([again]);

  // A frame written apart (as a handle's envelope) is never joined: later frames must go elsewhere.
  const apart = wire.encode({ envelope: 'kept' });
  const apartBytes = Buffer.from(apart);
  for (let i = 0; i < 2000; i++) wire.join([wire.encode({ i, filler: 'x'.repeat(200) })]);
  assert.deepStrictEqual(Buffer.from(apart), apartBytes);

  // A shared frame (fanned out to several outboxes) survives its first join.
  const shared = wire.encode({ to: 'many' }, true);
  const sharedBytes = Buffer.from(shared);
  wire.join([shared]);
  for (let i = 0; i < 2000; i++) wire.join([wire.encode({ i, filler: 'y'.repeat(200) })]);
  assert.deepStrictEqual(Buffer.from(shared), sharedBytes);
});

test('a frame larger than a slab is whole, and frames around it too', () => {
  const before = wire.encode('before');
  const big = { b: Buffer.alloc(3 << 20, 5), s: 'é'.repeat(70_000) };
  const large = wire.encode(big);
  const after = wire.encode('after');
  assert.deepStrictEqual(Buffer.from(before), wire.v8Encode('before'));
  assert.deepStrictEqual(Buffer.from(large), wire.v8Encode(big));
  assert.deepStrictEqual(Buffer.from(after), wire.v8Encode('after'));
  assert.deepStrictEqual(Buffer.from(wire.join([before, large, after])), Buffer.concat([before, large, after]));
  // The next large frame goes into the same memory.
  const again = wire.encode(big);
  assert.strictEqual(again.buffer, large.buffer);
  wire.join([again]);
});

test('a getter that sends while its object is written, and a getter that throws', () => {
  let inner;
  const message = {
    a: 1,
    get b() {
      inner = wire.encode({ inner: [1, 2] });
      return 'b';
    },
    c: 'c',
  };
  const outer = wire.encode(message);
  assert.deepStrictEqual(Buffer.from(outer), wire.v8Encode({ a: 1, b: 'b', c: 'c' }));
  assert.deepStrictEqual(Buffer.from(inner), wire.v8Encode({ inner: [1, 2] }));
  wire.join([outer]);

  const boom = new Error('getter');
  assert.throws(
    () =>
      wire.encode({
        get x() {
          throw boom;
        },
      }),
    (err) => err === boom,
  );
  assert.deepStrictEqual(encodeOne({ fine: true }), wire.v8Encode({ fine: true }));
});

test('what V8 refuses is refused with its error', () => {
  for (const value of [() => {}, Symbol('s'), { f() {} }, new Proxy({}, {}), [new WeakMap()]]) {
    assert.throws(() => wire.encode(value), /could not be cloned/);
  }
  (function () {
    // eslint-disable-next-line prefer-rest-params
    assert.throws(() => wire.encode({ args: arguments }), /could not be cloned/);
  })(1, 2);
});

test("writing an array leaves V8's own view of it alone (an array of doubles stays one)", () => {
  // Warm the encoder on arrays of every element kind, so that its loads are optimized and have met them all.
  for (let i = 0; i < 20_000; i++) {
    wire.join([wire.encode([[1, 2], JSON.parse('[1.5, 2]'), ['a', 1], [{}]])]);
  }
  const doubles = JSON.parse('[1.5, 2, 3]');
  const ints = [1, 2, 3];
  const before = [wire.v8Encode(doubles), wire.v8Encode(ints)];
  wire.join([wire.encode({ doubles, ints })]);
  assert.deepStrictEqual([wire.v8Encode(doubles), wire.v8Encode(ints)], before);
});

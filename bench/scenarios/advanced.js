'use strict';

// `serialization: 'advanced'`: small objects with a Date and a Map parent → child, and echoes of 1 MB and 16 MB
// Buffers.

const { now, seconds, fmtMBs } = require('../harness');
const { sinkScenario, SMALL } = require('./channel');

const MB = 1024 * 1024;
const ADVANCED = { serialization: 'advanced' };
// The advanced-serialization small message: a Date and a Map, which JSON could not carry.
const smallAdvanced = (i) => ({ i, s: SMALL, d: new Date(0), m: new Map([[1, 2]]) });
const buffers = new Map();
// A Buffer of `size` bytes cycling through 0..250 (251 is prime, so no power-of-two period). Built once, shared by
// every implementation.
const bufferPayload = (size) => {
  if (!buffers.has(size)) buffers.set(size, Buffer.alloc(size, Buffer.from(Array.from({ length: 251 }, (_, k) => k))));
  return buffers.get(size);
};

// The channel family's echo rows with `serialization: 'advanced'` and `{ i, b }`, `b` a Buffer of `size` bytes.
function bufferEchoScenario(label, size, count) {
  return {
    id: `adv-echo-${label.replace(' ', '').toLowerCase()}`,
    child: 'echo-child.js',
    forkOptions: ADVANCED,
    params: { n: count, warm: Math.max(1, Math.round(count / 10)) },
    rows: [{ name: `advanced echo ${label} Buffer, MB/s`, key: 'mbps', higherIsBetter: true, format: fmtMBs }],
    timeoutSeconds: 60,
    async run(session, { n, warm }) {
      const b = bufferPayload(size);
      await echoBuffer(session, b, 0, warm, true);
      const t0 = now();
      await echoBuffer(session, b, warm, warm + n, false);
      const t1 = now();
      return { mbps: (n * size) / MB / seconds(t0, t1), seconds: seconds(t0, t1) };
    },
  };
}

// Sends { i, b } for i in [from, to) as the channel family's echo() sends { i, s }; what comes back must be a Buffer
// of the same length.
function echoBuffer(session, b, from, to, fullCheck) {
  return new Promise((resolve, reject) => {
    let i = from;
    session.onMessage = (msg) => {
      const back = msg.b;
      if (msg.i !== i || !Buffer.isBuffer(back) || back.length !== b.length || (fullCheck && !back.equals(b))) {
        const what = Buffer.isBuffer(back) ? `a ${back.length}-byte Buffer` : `${Object.prototype.toString.call(back)}`;
        reject(new Error(`echo ${i}: got back i=${msg.i}, ${what}, expected i=${i}, a ${b.length}-byte Buffer`));
        return;
      }
      if (++i === to) resolve();
      else session.child.send({ i, b });
    };
    session.child.send({ i, b });
  });
}

const scenarios = [
  sinkScenario({
    id: 'adv-p2c',
    name: 'advanced small objects parent → child, msgs/s',
    forkOptions: ADVANCED,
    params: { n: 200_000, warm: 20_000 },
    make: smallAdvanced,
  }),
  bufferEchoScenario('1 MB', MB, 200),
  bufferEchoScenario('16 MB', 16 * MB, 12),
];

module.exports = { scenarios };

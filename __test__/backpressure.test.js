'use strict';

// Bounded memory, end to end: while the parent's JS thread is busy, the child's writes stop completing, so the
// kernel pushes back on it instead of the parent buffering whatever it sends. (That the core's reader thread stops at
// a full queue is tested in src/core/channel/tests.rs: a_burst_reader_stops_reading_while_its_owner_is_behind.)
const test = require('node:test');
const assert = require('node:assert');
const path = require('node:path');
const { fork } = require('..');

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

test('a parent busy in JS makes a flooding child wait, then gets every message', { timeout: 30_000 }, async (t) => {
  const child = fork(path.join(__dirname, 'fixtures', 'flood-callbacks.js'));
  t.after(() => child.kill('SIGKILL'));
  let received = 0;
  const report = new Promise((resolve) => {
    child.on('message', (msg) => {
      if (msg === 'ready') return;
      if (msg.buckets) return resolve(msg);
      received++;
      // A slow listener: the child outruns it, a backlog builds and the core's reader thread takes over.
      const until = process.hrtime.bigint() + 50_000n;
      while (process.hrtime.bigint() < until);
    });
  });
  await new Promise((resolve) => child.once('message', resolve));
  // Sends leave at the end of the tick: wait until 'go' is on the wire.
  // Small messages faster than the listener takes them: reads fill the buffer, so the core's reader thread reads
  // the flood, the one reader that could run ahead of JS.
  await new Promise((resolve) => child.send({ go: true, ms: 3000, size: 1024, inFlight: 256 }, resolve));
  // Read freely first, so the flood runs on the reader thread; then stop reading by keeping the JS thread busy.
  await sleep(600);
  const blockStart = Date.now();
  while (Date.now() < blockStart + 1500);
  const blockEnd = Date.now();
  const { start, bucketMs, buckets } = await report;
  // Writes completed well inside the busy stretch, once the queue and the kernel's buffers had filled.
  let during = 0;
  buckets.forEach((count, i) => {
    const at = start + i * bucketMs;
    if (at >= blockStart + 100 && at + bucketMs <= blockEnd) during += count;
  });
  const before = buckets.slice(0, Math.floor((blockStart - start) / bucketMs)).reduce((a, b) => a + b, 0);
  assert.ok(before > 2000, `the flood was running before the busy stretch (${before} writes)`);
  // The listener was already behind, so the core's queue was full when JS stopped: the child waits from then on.
  // A reader without bound goes on taking the child's writes (~25k in the first 300 ms here).
  assert.ok(during < 5_000, `the child completed ${during} writes of 1 KB while the parent was not reading`);
  assert.ok(received >= buckets.reduce((a, b) => a + b, 0), 'and every completed write arrives');
});

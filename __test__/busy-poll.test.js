'use strict';

// busyPoll (#15): after each send and receive an end keeps polling its socket for a while, from the event loop; by
// default (#25) 50 µs while it pays (src/core/spin.rs has the policy's own tests).
// What is checked here is behaviour, not speed (npm run bench measures that): messages still arrive, timers still
// fire while it polls, an idle channel stops costing CPU, a process with nothing else to do still exits, and bad
// values are refused as Node refuses bad options.

// What of this file needs the native core: skipped, with the reason, under the portable backend.
const test = require('./helpers').withNativeOnly(require('node:test'), {
  'busyPoll: 200 µs with a forkline child: round trips, timers, no CPU when idle, exits by itself':
    "the child runtime (childRuntime: 'forkline')",
  'busyPoll: the default with a forkline child: round trips, timers, no CPU when idle, exits by itself':
    "the child runtime (childRuntime: 'forkline')",
  "the default's look at the CPU pressure keeps no fd open": 'busy polling (the native core)',
});
const assert = require('node:assert');
const { execFileSync } = require('node:child_process');
const { fixture, spawnChild, once, fdList, sleep } = require('./helpers');
const { fork } = require('..');

for (const [window, label] of [
  ['200', '200 µs'],
  ['default', 'the default'],
]) {
  for (const runtime of ['node', 'forkline']) {
    test(`busyPoll: ${label} with a ${runtime} child: round trips, timers, no CPU when idle, exits by itself`, () => {
      const out = execFileSync(process.execPath, [fixture('busy-poll-parent.js'), window, runtime], {
        encoding: 'utf8',
        timeout: 30_000,
      });
      const { answered, ticks, idleCpu, idleWall } = JSON.parse(out);
      assert.ok(answered >= 100, `round trips done: ${answered}`);
      assert.ok(ticks > 10, `a 1 ms interval kept firing while the loop polled: ${ticks} ticks`);
      // Spinning would cost about the whole idle time in CPU; a stopped poll costs next to nothing.
      assert.ok(idleCpu < idleWall / 4, `${idleCpu} ms of CPU in ${idleWall} ms idle`);
    });
  }
}

test('busyPoll is validated as Node validates numeric options; FORKLINE_BUSY_POLL sets the default', async (t) => {
  for (const bad of [-1, 1.5, 2_000_000, NaN]) {
    assert.throws(() => fork(fixture('echo.js'), [], { busyPoll: bad }), { code: 'ERR_OUT_OF_RANGE' }, String(bad));
  }
  const saved = process.env.FORKLINE_BUSY_POLL;
  t.after(() => {
    if (saved === undefined) delete process.env.FORKLINE_BUSY_POLL;
    else process.env.FORKLINE_BUSY_POLL = saved;
  });
  process.env.FORKLINE_BUSY_POLL = 'lots';
  assert.throws(() => fork(fixture('echo.js')), { code: 'ERR_OUT_OF_RANGE' });
  process.env.FORKLINE_BUSY_POLL = '100';
  const child = spawnChild(t, fork, fixture('echo.js'));
  child.send('hello');
  assert.deepStrictEqual(await once(child, 'message'), ['hello', undefined]);
  child.kill();
});

// The default reads /proc/pressure/cpu now and then (src/os/pressure.rs) to stand aside on a crowded machine; it
// must not hold that file open between samples, or a process's fds (and any leak check's count) would gain one at
// some first send.
test("the default's look at the CPU pressure keeps no fd open", { timeout: 20_000 }, async (t) => {
  const child = spawnChild(t, fork, fixture('echo.js'));
  // Bursts of round trips 30 ms apart: more than one sample window (20 ms).
  for (let burst = 0; burst < 5; burst++) {
    for (let i = 0; i < 20; i++) {
      child.send(i);
      await once(child, 'message');
    }
    await sleep(30);
  }
  assert.deepStrictEqual(
    fdList().filter((fd) => fd.includes('/proc/pressure')),
    [],
  );
  child.kill();
});

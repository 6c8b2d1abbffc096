'use strict';

// The reactor (#13): one epoll thread serves every channel's off-JS-thread reads and writes and every child's exit,
// so threads stay constant however many children run. Each scenario runs in a parent process of its own
// (fixtures/reactor-parent.js), with pidfds and with the fallback reaper (FORKLINE_NO_PIDFD=1).

// What of this file needs the native core: skipped, with the reason, under the portable backend.
const test = require('./helpers').withNativeOnly(require('node:test'), {
  "pidfd: a child exiting mid-burst: every message, then 'disconnect', 'exit', 'close'":
    "the fixed event order ('disconnect' before 'exit': Node's channel has it only usually)",
  "fallback reaper: a child exiting mid-burst: every message, then 'disconnect', 'exit', 'close'":
    "the fixed event order ('disconnect' before 'exit': Node's channel has it only usually)",
});
const assert = require('node:assert');
const { execFileSync } = require('node:child_process');
const { fixture, spawnChild, waitUntil, once } = require('./helpers');
const { fork } = require('..');

function scenario(name, env = {}) {
  const out = execFileSync(process.execPath, [fixture('reactor-parent.js'), name], {
    env: { ...process.env, ...env },
    encoding: 'utf8',
    timeout: 60_000,
  });
  return JSON.parse(out);
}

for (const [mode, env] of [
  ['pidfd', {}],
  ['fallback reaper', { FORKLINE_NO_PIDFD: '1' }],
]) {
  test(`${mode}: threads are the same with 1 and 50 children, bursting or not, and back to Node's once they exit`, () => {
    const { before, one, fifty, busy, after } = scenario('threads', env);
    for (const [when, count] of Object.entries({ one, fifty, busy })) {
      assert.ok(count - before <= 3, `${when}: at most 3 threads over Node's own ${before}: ${count}`);
    }
    // With pidfds the reactor runs while any child lives; the fallback's reactor may rest between bursts.
    if (!env.FORKLINE_NO_PIDFD) assert.deepStrictEqual({ fifty, busy }, { fifty: one, busy: one });
    assert.strictEqual(after, before, "back to Node's own threads once every child is gone");
  });

  test(`${mode}: forkline and node:child_process children side by side each get their own 'exit'`, () => {
    const { runs, fdsBefore, fdsAfter } = scenario('exits', env);
    assert.strictEqual(runs.length, 21);
    for (const run of runs) assert.deepStrictEqual([run.exitCode, run.signal], [run.code, null], run.mod);
    assert.deepStrictEqual(fdsAfter, fdsBefore, 'no fd (pidfd, socket) left behind by exited children');
  });

  test(`${mode}: a child exiting mid-burst: every message, then 'disconnect', 'exit', 'close'`, () => {
    for (const { count, messages, events } of scenario('mid-burst', env).results) {
      assert.strictEqual(messages, count);
      assert.deepStrictEqual(events, ['disconnect', 'exit', 'close']);
    }
  });

  test(`${mode}: kill() after exit never signals the process that got the pid next`, (t) => {
    const result = scenario('reused-pid', env);
    if (result.skipped) return t.skip(result.skipped);
    assert.deepStrictEqual(result, { reused: true, killed: false, alive: true });
  });
}

test('a flooding channel does not hold back another busy one', async (t) => {
  const flood = spawnChild(t, fork, fixture('flood.js'));
  const echo = spawnChild(t, fork, fixture('echo.js'));
  let flooded = 0;
  flood.on('message', () => flooded++);
  await waitUntil(() => flooded > 1000, 10_000, 'the flood to start');
  // 300 KB each way: every read of the echo fills the buffer too, so both channels are the reactor's.
  const big = 'e'.repeat(300_000);
  const atStart = flooded;
  const latencies = [];
  for (let i = 0; i < 40; i++) {
    const started = process.hrtime.bigint();
    echo.send(big);
    const [reply] = await once(echo, 'message');
    assert.strictEqual(reply.length, big.length);
    latencies.push(Number(process.hrtime.bigint() - started) / 1e6);
  }
  assert.ok(flooded > atStart, 'the flood went on while the round trips were served');
  latencies.sort((a, b) => a - b);
  t.diagnostic(
    `300 KB round trip beside a flood: p50 ${latencies[20].toFixed(2)} ms, max ${latencies[39].toFixed(2)} ms`,
  );
});

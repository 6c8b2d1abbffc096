'use strict';

// The short form of the chaos suite (chaos/run.js, issue #11): every scenario and variant for a few rounds with a
// fixed seed, each round followed by the after-round checks (no fd, thread or process left over, no message
// delivered twice, every message sent before the fault by a live peer delivered in order). A failing round names
// the command that repeats it. Problems that chaos/known-bugs.js excuses are reported as diagnostics, and each known
// bug has a todo test of its own below that enforces it.

const nodeTest = require('node:test');
const assert = require('node:assert');
const path = require('node:path');
const { spawnSync } = require('node:child_process');
const { runRound, warmUp, killEverything, loadScenario, SCENARIOS } = require('../chaos/harness');
const { roundSeed, hex } = require('../chaos/rng');
const { skippedVariants } = require('../chaos/known-bugs');

const SEED = 0x0c4a0511;
const ROUNDS = 2;
const REPRO = path.join(__dirname, '..', 'chaos', 'repro');

// What of this file needs the native core: skipped, with the reason, under the portable backend. A SIGKILLed
// primary's workers exit by themselves under Node's cluster too, so kill-primary runs there (but for reuseport).
const NATIVE = {
  'kill-burst': "the native channel's guarantees under SIGKILL (nothing dropped by disconnect()), runtime children",
  'kill-handoff': "the native handshake under SIGKILL (the core's copy of a handle until the ACK), runtime children",
  'hostile-peer': 'malformed-input and fd-flood survival',
  emfile: "the native spawn's and channel's EMFILE handling (FORKLINE_FD_LOST)",
};
const test = require('./helpers').withNativeOnly(nodeTest, {
  ...Object.fromEntries(
    SCENARIOS.flatMap((scenario) =>
      loadScenario(scenario)
        .variants.map((variant) => [
          `chaos ${scenario}/${variant}: ${ROUNDS} rounds`,
          scenario === 'kill-primary' ? variant === 'reuseport' && 'SCHED_REUSEPORT' : NATIVE[scenario],
        ])
        .filter(([, reason]) => reason),
    ),
  ),
  'chaos hostile-peer/ctrunc: the fds that arrive with a truncated SCM_RIGHTS message are closed':
    NATIVE['hostile-peer'],
  "chaos emfile: fork() at EMFILE emits 'error' on the returned child, as node:child_process, instead of throwing":
    NATIVE.emfile,
});

test.before(() => warmUp());
test.after(() => killEverything());

function describeFailure(result) {
  const repro = `node chaos/run.js --only ${result.scenario}/${result.variant} --seed ${hex(result.seed)} --rounds 1`;
  return `${result.problems.map((p) => `[${p.id}] ${p.message}`).join('\n')}\nrepeat: ${repro}`;
}

async function rounds(t, scenario, variant, { count = ROUNDS, knownBugs = false } = {}) {
  t.after(() => killEverything());
  const base = (SEED ^ (SCENARIOS.indexOf(scenario) << 8) ^ loadScenario(scenario).variants.indexOf(variant)) >>> 0;
  for (let i = 0; i < count; i++) {
    const result = await runRound({ scenario, variant, seed: roundSeed(base, i), knownBugs });
    const stats = Object.entries(result.stats).map(([key, value]) => `${key}=${value}`);
    t.diagnostic(`seed ${hex(result.seed)}: ${result.ok ? 'ok' : 'FAIL'} in ${result.ms} ms ${stats.join(' ')}`);
    for (const p of result.known) t.diagnostic(`known bug [${p.id}]: ${p.message}`);
    assert.ok(result.ok, describeFailure(result));
  }
}

const skipped = skippedVariants();
for (const scenario of SCENARIOS) {
  for (const variant of loadScenario(scenario).variants) {
    if (skipped.some((s) => s.scenario === scenario && s.variant === variant)) continue;
    test(`chaos ${scenario}/${variant}: ${ROUNDS} rounds`, { timeout: 120_000 }, (t) => rounds(t, scenario, variant));
  }
}

test(
  'the after-round checks catch what they are there for (chaos/scenarios/selftest.js)',
  { timeout: 60_000 },
  async () => {
    const selftest = loadScenario('selftest');
    for (const variant of selftest.variants) {
      const result = await runRound({ scenario: 'selftest', variant, seed: 1, settleMs: 300 });
      selftest.release();
      const ids = result.problems.map((p) => p.id);
      assert.ok(ids.includes(selftest.EXPECTED[variant]), `selftest/${variant}: problems ${JSON.stringify(ids)}`);
    }
  },
);

// ---- bugs the suite found, enforced ----

test(
  'chaos hostile-peer/ctrunc: the fds that arrive with a truncated SCM_RIGHTS message are closed',
  { timeout: 60_000 },
  (t) => rounds(t, 'hostile-peer', 'ctrunc', { count: 1, knownBugs: true }),
);

test(
  "chaos emfile: fork() at EMFILE emits 'error' on the returned child, as node:child_process, instead of throwing",
  { timeout: 60_000 },
  (t) => rounds(t, 'emfile', 'json', { count: 1, knownBugs: true }),
);

test(
  "a peer that dies with unread data in its queue: the parent still reads the EOF ('disconnect', 'close')",
  { timeout: 60_000 },
  () => {
    const run = spawnSync(process.execPath, [path.join(REPRO, 'pollerr.js'), '10'], { encoding: 'utf8' });
    assert.strictEqual(run.status, 0, run.stdout + run.stderr);
  },
);

test(
  "a socket whose send() fails at once (the child died, no 'disconnect' yet) is not left attached in the parent",
  { timeout: 60_000 },
  () => {
    const run = spawnSync(process.execPath, [path.join(REPRO, 'send-handle-epipe.js')], { encoding: 'utf8' });
    assert.match(run.stdout, /_handle null/, run.stdout + run.stderr);
  },
);

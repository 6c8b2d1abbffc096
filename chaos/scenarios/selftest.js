'use strict';

// Not a fault of forkline's: each variant breaks one after-round invariant on purpose, so that a test can check
// that the checks catch it (__test__/chaos.test.js). Not drawn by the driver (chaos/run.js --only selftest/<v>).

const fs = require('node:fs');
const { Worker } = require('node:worker_threads');
const { Ledger } = require('../invariants');

const EXPECTED = {
  fd: 'fd-leak',
  thread: 'thread-leak',
  process: 'process-leak',
  orphan: 'process-leak',
  duplicate: 'duplicate',
  reordered: 'reordered',
  gap: 'gap',
  lost: 'lost',
};

async function run(round, variant) {
  const ledger = new Ledger('selftest');
  ledger.sender('x');
  const seqs = { duplicate: [0, 1, 1, 2], reordered: [0, 2, 1], gap: [0, 1, 3], lost: [0, 1] }[variant] || [0, 1, 2];
  for (const seq of seqs) ledger.receive('x', seq);
  ledger.mustHave('x', 3);
  for (const p of ledger.check()) round.problem(p.id, p.message);
  if (variant === 'fd') leaked.push(fs.openSync(__filename, 'r'));
  if (variant === 'thread') {
    const worker = new Worker('setInterval(() => {}, 1000)', { eval: true });
    leaked.push(worker);
    await new Promise((resolve) => worker.once('online', resolve));
  }
  if (variant === 'process') round.spawn('sleep', ['30'], { stdio: 'ignore' });
  // A grandchild left behind by a child that exits: no descendant of ours any more, found by the round's token.
  if (variant === 'orphan') {
    const child = round.spawn('/bin/sh', ['-c', 'sleep 30 & exit 0'], { stdio: 'ignore' });
    await new Promise((resolve) => child.on('close', resolve));
  }
}

// What the variants leave, for release() once the check has seen it.
const leaked = [];
function release() {
  for (const item of leaked.splice(0)) {
    if (typeof item === 'number') fs.closeSync(item);
    else item.terminate();
  }
}

module.exports = { name: 'selftest', variants: Object.keys(EXPECTED), timeoutMs: 10_000, run, EXPECTED, release };

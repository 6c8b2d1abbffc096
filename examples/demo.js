'use strict';

// forkline's main job: fork an unmodified Node child and talk to it over the Rust-owned IPC channel,
// then do the same with node:child_process and compare.
const path = require('node:path');
const forkline = require('..');
const nodeChildProcess = require('node:child_process');

const WORKER = path.join(__dirname, 'worker.js');
const COUNT = 100_000;

function run(impl) {
  return new Promise((resolve, reject) => {
    const child = impl.fork(WORKER);
    let received = 0;
    let sum = 0;
    let started;
    child.on('error', reject);
    child.on('message', (msg) => {
      if (msg.cmd === 'ready') {
        started = process.hrtime.bigint();
        for (let n = 0; n < COUNT; n++) child.send({ cmd: 'square', n });
        return;
      }
      sum += msg.square;
      if (++received === COUNT) {
        const seconds = Number(process.hrtime.bigint() - started) / 1e9;
        child.send({ cmd: 'done' });
        child.on('close', (code) => resolve({ pid: msg.pid, seconds, sum, code }));
      }
    });
  });
}

(async () => {
  console.log(`Round trips of ${COUNT.toLocaleString()} messages with a plain \`node worker.js\` child:`);
  const results = [];
  for (const [name, impl] of [
    ['node:child_process', nodeChildProcess],
    ['forkline', forkline],
  ]) {
    const r = await run(impl);
    results.push(r);
    const rate = Math.round(COUNT / r.seconds).toLocaleString();
    console.log(`  ${name.padEnd(20)} ${r.seconds.toFixed(3)} s  ${rate} round trips/s  exit code ${r.code}`);
  }
  if (results[0].sum !== results[1].sum) throw new Error('results differ');
  console.log(
    `Same answers from both (sum of squares ${results[1].sum}); forkline ${(
      results[0].seconds / results[1].seconds
    ).toFixed(2)}x the speed.`,
  );
})().catch((err) => {
  console.error(err);
  process.exit(1);
});

'use strict';

// Benchmark parent for the plain round-trip loop row: a fresh process that forks one echo child (pingpong-child.js:
// `process.on('message', (m) => process.send(m))`, nothing else) with node:child_process or forkline, and measures
// sequential round trips of `{ k }` the way a user's first ping-pong would: `warm` of them, then `n` timed one by
// one, each sent from the 'message' listener of the one before.
//
//   forked by bench/scenarios/channel.js: node bench/children/pingpong-parent.js <node|forkline|forkline-runtime>
//
// Protocol on its channel to the bench (node's own, only the harness's control channel): { ready: true } at start,
// then { go: { n, warm } } is answered { result: { p50, p99, mean } } (µs) or { error }. Exits when that channel
// closes, killing its child if it is still there.

const path = require('node:path');
const process = require('node:process');

const [implName] = process.argv.slice(2);
const IMPLS = ['node', 'forkline', 'forkline-runtime'];
if (!IMPLS.includes(implName) || !process.send) {
  console.error(`usage: forked with an IPC channel: pingpong-parent.js <${IMPLS.join('|')}>`);
  process.exit(2);
}
const { fork } = implName === 'node' ? require('node:child_process') : require('../..');
const options = implName === 'forkline-runtime' ? { childRuntime: 'forkline' } : {};

let child = null;
process.on('disconnect', () => {
  if (child && child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
  process.exit(0);
});

function measure({ n, warm }) {
  return new Promise((resolve, reject) => {
    child = fork(path.join(__dirname, 'pingpong-child.js'), [], options);
    child.on('error', (err) => reject(new Error(`child 'error': ${err.code ?? ''} ${err.message}`)));
    child.on('exit', (code, signal) => reject(new Error(`child exited early (code ${code}, signal ${signal})`)));
    const micros = new Float64Array(n);
    let k = 0;
    let t0 = 0n;
    child.on('message', (msg) => {
      const t1 = process.hrtime.bigint();
      if (!msg || msg.k !== k) {
        reject(new Error(`round trip ${k}: got back ${JSON.stringify(msg)}`));
        return;
      }
      if (k >= warm) micros[k - warm] = Number(t1 - t0) / 1e3;
      if (++k === warm + n) {
        micros.sort();
        let sum = 0;
        for (const v of micros) sum += v;
        child.removeAllListeners('exit');
        child.disconnect();
        resolve({ p50: micros[Math.ceil(0.5 * n) - 1], p99: micros[Math.ceil(0.99 * n) - 1], mean: sum / n });
        return;
      }
      t0 = process.hrtime.bigint();
      child.send({ k });
    });
    // The child has no ready message: the first round trip waits for its start, and is part of the warm-up.
    t0 = process.hrtime.bigint();
    child.send({ k });
  });
}

process.once('message', (msg) => {
  if (!msg || !msg.go) {
    process.send({ error: `expected { go }, got ${JSON.stringify(msg)}` });
    return;
  }
  measure(msg.go).then(
    (result) => process.send({ result }),
    (err) => process.send({ error: err.message }),
  );
});
process.send({ ready: true });

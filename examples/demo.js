'use strict';

// forkline's main job: fork an unmodified Node child and talk to it over the Rust-owned IPC channel. This forks the
// same plain child (worker.js) with node:child_process and with forkline, asks both the same, checks every answer,
// and prints the two side by side: the better of two runs each, taken in turn (node, forkline, forkline, node) so
// that neither gains from going first or last on a busy machine. `node examples/demo.js --quick` runs each once and
// does less of everything (a smoke test, not a measure).

const { once } = require('node:events');
const os = require('node:os');
const path = require('node:path');
const nodeChildProcess = require('node:child_process');
const forkline = require('forkline'); // the only line that changes when you adopt it: fork() is Node's

const WORKER = path.join(__dirname, 'worker.js');
const QUICK = process.argv.includes('--quick');
const N = QUICK ? { roundTrips: 200, messages: 5_000, large: 3 } : { roundTrips: 3_000, messages: 100_000, large: 20 };
const ORDER = QUICK ? ['node', 'forkline'] : ['node', 'forkline', 'forkline', 'node'];
const ONE_MB = 'x'.repeat(1024 * 1024);

// Calls start(), then hands each message from the child to onMessage until that returns true.
function exchange(child, start, onMessage) {
  return new Promise((resolve, reject) => {
    const listener = (msg) => {
      let finished;
      try {
        finished = onMessage(msg);
      } catch (err) {
        finished = true;
        reject(err);
      }
      if (finished) {
        child.off('message', listener);
        resolve();
      }
    };
    child.on('message', listener);
    start();
  });
}

const median = (values) => values.sort((a, b) => a - b)[values.length >> 1];

function expect(ok, what) {
  if (!ok) throw new Error(`wrong answer from the child: ${what}`);
}

// One small message there and back, the next sent when the answer is in. Median, in µs.
async function roundTrip(child, n) {
  const micros = [];
  let sentAt;
  const ping = () => {
    sentAt = performance.now();
    child.send({ cmd: 'ping', i: micros.length });
  };
  await exchange(child, ping, (msg) => {
    micros.push((performance.now() - sentAt) * 1000);
    expect(msg.i === micros.length - 1, `pong ${msg.i} for ping ${micros.length - 1}`);
    if (micros.length === n) return true;
    ping();
  });
  return median(micros);
}

// n messages sent in one loop; the child adds them up and answers with the total. Messages per second.
async function parentToChild(child, n) {
  const started = performance.now();
  const send = () => {
    for (let i = 0; i < n; i++) child.send({ cmd: 'add', n: i });
    child.send({ cmd: 'total' });
  };
  await exchange(child, send, (msg) => {
    expect(msg.count === n && msg.sum === (n * (n - 1)) / 2, `total of ${msg.count} messages`);
    return true;
  });
  return n / ((performance.now() - started) / 1000);
}

// The child sends n messages in one loop; each arrives once, in order. Messages per second.
async function childToParent(child, n) {
  const started = performance.now();
  let got = 0;
  await exchange(
    child,
    () => child.send({ cmd: 'count', n }),
    (msg) => {
      expect(msg.n === got, `message ${msg.n} where ${got} was due`);
      return ++got === n;
    },
  );
  return n / ((performance.now() - started) / 1000);
}

// A 1 MB string there and back, n times one after the other. Median, in ms.
async function largeMessage(child, n) {
  const millis = [];
  let sentAt;
  const send = () => {
    sentAt = performance.now();
    child.send({ cmd: 'echo', data: ONE_MB });
  };
  await exchange(child, send, (msg) => {
    millis.push(performance.now() - sentAt);
    expect(msg.data === ONE_MB, `a 1 MB echo came back as ${msg.data.length} chars`);
    if (millis.length === n) return true;
    send();
  });
  return median(millis);
}

const ROWS = [
  { label: 'round trip (one at a time), µs', measure: roundTrip, count: 'roundTrips', lowerIsBetter: true },
  { label: 'parent → child, messages/s', measure: parentToChild, count: 'messages' },
  { label: 'child → parent, messages/s', measure: childToParent, count: 'messages' },
  { label: '1 MB message there and back, ms', measure: largeMessage, count: 'large', lowerIsBetter: true },
];

async function run(fork) {
  const child = fork(WORKER);
  child.on('error', (err) => console.error('child error:', err));
  await once(child, 'message'); // worker.js says it is ready
  const results = [];
  for (const row of ROWS) {
    await row.measure(child, Math.ceil(N[row.count] / 10)); // a warm-up, not counted
    results.push(await row.measure(child, N[row.count]));
  }
  const exited = once(child, 'exit');
  child.disconnect(); // the child has nothing left to wait for, and exits
  const [code] = await exited;
  expect(code === 0, `the child exited with ${code}`);
  return results;
}

function format(value) {
  if (value >= 1000) return Math.round(value).toLocaleString('en-US');
  return value.toFixed(1);
}

(async () => {
  const cpus = os.availableParallelism();
  console.log(`The same plain \`node worker.js\` child, forked by each (Node ${process.version}, ${cpus} CPUs):\n`);
  const forks = { node: nodeChildProcess.fork, forkline: forkline.fork };
  const runs = { node: [], forkline: [] };
  for (const name of ORDER) runs[name].push(await run(forks[name]));
  const best = (name, i) => (ROWS[i].lowerIsBetter ? Math.min : Math.max)(...runs[name].map((results) => results[i]));
  const table = [['', 'node:child_process', 'forkline', 'forkline/node']];
  ROWS.forEach((row, i) => {
    const [node, ours] = [best('node', i), best('forkline', i)];
    const ratio = row.lowerIsBetter ? node / ours : ours / node;
    table.push([row.label, format(node), format(ours), ratio.toFixed(2) + 'x']);
  });
  const widths = table[0].map((_, col) => Math.max(...table.map((line) => line[col].length)));
  for (const line of table) {
    console.log(
      line.map((cell, col) => (col === 0 ? cell.padEnd(widths[col]) : cell.padStart(widths[col]))).join('   '),
    );
  }
  console.log('\nforkline/node above 1.00x: forkline is faster. Every answer checked, the same from both.');
  console.log("child → parent is the child's own process.send(): fork(file, args, { childRuntime: 'forkline' })");
  console.log('puts forkline on that end too, with the child unchanged (docs/api.md, npm run bench).');
  if (QUICK) console.log('(--quick: too few messages to measure anything; run without it for the numbers)');
})().catch((err) => {
  console.error(err);
  process.exit(1);
});

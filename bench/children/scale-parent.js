'use strict';

// Benchmark parent for the scale rows: forks N unmodified echo children (echo-child.js, Node's built-in IPC only)
// with node:child_process or forkline and measures itself: its threads (/proc/self/task), its RSS, the time from the
// first fork() to a first message from every child, and the echo rate with every child echoing at once.
//
//   forked by bench/scenarios/scale.js: node bench/children/scale-parent.js <node|forkline>
//
// It is a fresh process per measurement so that the threads and memory it reports are only its own and those of one
// implementation (forkline is not even loaded in the node parent). Protocol on its channel to the bench: it sends
// { ready: true } at start, gets { go: { n, window, warmMs, ms, deadlineMs } } and answers { result } or { error }.
// When that channel closes (the bench is done with it, or died) it kills whatever children are left and exits.

const fs = require('node:fs');
const path = require('node:path');
const process = require('node:process');

const [implName] = process.argv.slice(2);
if (!['node', 'forkline'].includes(implName) || !process.send) {
  console.error('usage: forked with an IPC channel: scale-parent.js <node|forkline>');
  process.exit(2);
}
const { machineBusyMicros } = require('../machine_cpu');
const { fork } = implName === 'node' ? require('node:child_process') : require('../..');
const ECHO = path.join(__dirname, 'echo-child.js');
const SMALL = 'hello';

const now = process.hrtime.bigint;
const millis = (t0, t1) => Number(t1 - t0) / 1e6;
const threads = () => fs.readdirSync('/proc/self/task').length;
const rssMB = () => process.memoryUsage.rss() / (1024 * 1024);

const children = [];
let stopping = false;

function killChildren() {
  for (const child of children) {
    if (child.exitCode === null && child.signalCode === null) {
      try {
        child.kill('SIGKILL');
      } catch {
        // Already gone.
      }
    }
  }
}

function finish(msg) {
  stopping = true;
  killChildren();
  // The bench reads this reply, then closes the channel, which ends this process (below).
  process.send(msg);
}

// The bench closed the channel (normally after our reply, or because it died): nothing may outlive us.
process.on('disconnect', () => {
  stopping = true;
  killChildren();
  process.exit(0);
});

function sleep(ms) {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

async function measure({ n, window, warmMs, ms, deadlineMs }) {
  let failure = null;
  let onFailure = null;
  const failed = new Promise((_, reject) => (onFailure = reject));
  failed.catch(() => {});
  const fail = (err) => {
    if (failure) return;
    failure = err;
    onFailure(err);
  };
  const deadline = setTimeout(() => fail(new Error(`no result after ${deadlineMs / 1000} s (hang?)`)), deadlineMs);
  const race = (promise) => Promise.race([promise, failed]);

  const threadsIdle = threads();
  const rssIdleMB = rssMB();

  // Start: every child sends { ready: true } first, then echoes what it gets.
  let readyCount = 0;
  let allReady;
  const ready = new Promise((resolve) => (allReady = resolve));
  // Echo phase state: counted per child, so that a starved child shows.
  let echoing = false;
  let next = 0;
  const received = new Array(n).fill(0);
  let inFlight = 0;
  let drained = null;

  const t0 = now();
  for (let k = 0; k < n; k++) {
    const child = fork(ECHO, [], {});
    children.push(child);
    let first = true;
    child.on('message', (msg) => {
      if (first) {
        first = false;
        if (!msg || msg.ready !== true) fail(new Error(`child ${k}: expected { ready: true } first`));
        else if (++readyCount === n) allReady(now());
        return;
      }
      if (!msg || typeof msg.i !== 'number' || msg.s !== SMALL) {
        fail(new Error(`child ${k}: unexpected echo ${JSON.stringify(msg)}`));
        return;
      }
      received[k]++;
      if (echoing) child.send({ i: next++, s: SMALL });
      else if (--inFlight === 0 && drained) drained();
    });
    child.on('error', (err) => fail(new Error(`child ${k}: 'error' ${err.code ?? ''} ${err.message}`)));
    child.on('exit', (code, signal) => {
      if (!stopping) fail(new Error(`child ${k} (pid ${child.pid}) exited early (code ${code}, signal ${signal})`));
    });
  }
  const forkLoopMs = millis(t0, now());
  const readyMs = millis(t0, await race(ready));
  const threadsLive = threads();
  const rssLiveMB = rssMB();

  // Every child echoes at once, `window` messages in flight on each.
  echoing = true;
  for (const child of children) for (let w = 0; w < window; w++) child.send({ i: next++, s: SMALL });
  await race(sleep(warmMs));
  const count = () => received.reduce((sum, c) => sum + c, 0);
  const start = { time: now(), count: count(), cpu: process.cpuUsage(), busy: machineBusyMicros() };
  const perChildStart = [...received];
  let threadsEcho = 0;
  let rssEchoMB = 0;
  const sample = () => {
    threadsEcho = Math.max(threadsEcho, threads());
    rssEchoMB = Math.max(rssEchoMB, rssMB());
  };
  const sampler = setInterval(sample, Math.max(10, ms / 20));
  await race(sleep(ms));
  clearInterval(sampler);
  sample();
  const end = { time: now(), count: count(), cpu: process.cpuUsage(start.cpu), busy: machineBusyMicros() };
  const wallMicros = millis(start.time, end.time) * 1e3;
  const perChild = received.map((c, k) => c - perChildStart[k]);

  // Let what is in flight come back, so that no child is mid-echo when its channel closes.
  echoing = false;
  inFlight = n * window;
  await race(new Promise((resolve) => (drained = resolve)));

  // Close every channel: each child then exits by itself.
  stopping = true;
  const exited = children.map((child) =>
    child.exitCode !== null || child.signalCode !== null ? null : new Promise((resolve) => child.once('exit', resolve)),
  );
  for (const child of children) if (child.connected) child.disconnect();
  await race(Promise.all(exited));
  // Give threads that end after the last 'exit' a moment to go.
  await race(sleep(200));
  const threadsAfter = threads();
  clearTimeout(deadline);

  const total = end.count - start.count;
  const mean = total / n;
  return {
    n,
    threadsIdle,
    threadsLive,
    threadsEcho,
    threadsAfter,
    rssIdleMB,
    rssLiveMB,
    rssEchoMB,
    forkLoopMs,
    readyMs,
    rate: total / (wallMicros / 1e6),
    parentCores: (end.cpu.user + end.cpu.system) / wallMicros,
    machineCores: (end.busy - start.busy) / wallMicros,
    // The least-served child against the average: 1 is perfectly even.
    fairness: mean > 0 ? Math.min(...perChild) / mean : 0,
    seconds: millis(t0, now()) / 1e3,
  };
}

process.once('message', (msg) => {
  if (!msg || !msg.go) {
    finish({ error: `expected { go }, got ${JSON.stringify(msg)}` });
    return;
  }
  measure(msg.go).then(
    (result) => finish({ result }),
    (err) => finish({ error: err.message }),
  );
});
process.send({ ready: true, pid: process.pid });

'use strict';

// A forkline parent for the emfile scenario, run under a low RLIMIT_NOFILE (prlimit). argv: <forkline|node>
// <json|advanced> <seed>. It forks echo children until fork() fails, then checks that it still works for the
// children it has, runs out of fds completely (holding /dev/null open) to fork, send a handle and receive one at
// EMFILE, lets go, forks once more, and cleans up. It prints one JSON line with what it saw (the chaos parent
// judges it) and exits 0; after 25 s it gives up, kills its children and exits 1.

const fs = require('node:fs');
const net = require('node:net');
const path = require('node:path');

const [impl, serialization, seedText] = process.argv.slice(2);
const { fork } = impl === 'node' ? require('node:child_process') : require(path.join(__dirname, '..', '..'));
const { mulberry32 } = require('../rng');
const ECHO = path.join(__dirname, 'echo.js');
const MAX_CHILDREN = 300;

const rand = mulberry32(Number(seedText) >>> 0 || 1);

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));
function fdList() {
  const out = {};
  for (const fd of fs.readdirSync('/proc/self/fd')) {
    try {
      out[fd] = fs.readlinkSync(`/proc/self/fd/${fd}`);
    } catch {
      // the directory readdirSync had open
    }
  }
  return out;
}
const fdCount = () => Object.keys(fdList()).length;
const threadCount = () => fs.readdirSync('/proc/self/task').length;
const children = new Set();
const result = { impl, serialization, uncaught: [], warnings: [], ms: {} };
const t0 = Date.now();
let stepAt = t0;
// Marks the start of a step (and how long the one before took).
function step(name) {
  if (result.step) result.ms[result.step] = Date.now() - stepAt;
  stepAt = Date.now();
  result.step = name;
}

process.on('uncaughtException', (err) => result.uncaught.push(`${err && err.code} ${err && err.stack}`));
process.on('warning', (w) => result.warnings.push(`${w.name}: ${w.message}`));

function describe(err) {
  return {
    isError: err instanceof Error,
    code: err && err.code,
    syscall: err && err.syscall,
    message: err && String(err.message).slice(0, 200),
  };
}

// Forks one echo child; resolves with { child } once it answered a ping, or { failure } if fork() threw or the
// child emitted 'error' first.
function forkOne(pipe = rand() < 0.5) {
  const stdio = pipe ? ['ignore', 'pipe', 'ignore', 'ipc'] : ['ignore', 'ignore', 'ignore', 'ipc'];
  let child;
  try {
    child = fork(ECHO, [], { serialization, stdio });
  } catch (err) {
    return Promise.resolve({ failure: { how: 'throw', ...describe(err) } });
  }
  children.add(child);
  const rec = { child, events: [], errors: [], closed: false };
  child.on('disconnect', () => rec.events.push('disconnect'));
  child.on('exit', (code, signal) => {
    rec.events.push(`exit ${code} ${signal}`);
    // Node never emits 'close' for a child whose channel the parent disconnected (docs/api.md).
    if (impl === 'node') rec.closed = true;
  });
  child.on('close', () => {
    rec.events.push('close');
    rec.closed = true;
  });
  if (child.stdout) child.stdout.resume();
  return new Promise((resolve) => {
    child.on('error', (err) => {
      rec.errors.push(describe(err));
      resolve({ failure: { how: 'event', ...describe(err), hasSend: typeof child.send === 'function' }, rec });
    });
    if (typeof child.send !== 'function') return;
    child.once('message', () => resolve({ rec }));
    child.send({ ping: 0 });
  });
}

// Sends `count` numbered messages to a child and resolves with whether they came back in order.
function pingMany(rec, count) {
  return new Promise((resolve) => {
    let expected = 0;
    let ok = true;
    const timer = setTimeout(() => done(false), 5000);
    const onMessage = (msg) => {
      if (!msg || typeof msg.n !== 'number') return;
      if (msg.n !== expected) ok = false;
      if (++expected === count) done(ok);
    };
    function done(value) {
      clearTimeout(timer);
      rec.child.off('message', onMessage);
      resolve(value);
    }
    rec.child.on('message', onMessage);
    for (let i = 0; i < count; i++) rec.child.send({ n: i });
  });
}

async function pingAll(live) {
  const results = await Promise.all(live.map((rec) => pingMany(rec, 1 + Math.floor(rand() * 20))));
  return results.filter((ok) => !ok).length;
}

async function main() {
  // A first child and back, so that what is kept for good is in the baseline: forkline's, and libuv's reserve fd
  // for accept() at EMFILE (loop->emfile_fd, /dev/null, opened with the first stream: a piped stdout here).
  const warm = await forkOne(true);
  if (warm.failure) throw new Error(`the warm-up fork failed: ${JSON.stringify(warm.failure)}`);
  warm.rec.child.disconnect();
  while (!warm.rec.closed) await sleep(10);
  await sleep(100);
  const baselineFds = fdList();
  result.baseline = {
    fds: fdCount(),
    threads: threadCount(),
    limit: fs.readFileSync('/proc/self/limits', 'utf8').match(/Max open files\s+(\d+)/)[1],
  };

  // 1. Fork until it fails.
  step('fork until it fails');
  const live = [];
  for (let i = 0; i < MAX_CHILDREN; i++) {
    const got = await forkOne();
    if (got.failure) {
      result.firstFailure = got.failure;
      if (got.rec) await waitClosed([got.rec], 2000);
      break;
    }
    live.push(got.rec);
  }
  result.children = live.length;

  // 2. The children it has still work.
  step('ping');
  result.pingFailures = await pingAll(live);

  // 3. No fd left at all: fork, send a handle, receive a handle.
  step('at zero fds');
  const server = net.createServer().listen(0, '127.0.0.1');
  await new Promise((resolve) => server.once('listening', resolve));
  const hog = [];
  try {
    for (;;) hog.push(fs.openSync('/dev/null', 'r'));
  } catch (err) {
    result.hogError = err.code;
  }
  result.hogged = hog.length;
  const again = await forkOne();
  result.forkAtZero = again.failure || 'succeeded';
  if (again.rec && !again.failure) live.push(again.rec);
  if (live.length > 0) {
    const target = live[Math.floor(rand() * live.length)];
    step('send a handle at zero fds');
    result.sendAtZero = await new Promise((resolve) => {
      try {
        const ok = target.child.send({ handle: true }, server, (err) =>
          resolve({ callback: err ? describe(err) : null, ok }),
        );
      } catch (err) {
        resolve({ threw: describe(err) });
      }
    });
    step('receive a handle at zero fds');
    // The child sends a server of its own: no fd to receive it with.
    const back = await new Promise((resolve) => {
      const errors = [];
      const onError = (err) => errors.push(describe(err));
      target.child.on('error', onError);
      let handleCame = null;
      target.child.on('message', function onMessage(msg, handle) {
        if (msg && msg.give) {
          handleCame = !!handle;
          if (handle) handle.close();
        }
        if (msg && msg.after) {
          clearTimeout(timer);
          target.child.off('message', onMessage);
          target.child.off('error', onError);
          resolve({ errors, handleCame, afterCame: true });
        }
      });
      target.child.send({ give: true });
      // Sent once the server is listening, so after it.
      setTimeout(() => target.child.send({ after: true }), 200);
      const timer = setTimeout(() => resolve({ errors, handleCame, afterCame: false }), 5000);
    });
    result.receiveAtZero = back;
  }
  for (const fd of hog) fs.closeSync(fd);
  server.close();

  // 4. With fds again (a child or two let go): one more child, and every child still answers.
  step('recovery');
  const leaving = live.splice(0, Math.min(live.length, 2));
  for (const rec of leaving) rec.child.disconnect();
  result.leftClosed = await waitClosed(leaving, 5000);
  const last = await forkOne();
  result.forkAfter = last.failure || 'succeeded';
  if (!last.failure) live.push(last.rec);
  result.pingFailuresAfter = await pingAll(live);

  // 5. Clean up: every child disconnected and closed, fds and threads back to the baseline.
  step('cleanup');
  for (const rec of live) if (rec.child.connected) rec.child.disconnect();
  result.allClosed = await waitClosed(live, 10_000);
  result.lifecycles = live
    .map((rec) => rec.events.join(','))
    .filter((events) => events !== 'disconnect,exit 0 null,close');
  const deadline = Date.now() + 3000;
  while ((fdCount() > result.baseline.fds || threadCount() > result.baseline.threads) && Date.now() < deadline) {
    await sleep(25);
  }
  result.end = { fds: fdCount(), threads: threadCount() };
  result.extraFds = Object.entries(fdList())
    .filter(([fd, target]) => baselineFds[fd] !== target)
    .map(([fd, target]) => `${fd} -> ${target}`);
}

async function waitClosed(recs, ms) {
  const deadline = Date.now() + ms;
  while (recs.some((rec) => !rec.closed) && Date.now() < deadline) await sleep(10);
  return recs.every((rec) => rec.closed);
}

const guard = setTimeout(() => {
  for (const child of children) child.kill('SIGKILL');
  process.stdout.write(`${JSON.stringify({ ...result, error: 'timed out after 25 s' })}\n`);
  process.exit(1);
}, 25_000);

main().then(
  () => {
    clearTimeout(guard);
    step('done');
    process.stdout.write(`${JSON.stringify(result)}\n`);
  },
  (err) => {
    for (const child of children) child.kill('SIGKILL');
    process.stdout.write(`${JSON.stringify({ ...result, error: err.stack })}\n`);
    process.exit(1);
  },
);

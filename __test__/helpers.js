'use strict';

// Shared helpers for forkline's Node tests: real children, no mocks. Node's own fork() is the oracle, so most
// helpers take the fork function to use and tests run one scenario through both.

const assert = require('node:assert');
const fs = require('node:fs');
const path = require('node:path');
const os = require('node:os');

const nodeFork = require('node:child_process').fork;
const forklineFork = require('..').fork;

// The backend under test: 'native', or 'portable' (FORKLINE_BACKEND=portable, `npm run test:portable`).
const BACKEND = require('..').backend;

// A test's `skip` option for what only the native core does (the reason says what): false on the native backend,
// the reason on the portable one, where Node's own channel and cluster serve instead.
function nativeOnly(reason) {
  return BACKEND === 'native' ? false : `needs the native core: ${reason}`;
}

// node:test's `test`, skipping on the portable backend the tests that `reasons` names (title → what they need of the
// native core; a string: every test of the file). A test file lists what of it is native-only in one place, at its
// top, and its tests stay as they are.
function withNativeOnly(test, reasons) {
  const reasonFor = (name) =>
    typeof reasons === 'string' ? reasons : Object.hasOwn(reasons, name) ? reasons[name] : null;
  function nativeOnlyTest(name, options, fn) {
    const reason = reasonFor(name);
    const skip = reason === null ? false : nativeOnly(reason);
    if (!skip) return test(name, options, fn);
    return typeof options === 'function' ? test(name, { skip }, options) : test(name, { ...options, skip }, fn);
  }
  return Object.assign(nativeOnlyTest, test);
}

const FIXTURES = path.join(__dirname, 'fixtures');
const fixture = (name) => path.join(FIXTURES, name);

// The two implementations of fork(), by name; tests loop over these to compare.
const IMPLS = { node: nodeFork, forkline: forklineFork };

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

// Blocks this thread for `ms`: no event loop turn meanwhile, so only other threads and processes move.
const blockThread = (ms) => Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, ms);

// V8's gc(), without --expose-gc on the command line.
function exposedGc() {
  require('node:v8').setFlagsFromString('--expose-gc');
  return require('node:vm').runInNewContext('gc');
}

// A callback that must be called exactly `times` times before the test ends (checked in t.after).
function mustCall(t, fn = () => {}, times = 1) {
  let calls = 0;
  const where = new Error('mustCall created here').stack.split('\n')[2]?.trim();
  t.after(() => {
    assert.strictEqual(calls, times, `mustCall: expected ${times} call(s), got ${calls} (${where})`);
  });
  return function wrapped(...args) {
    calls++;
    return fn.apply(this, args);
  };
}

// A callback that must never be called.
function mustNotCall(msg = 'mustNotCall was called') {
  return (...args) => {
    assert.fail(`${msg}: ${args.map((a) => (a instanceof Error ? a.stack : JSON.stringify(a))).join(', ')}`);
  };
}

// The 'close' arguments of children that have closed (so that waiting for it after the fact does not hang).
const closed = new WeakMap();

// Forks with `forkFn` and makes sure the child is dead when the test ends.
function spawnChild(t, forkFn, modulePath, args, options) {
  const child = forkFn(modulePath, args, options);
  child.on('close', (...args) => closed.set(child, args));
  t.after(() => killQuietly(child));
  return child;
}

// The fields of /proc/<pid>/stat after the command name (fields[0] is the state, [1] the parent's pid, [19] the
// start time in clock ticks since boot), or null when there is no such process.
function statFields(pid) {
  try {
    const stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
    return stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  } catch {
    return null;
  }
}

// The start time of process `pid`, or null when there is no such process.
function startTime(pid) {
  return statFields(pid)?.[19] ?? null;
}

// A process the test did not start itself (a grandchild, a worker), named by its pid and its start time, taken
// while it runs: killQuietly() then never reaches another process that got the same pid later.
function processRef(pid) {
  return { pid, start: startTime(pid) };
}

// Kills a process of the test's unless it is gone: a ChildProcess (only until Node or forkline has reaped it:
// after that its pid may be anyone's, the system reuses pids and, with tests running side by side, does so within a
// run), or a processRef(). Never a bare pid.
function killQuietly(target, signal = 'SIGKILL') {
  if (target === null || typeof target !== 'object' || typeof target.pid !== 'number') return;
  const running =
    'start' in target
      ? target.start !== null && startTime(target.pid) === target.start
      : target.exitCode === null && target.signalCode === null;
  if (!running) return;
  try {
    process.kill(target.pid, signal);
  } catch {
    // already gone
  }
}

// Resolves with the arguments of the next `event` (rejects on 'error' unless event is 'error').
function once(emitter, event) {
  return new Promise((resolve, reject) => {
    const onEvent = (...args) => {
      emitter.removeListener('error', onError);
      resolve(args);
    };
    const onError = (err) => {
      emitter.removeListener(event, onEvent);
      reject(err);
    };
    emitter.once(event, onEvent);
    if (event !== 'error') emitter.once('error', onError);
  });
}

// Records the ChildProcess events in order, with their arguments (errors as their code).
const EVENTS = ['spawn', 'message', 'internalMessage', 'disconnect', 'exit', 'close', 'error'];
function recordEvents(child, events = EVENTS) {
  const log = [];
  for (const name of events) {
    child.on(name, (...args) => {
      if (name === 'message' || name === 'internalMessage') log.push([name, args[0]]);
      else if (name === 'error') log.push([name, args[0] && args[0].code]);
      else log.push([name, ...args]);
    });
  }
  return log;
}

// Resolves when the child (from spawnChild) has emitted 'close', or, if `noClose` (Node after child.disconnect()), 'exit' plus a
// short settle wait to show that nothing else follows.
async function untilDone(child, { noClose = false } = {}) {
  if (noClose) {
    if (child.exitCode === null && child.signalCode === null) {
      await new Promise((resolve) => child.once('exit', resolve));
    }
    await sleep(200);
    return;
  }
  await whenClosed(child);
}

// Resolves with the (code, signal) of the child's 'close' (from spawnChild), even if it was emitted already.
function whenClosed(child) {
  if (closed.has(child)) return Promise.resolve(closed.get(child));
  return new Promise((resolve) => child.once('close', (...args) => resolve(args)));
}

// Forks `modulePath` with `forkFn`, records its events, calls `act(child, firstMessage)` on the first message, and
// resolves once it is done (see untilDone) plus a short settle wait, so events that trail 'close' are seen too.
async function runScenario(t, forkFn, modulePath, args, options, { act, noClose = false } = {}) {
  const child = spawnChild(t, forkFn, modulePath, args, options);
  const log = recordEvents(child);
  if (act) child.once('message', (message) => act(child, message));
  await untilDone(child, { noClose });
  await sleep(50);
  return { child, log };
}

// Number of open fds in this process.
function fdCount() {
  return fs.readdirSync('/proc/self/fd').length;
}

function fdList() {
  const out = [];
  for (const fd of fs.readdirSync('/proc/self/fd')) {
    try {
      out.push(`${fd} -> ${fs.readlinkSync(`/proc/self/fd/${fd}`)}`);
    } catch {
      // the readdir handle itself
    }
  }
  return out;
}

// Waits (up to `settleMs`) for the fd count to come back to `before`, then asserts it did.
async function assertNoFdLeak(before, settleMs = 2000) {
  const deadline = Date.now() + settleMs;
  let now = fdCount();
  while (now > before && Date.now() < deadline) {
    await sleep(25);
    now = fdCount();
  }
  assert.ok(now <= before, `fd leak: ${before} fds before, ${now} after:\n${fdList().join('\n')}`);
}

// The state letter of /proc/<pid>/stat, or null when the process is gone.
function procState(pid) {
  return statFields(pid)?.[0] ?? null;
}

// Asserts the (exited) child is neither running nor a zombie: /proc/<pid> is gone, allowing a short settle wait.
async function assertReaped(pid, settleMs = 1000) {
  assert.strictEqual(typeof pid, 'number');
  const deadline = Date.now() + settleMs;
  let state = procState(pid);
  while (state !== null && Date.now() < deadline) {
    await sleep(25);
    state = procState(pid);
  }
  assert.ok(state === null || state !== 'Z', `child ${pid} is a zombie`);
  assert.strictEqual(state, null, `child ${pid} still exists (state ${state})`);
}

function isAlive(pid) {
  const state = procState(pid);
  return state !== null && state !== 'Z';
}

// Waits until `predicate()` is true, polling; fails after `ms`.
async function waitUntil(predicate, ms = 5000, what = 'condition') {
  const deadline = Date.now() + ms;
  while (!(await predicate())) {
    if (Date.now() > deadline) assert.fail(`timed out waiting for ${what}`);
    await sleep(20);
  }
}

// A scratch directory removed when the test ends.
function tmpDir(t) {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'forkline-test-'));
  t.after(() => fs.rmSync(dir, { recursive: true, force: true }));
  return dir;
}

// Replaces the test runner's 'uncaughtException' handlers with `handler` until the test ends, so that a throw
// from an event listener can be observed instead of failing the test.
function captureUncaught(t, handler) {
  const saved = process.listeners('uncaughtException');
  process.removeAllListeners('uncaughtException');
  process.on('uncaughtException', handler);
  t.after(() => {
    process.removeListener('uncaughtException', handler);
    for (const listener of saved) process.on('uncaughtException', listener);
  });
}

module.exports = {
  BACKEND,
  nativeOnly,
  withNativeOnly,
  IMPLS,
  nodeFork,
  forklineFork,
  fixture,
  sleep,
  blockThread,
  exposedGc,
  mustCall,
  mustNotCall,
  spawnChild,
  processRef,
  statFields,
  killQuietly,
  once,
  recordEvents,
  untilDone,
  whenClosed,
  runScenario,
  fdCount,
  fdList,
  assertNoFdLeak,
  procState,
  assertReaped,
  isAlive,
  waitUntil,
  tmpDir,
  captureUncaught,
};

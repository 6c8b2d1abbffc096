'use strict';

// Runs one chaos round: a scenario (chaos/scenarios/<name>.js) with a seed, bounded in time, then the after-round
// invariants (chaos/invariants.js) against a snapshot taken just before it. Used by the driver (chaos/run.js) and by
// the short form in __test__/chaos.test.js. Every process a round starts carries the round's token in its
// environment, so that whatever it leaves (orphans included) is found and killed.

const fs = require('node:fs');
const net = require('node:net');
const path = require('node:path');
const nodeChildProcess = require('node:child_process');
const { Rng, hex } = require('./rng');
const inv = require('./invariants');
const knownBugs = require('./known-bugs');

const ROOT = path.join(__dirname, '..');
const CHILDREN = path.join(__dirname, 'children');
const forkline = require(ROOT);

const SCENARIOS = ['kill-burst', 'kill-handoff', 'kill-primary', 'hostile-peer', 'emfile'];

function loadScenario(name) {
  if (!SCENARIOS.includes(name) && name !== 'selftest')
    throw new Error(`unknown scenario ${name} (one of: ${SCENARIOS.join(', ')})`);
  return require(path.join(__dirname, 'scenarios', `${name}.js`));
}

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

// A token for every round of this process: `<run>.<n>`.
const RUN_ID = `${process.pid}.${Date.now().toString(36)}`;
let rounds = 0;

function killPid(pid) {
  if (typeof pid !== 'number') return;
  try {
    process.kill(pid, 'SIGKILL');
  } catch {
    // gone
  }
}

// Kills everything any round of this process started that is still there (SIGINT, an uncaught exception, exit):
// our descendants and whatever carries one of our rounds' tokens. By pid, found in /proc just now, so that no pid
// reused since by someone else's process is hit.
function killEverything() {
  return inv.killLeftovers(`${RUN_ID}.`, { prefix: true });
}

// The environment of a process a round starts: ours minus what would make it something else (a test runner's
// child, a cluster worker, a child of our own parent's channel), plus the round's token.
function childEnv(token, extra = {}) {
  const env = { ...process.env, ...extra, [inv.TOKEN_VAR]: token };
  for (const key of [
    'NODE_TEST_CONTEXT',
    'NODE_UNIQUE_ID',
    'NODE_CHANNEL_FD',
    'NODE_CHANNEL_SERIALIZATION_MODE',
    'FORKLINE_CHILD_RUNTIME',
    'NODE_CLUSTER_SCHED_POLICY',
  ]) {
    if (!(key in extra)) delete env[key];
  }
  return env;
}

class RoundTimeout extends Error {}

// What a scenario gets: the seeded draws, processes started with the round's token, and its problems and numbers.
class Round {
  constructor({ scenario, variant, seed, timeoutMs }) {
    this.scenario = scenario;
    this.variant = variant;
    this.seed = seed;
    this.rng = new Rng(seed);
    this.token = `${RUN_ID}.${++rounds}`;
    this.timeoutMs = timeoutMs;
    this.problems = [];
    this.stats = {};
    this.phase = 'start';
    this.over = false;
    this.deferred = [];
    this.children = [];
    // Channel fds of children whose EOF never came (see checkLifecycle): their leak is that problem, not another.
    this.stuckFds = new Set();
  }

  env(extra) {
    return childEnv(this.token, extra);
  }

  // forkline's fork(), the child tagged with the round's token and remembered.
  fork(modulePath, args = [], options = {}) {
    const child = forkline.fork(modulePath, args, { ...options, env: this.env(options.env) });
    this.children.push(child);
    return child;
  }

  // node:child_process spawn() (for what is no forkline child: a cluster primary, a parent under a low fd limit).
  spawn(file, args = [], options = {}) {
    const child = nodeChildProcess.spawn(file, args, { ...options, env: this.env(options.env) });
    this.children.push(child);
    return child;
  }

  child(name) {
    return path.join(CHILDREN, name);
  }

  // Records a forkline child's lifecycle events, 'error' events and piped stdout/stderr.
  watch(child, label) {
    const rec = {
      child,
      label,
      pid: child.pid,
      channelFd: child.channel ? child.channel.fd : undefined,
      events: [],
      errors: [],
      out: '',
      err: '',
      isClosed: false,
      exitAt: null,
    };
    for (const name of ['disconnect', 'exit', 'close']) child.on(name, (...args) => rec.events.push([name, ...args]));
    child.on('exit', () => (rec.exitAt = Date.now()));
    child.on('error', (err) => rec.errors.push(err));
    if (child.stdout) child.stdout.setEncoding('utf8').on('data', (d) => (rec.out += d));
    if (child.stderr) child.stderr.setEncoding('utf8').on('data', (d) => (rec.err += d));
    rec.closed = new Promise((resolve) =>
      child.once('close', () => {
        rec.isClosed = true;
        resolve();
      }),
    );
    return rec;
  }

  // Whether a watched child is done with: closed, or exited without its channel's EOF for over `ms` (forkline
  // emits 'disconnect' before 'exit' for a child that dies; checkLifecycle reports it).
  done(rec, ms = 1500) {
    if (rec.isClosed) return true;
    const disconnected = rec.events.some(([name]) => name === 'disconnect');
    return rec.exitAt !== null && !disconnected && Date.now() - rec.exitAt > ms;
  }

  // Checks what a watched child went through, once it closed: 'disconnect', 'exit' and 'close' once each,
  // 'disconnect' before 'exit' before 'close', and the exit wanted ({ signal: 'SIGKILL' } or { code: 0 }); 'error'
  // events only with codes in `errors`. A child that exited while its channel never reported EOF is one problem,
  // 'no-eof' (its missing 'disconnect' and 'close' and the channel's fd left open follow from it); an EOF that
  // came after 'exit' is 'exit-before-disconnect' (the README promises 'disconnect', 'exit', 'close').
  checkLifecycle(rec, { signal = null, code = null, errors = [] } = {}) {
    const count = (name) => rec.events.filter(([n]) => n === name).length;
    const order = rec.events.map(([n]) => n);
    const tail = rec.err ? ` (stderr: ${rec.err.trim().split('\n').slice(-3).join(' | ')})` : '';
    if (count('exit') === 1 && count('disconnect') === 0) {
      this.problem(
        'no-eof',
        `${rec.label}: 'exit' came, but the channel's EOF never did: no 'disconnect', 'close' ${count('close')} ` +
          `times, connected = ${rec.child.connected}`,
      );
      if (rec.child.connected && rec.channelFd !== undefined) this.stuckFds.add(String(rec.channelFd));
    } else {
      for (const name of ['disconnect', 'exit', 'close']) {
        this.check(count(name) === 1, 'events', () => `${rec.label}: '${name}' emitted ${count(name)} times${tail}`);
      }
      this.check(
        order.indexOf('disconnect') < order.indexOf('exit') && order.indexOf('exit') < order.indexOf('close'),
        order.indexOf('exit') < order.indexOf('disconnect') ? 'exit-before-disconnect' : 'events',
        () => `${rec.label}: events in the order ${order.join(', ')}`,
      );
    }
    const exit = rec.events.find(([n]) => n === 'exit');
    if (exit) {
      this.check(
        exit[1] === code && exit[2] === signal,
        'exit',
        () => `${rec.label}: exited (${exit[1]}, ${exit[2]}), expected (${code}, ${signal})${tail}`,
      );
    }
    for (const err of rec.errors) {
      this.check(
        err instanceof Error && errors.includes(err.code),
        'error-event',
        () => `${rec.label}: unexpected 'error' event ${err && err.code}: ${err && err.message}`,
      );
    }
  }

  // Runs at the end of the round (also after a timeout or a throw), last first.
  defer(fn) {
    this.deferred.push(fn);
  }

  problem(id, message) {
    this.problems.push({ id, message });
  }

  check(ok, id, message) {
    if (!ok) this.problem(id, typeof message === 'function' ? message() : message);
    return !!ok;
  }

  add(key, n = 1) {
    this.stats[key] = (this.stats[key] || 0) + n;
  }

  set(key, value) {
    this.stats[key] = value;
  }

  sleep(ms) {
    return sleep(ms);
  }

  // Waits for `predicate()` up to `ms`; false (and a problem `id`) if it never held.
  async waitFor(predicate, ms, id, message) {
    const deadline = Date.now() + ms;
    while (!predicate()) {
      if (Date.now() > deadline || this.over) {
        if (id) this.problem(id, typeof message === 'function' ? message() : message);
        return false;
      }
      await sleep(10);
    }
    return true;
  }

  async cleanup() {
    while (this.deferred.length > 0) {
      const fn = this.deferred.pop();
      try {
        await fn();
      } catch (err) {
        this.problem('cleanup', `cleanup failed: ${err && err.stack}`);
      }
    }
  }
}

// Runs `scenario` (a name) once. Returns { scenario, variant, seed, ok, problems, known, stats, ms }: `problems`
// are the failures, `known` the failures that the known-bugs table excuses (unless `knownBugs` is true, which
// counts them as failures). `settleMs` bounds each after-round wait (default: 3 s for fds and threads, 6 s for
// processes).
async function runRound({ scenario: name, variant, seed, knownBugs: strict = false, timeoutMs, settleMs }) {
  const scenario = loadScenario(name);
  if (!variant) variant = scenario.variants[seed % scenario.variants.length];
  if (!scenario.variants.includes(variant)) throw new Error(`unknown variant ${name}/${variant}`);
  const round = new Round({ scenario: name, variant, seed, timeoutMs: timeoutMs ?? scenario.timeoutMs ?? 30_000 });
  const started = Date.now();
  const before = inv.snapshot();
  let timer;
  try {
    await Promise.race([
      scenario.run(round, variant),
      new Promise((resolve, reject) => {
        timer = setTimeout(() => reject(new RoundTimeout()), round.timeoutMs);
      }),
    ]);
  } catch (err) {
    if (err instanceof RoundTimeout) {
      round.problem('timeout', `the round did not finish within ${round.timeoutMs} ms (phase: ${round.phase})`);
    } else {
      round.problem('exception', `the scenario threw: ${err && err.stack}`);
    }
  } finally {
    clearTimeout(timer);
    round.over = true;
  }
  // A child of the round still alive here was not waited for: that is a leak the scenario failed to see.
  const alive = round.children.filter((c) => c.exitCode === null && c.signalCode === null && inv.isAlive(c.pid));
  if (alive.length > 0 && round.problems.length === 0) {
    round.problem('process-leak', `child(ren) still running after the round: ${alive.map((c) => c.pid).join(', ')}`);
  }
  for (const child of alive) killPid(child.pid);
  await round.cleanup();
  const settle = settleMs === undefined ? {} : { fdMs: settleMs, threadMs: settleMs, processMs: settleMs };
  const after = await inv.checkAfterRound(before, { token: round.token, ...settle });
  for (const p of after) round.problems.push(...blameStuckChannels(round, p));
  if (after.some((p) => p.id === 'process-leak')) inv.killLeftovers(round.token);

  const excuse = knownBugs.excuse(name, variant);
  const known = [];
  const problems = [];
  for (const p of round.problems) {
    const reason = excuse(p);
    if (reason && !strict) known.push({ ...p, reason });
    else problems.push(p);
  }
  return {
    scenario: name,
    variant,
    seed,
    ok: problems.length === 0,
    problems,
    known,
    stats: round.stats,
    ms: Date.now() - started,
  };
}

// A child whose channel never saw EOF (problem 'no-eof') leaves its channel's fd open and may leave the channel's
// parked reader thread (forkline-burst): those are that problem ('no-eof-fd', 'no-eof-thread'), not new ones.
function blameStuckChannels(round, p) {
  const fmt = inv.brief;
  if (p.id === 'fd-leak' && round.stuckFds.size > 0) {
    const stuck = p.fds.filter(([fd]) => round.stuckFds.has(fd));
    const rest = p.fds.filter(([fd]) => !round.stuckFds.has(fd));
    const out = [];
    if (stuck.length > 0) {
      const list = fmt(stuck.map(([fd, target]) => `fd ${fd} -> ${target}`));
      out.push({ id: 'no-eof-fd', message: `the channel(s) that never saw EOF kept their fd(s) open: ${list}` });
    }
    if (rest.length > 0) {
      const list = fmt(rest.map(([fd, target]) => `fd ${fd} -> ${target}`));
      out.push({ id: 'fd-leak', message: `${rest.length} fd(s) left open: ${list}` });
    }
    return out;
  }
  if (p.id === 'thread-leak' && round.stuckFds.size > 0) {
    const parked = p.threads.filter(([, name]) => name === 'forkline-burst').slice(0, round.stuckFds.size);
    const rest = p.threads.filter((t) => !parked.includes(t));
    const out = [];
    if (parked.length > 0) {
      const list = fmt(parked.map(([tid, name]) => `${name} (${tid})`));
      out.push({ id: 'no-eof-thread', message: `the reader thread(s) of channels that never saw EOF stayed: ${list}` });
    }
    if (rest.length > 0) {
      const list = fmt(rest.map(([tid, name]) => `${name} (${tid})`));
      out.push({ id: 'thread-leak', message: `${rest.length} thread(s) left: ${list}` });
    }
    return out;
  }
  return [p];
}

// Brings up, once, what a process keeps for good after first use, so that the first round does not count it as a
// leak: forkline's first child (both serializations, both child runtimes, a handle each way, a message larger than
// a socket holds, which starts the reactor and its epoll and eventfd even without pidfds), libuv's threadpool and
// its signal pipe (a node:child_process spawn).
async function warmUp() {
  const token = `${RUN_ID}.warmup`;
  await fs.promises.stat(__filename);
  await new Promise((resolve) => {
    const child = nodeChildProcess.spawn('true', [], { stdio: 'ignore', env: childEnv(token) });
    child.on('error', resolve);
    child.on('close', resolve);
  });
  const server = net.createServer();
  await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve));
  // The portable backend has no child runtime (docs/api.md, "Portable mode").
  const runtimes = forkline.backend === 'native' ? ['node', 'forkline'] : ['node', 'node'];
  for (const [serialization, childRuntime] of [
    ['json', runtimes[0]],
    ['advanced', runtimes[1]],
  ]) {
    const child = forkline.fork(path.join(CHILDREN, 'echo.js'), [], {
      serialization,
      childRuntime,
      stdio: ['ignore', 'ignore', 'inherit', 'ipc'],
      env: childEnv(token),
    });
    const closed = new Promise((resolve) => child.once('close', resolve));
    const next = () => new Promise((resolve) => child.once('message', (msg, handle) => resolve([msg, handle])));
    child.send({ hello: true });
    await next();
    child.send({ big: 'w'.repeat(4 << 20) });
    await next();
    const got = next();
    child.send({ handle: true }, server);
    const [, handle] = await got;
    if (handle) handle.close();
    child.disconnect();
    await closed;
  }
  await new Promise((resolve) => server.close(resolve));
  await sleep(100);
}

module.exports = {
  ROOT,
  CHILDREN,
  SCENARIOS,
  RUN_ID,
  loadScenario,
  runRound,
  warmUp,
  killEverything,
  childEnv,
  hex,
  sleep,
};

'use strict';

// The benchmark harness, with no knowledge of any scenario: forks a child per measurement with each implementation,
// runs a scenario's `run` against it, interleaves the rounds, takes medians and writes the Markdown table rows.
// Every process it starts is killed when the bench ends, however it ends.
//
// A scenario, as the harness consumes it (the families in bench/scenarios/ build them):
//   id               what --only and --list name it by
//   child            the script forked for each measurement, a file in bench/children/; it first sends { ready: true }
//   childArgs        optional (params, impl) => the child's arguments
//   forkOptions      optional, passed to fork() (e.g. { serialization: 'advanced' })
//   params           the full-run sizes; --quick divides each by 10 (at least 1) ...
//   quickParams      ... unless the scenario gives its own --quick sizes here
//   timeoutSeconds   for the ready message and for `run`, each (halved under --quick); past it, a hang is reported
//   impls            optional: the implementations to compare (default IMPLS), each { name, fork(modulePath, args,
//                    options), unavailable?() => why it cannot run, or null }
//   rows             [{ name ('what, unit'), key (of run's result), higherIsBetter, format, impls? }]: one table row
//                    each; a row's `impls` picks its columns, the first one being the base of the ratios
//   describe         optional (values) => the progress line for one measurement (default: every row's value)
//   run(session, params)  on a ready child; returns named numbers (`seconds` is shown in the progress line). The
//                    clock never includes the spawn. The session (openSession below) has the child, its ready
//                    message, next() for control replies, onMessage for the hot path, fail(), defer(cleanup), notes.

const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');
const v8 = require('node:v8');
const vm = require('node:vm');
const nodeChildProcess = require('node:child_process');
const forkline = require('..');
const { busyShareOver } = require('./machine_cpu');

const CHILDREN = path.join(__dirname, 'children');

// A collection between measurements keeps one measurement's garbage (16 MB strings) out of the next one.
v8.setFlagsFromString('--expose-gc');
const gc = vm.runInNewContext('gc');

const now = process.hrtime.bigint;
const seconds = (t0, t1) => Number(t1 - t0) / 1e9;

// node ↔ node, forkline parent ↔ node child, and forkline on both ends (the child runtime, #7). Same child scripts.
const IMPLS = [
  { name: 'node:child_process', fork: (...args) => nodeChildProcess.fork(...args) },
  { name: 'forkline', fork: (...args) => forkline.fork(...args) },
  {
    name: 'forkline↔forkline',
    fork: (modulePath, args, options) => forkline.fork(modulePath, args, { ...options, childRuntime: 'forkline' }),
  },
];

const fmtRate = (v) => Math.round(v).toLocaleString('en-US');
const fmtMicros = (v) => v.toFixed(1);
const fmtMBs = (v) => v.toFixed(1);

// Nearest-rank percentile of sorted values.
function percentile(sorted, p) {
  return sorted[Math.max(0, Math.ceil(p * sorted.length) - 1)];
}

function mean(values) {
  let sum = 0;
  for (const v of values) sum += v;
  return sum / values.length;
}

function median(values) {
  const sorted = [...values].sort((a, b) => a - b);
  const mid = sorted.length >> 1;
  return sorted.length % 2 ? sorted[mid] : (sorted[mid - 1] + sorted[mid]) / 2;
}

// ---------------------------------------------------------------------------------------------------------------
// Sessions: one forked child, a message queue for control replies, and every way it can fail.

const live = new Set();

// Every process the bench starts goes in here, so that none outlives it.
function track(proc) {
  live.add(proc);
}

function untrack(proc) {
  live.delete(proc);
}

function killAll() {
  for (const child of live) {
    try {
      child.kill('SIGKILL');
    } catch {
      // Already gone.
    }
  }
}
process.on('exit', killAll);
for (const sig of ['SIGINT', 'SIGTERM']) {
  process.on(sig, () => {
    killAll();
    process.exit(130);
  });
}

function withTimeout(promise, ms, what) {
  let timer;
  const timeout = new Promise((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${what}: no answer after ${ms / 1000} s (hang?)`)), ms);
  });
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}

function openSession(impl, script, args, options) {
  const modulePath = path.join(CHILDREN, script);
  const child = options ? impl.fork(modulePath, args, options) : impl.fork(modulePath, args);
  live.add(child);
  const session = {
    child,
    // A hot-path handler set by a scenario; when null, messages queue for next().
    onMessage: null,
    queue: [],
    waiter: null,
    next() {
      if (this.queue.length) return Promise.resolve(this.queue.shift());
      return new Promise((resolve) => (this.waiter = resolve));
    },
    exited: null,
    // Rejects on the first failure: an early exit, an 'error' event, or fail() from a scenario's own handlers.
    failed: null,
    fail: null,
    closing: false,
    // Cleanups (servers, client sockets) registered by the scenario; measure() runs them however it ended.
    cleanups: [],
    defer(fn) {
      this.cleanups.push(fn);
    },
  };
  let fail;
  session.failed = new Promise((_, reject) => (fail = reject));
  session.failed.catch(() => {});
  session.fail = fail;
  session.exited = new Promise((resolve) => {
    child.once('exit', (code, signal) => {
      live.delete(child);
      if (!session.closing) fail(new Error(`child exited early (code ${code}, signal ${signal})`));
      resolve({ code, signal });
    });
  });
  child.on('error', (err) => fail(new Error(`'error' event: ${err.code ?? ''} ${err.message}`, { cause: err })));
  child.on('message', (msg) => {
    if (session.onMessage) session.onMessage(msg);
    else if (session.waiter) {
      const waiter = session.waiter;
      session.waiter = null;
      waiter(msg);
    } else session.queue.push(msg);
  });
  return session;
}

// Disconnects and waits for the child to exit on its own; a child still there after 5 s is killed and reported.
async function closeSession(session, notes) {
  session.closing = true;
  const { child } = session;
  if (child.exitCode === null && child.signalCode === null) {
    if (child.connected) child.disconnect();
    const exited = await withTimeout(session.exited, 5000, 'exit after disconnect()').catch(() => null);
    if (exited === null) {
      notes.push('child still running 5 s after disconnect(); killed');
      child.kill('SIGKILL');
      await withTimeout(session.exited, 5000, 'exit after SIGKILL').catch(() => notes.push('no exit after SIGKILL'));
    }
  }
}

// One measurement: fork, wait for ready, run, close. Returns { values }, { error } or, for an implementation that is
// not there (impl.unavailable() says why), { skipped }.
async function measure(scenario, impl, params, quick) {
  const notes = [];
  const unavailable = impl.unavailable ? impl.unavailable() : null;
  if (unavailable) return { skipped: unavailable, notes };
  gc();
  const childArgs = scenario.childArgs ? scenario.childArgs(params, impl) : [];
  const session = openSession(impl, scenario.child, childArgs, scenario.forkOptions);
  session.notes = notes;
  const limit = scenario.timeoutSeconds * (quick ? 0.5 : 1) * 1000;
  try {
    const ready = await withTimeout(Promise.race([session.next(), session.failed]), limit, 'ready');
    if (!ready || ready.ready !== true) throw new Error(`expected { ready: true } first, got ${JSON.stringify(ready)}`);
    session.ready = ready;
    const values = await withTimeout(Promise.race([scenario.run(session, params), session.failed]), limit, scenario.id);
    return { values, notes };
  } catch (err) {
    return { error: err.message, notes };
  } finally {
    session.onMessage = null;
    for (const cleanup of session.cleanups.reverse()) {
      await Promise.resolve()
        .then(() => cleanup(notes))
        .catch((err) => notes.push(`cleanup failed: ${err.message}`));
    }
    await closeSession(session, notes);
  }
}

// ---------------------------------------------------------------------------------------------------------------
// Rounds.

function scaledParams(params, scale) {
  const scaled = {};
  for (const [key, value] of Object.entries(params)) scaled[key] = Math.max(1, Math.round(value * scale));
  return scaled;
}

// Every round measures each implementation once, so that a disturbance on the machine hits all of them alike.
// Progress goes to stderr, one line per measurement. Returns { scenario, params, runs: { [impl name]: [result] } }.
async function runScenario(scenario, { rounds, quick }) {
  const params = quick && scenario.quickParams ? scenario.quickParams : scaledParams(scenario.params, quick ? 0.1 : 1);
  const impls = scenario.impls ?? IMPLS;
  const runs = Object.fromEntries(impls.map((impl) => [impl.name, []]));
  for (let round = 0; round < rounds; round++) {
    // Interleave, and alternate who goes first.
    const order = round % 2 === 0 ? impls : [...impls].reverse();
    for (const impl of order) {
      const result = await measure(scenario, impl, params, quick);
      runs[impl.name].push(result);
      const shown = result.error
        ? `ERROR ${result.error}`
        : result.skipped
          ? `skipped: ${result.skipped}`
          : scenario.describe
            ? scenario.describe(result.values)
            : scenario.rows.map((row) => `${row.format(result.values[row.key])} ${row.name.split(', ')[1]}`).join(', ');
      const notes = result.notes.length ? ` [${result.notes.join('; ')}]` : '';
      const took = result.values && result.values.seconds ? ` (${result.values.seconds.toFixed(2)} s)` : '';
      process.stderr.write(
        `[${scenario.id}] round ${round + 1}/${rounds} ${impl.name.padEnd(18)} ${shown}${took}${notes}\n`,
      );
    }
  }
  return { scenario, params, runs };
}

// ---------------------------------------------------------------------------------------------------------------
// Report.

function machineInfo() {
  const cpus = os.cpus();
  const git = (...args) => {
    try {
      const options = { cwd: path.join(__dirname, '..'), stdio: ['ignore', 'pipe', 'ignore'] };
      return nodeChildProcess.execFileSync('git', args, options).toString().trim();
    } catch {
      return null; // Not a git checkout.
    }
  };
  let commit = git('rev-parse', '--short', 'HEAD');
  if (commit && git('status', '--porcelain', '--', 'src', 'lib', 'index.js', 'Cargo.toml')) commit += '+uncommitted';
  let addonBuilt = null;
  try {
    addonBuilt = fs.statSync(path.join(__dirname, '..', 'forkline.node')).mtime.toISOString();
  } catch {
    // Loaded from elsewhere.
  }
  return {
    node: process.version,
    v8: process.versions.v8,
    cpus: cpus.length,
    availableParallelism: os.availableParallelism ? os.availableParallelism() : cpus.length,
    cpuModel: cpus[0] ? cpus[0].model : 'unknown',
    os: `${os.type()} ${os.release()} ${os.arch()}`,
    memoryGiB: Number((os.totalmem() / 1024 ** 3).toFixed(1)),
    loadAverage: os.loadavg().map((v) => Number(v.toFixed(2))),
    // Measured over half a second before the first row: the load average lags by minutes.
    busyAtStart: busyShareOver(500, cpus.length),
    forkline: require('../package.json').version,
    commit,
    addonBuilt,
  };
}

function machineLine(machine) {
  return (
    `node ${machine.node} (V8 ${machine.v8}) · ${machine.cpus} CPUs (${machine.cpuModel}) · ${machine.os} · ` +
    `${machine.memoryGiB} GiB · load ${machine.loadAverage.join(' ')} at start` +
    (machine.busyAtStart === null ? '' : ` (CPUs ${Math.round(machine.busyAtStart * 100)}% busy)`) +
    ` · forkline ${machine.forkline}` +
    (machine.commit ? ` (${machine.commit})` : '') +
    (machine.addonBuilt ? ` · forkline.node built ${machine.addonBuilt}` : '')
  );
}

// Table rows for runScenario's results, written into `lines`: one column per implementation of row.impls (by default
// IMPLS), then each one's ratio to the first. `table.rows` keeps them for the JSON output and `table.failures`
// counts the failed measurements, for the exit code.
function tableWriter(lines, rounds) {
  const table = { rows: [], failures: 0 };
  table.write = (group) => {
    for (const { scenario, params, runs } of group) {
      for (const row of scenario.rows) {
        const names = row.impls ?? IMPLS.map((impl) => impl.name);
        const sides = names.map((name) => {
          const ok = runs[name].filter((r) => !r.error && !r.skipped).map((r) => r.values[row.key]);
          const errors = runs[name].filter((r) => r.error).length;
          const skipped = runs[name].filter((r) => r.skipped).length;
          return { median: ok.length ? median(ok) : null, values: ok, errors, skipped };
        });
        for (const side of sides) table.failures += side.errors;
        const [base, ...others] = sides;
        const ratios = others.map((side) =>
          base.median === null || side.median === null
            ? null
            : row.higherIsBetter
              ? side.median / base.median
              : base.median / side.median,
        );
        const cell = (side) => {
          if (side.median === null && side.skipped && !side.errors) return 'skipped';
          const value = side.median === null ? 'error' : row.format(side.median);
          return side.errors ? `${value} (${side.errors}/${rounds} failed)` : value;
        };
        const shown = (ratio) => (ratio === null ? '–' : `${ratio.toFixed(2)}x`);
        lines.push(`| ${row.name} | ${sides.map(cell).join(' | ')} | ${ratios.map(shown).join(' | ')} |`);
        table.rows.push({
          row: row.name,
          scenario: scenario.id,
          params,
          higherIsBetter: row.higherIsBetter,
          ...Object.fromEntries(names.map((name, i) => [name, sides[i]])),
          ratio: ratios[0],
          ratios,
        });
      }
    }
  };
  return table;
}

// The end of the report: the implementations that were not there, then every error and note of every measurement.
function problemLines(lines, results) {
  const errors = [];
  const skips = new Set();
  for (const { scenario, runs } of results) {
    for (const impl of scenario.impls ?? IMPLS) {
      runs[impl.name].forEach((r, i) => {
        if (r.skipped) skips.add(`${impl.name}: ${r.skipped}`);
        if (r.error) errors.push(`${scenario.id} round ${i + 1} ${impl.name}: ${r.error}`);
        for (const note of r.notes) errors.push(`${scenario.id} round ${i + 1} ${impl.name}: ${note}`);
      });
    }
  }
  if (skips.size) {
    lines.push('');
    lines.push('Skipped (not measured, not a failure):');
    for (const s of skips) lines.push(`- ${s}`);
  }
  if (errors.length) {
    lines.push('');
    lines.push('Problems:');
    for (const e of errors) lines.push(`- ${e}`);
  }
}

module.exports = {
  CHILDREN,
  IMPLS,
  now,
  seconds,
  percentile,
  mean,
  median,
  fmtRate,
  fmtMicros,
  fmtMBs,
  withTimeout,
  openSession,
  closeSession,
  track,
  untrack,
  killAll,
  runScenario,
  machineInfo,
  machineLine,
  tableWriter,
  problemLines,
};

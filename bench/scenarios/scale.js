'use strict';

// Many children: one parent forks N unmodified echo children (bench/children/echo-child.js) with node:child_process
// or with forkline, at N = 1, 10, 100 and 200, and reports its own threads, RSS, the time from the first fork() to a
// first message from every child, and the echo rate with every child echoing at once. The measuring parent is a
// fresh process per measurement (bench/children/scale-parent.js, forked with node's own fork: that channel is only
// the harness's control channel), so that the harness and the other implementation pollute neither its thread count
// nor its memory. These rows have their own implementations and their own section of the report.

const fs = require('node:fs');
const os = require('node:os');
const nodeChildProcess = require('node:child_process');
const { fmtRate, median } = require('../harness');

// Messages in flight on each child while all echo.
const WINDOW = 8;
// forkline's parent may have this many threads more than node's (the target).
const EXTRA_THREADS = 3;

const scaleImpl = (impl, name) => ({ name, impl, fork: (...args) => nodeChildProcess.fork(...args) });
const SCALE_IMPLS = [scaleImpl('node', 'node:child_process'), scaleImpl('forkline', 'forkline')];
const COLUMNS = SCALE_IMPLS.map((impl) => impl.name);

const fmtCount = (v) => String(Math.round(v));
const fmtMB = (v) => v.toFixed(0);
const fmtMillis = (v) => v.toFixed(0);

// A hung measuring parent's children: the harness kills the parent; its children are found through /proc (the
// parent's threads' `children` lists) and killed too.
function childPids(pid) {
  try {
    return fs
      .readdirSync(`/proc/${pid}/task`)
      .flatMap((tid) => fs.readFileSync(`/proc/${pid}/task/${tid}/children`, 'utf8').trim().split(/\s+/))
      .filter(Boolean)
      .map(Number);
  } catch {
    return []; // The parent is gone (its children then lose their channel and exit), or no such file.
  }
}

// `quickN`: --quick runs at most 10 children.
function scaleScenario(n, quickN) {
  // Starting a node child costs tens of ms of CPU, on a shared machine: give the start room.
  const timeoutSeconds = 60 + Math.ceil(n / 2);
  const params = { n, window: WINDOW, warmMs: 500, ms: 2000, deadlineMs: (timeoutSeconds - 5) * 1000 };
  return {
    id: `scale-${n}`,
    impls: SCALE_IMPLS,
    child: 'scale-parent.js',
    childArgs: (_, impl) => [impl.impl],
    params,
    // The harness halves the timeout under --quick: so does the parent's own deadline.
    quickParams: { ...params, n: quickN, warmMs: 200, ms: 600, deadlineMs: (timeoutSeconds / 2 - 5) * 1000 },
    timeoutSeconds,
    rows: [
      { name: 'parent threads, all children live', key: 'threadsLive', higherIsBetter: false, format: fmtCount },
      { name: 'parent threads, all echoing', key: 'threadsEcho', higherIsBetter: false, format: fmtCount },
      { name: 'parent RSS, all echoing, MB', key: 'rssEchoMB', higherIsBetter: false, format: fmtMB },
      {
        name: 'first fork() → a message from every child, ms',
        key: 'readyMs',
        higherIsBetter: false,
        format: fmtMillis,
      },
      { name: 'aggregate echo, msgs/s', key: 'rate', higherIsBetter: true, format: fmtRate },
    ],
    describe: (v) =>
      `N=${v.n}: threads ${v.threadsIdle}/${v.threadsLive}/${v.threadsEcho}/${v.threadsAfter} ` +
      `(idle/live/echoing/after exit), RSS ${fmtMB(v.rssEchoMB)} MB, ready ${fmtMillis(v.readyMs)} ms, ` +
      `${fmtRate(v.rate)} msgs/s, parent ${v.parentCores.toFixed(2)} cores, machine ${v.machineCores.toFixed(2)}`,
    async run(session, go) {
      const { pid } = session.child;
      session.defer(() => {
        for (const child of childPids(pid)) {
          try {
            process.kill(child, 'SIGKILL');
          } catch {
            // Already gone.
          }
        }
      });
      session.child.send({ go });
      const reply = await session.next();
      if (reply && reply.error) throw new Error(`scale-parent: ${reply.error}`);
      if (!reply || !reply.result) throw new Error(`scale-parent: unexpected reply ${JSON.stringify(reply)}`);
      return reply.result;
    },
  };
}

// What most likely capped the echo rate, from the CPU the parent and the machine used over the measured run.
function limit(parentCores, machineCores) {
  if (parentCores === null || machineCores === null) return '–';
  if (parentCores >= 0.9) return "parent's JS thread";
  if (machineCores >= 0.9 * os.cpus().length) return `all ${os.cpus().length} CPUs busy`;
  return 'round trips';
}

// The scale section of the report: node vs forkline per N (tableRows, each row named with its N), the issue's
// targets, then every number the parent reported.
function scaleSection(lines, group, tableRows) {
  lines.push('');
  lines.push('## Many children: one parent, N echo children');
  lines.push('');
  lines.push('| row | node:child_process | forkline | forkline/node |');
  lines.push('|---|---:|---:|---:|');
  tableRows(
    group.map((result) => ({
      ...result,
      scenario: {
        ...result.scenario,
        rows: result.scenario.rows.map((row) => ({
          ...row,
          impls: COLUMNS,
          name: `N=${result.params.n}, ${row.name}`,
        })),
      },
    })),
  );
  lines.push('');
  lines.push(
    'forkline/node > 1 means forkline is better (threads, RSS and time: lower is better, the ratio is node/forkline).',
  );
  const { params } = group[0];
  lines.push(
    'Per measurement: a fresh parent (bench/children/scale-parent.js) forks N unmodified node children ' +
      "(bench/children/echo-child.js: `process.on('message', (m) => process.send(m))`, after sending " +
      '`{ ready: true }`), all in one loop; the clock runs from before the first fork() to the last first ' +
      `message. Then every child echoes \`{ i, s: 'hello' }\` with ${params.window} in flight each: ` +
      `${params.warmMs} ms of warm-up, ${params.ms} ms measured (msgs/s counts echoes received, summed over the ` +
      'children). Threads: entries of /proc/self/task; RSS: process.memoryUsage.rss(); while echoing, the most seen ' +
      'in 20 samples over the measured time.',
  );

  // The targets, per N, on the medians.
  const med = (runs, key) => {
    const ok = runs.filter((r) => !r.error && !r.skipped).map((r) => r.values[key]);
    return ok.length ? median(ok) : null;
  };
  lines.push('');
  lines.push(
    `Targets (#13): forkline's threads at most node's + ${EXTRA_THREADS} and the same at every N; RSS ≤ node's; ` +
      "echo ≥ 2x node's; fork → every first message no slower than node's.",
  );
  lines.push('');
  const forklineThreads = [];
  for (const { params: p, runs } of group) {
    const node = runs['node:child_process'];
    const fl = runs.forkline;
    const values = ['threadsEcho', 'threadsLive', 'rssEchoMB', 'rate', 'readyMs', 'rssIdleMB'].map((key) => [
      med(node, key),
      med(fl, key),
    ]);
    if (values.some(([a, b]) => a === null || b === null)) {
      lines.push(`- N=${p.n}: no result on one side (see Problems)`);
      continue;
    }
    const [
      [nodeEcho, flEcho],
      [nodeLive, flLive],
      [nodeRss, flRss],
      [nodeRate, flRate],
      [nodeReady, flReady],
      [nodeIdle, flIdle],
    ] = values;
    forklineThreads.push(flLive, flEcho);
    const mark = (ok) => (ok ? 'met' : 'MISSED');
    const extra = Math.max(flEcho - nodeEcho, flLive - nodeLive);
    lines.push(
      `- N=${p.n}: threads +${extra} over node (${mark(extra <= EXTRA_THREADS)}); ` +
        `RSS ${(flRss / nodeRss).toFixed(2)}x node's (${mark(flRss <= nodeRss)}; ` +
        `+${fmtMB(flRss - flIdle)} MB over its RSS before the first fork, node +${fmtMB(nodeRss - nodeIdle)}); ` +
        `echo ${(flRate / nodeRate).toFixed(2)}x (${mark(flRate >= 2 * nodeRate)}); ` +
        `ready ${(flReady / nodeReady).toFixed(2)}x node's time (${mark(flReady <= nodeReady)})`,
    );
  }
  if (forklineThreads.length) {
    const constant = Math.min(...forklineThreads) === Math.max(...forklineThreads);
    lines.push(
      `- forkline's parent threads over every N: ${Math.min(...forklineThreads)}–${Math.max(...forklineThreads)} ` +
        `(${constant ? 'constant' : 'NOT constant'} in N)`,
    );
  }

  lines.push('');
  lines.push(
    'Every number (medians). Threads: before the first fork / all live / all echoing / after every child exited. ' +
      'CPU over the measured echo: the parent (process.cpuUsage) and the whole machine (/proc/stat; other ' +
      "programs count too), in cores. Fairness: the least-served child's echoes over the mean (1 = even). Limit: " +
      "the parent's one JS thread when it used ≥ 0.9 cores, else every CPU when the machine was ≥ 90% busy (the " +
      'children, the kernel and whatever else runs), else the round trips (window × latency).',
  );
  lines.push('');
  lines.push(
    '| N | parent | threads | RSS idle / live / echoing, MB | fork() loop, ms | → all ready, ms | msgs/s | ' +
      'parent, cores | machine, cores | fairness | limit |',
  );
  lines.push('|---:|---|---|---|---:|---:|---:|---:|---:|---:|---|');
  for (const { scenario, params: p, runs } of group) {
    for (const impl of scenario.impls) {
      const m = (key, format) => {
        const v = med(runs[impl.name], key);
        return v === null ? '–' : format(v);
      };
      const two = (v) => v.toFixed(2);
      lines.push(
        `| ${p.n} | ${impl.name} | ${['threadsIdle', 'threadsLive', 'threadsEcho', 'threadsAfter']
          .map((key) => m(key, fmtCount))
          .join(' / ')} | ${['rssIdleMB', 'rssLiveMB', 'rssEchoMB'].map((key) => m(key, fmtMB)).join(' / ')} | ` +
          `${m('forkLoopMs', fmtMillis)} | ${m('readyMs', fmtMillis)} | ${m('rate', fmtRate)} | ` +
          `${m('parentCores', two)} | ${m('machineCores', two)} | ${m('fairness', two)} | ` +
          `${limit(med(runs[impl.name], 'parentCores'), med(runs[impl.name], 'machineCores'))} |`,
      );
    }
  }
  lines.push('');
}

module.exports = {
  scenarios: [scaleScenario(1, 1), scaleScenario(10, 2), scaleScenario(100, 5), scaleScenario(200, 10)],
  section: scaleSection,
};

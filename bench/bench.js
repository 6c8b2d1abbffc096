'use strict';

// forkline vs node:child_process in one run: same child scripts (written for Node's built-in process.send /
// process.on('message')), same payloads, same machine. Three columns: node ↔ node, a forkline parent with a plain
// node child, and forkline on both ends (the same child script under `childRuntime: 'forkline'`). Prints machine
// info and a Markdown table.
//
//   node bench/bench.js             full run: 5 interleaved rounds per row, median shown
//   node bench/bench.js --quick     smoke run: every N divided by 10 (cluster rows: a third of the load), 1 round
//   node bench/bench.js --json      also print the raw numbers (every round) as JSON after the table
//   --rounds=K                      rounds per row (default 5, 1 with --quick)
//   --only=ID[,ID...]               run only these scenarios (ids are listed by --list)
//   --list                          list the scenario ids and exit
//   --loader=wrk|node               cluster rows: the HTTP load generator (default: wrk if on PATH, else node)
//   --svg <file>                    also draw the forkline/node ratios as a bar chart, one bar per row (bench/svg.js)
//   --node <path>                   measure with this node binary (both sides and every child; default: the one
//                                   running this script)
//   --node-major <N>                measure with Node N from the version matrix's cache (bench/node.js says where)
//
// This file reads the command line, runs the scenarios of every family in FAMILIES and prints the report.
// bench/harness.js forks the children, measures, interleaves the rounds and writes the table rows. bench/scenarios/
// holds the families: channel.js (messages with JSON serialization), handles.js, advanced.js (`serialization:
// 'advanced'`), cluster.js and bus.js (forkline/bus vs workers wired to Redis by hand, on a redis-server it starts).
// bench/children/ holds the scripts they fork.
//
// To add a row: add a scenario to its family's `scenarios` in bench/scenarios/ (the order there is the order of the
// table; a new family also goes in FAMILIES below). What a scenario holds is described at the top of harness.js. A
// scenario forks one child per measurement, runs `run(session, params)` and returns named numbers; each of its `rows`
// picks one number. The harness interleaves the implementations, takes the median of the rounds, kills the child
// and reports errors, early exits and hangs as errors. A row that sends something new also gets its sentence in
// childProcessSection below. Progress goes to stderr so that stdout is only the report.
//
// The cluster scenarios (cluster-keepalive, cluster-close) are the same harness with their own list of
// implementations (`impls`: node:cluster and forkline's cluster, each with a scheduling policy) and their own section
// of the report: the forked child is a cluster primary (children/cluster-primary.js) that forks 2 HTTP workers
// (children/http-worker.js) and reports the port; the load comes from wrk or, without it, from
// children/http-load.js, both separate processes on 127.0.0.1.

// The Node to measure with: this script runs itself again under it (bench/node.js), before anything is measured.
const { resolveNode, isRunning } = require('./node');
const nodeArgs = process.argv.slice(2);
const spacedOption = (name) => {
  const eq = nodeArgs.find((a) => a.startsWith(`--${name}=`));
  if (eq !== undefined) return eq.slice(name.length + 3);
  const at = nodeArgs.indexOf(`--${name}`);
  return at === -1 ? undefined : (nodeArgs[at + 1] ?? '');
};
let NODE;
try {
  NODE = resolveNode({ node: spacedOption('node'), major: spacedOption('node-major') });
} catch (err) {
  console.error(`bench: ${err.message}`);
  process.exit(2);
}
if (NODE !== null && !isRunning(NODE)) {
  const run = require('node:child_process').spawnSync(NODE, [__filename, ...nodeArgs], { stdio: 'inherit' });
  if (run.error) {
    console.error(`bench: cannot run ${NODE}: ${run.error.message}`);
    process.exit(2);
  }
  process.exit(run.status ?? 1);
}
process.stderr.write(`bench: node ${process.version} (${process.execPath})\n`);

const fs = require('node:fs');
const path = require('node:path');
const {
  now,
  seconds,
  killAll,
  runScenario,
  machineInfo,
  machineLine,
  tableWriter,
  problemLines,
} = require('./harness');
const channel = require('./scenarios/channel');
const handles = require('./scenarios/handles');
const advanced = require('./scenarios/advanced');
const cluster = require('./scenarios/cluster');
const bus = require('./scenarios/bus');
const scale = require('./scenarios/scale');
const register = require('./scenarios/register');
const { barChart } = require('./svg');

// ---------------------------------------------------------------------------------------------------------------
// Command line.

const argv = process.argv.slice(2);
const flag = (name) => argv.includes(`--${name}`);
const option = (name) => {
  const arg = argv.find((a) => a.startsWith(`--${name}=`));
  return arg === undefined ? undefined : arg.slice(name.length + 3);
};
const QUICK = flag('quick');
const JSON_OUT = flag('json');
const ROUNDS = Number(option('rounds') ?? (QUICK ? 1 : 5));
const ONLY = option('only')?.split(',');
const LOADER_OPTION = option('loader');
// `--svg <file>` or `--svg=<file>`.
const SVG_FILE = option('svg') ?? (flag('svg') ? (argv[argv.indexOf('--svg') + 1] ?? '') : undefined);
if (SVG_FILE !== undefined && (SVG_FILE === '' || SVG_FILE.startsWith('--'))) throw new Error('--svg needs a file');
if (LOADER_OPTION !== undefined && !['wrk', 'node'].includes(LOADER_OPTION)) {
  throw new Error('--loader must be wrk or node');
}
if (!Number.isInteger(ROUNDS) || ROUNDS < 1) throw new Error('--rounds must be a positive integer');

// ---------------------------------------------------------------------------------------------------------------
// Main.

// The scenario families, in table order. Each exports `scenarios`; it may also export `prepare(options)`, run once
// (and awaited) before the first measurement when one of its scenarios is selected, and `section(lines, results, writeRows)`, its
// own part of the report (without one, its rows go in the child_process table), and `chartGroup`, its heading in the
// chart.
const FAMILIES = [channel, handles, advanced, cluster, scale, register, bus];
const SCENARIOS = FAMILIES.flatMap((family) => family.scenarios);
const familyOf = (scenario) => FAMILIES.find((family) => family.scenarios.includes(scenario));

// The table of the families without a section of their own (the channel, handles and advanced rows): node ↔ node
// against forkline in the two ways it runs (the harness's IMPLS), and what each row sends.
function childProcessSection(lines, group, writeRows) {
  lines.push('');
  lines.push(
    '| row | node ↔ node | forkline ↔ node child | forkline ↔ forkline | forkline↔node / node | forkline↔forkline / node |',
  );
  lines.push('|---|---:|---:|---:|---:|---:|');
  writeRows(group);
  lines.push('');
  lines.push(
    'A ratio > 1 means forkline is better than node ↔ node on that row: for the latency rows (µs, lower is better) ' +
      'the ratio is node/forkline. forkline ↔ node child: a forkline parent, a plain node child; forkline ↔ ' +
      "forkline: the same child script run by forkline's child runtime (`childRuntime: 'forkline'`).",
  );
  lines.push(
    'Echo rows: the parent sends `{ i, s }` with `s` a string of that many ASCII chars (KB = 1024, MB = 1,048,576 ' +
      'bytes), waits for the echo, sends the next; MB/s counts the payload one way (the echo doubles the traffic). ' +
      "Advanced echo rows: the same with `serialization: 'advanced'` and `{ i, b }`, `b` a Buffer of that many bytes.",
  );
  lines.push(
    'Plain fork-and-echo loop: a fresh parent process (children/pingpong-parent.js) forks a child that is only ' +
      "`process.on('message', (m) => process.send(m))` and times sequential `{ k }` round trips, as a user's first " +
      'ping-pong would; the round trip rows above time the same from the bench process itself. Pipelined echo: one ' +
      "echo child, that many `{ i, s: 'hello' }` in flight, each echo answered by the next send; msgs/s counts echoes.",
  );
  lines.push(
    "Advanced small objects: as parent → child (`{ i, s: 'hello' }` sent in one loop, the child reports at the end) " +
      "with `serialization: 'advanced'` and `{ i, s: 'hello', d: new Date(0), m: new Map([[1, 2]]) }`.",
  );
  lines.push(
    "Handles: the parent listens on 127.0.0.1 and passes each accepted socket with `child.send('sock', socket)`; " +
      'the child writes `ok` and ends it; a client loop in the parent ' +
      `(${handles.IN_FLIGHT} connections at a time) counts sockets/s from connect to close. With the clients in a ` +
      'process of their own (children/handle-clients.js, plain Node for every implementation) the parent only ' +
      "accepts and passes sockets, as a primary that hands connections to workers; its CPU counts the bench process's.",
  );
  const sizes = group.map(({ scenario, params }) => `${scenario.id} n=${params.n} warm-up=${params.warm}`);
  lines.push(`Per measurement (a fresh child each, clock started once it is ready): ${sizes.join(', ')}.`);
}

// The chart: each table row's first ratio (forkline parent ↔ node child, or forkline's cluster, over node), under
// the heading of its part of the report.
function writeChart(file, rows, machine) {
  const notes = [
    '> 1: forkline is better (for the latency rows the ratio is node/forkline). Log scale.',
    `${machine.cpus} CPUs (${machine.cpuModel}) · node ${machine.node} · ${machine.os} · ` +
      `forkline ${machine.forkline}${machine.commit ? ` (${machine.commit})` : ''} · ${new Date().toISOString().slice(0, 10)}`,
  ];
  const groupOf = (id) => {
    const family = familyOf(SCENARIOS.find((s) => s.id === id));
    if (family.chartGroup) return family.chartGroup;
    return family.section
      ? "cluster: forkline's cluster vs node:cluster (HTTP hello world, 2 workers)"
      : 'child_process: a forkline parent and a plain node child vs node ↔ node';
  };
  const title = `forkline / node, median of ${ROUNDS} round${ROUNDS === 1 ? '' : 's'}${QUICK ? ' (--quick)' : ''}`;
  const chartRows = rows.map((row) => ({ label: row.row, ratio: row.ratio, group: groupOf(row.scenario) }));
  fs.mkdirSync(path.dirname(path.resolve(file)), { recursive: true });
  fs.writeFileSync(file, barChart({ title, notes, rows: chartRows }));
  process.stderr.write(`bench: chart written to ${file}\n`);
}

async function main() {
  if (flag('list')) {
    for (const s of SCENARIOS) console.log(`${s.id}\t${s.rows.map((r) => r.name).join('; ')}`);
    return 0;
  }
  const scenarios = ONLY ? SCENARIOS.filter((s) => ONLY.includes(s.id)) : SCENARIOS;
  if (ONLY && scenarios.length !== ONLY.length) throw new Error(`unknown scenario in --only (see --list)`);
  for (const family of FAMILIES) {
    if (family.prepare && scenarios.some((s) => familyOf(s) === family))
      await family.prepare({ loader: LOADER_OPTION });
  }

  const started = now();
  const machine = machineInfo();
  const results = [];
  for (const scenario of scenarios) results.push(await runScenario(scenario, { rounds: ROUNDS, quick: QUICK }));
  const wall = seconds(started, now());

  // The table.
  const lines = [];
  lines.push(`# forkline vs node:child_process`);
  lines.push('');
  lines.push(machineLine(machine));
  lines.push('');
  lines.push(`Node binary: ${process.execPath} (both sides and every child).`);
  lines.push('');
  lines.push(`Median of ${ROUNDS} interleaved round${ROUNDS === 1 ? '' : 's'} per row${QUICK ? ' (--quick)' : ''}.`);
  const table = tableWriter(lines, ROUNDS);
  const childProcessResults = results.filter(({ scenario }) => !familyOf(scenario).section);
  if (childProcessResults.length) childProcessSection(lines, childProcessResults, table.write);
  for (const family of FAMILIES) {
    const group = results.filter(({ scenario }) => familyOf(scenario) === family);
    if (family.section && group.length) family.section(lines, group, table.write);
  }
  lines.push(`Total wall time ${wall.toFixed(1)} s.`);

  problemLines(lines, results);
  console.log(lines.join('\n'));
  if (SVG_FILE !== undefined) writeChart(SVG_FILE, table.rows, machine);

  if (JSON_OUT) {
    const raw = {
      machine,
      rounds: ROUNDS,
      quick: QUICK,
      wallSeconds: wall,
      rows: table.rows,
      runs: results.map(({ scenario, params, runs }) => ({ scenario: scenario.id, params, runs })),
    };
    console.log(`\n\`\`\`json\n${JSON.stringify(raw, null, 2)}\n\`\`\``);
  }
  return table.failures ? 1 : 0;
}

main().then(
  (code) => {
    killAll();
    process.exitCode = code;
    // Every child is gone and nothing of ours is pending: the process should end by itself. If a handle keeps it
    // alive, say so and leave anyway.
    setTimeout(() => {
      process.stderr.write('bench: the event loop was still alive 5 s after the end; exiting\n');
      process.exit(code || 2);
    }, 5000).unref();
  },
  (err) => {
    console.error(err);
    killAll();
    process.exit(1);
  },
);

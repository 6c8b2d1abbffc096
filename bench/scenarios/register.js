'use strict';

// forkline/register: an unmodified program (examples/register/workerpool/pipeline.js: a two-stage workerpool
// pipeline of small tasks on 2 forked workers, one task per worker at a time, so each task is a request and a reply
// on a worker's IPC channel) run as `node pipeline.js` and as `node --import forkline/register pipeline.js`, in the
// same run. The measuring child (bench/children/register-run.js, a fresh one per measurement) starts the program and
// reports the tasks/s it printed (its clock starts once its workers are up). These rows have their own
// implementations and their own section of the report.

const nodeChildProcess = require('node:child_process');
const { fmtRate } = require('../harness');

const impl = (name, mode) => ({ name, mode, fork: (...args) => nodeChildProcess.fork(...args) });
const REGISTER_IMPLS = [
  impl('node', 'node'),
  impl('node --import forkline/register', 'register'),
  // The flag with FORKLINE_CHILD_RUNTIME=forkline: the workers run on forkline's child runtime too (docs/api.md).
  impl('the flag, workers on the runtime', 'runtime'),
];
const COLUMNS = REGISTER_IMPLS.map((i) => i.name);

const params = { lines: 10000, workers: 2 };

const pipeline = {
  id: 'register-workerpool',
  impls: REGISTER_IMPLS,
  child: 'register-run.js',
  childArgs: (_, i) => [i.mode],
  params,
  quickParams: { lines: 1000, workers: 2 },
  timeoutSeconds: 120,
  rows: [
    {
      name: 'workerpool pipeline, 2 process workers, tasks/s',
      key: 'rate',
      higherIsBetter: true,
      format: fmtRate,
      impls: COLUMNS,
    },
    {
      name: 'the same, CPU of the program and its workers per 1000 tasks, ms',
      key: 'cpuPerKTask',
      higherIsBetter: false,
      format: (v) => v.toFixed(0),
      impls: COLUMNS,
    },
  ],
  describe: (v) =>
    `${v.tasks} tasks in ${v.ms.toFixed(0)} ms: ${fmtRate(v.rate)} tasks/s, ${v.cpuPerKTask.toFixed(0)} ms CPU per 1000`,
  async run(session, go) {
    session.child.send({ go });
    const reply = await session.next();
    if (reply && reply.error) throw new Error(`register-run: ${reply.error}`);
    if (!reply || !reply.result) throw new Error(`register-run: unexpected reply ${JSON.stringify(reply)}`);
    return reply.result;
  },
};

function registerSection(lines, group, tableRows) {
  lines.push('');
  lines.push('## forkline/register: an unmodified program, without and with the flag');
  lines.push('');
  lines.push(`| row | ${COLUMNS.join(' | ')} | flag/node | flag and runtime/node |`);
  lines.push('|---|---:|---:|---:|---:|---:|');
  tableRows(group);
  lines.push('');
  const { params: p } = group[0];
  lines.push(
    `A ratio > 1: the program is faster with the flag. examples/register/workerpool/pipeline.js parses ${p.lines} ` +
      `log lines in one task each and scores each record in another (${2 * p.lines} tasks) on a workerpool of ` +
      `${p.workers} forked workers (\`workerType: 'process'\`); workerpool gives a worker one task at a time, so ` +
      "each task is one message each way on the worker's channel. tasks/s from the program's own clock, started " +
      'once its workers are up; a fresh process per measurement. The third column adds FORKLINE_CHILD_RUNTIME=forkline ' +
      "to the program's environment: its workers then run on forkline's child runtime, forkline on both ends. " +
      'CPU: user + system time of the program and of the ' +
      'workers it reaped, start-up included (the ratios are node/flag: > 1, the flag costs less).',
  );
}

module.exports = {
  scenarios: [pipeline],
  section: registerSection,
  chartGroup: 'forkline/register: an unmodified program',
};

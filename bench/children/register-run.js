'use strict';

// Benchmark child for the forkline/register row: runs an unmodified program (examples/register/workerpool/
// pipeline.js, a workerpool pipeline on forked workers) as its own process, with `node pipeline.js` or
// `node --import forkline/register pipeline.js` and nothing else changed, and reports the tasks/s it printed.
//
//   forked by bench/scenarios/register.js: node bench/children/register-run.js <node|register|runtime>
//   (runtime: the flag, and FORKLINE_CHILD_RUNTIME=forkline in the program's environment)
//
// Protocol on its channel to the bench: { ready: true } at start; { go: { lines, workers } } → { result } or
// { error }. The program runs from the repository root, where `forkline/register` resolves to this checkout (the
// package's self-reference). It also reports the CPU the program and its workers used, per 1000 tasks, start-up
// included. When the bench's channel closes, a program still running is killed.

const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');
const process = require('node:process');
const { spawn } = require('node:child_process');

const [mode] = process.argv.slice(2);
if (!['node', 'register', 'runtime'].includes(mode) || !process.send) {
  console.error('usage: forked with an IPC channel: register-run.js <node|register|runtime>');
  process.exit(2);
}
const ROOT = path.join(__dirname, '..', '..');
const PROGRAM = path.join(ROOT, 'examples', 'register', 'workerpool', 'pipeline.js');
const FLAG = mode === 'node' ? [] : ['--import', 'forkline/register'];

let program = null;

// CPU time of this process's reaped children, in ms (/proc/self/stat cutime + cstime; USER_HZ is 100 on every Linux
// ABI): around one run of the program, its CPU and that of the workers it reaped.
function childrenCpuMs() {
  const stat = fs.readFileSync('/proc/self/stat', 'utf8');
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return (Number(fields[13]) + Number(fields[14])) * 10;
}

function run({ lines, workers }) {
  const env = { ...process.env };
  delete env.NODE_OPTIONS;
  for (const key of Object.keys(env)) if (key.startsWith('FORKLINE_')) delete env[key];
  // With the flag, the program's report (lib/register.js) shows that forkline served its workers.
  if (mode === 'runtime') env.FORKLINE_CHILD_RUNTIME = 'forkline';
  const report = mode !== 'node' ? path.join(os.tmpdir(), `forkline-register-bench-${process.pid}.jsonl`) : null;
  if (report) env.FORKLINE_REGISTER_REPORT = report;
  const cpu0 = childrenCpuMs();
  program = spawn(process.execPath, [...FLAG, PROGRAM, `--lines=${lines}`, `--workers=${workers}`], {
    cwd: ROOT,
    env,
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let stdout = '';
  let stderr = '';
  program.stdout.setEncoding('utf8').on('data', (d) => (stdout += d));
  program.stderr.setEncoding('utf8').on('data', (d) => (stderr += d));
  program.on('close', (code, signal) => {
    program = null;
    if (code !== 0) {
      process.send({ error: `pipeline.js exited with ${code ?? signal}: ${stderr.trim().slice(-500)}` });
      return;
    }
    let out;
    try {
      out = JSON.parse(stdout.trim().split('\n').pop());
    } catch (err) {
      process.send({ error: `pipeline.js printed no result (${err.message}): ${stdout.slice(-500)}` });
      return;
    }
    const notServed = report && unserved(report, workers);
    if (notServed) process.send({ error: notServed });
    else {
      const cpuPerKTask = ((childrenCpuMs() - cpu0) / out.tasks) * 1000;
      process.send({ result: { rate: out.tasksPerSecond, ms: out.ms, tasks: out.tasks, cpuPerKTask } });
    }
  });
}

// Why the report does not show the program's workers forked by forkline with their messages counted, or null.
function unserved(report, workers) {
  let text = '';
  try {
    text = fs.readFileSync(report, 'utf8');
    fs.unlinkSync(report);
  } catch (err) {
    return `no report from the program under the flag (${err.message})`;
  }
  const program = text
    .split('\n')
    .filter(Boolean)
    .map((line) => JSON.parse(line))
    .find((record) => record.argv[1] === PROGRAM);
  const forks = program
    ? program.forks.filter((f) => f.via === 'child_process.fork' && f.stats.messagesReceived > 0)
    : [];
  return forks.length === workers
    ? null
    : `forkline served ${forks.length} of the ${workers} workers: ${text.slice(0, 500)}`;
}

process.on('message', (message) => {
  if (message && message.go) run(message.go);
});
process.on('disconnect', () => {
  if (program) program.kill('SIGKILL');
});
process.send({ ready: true });

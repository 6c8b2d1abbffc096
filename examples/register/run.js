'use strict';

// Runs the example projects as their users run them, first as they are, then with forkline/register added and
// nothing else changed, and prints what forkline's channels counted in the second run:
//
//   node examples/register/run.js                 every project, as npm test runs them (__test__/register.test.js)
//   node examples/register/run.js --scale=20      the longer form: 20 times the tests per file and the requests
//   node examples/register/run.js jest cluster    some of them
//
// The test projects run with `npm test` (their package.json's script: `mocha`, `vitest run --pool=forks`, `jest`,
// `ava`); the flag goes in NODE_OPTIONS, as `npm test` users add it (mocha's run uses `--require`, the others
// `--import`). The cluster app runs as `node app.js`, the flag on the command line: `node --import forkline/register
// app.js`. The tools come from the repository's devDependencies (`npm install` at the root); forkline itself is
// linked into examples/register/node_modules, where `npm install` in a project would put it (its `file:` dependency).
// FORKLINE_REGISTER_REPORT (lib/register.js) says, per process, what forkline forked and what each channel counted.

const assert = require('node:assert');
const fs = require('node:fs');
const http = require('node:http');
const os = require('node:os');
const path = require('node:path');
const { spawn } = require('node:child_process');

const HERE = __dirname;
const ROOT = path.join(HERE, '..', '..');

// name → how it runs. `flag` is what the run with forkline adds to NODE_OPTIONS.
const PROJECTS = {
  mocha: { flag: '--require forkline/register', tool: 'mocha' },
  vitest: { flag: '--import forkline/register', tool: 'vitest' },
  jest: { flag: '--import forkline/register', tool: 'jest' },
  ava: { flag: '--import forkline/register', tool: 'ava' },
  cluster: { execArgv: ['--import', 'forkline/register'] },
};

// forkline where Node resolves `forkline/register` from the projects: examples/register/node_modules/forkline.
function linkForkline() {
  const dir = path.join(HERE, 'node_modules');
  const link = path.join(dir, 'forkline');
  const target = path.relative(dir, ROOT);
  let current = null;
  try {
    current = fs.readlinkSync(link);
  } catch {
    // Not there yet.
  }
  if (current === target) return;
  fs.mkdirSync(dir, { recursive: true });
  fs.rmSync(link, { force: true, recursive: true });
  fs.symlinkSync(target, link, 'dir');
}

// The environment of a run: this process's, with this Node first on PATH (npm and the tools' `#!/usr/bin/env node`
// then run on it), nothing of a forkline, test runner or npm script of ours leaking in (an outer `npm test` exports
// its package and prefix as npm_*), and the flag only when asked for.
function runEnv(extra) {
  const env = { ...process.env };
  for (const key of Object.keys(env)) {
    if (key === 'NODE_OPTIONS' || key === 'NODE_TEST_CONTEXT' || key.startsWith('FORKLINE_') || /^npm_/i.test(key)) {
      delete env[key];
    }
  }
  env.PATH = `${path.dirname(process.execPath)}${path.delimiter}${env.PATH || ''}`;
  env.npm_config_update_notifier = 'false';
  env.NO_COLOR = '1';
  return { ...env, ...extra };
}

// Runs under way, killed with their whole process group if this process exits first (a test runner's time-out).
const live = new Set();
process.on('exit', () => {
  for (const killTree of live) killTree();
});

// Starts a process in its own process group (so that a hung run's whole tree can be killed) and collects its output.
function start(command, args, options, timeoutMs) {
  const child = spawn(command, args, { ...options, detached: true, stdio: ['ignore', 'pipe', 'pipe'] });
  let stdout = '';
  let stderr = '';
  child.stdout.setEncoding('utf8').on('data', (d) => (stdout += d));
  child.stderr.setEncoding('utf8').on('data', (d) => (stderr += d));
  const killTree = () => {
    try {
      process.kill(-child.pid, 'SIGKILL');
    } catch {
      // Gone already.
    }
  };
  const timer = setTimeout(killTree, timeoutMs);
  live.add(killTree);
  const done = new Promise((resolve) => {
    child.on('close', (code, signal) => {
      clearTimeout(timer);
      live.delete(killTree);
      resolve({ code, signal, stdout, stderr });
    });
  });
  return { child, done, output: () => stdout, killTree };
}

// The report's records (one per process that ran the register module), [] if none wrote one.
function readReport(file) {
  if (!fs.existsSync(file)) return [];
  return fs
    .readFileSync(file, 'utf8')
    .split('\n')
    .filter(Boolean)
    .map((line) => JSON.parse(line));
}

// Every child forkline forked in the run, from every process's record.
function forksOf(records) {
  return records.flatMap((record) => record.forks.map((fork) => ({ ...fork, parent: record })));
}

// `npm test` in a test project. Resolves to { code, stdout, stderr, records }.
// The time-outs leave both runs of a project inside a test's 120 s (npm test's --test-timeout).
async function runTests(name, { withFlag, scale = 1, timeoutMs = 55_000 * scale }) {
  const report = path.join(fs.mkdtempSync(path.join(os.tmpdir(), `forkline-${name}-`)), 'report.jsonl');
  // The tools' own temp files (jest's cache, the compile cache vitest turns on) go in the run's directory, and with
  // it when the run is over.
  const extra = { EXAMPLE_SCALE: String(scale), FORKLINE_REGISTER_REPORT: report, TMPDIR: path.dirname(report) };
  if (withFlag) extra.NODE_OPTIONS = PROJECTS[name].flag;
  const run = start('npm', ['test'], { cwd: path.join(HERE, name), env: runEnv(extra) }, timeoutMs);
  const result = await run.done;
  const records = readReport(report);
  fs.rmSync(path.dirname(report), { recursive: true, force: true });
  return { ...result, records };
}

function get(port, url) {
  return new Promise((resolve, reject) => {
    http
      .get({ host: '127.0.0.1', port, path: url, agent: false }, (res) => {
        let body = '';
        res.setEncoding('utf8').on('data', (d) => (body += d));
        res.on('end', () => resolve({ status: res.statusCode, body }));
      })
      .on('error', reject);
  });
}

// The cluster app: started, sent `requests` requests (a few at a time), stopped with SIGTERM, as an operator would.
async function runCluster({ withFlag, scale = 1, timeoutMs = 45_000 * scale }) {
  const requests = 50 * scale;
  const report = path.join(fs.mkdtempSync(path.join(os.tmpdir(), 'forkline-cluster-')), 'report.jsonl');
  const execArgv = withFlag ? PROJECTS.cluster.execArgv : [];
  const env = runEnv({ WORKERS: '2', FORKLINE_REGISTER_REPORT: report });
  const run = start(process.execPath, [...execArgv, 'app.js'], { cwd: path.join(HERE, 'cluster'), env }, timeoutMs);
  const bodies = [];
  try {
    const port = await new Promise((resolve, reject) => {
      const poll = setInterval(() => {
        const match = /listening on [^\s]+:(\d+)/.exec(run.output());
        if (match) {
          clearInterval(poll);
          resolve(Number(match[1]));
        }
      }, 20);
      run.done.then((r) => {
        clearInterval(poll);
        reject(new Error(`the cluster app exited before listening: ${r.code} ${r.signal}\n${r.stdout}${r.stderr}`));
      });
    });
    for (let i = 0; i < requests; i += 5) {
      const batch = [];
      for (let j = i; j < Math.min(i + 5, requests); j++) batch.push(get(port, `/r${j}`));
      for (const { status, body } of await Promise.all(batch)) {
        assert.strictEqual(status, 200);
        bodies.push(body);
      }
    }
    run.child.kill('SIGTERM');
  } catch (err) {
    run.killTree();
    throw err;
  }
  const result = await run.done;
  const records = readReport(report);
  fs.rmSync(path.dirname(report), { recursive: true, force: true });
  return { ...result, records, requests, bodies };
}

function run(name, options) {
  return name === 'cluster' ? runCluster(options) : runTests(name, options);
}

async function main() {
  const args = process.argv.slice(2);
  const scaleArg = args.find((a) => a.startsWith('--scale='));
  const scale = scaleArg ? Number(scaleArg.slice('--scale='.length)) : 1;
  if (!Number.isInteger(scale) || scale < 1) throw new Error('--scale must be a positive integer');
  const names = args.filter((a) => !a.startsWith('--'));
  for (const name of names) if (!PROJECTS[name]) throw new Error(`unknown project ${name}`);
  linkForkline();
  let failed = 0;
  console.log(`node ${process.version}, scale ${scale}`);
  console.log('| project | without the flag | with the flag | forks by forkline | messages sent / received |');
  console.log('|---|---:|---:|---:|---:|');
  for (const name of names.length ? names : Object.keys(PROJECTS)) {
    const t0 = Date.now();
    const plain = await run(name, { withFlag: false, scale });
    const t1 = Date.now();
    const flagged = await run(name, { withFlag: true, scale });
    const t2 = Date.now();
    const forks = forksOf(flagged.records).filter((fork) => fork.stats);
    const sent = forks.reduce((sum, fork) => sum + fork.stats.messagesSent, 0);
    const received = forks.reduce((sum, fork) => sum + fork.stats.messagesReceived, 0);
    const status = (r, ms) => `${r.code === 0 ? 'passed' : `FAILED (${r.code ?? r.signal})`}, ${ms / 1000} s`;
    console.log(
      `| ${name} | ${status(plain, t1 - t0)} | ${status(flagged, t2 - t1)} | ${forks.length} | ${sent} / ${received} |`,
    );
    for (const r of [plain, flagged]) {
      if (r.code !== 0) {
        failed++;
        process.stderr.write(`${name}:\n${r.stdout}${r.stderr}\n`);
      }
    }
  }
  return failed ? 1 : 0;
}

if (require.main === module) {
  main().then(
    (code) => (process.exitCode = code),
    (err) => {
      console.error(err);
      process.exitCode = 1;
    },
  );
}

module.exports = { PROJECTS, linkForkline, run, forksOf, readReport };

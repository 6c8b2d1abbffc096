'use strict';

// Installing forkline as a user does: `npm pack` once (its prepack cross-builds the four prebuilt binaries with
// cargo-zigbuild and checks them), then `npm install <tarball>` in fresh apps: with the install script (the prebuilt
// binary is used, no cargo), with --ignore-scripts (lib/binding.js picks the prebuilt binary by itself), with a
// prebuilt binary that does not load (a source build with cargo that leaves only forkline.node), and the same
// without cargo or with a failing build (one clear line, non-zero exit); then where no prebuilt binary fits (another
// OS, simulated with FORKLINE_INSTALL_PLATFORM; a package without this platform's binary): the install succeeds with
// one line saying that the portable mode will serve. Each app that has the addon forks a child and gets its message
// echoed, with both child runtimes. The arm64 binary is installed and run for real by `npm run test:arm64`.
// `npm run test:install` runs this file alone, with a bound of 10 minutes rather than 2: from a clean clone the pack
// cross-builds the four prebuilt binaries (about 2 minutes of CPU on each of 2 cores, more on a busy machine) and the
// source build takes another.

const assert = require('node:assert');
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');
const { spawn, spawnSync } = require('node:child_process');
const { test, before, after } = require('node:test');
const { check, muslSymbols, highestGlibc, compare, GLIBC_BASELINE } = require('../scripts/elf');
const { cleanNpmEnv } = require('../scripts/npm_env');
const { PREBUILT_PLATFORMS } = require('../lib/addon_path');

const ROOT = path.join(__dirname, '..');
const PREBUILT = path.join('prebuilds', 'linux-x64-gnu', 'forkline.node');
const TARBALL_LIMIT = 5 * 1024 * 1024;

// Without cargo-zigbuild there is no prebuilt binary to test; CI installs it (.ci/run), so only there is it a failure.
const zigbuild = !spawnSync('cargo-zigbuild', ['--version'], { stdio: 'ignore' }).error;
const skip = zigbuild || process.env.CI ? false : 'needs `pip install ziglang cargo-zigbuild` (see docs/install.md)';

let tmp;
let tarball; // as packed
let badTarball; // the same with a prebuilt binary that does not load, as on another architecture or libc
let noneTarball; // the same without this platform's prebuilt binary

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
  const env = cleanNpmEnv({
    PATH: [bin, ...dirs].join(':'),
    HOME: home,
    npm_config_cache: path.join(tmp, 'npm-cache'),
  });
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
    env: cleanNpmEnv(),
    timeout: 540_000,
  });
  assert.strictEqual(packed.code, 0, packed.stderr);
  tarball = path.join(tmp, JSON.parse(packed.stdout.slice(packed.stdout.indexOf('[')))[0].filename);

  // The tarball's files as packed (for the ELF checks); the same package with its prebuilt binary replaced by a file
  // that is no shared library; and without it.
  for (const dir of ['unpacked', 'bad', 'none']) {
    fs.mkdirSync(path.join(tmp, dir));
    assert.strictEqual(spawnSync('tar', ['xzf', tarball, '-C', path.join(tmp, dir)]).status, 0);
  }
  fs.writeFileSync(path.join(tmp, 'bad', 'package', PREBUILT), 'not an ELF file\n');
  fs.rmSync(path.join(tmp, 'none', 'package', path.dirname(PREBUILT)), { recursive: true });
  badTarball = path.join(tmp, 'forkline-bad-prebuilt.tgz');
  noneTarball = path.join(tmp, 'forkline-no-prebuilt.tgz');
  assert.strictEqual(spawnSync('tar', ['czf', badTarball, '-C', path.join(tmp, 'bad'), 'package']).status, 0);
  assert.strictEqual(spawnSync('tar', ['czf', noneTarball, '-C', path.join(tmp, 'none'), 'package']).status, 0);
});

after(() => {
  if (tmp) fs.rmSync(tmp, { recursive: true, force: true });
});

test('the tarball holds the four prebuilt binaries, each fit for its platform, in under 5 MB', { skip }, () => {
  const prebuilds = path.join(tmp, 'unpacked', 'package', 'prebuilds');
  assert.deepStrictEqual(fs.readdirSync(prebuilds).sort(), [...PREBUILT_PLATFORMS].sort());
  const musl = muslSymbols();
  for (const platform of PREBUILT_PLATFORMS) {
    const file = path.join(prebuilds, platform, 'forkline.node');
    assert.deepStrictEqual(fs.readdirSync(path.dirname(file)), ['forkline.node']);
    assert.deepStrictEqual(check(file, platform, { musl }), [], platform);
  }
  const highest = highestGlibc(path.join(prebuilds, 'linux-arm64-gnu', 'forkline.node'));
  assert.ok(compare(highest, GLIBC_BASELINE) <= 0, `linux-arm64-gnu requires GLIBC_${highest}`);
  const size = fs.statSync(tarball).size;
  assert.ok(size < TARBALL_LIMIT, `the tarball takes ${size} bytes`);
});

// The checks read what they should: the build from source on this machine is linked against its own glibc (newer
// than the baseline), and a binary checked as another platform's fails on its machine and C library.
test('the ELF checks catch a newer glibc, another machine and another C library', { skip }, () => {
  const musl = muslSymbols();
  const own = check(path.join(ROOT, 'forkline.node'), 'linux-x64-gnu', { musl });
  assert.ok(compare(highestGlibc(path.join(ROOT, 'forkline.node')), GLIBC_BASELINE) > 0);
  assert.ok(
    own.some((p) => /above the baseline GLIBC_2\.17/.test(p)),
    own.join('\n'),
  );
  const x64 = path.join(tmp, 'unpacked', 'package', PREBUILT);
  const asArm64 = check(x64, 'linux-arm64-gnu', { musl });
  assert.deepStrictEqual(asArm64, [
    "ELF machine 62, not arm64's (183)",
    'needs ld-linux-x86-64.so.2, not a glibc library',
  ]);
  const asMusl = check(x64, 'linux-x64-musl', { musl });
  assert.ok(asMusl.includes("needs libc.so.6, not musl's libc"), asMusl.join('\n'));
  assert.ok(asMusl.includes('needs symbol version GLIBC_2.17: musl has none'), asMusl.join('\n'));
  const gnuOnly = asMusl.filter((p) => /which musl does not define$/.test(p));
  assert.ok(gnuOnly.length > 0, 'no glibc-only symbol found in a glibc build');
  const muslAsGnu = check(
    path.join(tmp, 'unpacked', 'package', 'prebuilds', 'linux-x64-musl', 'forkline.node'),
    'linux-x64-gnu',
    { musl },
  );
  assert.ok(muslAsGnu.includes('needs libc.so, not a glibc library'), muslAsGnu.join('\n'));
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
    const env = cleanNpmEnv({ TMPDIR: tmpdir });
    delete env.CARGO_TARGET_DIR;
    const dir = makeApp('app-source', badTarball);
    const { code, stdout, stderr } = await npmInstall(dir, badTarball, env);
    assert.strictEqual(code, 0, stderr);
    assert.match(stderr, /forkline: the prebuilt binary \(linux-x64-gnu\) does not load here; building/);
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

test(
  'a prebuilt binary that does not load and a build that fails: one clear line, non-zero exit',
  { skip },
  async () => {
    // cargo is there, but cannot run rustc.
    const env = cleanNpmEnv({ RUSTC: path.join(tmp, 'no-rustc') });
    const dir = makeApp('app-build-fails', badTarball);
    const { code, stdout, stderr } = await npmInstall(dir, badTarball, env);
    assert.notStrictEqual(code, 0);
    assert.match(stderr, /forkline: building the native addon from source failed: cargo build .* failed/);
    assert.doesNotMatch(stdout + stderr, /portable mode/);
  },
);

// One line from forkline in the install's output, saying the portable mode will serve, and the install succeeded
// without building anything.
function assertPortableInstall(dir, { code, stdout, stderr }, why) {
  assert.strictEqual(code, 0, stderr);
  const ours = (stdout + stderr).split('\n').filter((line) => line.includes('forkline: '));
  assert.strictEqual(ours.length, 1, stdout + stderr);
  assert.match(ours[0], why);
  assert.match(ours[0], /forkline will run in its portable mode/);
  assertInstalled(dir, { local: false });
}

test('another OS (FORKLINE_INSTALL_PLATFORM=darwin-arm64): one line, exit 0, no build tried', { skip }, async () => {
  // With cargo reachable, to see that no build is tried: the native core is Linux's.
  const env = cleanNpmEnv({ FORKLINE_INSTALL_PLATFORM: 'darwin-arm64' });
  const dir = makeApp('app-darwin', tarball);
  const result = await npmInstall(dir, tarball, env);
  assertPortableInstall(dir, result, /no native addon for darwin-arm64, as its core is Linux's/);
  assert.doesNotMatch(result.stderr, /Compiling/);
});

test('no prebuilt binary for this platform and no cargo: one line, exit 0', { skip }, async () => {
  const env = noCargoEnv();
  const dir = makeApp('app-no-prebuilt', noneTarball);
  const result = await npmInstall(dir, noneTarball, env);
  assertPortableInstall(dir, result, /no prebuilt binary for linux-x64-gnu in the package, and cargo is not installed/);
});

// The runtime side is the portable mode's (lib/backend.js): where no addon loads, it serves.
test('that app runs in the portable mode: a fork round trip, no addon loaded', { skip }, async () => {
  const env = noCargoEnv();
  const dir = path.join(tmp, 'app-no-prebuilt');
  assert.ok(fs.existsSync(path.join(dir, 'node_modules', 'forkline')), 'the previous test installed no app');
  const { code, stdout, stderr } = await run('node', ['app.js', 'node'], { cwd: dir, env, timeout: 30_000 });
  assert.strictEqual(code, 0, stderr);
  assert.deepStrictEqual(JSON.parse(stdout), { m: { echo: { hi: 'node' } }, addons: [] });
  const backend = await run('node', ['-p', "require('forkline').backend"], { cwd: dir, env, timeout: 30_000 });
  assert.strictEqual(backend.stdout.trim(), 'portable', backend.stderr);
});

test('a Linux without a prebuilt binary whose build fails: exit 0, the last line says why', { skip }, async () => {
  const env = cleanNpmEnv({ FORKLINE_INSTALL_PLATFORM: 'linux-riscv64-gnu', RUSTC: path.join(tmp, 'no-rustc') });
  const dir = makeApp('app-riscv64', tarball);
  const { code, stdout, stderr } = await npmInstall(dir, tarball, env);
  assert.strictEqual(code, 0, stderr);
  const ours = (stdout + stderr).split('\n').filter((line) => line.includes('forkline: '));
  assert.match(ours[0], /no prebuilt binary for linux-riscv64-gnu; building it from source with cargo/);
  assert.match(ours.at(-1), /building the native addon from source failed: .*: forkline will run in its portable mode/);
  assertInstalled(dir, { local: false });
});

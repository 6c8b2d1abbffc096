#!/usr/bin/env node
'use strict';

// `prepack`: the prebuilt binaries that go into the tarball, prebuilds/<platform>/forkline.node, release builds
// cross-compiled from this machine with cargo-zigbuild (zig as the C toolchain and linker, with each C library's
// symbols):
//   linux-x64-gnu, linux-arm64-gnu     linked against glibc 2.17, so that they load on every glibc distribution
//                                      still in service (CentOS 7's; Node 20's official builds need 2.28 themselves)
//   linux-x64-musl, linux-arm64-musl   linked against musl's libc.so, dynamically, as Alpine's Node is
// All four come out of one cargo invocation (cargo interleaves the targets' crates on every core, and builds the
// build scripts and proc macros once), in ./target (or $CARGO_TARGET_DIR) beside the host build, which it does not
// disturb. Each binary is then checked (scripts/elf.js: machine, libraries, symbol versions, symbols) and any problem
// fails the build, and so `npm pack`.
//
// Needs cargo, `pip install ziglang cargo-zigbuild`, and the four rustup targets, which it adds when missing.

const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');
const zlib = require('node:zlib');
const { spawnSync } = require('node:child_process');
const { ROOT, PREBUILT_PLATFORMS, prebuiltFile } = require('../lib/addon_path');
const { findCargo, cargoLibraries, place } = require('./build');
const { check, muslSymbols, GLIBC_BASELINE } = require('./elf');

// Each platform's Rust target; cargo-zigbuild takes a glibc version after the triple.
const TARGETS = {
  'linux-x64-gnu': `x86_64-unknown-linux-gnu.${GLIBC_BASELINE}`,
  'linux-arm64-gnu': `aarch64-unknown-linux-gnu.${GLIBC_BASELINE}`,
  'linux-x64-musl': 'x86_64-unknown-linux-musl',
  'linux-arm64-musl': 'aarch64-unknown-linux-musl',
};
const triple = (target) => target.replace(/\.[\d.]+$/, '');

// The gzipped binaries' share of the tarball (at most 5 MB, __test__/install.test.js): the rest (sources) is ~0.3 MB.
const BUDGET = 4 * 1024 * 1024;

// Adds the rustup targets that are not installed yet (rustup on PATH, else in ~/.cargo/bin, as cargo).
function addTargets(cargo) {
  const rustup = cargo.includes(path.sep) ? path.join(path.dirname(cargo), 'rustup') : 'rustup';
  const installed = spawnSync(rustup, ['target', 'list', '--installed'], { cwd: ROOT, encoding: 'utf8' });
  if (installed.error) throw new Error(`rustup not found to add the targets (${installed.error.message})`);
  const missing = Object.values(TARGETS)
    .map(triple)
    .filter((t) => !installed.stdout.split('\n').includes(t));
  if (missing.length === 0) return;
  console.error(`prebuild: rustup target add ${missing.join(' ')}`);
  const added = spawnSync(rustup, ['target', 'add', ...missing], { cwd: ROOT, stdio: ['ignore', 2, 2] });
  if (added.status !== 0) throw new Error(`rustup target add ${missing.join(' ')} failed`);
}

function main() {
  const cargo = findCargo();
  if (cargo === null) {
    console.error('prebuild: cargo not found: install Rust from https://rustup.rs');
    return 1;
  }
  if (Object.keys(TARGETS).join() !== PREBUILT_PLATFORMS.join())
    throw new Error('TARGETS and PREBUILT_PLATFORMS differ');
  // No binary of an earlier pack may go into this one.
  fs.rmSync(path.join(ROOT, 'prebuilds'), { recursive: true, force: true });
  const started = Date.now();
  let libraries;
  try {
    addTargets(cargo);
    const targets = Object.values(TARGETS).flatMap((t) => ['--target', t]);
    libraries = cargoLibraries({ cargo, args: ['zigbuild', '--release', '--locked', ...targets] });
  } catch (err) {
    console.error(`prebuild: ${err.message} (needs \`pip install ziglang cargo-zigbuild\`)`);
    return 1;
  }
  const seconds = Math.round((Date.now() - started) / 1000);

  const musl = muslSymbols();
  let failed = false;
  let packed = 0;
  for (const [platform, target] of Object.entries(TARGETS)) {
    const library = libraries.find((file) => file.split(path.sep).includes(triple(target)));
    if (!library) {
      console.error(`prebuild: cargo reported no library for ${triple(target)}`);
      failed = true;
      continue;
    }
    const out = place(library, prebuiltFile(platform));
    const problems = check(out, platform, { musl });
    for (const problem of problems) console.error(`prebuild: ${platform}: ${problem}`);
    failed ||= problems.length > 0;
    const size = fs.statSync(out).size;
    const gzipped = zlib.gzipSync(fs.readFileSync(out), { level: 9 }).length;
    packed += gzipped;
    const kb = (n) => `${Math.round(n / 1024)} KB`;
    console.error(
      `prebuild: ${path.relative(ROOT, out)}: ${kb(size)} (${kb(gzipped)} gzipped), ${problems.length ? 'FAILS its checks' : 'checked'}`,
    );
  }
  if (packed > BUDGET) {
    console.error(`prebuild: the binaries take ${packed} bytes gzipped, above the budget of ${BUDGET}`);
    failed = true;
  }
  console.error(
    `prebuild: ${Object.keys(TARGETS).length} targets built in ${seconds} s on ${os.availableParallelism()} cores`,
  );
  return failed ? 1 : 0;
}

process.exitCode = main();

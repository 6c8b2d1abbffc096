#!/usr/bin/env node
'use strict';

// Builds the native addon from source with plain cargo and copies the library to ./forkline.node: `npm run build`
// (release) and `npm run build:debug`. scripts/install.js (a source build on install) and scripts/prebuild.js (the
// prebuilt binary) use cargoBuild() too. No npm build tool is needed: on Linux the cdylib cargo builds is the addon
// as it is (`napi build` would only copy it, and write type declarations: `npm run build:dts`).

const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');
const { spawnSync } = require('node:child_process');
const { ROOT, LOCAL } = require('../lib/addon_path');

// cargo on PATH, else where rustup puts it (npm may run scripts with a PATH that lacks ~/.cargo/bin). Null if none.
function findCargo(env = process.env) {
  const home = env.CARGO_HOME || path.join(env.HOME || os.homedir(), '.cargo');
  for (const cargo of ['cargo', path.join(home, 'bin', 'cargo')]) {
    if (!spawnSync(cargo, ['--version'], { env, stdio: 'ignore' }).error) return cargo;
  }
  return null;
}

// rustup's musl targets link the C runtime statically by default, and rustc drops a cdylib there: forkline.node must
// link musl's libc.so dynamically, as Node does. An explicit setting of the packer's or user's wins.
const MUSL_TARGETS = ['x86_64-unknown-linux-musl', 'aarch64-unknown-linux-musl'];

function cargoEnv(env = process.env) {
  const out = { ...env };
  for (const target of MUSL_TARGETS) {
    const key = `CARGO_TARGET_${target.toUpperCase().replaceAll('-', '_')}_RUSTFLAGS`;
    out[key] ??= '-C target-feature=-crt-static';
  }
  return out;
}

// Runs `cargo <args> --message-format=json-render-diagnostics` in the package root (cargo's progress and
// diagnostics go to stderr) and returns the cdylibs it reports, one per target. Throws on failure.
function cargoLibraries({ cargo, args, env = process.env }) {
  const result = spawnSync(cargo, [...args, '--message-format=json-render-diagnostics'], {
    cwd: ROOT,
    env: cargoEnv(env),
    stdio: ['ignore', 'pipe', 'inherit'],
    maxBuffer: 64 * 1024 * 1024,
    encoding: 'utf8',
  });
  if (result.error) throw result.error;
  if (result.status !== 0) throw new Error(`cargo ${args.join(' ')} failed (exit code ${result.status})`);
  const libraries = [];
  for (const line of result.stdout.split('\n')) {
    if (!line.startsWith('{')) continue;
    const msg = JSON.parse(line);
    if (msg.reason === 'compiler-artifact' && msg.target.kind.includes('cdylib')) {
      libraries.push(...msg.filenames.filter((file) => file.endsWith('.so')));
    }
  }
  if (libraries.length === 0) throw new Error(`cargo ${args.join(' ')} reported no cdylib`);
  return libraries;
}

// Copies `library` to `out` through a rename, so that a process that has the old file loaded keeps it intact.
function place(library, out) {
  fs.mkdirSync(path.dirname(out), { recursive: true });
  const tmp = `${out}.${process.pid}.tmp`;
  fs.copyFileSync(library, tmp);
  fs.renameSync(tmp, out);
  return out;
}

// One build for one target, its library copied to `out`.
function cargoBuild({ cargo, args, out, env = process.env }) {
  return place(cargoLibraries({ cargo, args, env }).at(-1), out);
}

function main() {
  const debug = process.argv.includes('--debug');
  const cargo = findCargo();
  if (cargo === null) {
    console.error('forkline: cargo not found: install Rust from https://rustup.rs');
    return 1;
  }
  cargoBuild({ cargo, args: ['build', ...(debug ? [] : ['--release'])], out: LOCAL });
  return 0;
}

module.exports = { findCargo, cargoBuild, cargoLibraries, place };

if (require.main === module) process.exitCode = main();

#!/usr/bin/env node
'use strict';

// npm's install script: plain node, no dependencies.
// - Installed (the package sits in a node_modules): the prebuilt binary from the tarball if it loads in this node
//   (tried in a child process, so that a bad binary cannot take the install down with it); else the addon is built
//   from source with `cargo build --release` in a temporary target directory (or $CARGO_TARGET_DIR, kept) that is
//   removed afterwards, so that forkline.node is all the build leaves in the package.
// - A clone (a developer's `npm install`): a build from source in ./target (or $CARGO_TARGET_DIR), as `npm run build`.
// Without cargo, the install fails with one line saying what to install. With install scripts off (`--ignore-scripts`,
// pnpm 10, Bun) none of this runs and lib/binding.js loads the prebuilt binary directly.

const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');
const { spawnSync } = require('node:child_process');
const { ROOT, LOCAL, PREBUILT, PREBUILT_PLATFORM, prebuiltPlatform } = require('../lib/addon_path');
const { findCargo, cargoBuild } = require('./build');

const loads = (file) =>
  spawnSync(process.execPath, ['-e', `require(${JSON.stringify(file)})`], { stdio: 'ignore' }).status === 0;

function main() {
  const installed = ROOT.split(path.sep).includes('node_modules');
  let why = null;
  if (installed) {
    if (!fs.existsSync(PREBUILT)) why = 'no prebuilt binary in the package';
    else if (!prebuiltPlatform())
      why = `the prebuilt binary is for ${PREBUILT_PLATFORM}, this is ${process.platform}-${process.arch}`;
    else if (!loads(PREBUILT)) why = `the prebuilt binary (${PREBUILT_PLATFORM}, glibc >= 2.17) does not load here`;
    else {
      console.log(`forkline: using the prebuilt binary (${PREBUILT_PLATFORM})`);
      return 0;
    }
  }

  const cargo = findCargo();
  if (cargo === null) {
    console.error(
      `forkline: ${why ? `${why}, and ` : ''}cargo is not installed to build the native addon from source: ` +
        'install Rust from https://rustup.rs, then install forkline again',
    );
    return 1;
  }
  // Installed: build outside the package, with the versions of Cargo.lock.
  const ownTarget = installed && !process.env.CARGO_TARGET_DIR;
  const targetDir = ownTarget ? fs.mkdtempSync(path.join(os.tmpdir(), 'forkline-build-')) : null;
  try {
    if (why) console.error(`forkline: ${why}; building it from source with cargo`);
    const env = targetDir ? { ...process.env, CARGO_TARGET_DIR: targetDir } : process.env;
    cargoBuild({ cargo, args: ['build', '--release', ...(installed ? ['--locked'] : [])], out: LOCAL, env });
  } catch (err) {
    console.error(`forkline: building the native addon from source failed: ${err.message}`);
    return 1;
  } finally {
    if (targetDir) fs.rmSync(targetDir, { recursive: true, force: true });
  }
  if (!loads(LOCAL)) {
    console.error('forkline: the native addon built from source does not load in this node');
    return 1;
  }
  return 0;
}

process.exitCode = main();

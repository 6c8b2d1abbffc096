#!/usr/bin/env node
'use strict';

// npm's install script: plain node, no dependencies. What it does depends on the platform (lib/addon_path.js names
// it, e.g. linux-arm64-musl; FORKLINE_INSTALL_PLATFORM=darwin-arm64 stands in for it, for tests):
// - Installed (the package sits in a node_modules): this platform's prebuilt binary from the tarball if it loads in
//   this node (tried in a child process, so that a bad binary cannot take the install down with it); else the addon
//   is built from source with `cargo build --release` in a temporary target directory (or $CARGO_TARGET_DIR, kept)
//   that is removed afterwards, so that forkline.node is all the build leaves in the package.
// - A clone (a developer's `npm install`): a build from source in ./target (or $CARGO_TARGET_DIR), as `npm run build`.
// Where no native addon can be had the install still succeeds, with one line saying that forkline will run in its
// portable mode (Node's own channel, docs/install.md) and why: on another OS than Linux (the native core is Linux's:
// epoll, pidfd, memfd, SCM_RIGHTS), and on a Linux with no prebuilt binary when cargo is missing or its build fails.
// It fails, loudly, where a native addon is due and cannot be had: a prebuilt binary for this platform that does not
// load and cannot be rebuilt, or a clone without cargo. With install scripts off (`--ignore-scripts`, pnpm 10, Bun)
// none of this runs and lib/binding.js picks the prebuilt binary by itself.

const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');
const { spawnSync } = require('node:child_process');
const { ROOT, LOCAL, PREBUILT_PLATFORMS, prebuiltFile, currentPlatform } = require('../lib/addon_path');
const { findCargo, cargoBuild } = require('./build');

const loads = (file) =>
  spawnSync(process.execPath, ['-e', `require(${JSON.stringify(file)})`], { stdio: 'ignore' }).status === 0;

const portable = (why) => {
  console.warn(`forkline: ${why}: forkline will run in its portable mode (Node's own channel; see docs/install.md)`);
  return 0;
};

function main() {
  const installed = ROOT.split(path.sep).includes('node_modules');
  const platform = process.env.FORKLINE_INSTALL_PLATFORM || currentPlatform();
  if (!platform.startsWith('linux-')) return portable(`no native addon for ${platform}, as its core is Linux's`);

  let why = null; // why the addon is built from source
  let due = !installed; // whether a native addon must come out of this (else the portable mode will do)
  if (installed) {
    const prebuilt = PREBUILT_PLATFORMS.includes(platform) ? prebuiltFile(platform) : null;
    if (prebuilt === null) why = `no prebuilt binary for ${platform}`;
    else if (!fs.existsSync(prebuilt)) why = `no prebuilt binary for ${platform} in the package`;
    else if (!loads(prebuilt)) {
      why = `the prebuilt binary (${platform}) does not load here`;
      due = true;
    } else {
      console.log(`forkline: using the prebuilt binary (${platform})`);
      return 0;
    }
  }
  const fail = (message) => {
    if (!due) return portable(message);
    console.error(`forkline: ${message}`);
    return 1;
  };

  const cargo = findCargo();
  if (cargo === null) {
    return fail(
      `${why ? `${why}, and ` : ''}cargo is not installed to build the native addon from source` +
        (due ? ': install Rust from https://rustup.rs, then install forkline again' : ''),
    );
  }
  // Installed: build outside the package, with the versions of Cargo.lock.
  const ownTarget = installed && !process.env.CARGO_TARGET_DIR;
  const targetDir = ownTarget ? fs.mkdtempSync(path.join(os.tmpdir(), 'forkline-build-')) : null;
  try {
    if (why) console.error(`forkline: ${why}; building it from source with cargo`);
    const env = targetDir ? { ...process.env, CARGO_TARGET_DIR: targetDir } : process.env;
    cargoBuild({ cargo, args: ['build', '--release', ...(installed ? ['--locked'] : [])], out: LOCAL, env });
  } catch (err) {
    return fail(`building the native addon from source failed: ${err.message}`);
  } finally {
    if (targetDir) fs.rmSync(targetDir, { recursive: true, force: true });
  }
  if (!loads(LOCAL)) {
    // Not left where lib/binding.js would try it first.
    if (!due) fs.rmSync(LOCAL, { force: true });
    return fail('the native addon built from source does not load in this node');
  }
  return 0;
}

process.exitCode = main();

#!/usr/bin/env node
'use strict';

// `prepack`: the prebuilt binary that goes into the tarball, prebuilds/linux-x64-gnu/forkline.node, a release build
// for x86_64 Linux linked against glibc 2.17 (so it loads on every glibc distribution still in service), made with
// cargo-zigbuild (zig as the linker, with glibc 2.17's symbol versions). Fails, and so fails `npm pack`, if the
// build needs a newer glibc than that.
//
// Needs cargo and `pip install ziglang cargo-zigbuild`. Builds in ./target (or $CARGO_TARGET_DIR), beside the
// host build, which it does not disturb.

const { PREBUILT } = require('../lib/addon_path');
const { findCargo, cargoBuild } = require('./build');
const { highestGlibc, compare } = require('./glibc');

const TARGET = 'x86_64-unknown-linux-gnu';
const GLIBC = '2.17';

function main() {
  const cargo = findCargo();
  if (cargo === null) {
    console.error('prebuild: cargo not found: install Rust from https://rustup.rs');
    return 1;
  }
  const args = ['zigbuild', '--release', '--locked', '--target', `${TARGET}.${GLIBC}`];
  try {
    cargoBuild({ cargo, args, out: PREBUILT });
  } catch (err) {
    console.error(`prebuild: ${err.message} (needs \`pip install ziglang cargo-zigbuild\`)`);
    return 1;
  }
  const highest = highestGlibc(PREBUILT);
  if (highest === null || compare(highest, GLIBC) > 0) {
    console.error(`prebuild: ${PREBUILT} requires GLIBC_${highest}, not ${GLIBC}`);
    return 1;
  }
  console.error(`prebuild: ${PREBUILT} (${TARGET}, requires GLIBC_${highest})`);
  return 0;
}

process.exitCode = main();

'use strict';

// The native addon (src/), loaded once for every module of lib/: the build from source in the package root when
// there is one (`npm run build`, or the install script's fallback), else the prebuilt binary from the tarball. No
// install script is needed for the prebuilt one, so it also works with `--ignore-scripts`, pnpm and Bun.

const fs = require('node:fs');
const process = require('node:process');
const path = require('node:path');
const { LOCAL, addonFile } = require('./addon_path');
const { RUNTIME_FD } = require('./runtime_env');

function load() {
  const file = addonFile();
  try {
    return require(file);
  } catch (err) {
    const what = file === LOCAL ? './forkline.node' : `the prebuilt binary (${path.basename(path.dirname(file))})`;
    // Preloaded as a child's runtime (lib/runtime.js): without the addon there is no channel. Exit loudly.
    if (process.env[RUNTIME_FD] !== undefined) {
      fs.writeSync(2, `forkline: the child runtime cannot start: cannot load ${what} (${err.message})\n`);
      process.exit(1);
    }
    throw new Error(
      `forkline: cannot load its native addon, ${what} (${err.message}). ` +
        'Build it from source with `node scripts/install.js` in the forkline package (needs Rust: https://rustup.rs).',
      { cause: err },
    );
  }
}

module.exports = load();

'use strict';

// The native addon (src/, built by `npm run build`), loaded once for every module of lib/.

const process = require('node:process');
const { RUNTIME_FD } = require('./runtime_env');

function load() {
  try {
    return require('../forkline.node');
  } catch (err) {
    // Preloaded as a child's runtime (lib/runtime.js): without the addon there is no channel. Exit loudly.
    if (process.env[RUNTIME_FD] !== undefined) {
      require('node:fs').writeSync(
        2,
        `forkline: the child runtime cannot start: cannot load ./forkline.node (${err.message})\n`,
      );
      process.exit(1);
    }
    throw new Error(
      `forkline: cannot load its native addon ./forkline.node (${err.message}). ` +
        'Build it from source with `npm run build` (needs Rust/cargo).',
      { cause: err },
    );
  }
}

module.exports = load();

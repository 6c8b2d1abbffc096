'use strict';

// The native addon (src/), loaded once for every module of lib/: the build from source in the package root when
// there is one (`npm run build`, or the install script's fallback), else the prebuilt binary from the tarball. No
// install script is needed for the prebuilt one, so it also works with `--ignore-scripts`, pnpm and Bun.
//
// Where the addon cannot load (no binary for this system, a broken install) requiring this module does not throw:
// it gives a stand-in whose `loadError` says why and whose every other use throws that error, and lib/backend.js
// serves the process with the portable backend. Under FORKLINE_BACKEND=portable the addon is not even loaded, so the
// portable mode's tests show that nothing of it is used; a child whose parent asked for forkline's runtime loads it
// all the same, since only the addon can serve that channel.

const fs = require('node:fs');
const process = require('node:process');
const path = require('node:path');
const { LOCAL, addonFile } = require('./addon_path');
const { RUNTIME_FD } = require('./runtime_env');

function load() {
  if (process.env[RUNTIME_FD] === undefined && require('./backend').requested() === 'portable') {
    return unavailable(new Error('forkline: the native addon is not loaded under FORKLINE_BACKEND=portable'));
  }
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
    return unavailable(
      new Error(
        `forkline: cannot load its native addon, ${what} (${err.message}). ` +
          'Build it from source with `node scripts/install.js` in the forkline package (needs Rust: https://rustup.rs).',
        { cause: err },
      ),
    );
  }
}

// The addon's stand-in when it could not be loaded: `loadError` is why; reading anything else throws it.
function unavailable(error) {
  return new Proxy(Object.freeze({ loadError: error }), {
    get(target, key) {
      if (key === 'loadError') return error;
      throw error;
    },
  });
}

module.exports = load();

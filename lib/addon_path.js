'use strict';

// Where the native addon is: a build from source in the package root (`npm run build`, or the install script when
// the prebuilt binary does not load), else the prebuilt binary `npm pack` puts in the tarball (scripts/prebuild.js).

const path = require('node:path');
const process = require('node:process');

const ROOT = path.join(__dirname, '..');

// The one prebuilt binary: x86_64 Linux, glibc (linked against glibc 2.17, see scripts/prebuild.js).
const PREBUILT_PLATFORM = 'linux-x64-gnu';

module.exports = {
  ROOT,
  PREBUILT_PLATFORM,
  LOCAL: path.join(ROOT, 'forkline.node'),
  PREBUILT: path.join(ROOT, 'prebuilds', PREBUILT_PLATFORM, 'forkline.node'),
  // Whether this process's platform is the prebuilt binary's (the libc is only known by loading it).
  prebuiltPlatform: () => process.platform === 'linux' && process.arch === 'x64',
};

'use strict';

// Where the native addon is: a build from source in the package root (`npm run build`, or the install script when
// no prebuilt binary loads), else the prebuilt binary `npm pack` put in the tarball for this platform
// (scripts/prebuild.js): prebuilds/<platform>/forkline.node, the platform named as napi-rs names it,
// linux-<arch>-<libc>.

const fs = require('node:fs');
const path = require('node:path');
const process = require('node:process');

const ROOT = path.join(__dirname, '..');
const LOCAL = path.join(ROOT, 'forkline.node');

// The tarball's prebuilt binaries: glibc ones linked against glibc 2.17, musl ones against musl's libc.so.
const PREBUILT_PLATFORMS = ['linux-x64-gnu', 'linux-arm64-gnu', 'linux-x64-musl', 'linux-arm64-musl'];

const prebuiltFile = (platform) => path.join(ROOT, 'prebuilds', platform, 'forkline.node');

// The C library of this process, from the libraries mapped into it (/proc/self/maps, as dl_iterate_phdr sees them,
// the list Node's report calls sharedObjects): 'gnu' for glibc's libc (libc.so.6, or libc-2.NN.so before glibc
// 2.34), 'musl' for musl's loader (which is its libc), else null.
function libcFromMaps(maps) {
  for (const line of maps.split('\n')) {
    const file = line.slice(line.lastIndexOf('/') + 1);
    if (/^(?:ld-musl-|libc\.musl-)/.test(file)) return 'musl';
    if (/^libc(?:\.so\.6|-2\.\d+\.so)$/.test(file)) return 'gnu';
  }
  return null;
}

// As detect-libc reads Node's diagnostic report: glibc when the header names the glibc version Node runs on, musl
// when a shared object is musl's.
function libcFromReport(report) {
  if (report?.header?.glibcVersionRuntime) return 'gnu';
  if (report?.sharedObjects?.some((file) => /(?:^|\/)(?:ld-musl-|libc\.musl-)/.test(file))) return 'musl';
  return null;
}

// `ldd --version` (stdout and stderr together): glibc's prints "ldd (GNU libc) 2.36", musl's "musl libc (x86_64)".
function libcFromLdd(output) {
  if (/\bmusl\b/i.test(output)) return 'musl';
  if (/GNU libc|GLIBC|GNU C Library/i.test(output)) return 'gnu';
  return null;
}

// The ways to find the C library, cheapest first; each returns what it read, or null when it cannot tell.
const probes = {
  // ~0.3 ms, where the report takes 15-50 ms (Node 24 and 20), and spawns nothing: every process that loads the
  // prebuilt addon on glibc stops here.
  maps: () => libcFromMaps(fs.readFileSync('/proc/self/maps', 'latin1')),
  report: () => {
    const { report } = process;
    if (typeof report?.getReport !== 'function') return null;
    const excludeNetwork = report.excludeNetwork;
    report.excludeNetwork = true; // no network interfaces, as detect-libc: they are slow to list and not needed
    try {
      return libcFromReport(report.getReport());
    } finally {
      report.excludeNetwork = excludeNetwork;
    }
  },
  loader: () => (fs.readdirSync('/lib').some((file) => file.startsWith('ld-musl-')) ? 'musl' : null),
  ldd: () => {
    const { spawnSync } = require('node:child_process');
    const result = spawnSync('ldd', ['--version'], { encoding: 'utf8', timeout: 5000 });
    return result.error ? null : libcFromLdd(`${result.stdout}\n${result.stderr}`);
  },
};

// 'gnu', 'musl', or null (not Linux, or no probe could tell): the first probe that answers, in the order of
// `probes`; one that throws (no /proc, no report) counts as no answer.
function detectLibc(use = probes) {
  if (process.platform !== 'linux') return null;
  for (const probe of Object.values(use)) {
    try {
      const libc = probe();
      if (libc) return libc;
    } catch {
      // The next probe may tell.
    }
  }
  return null;
}

let libc; // this process's, found once
const currentLibc = () => (libc === undefined ? (libc = detectLibc()) : libc);

// 'linux-x64-gnu', 'linux-arm64-musl', 'darwin-arm64', 'win32-x64': this system, named as the prebuilds are (a Linux
// whose C library is neither glibc nor musl has no libc part).
function currentPlatform() {
  if (process.platform !== 'linux') return `${process.platform}-${process.arch}`;
  const family = currentLibc();
  return family ? `linux-${process.arch}-${family}` : `linux-${process.arch}`;
}

// The file lib/binding.js loads: ./forkline.node if there is one, else this platform's prebuilt binary if the
// package has it, else ./forkline.node all the same (loading it then fails, and says so).
function addonFile() {
  if (fs.existsSync(LOCAL)) return LOCAL;
  const platform = currentPlatform();
  if (!PREBUILT_PLATFORMS.includes(platform)) return LOCAL;
  const file = prebuiltFile(platform);
  return fs.existsSync(file) ? file : LOCAL;
}

module.exports = {
  ROOT,
  LOCAL,
  PREBUILT_PLATFORMS,
  prebuiltFile,
  currentPlatform,
  addonFile,
  detectLibc,
  probes,
  libcFromMaps,
  libcFromReport,
  libcFromLdd,
};

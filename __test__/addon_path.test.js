'use strict';

// lib/addon_path.js: which C library this process runs on, and so which prebuilt binary lib/binding.js loads. The
// parsers read real outputs (glibc's and musl's /proc/self/maps lines, `ldd --version`, Node's report); the probes
// go cheapest first; and on this machine the answer agrees with Node's own report (the oracle) without spawning a
// process or taking a report. The arm64 prebuilt is picked for real under emulation: scripts/test-arm64.js.

const assert = require('node:assert');
const path = require('node:path');
const { spawnSync } = require('node:child_process');
const { test } = require('node:test');
const addonPath = require('../lib/addon_path');

const { libcFromMaps, libcFromReport, libcFromLdd, detectLibc } = addonPath;

const GLIBC_MAPS = `55d0c2a00000-55d0c2e00000 r--p 00000000 08:01 1835015   /usr/local/bin/node
7f1c5a400000-7f1c5a428000 r--p 00000000 08:01 1572932   /usr/lib/x86_64-linux-gnu/libc.so.6
7f1c5a600000-7f1c5a628000 r--p 00000000 08:01 1572930   /usr/lib/x86_64-linux-gnu/ld-linux-x86-64.so.2
7ffd3a5e4000-7ffd3a606000 rw-p 00000000 00:00 0          [stack]`;
// CentOS 7: glibc before 2.34 maps its libc under its versioned file name.
const OLD_GLIBC_MAPS = '7f6e0c1f4000-7f6e0c3b8000 r-xp 00000000 fd:00 33595   /usr/lib64/libc-2.17.so';
const MUSL_MAPS = `5612c8a00000-5612c8e00000 r--p 00000000 00:2e 2364   /usr/local/bin/node
7f3d8a1e0000-7f3d8a1f4000 r--p 00000000 00:2e 1082   /lib/ld-musl-aarch64.so.1
7f3d8a200000-7f3d8a210000 r--p 00000000 00:2e 1120   /usr/lib/libstdc++.so.6.0.32`;

test('libcFromMaps: glibc by its libc, musl by its loader, null otherwise', () => {
  assert.strictEqual(libcFromMaps(GLIBC_MAPS), 'gnu');
  assert.strictEqual(libcFromMaps(OLD_GLIBC_MAPS), 'gnu');
  assert.strictEqual(libcFromMaps(MUSL_MAPS), 'musl');
  assert.strictEqual(libcFromMaps('7f00-7f01 r--p 0 0:0 1 /lib/libc.musl-x86_64.so.1'), 'musl');
  // Neither a library that merely starts like libc nor an empty map names a C library.
  assert.strictEqual(
    libcFromMaps('7f00-7f01 r--p 0 0:0 1 /usr/lib/libcrypto.so.3\n7f02-7f03 r--p 0 0:0 1 /x/libc.so.6.bak'),
    null,
  );
  assert.strictEqual(libcFromMaps(''), null);
});

test("libcFromReport: Node's report header, then its shared objects", () => {
  assert.strictEqual(libcFromReport({ header: { glibcVersionRuntime: '2.36' }, sharedObjects: [] }), 'gnu');
  assert.strictEqual(
    libcFromReport({ header: {}, sharedObjects: ['/usr/local/bin/node', '/lib/ld-musl-x86_64.so.1'] }),
    'musl',
  );
  assert.strictEqual(libcFromReport({ header: {}, sharedObjects: ['/usr/local/bin/node'] }), null);
  assert.strictEqual(libcFromReport({}), null);
});

test('libcFromLdd: what glibc and musl print for `ldd --version`', () => {
  const glibc = 'ldd (Debian GLIBC 2.36-9+deb12u14) 2.36\nCopyright (C) 2022 Free Software Foundation, Inc.\n';
  assert.strictEqual(libcFromLdd(glibc), 'gnu');
  assert.strictEqual(libcFromLdd('ldd (GNU libc) 2.17\n'), 'gnu');
  // musl's ldd is its loader, which prints its usage to stderr and exits 1.
  const musl = 'musl libc (x86_64)\nVersion 1.2.5\nDynamic Program Loader\nUsage: /lib/ld-musl-x86_64.so.1 [options]';
  assert.strictEqual(libcFromLdd(musl), 'musl');
  assert.strictEqual(libcFromLdd('sh: ldd: not found'), null);
});

test('detectLibc: the first probe that answers, a throwing one counts as none, later ones not run', () => {
  const calls = [];
  const probe = (name, answer) => () => {
    calls.push(name);
    if (answer instanceof Error) throw answer;
    return answer;
  };
  const expected = process.platform === 'linux' ? 'musl' : null;
  const found = detectLibc({
    maps: probe('maps', new Error('ENOENT: no /proc')),
    report: probe('report', null),
    loader: probe('loader', 'musl'),
    ldd: probe('ldd', 'gnu'),
  });
  assert.strictEqual(found, expected);
  assert.deepStrictEqual(calls, expected ? ['maps', 'report', 'loader'] : []);
  calls.length = 0;
  assert.strictEqual(detectLibc({ maps: probe('maps', null), ldd: probe('ldd', null) }), null);
});

// The real detection, in a fresh process where spawning anything or taking a report throws: on a glibc system it
// answers from the process's own libraries alone, and agrees with the report taken afterwards.
test(
  "this process's C library: found without a child process or a report, as the report says",
  { skip: process.platform !== 'linux' && 'Linux only' },
  () => {
    const script = `
    const cp = require('node:child_process');
    const getReport = process.report.getReport.bind(process.report);
    for (const name of ['spawn', 'spawnSync', 'exec', 'execSync', 'execFile', 'execFileSync', 'fork']) {
      cp[name] = () => { throw new Error('spawned: ' + name); };
    }
    process.report.getReport = () => { throw new Error('took a report'); };
    const addonPath = require(${JSON.stringify(path.join(__dirname, '..', 'lib', 'addon_path.js'))});
    const platform = addonPath.currentPlatform();
    const report = getReport();
    console.log(JSON.stringify({ platform, glibc: report.header.glibcVersionRuntime ?? null }));
  `;
    const { status, stdout, stderr } = spawnSync(process.execPath, ['-e', script], { encoding: 'utf8' });
    assert.strictEqual(status, 0, stderr);
    const { platform, glibc } = JSON.parse(stdout);
    assert.strictEqual(platform, `linux-${process.arch}-${glibc ? 'gnu' : 'musl'}`);
  },
);

test(
  'each probe on this machine agrees with the report',
  { skip: process.platform !== 'linux' && 'Linux only' },
  () => {
    const expected = process.report.getReport().header.glibcVersionRuntime ? 'gnu' : 'musl';
    const { probes } = addonPath;
    assert.strictEqual(probes.maps(), expected);
    assert.strictEqual(probes.report(), expected);
    assert.strictEqual(probes.ldd(), expected);
    // The musl loader's presence says nothing on glibc (Debian's musl package installs one): it is asked last but one.
    if (expected === 'musl') assert.strictEqual(probes.loader(), 'musl');
    assert.deepStrictEqual(Object.keys(probes), ['maps', 'report', 'loader', 'ldd']);
  },
);

// A copy of lib/addon_path.js in a package of its own, with fake binaries: which file it picks.
test('addonFile: ./forkline.node first, else the prebuilt binary of this platform, else ./forkline.node', () => {
  const fs = require('node:fs');
  const os = require('node:os');
  const root = fs.mkdtempSync(path.join(os.tmpdir(), 'forkline-addon-path-'));
  try {
    fs.mkdirSync(path.join(root, 'lib'));
    fs.copyFileSync(path.join(__dirname, '..', 'lib', 'addon_path.js'), path.join(root, 'lib', 'addon_path.js'));
    const copy = require(path.join(root, 'lib', 'addon_path.js'));
    assert.deepStrictEqual(copy.PREBUILT_PLATFORMS, [
      'linux-x64-gnu',
      'linux-arm64-gnu',
      'linux-x64-musl',
      'linux-arm64-musl',
    ]);
    const local = path.join(root, 'forkline.node');
    const put = (file) => {
      fs.mkdirSync(path.dirname(file), { recursive: true });
      fs.writeFileSync(file, '');
    };
    const platform = copy.currentPlatform();
    const others = copy.PREBUILT_PLATFORMS.filter((p) => p !== platform);
    for (const other of others) put(copy.prebuiltFile(other));
    assert.strictEqual(copy.addonFile(), local, "another platform's binary is never picked");
    if (copy.PREBUILT_PLATFORMS.includes(platform)) {
      put(copy.prebuiltFile(platform));
      assert.strictEqual(copy.prebuiltFile(platform), path.join(root, 'prebuilds', platform, 'forkline.node'));
      assert.strictEqual(copy.addonFile(), copy.prebuiltFile(platform));
    }
    put(local);
    assert.strictEqual(copy.addonFile(), local, 'a build from source wins');
  } finally {
    fs.rmSync(root, { recursive: true, force: true });
  }
});

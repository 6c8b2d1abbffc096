#!/usr/bin/env node
'use strict';

// What a prebuilt addon asks of the system that loads it, read from its ELF file (no binutils needed), and whether
// that fits the platform it is for: scripts/prebuild.js checks each binary with it at pack time, and
// __test__/install.test.js checks the packed tarball's.
//
//   node scripts/elf.js <file> [--platform=linux-arm64-gnu]   prints what the file needs; with --platform, exits 1
//                                                              if that does not fit (each problem on a line)
//
// A gnu binary must be for the platform's machine, need only glibc's libraries, and bind every symbol it takes from
// them to a GLIBC_ version at most the baseline (2.17: it then loads on any glibc since CentOS 7). A musl binary must
// need only musl's libc, bind no versioned symbol (musl has none: any is glibc's), and take no symbol musl lacks; the
// list of musl's symbols is the one zig links against (lib/libc/musl/libc.S in zig's lib directory).

const fs = require('node:fs');
const path = require('node:path');
const { spawnSync } = require('node:child_process');

const GLIBC_BASELINE = '2.17';
const MACHINES = { x64: 62, arm64: 183 }; // EM_X86_64, EM_AARCH64
const ET_DYN = 3;
const SHT = { DYNSYM: 11, DYNAMIC: 6, VERNEED: 0x6ffffffe, VERSYM: 0x6fffffff };
const DT_NEEDED = 1;
const STB_WEAK = 2;

// Version strings compared numerically: '2.17' < '2.3.4' is false.
const compare = (a, b) => {
  const [x, y] = [a.split('.').map(Number), b.split('.').map(Number)];
  for (let i = 0; i < Math.max(x.length, y.length); i++) {
    if ((x[i] ?? 0) !== (y[i] ?? 0)) return (x[i] ?? 0) - (y[i] ?? 0);
  }
  return 0;
};

// { type, machine, needed: ['libc.so.6', ...], versions: ['GLIBC_2.17', ...], undefined: [{ name, weak, version }] }:
// the ELF type and machine, the DT_NEEDED libraries, the symbol versions needed (.gnu.version_r), and the symbols
// the dynamic loader must find elsewhere, each with the version it is bound to (null: unversioned). 64-bit
// little-endian files only (both prebuilt machines are).
function readElf(file) {
  const buf = fs.readFileSync(file);
  if (buf.length < 64 || buf.readUInt32BE(0) !== 0x7f454c46) throw new Error(`${file} is not an ELF file`);
  if (buf[4] !== 2 || buf[5] !== 1) throw new Error(`${file} is not a 64-bit little-endian ELF file`);
  const u64 = (at) => Number(buf.readBigUInt64LE(at));
  const [shoff, shentsize, shnum] = [u64(40), buf.readUInt16LE(58), buf.readUInt16LE(60)];
  const sections = [];
  for (let i = 0; i < shnum; i++) {
    const at = shoff + i * shentsize;
    sections.push({
      type: buf.readUInt32LE(at + 4),
      offset: u64(at + 24),
      size: u64(at + 32),
      link: buf.readUInt32LE(at + 40),
      info: buf.readUInt32LE(at + 44),
    });
  }
  const find = (type) => sections.find((s) => s.type === type);
  const string = (table, at) => {
    const start = sections[table].offset + at;
    return buf.toString('latin1', start, buf.indexOf(0, start));
  };

  const needed = [];
  const dynamic = find(SHT.DYNAMIC);
  for (let at = dynamic?.offset ?? 0; dynamic && at < dynamic.offset + dynamic.size; at += 16) {
    const tag = u64(at);
    if (tag === 0) break;
    if (tag === DT_NEEDED) needed.push(string(dynamic.link, u64(at + 8)));
  }

  // Version indices (vna_other) to names, from the version-needed entries and their auxiliaries.
  const versionNames = new Map();
  const verneed = find(SHT.VERNEED);
  for (let i = 0, at = verneed?.offset; verneed && i < verneed.info; i++) {
    for (let j = 0, aux = at + buf.readUInt32LE(at + 8); j < buf.readUInt16LE(at + 2); j++) {
      versionNames.set(buf.readUInt16LE(aux + 6), string(verneed.link, buf.readUInt32LE(aux + 8)));
      aux += buf.readUInt32LE(aux + 12);
    }
    at += buf.readUInt32LE(at + 12);
  }

  const undefinedSymbols = [];
  const dynsym = find(SHT.DYNSYM);
  const versym = find(SHT.VERSYM);
  for (let i = 1; dynsym && i < dynsym.size / 24; i++) {
    const at = dynsym.offset + i * 24;
    if (buf.readUInt16LE(at + 6) !== 0) continue; // defined here (st_shndx is not SHN_UNDEF)
    const name = string(dynsym.link, buf.readUInt32LE(at));
    if (!name) continue;
    const index = versym ? buf.readUInt16LE(versym.offset + i * 2) & 0x7fff : 0;
    undefinedSymbols.push({ name, weak: buf[at + 4] >> 4 === STB_WEAK, version: versionNames.get(index) ?? null });
  }
  return {
    type: buf.readUInt16LE(16),
    machine: buf.readUInt16LE(18),
    needed,
    versions: [...new Set(versionNames.values())],
    undefined: undefinedSymbols,
  };
}

// '2.17': the highest GLIBC_ version a library needs, null if none. It loads on any glibc at least that.
function highestGlibc(file) {
  const versions = readElf(file)
    .versions.filter((v) => v.startsWith('GLIBC_'))
    .map((v) => v.slice(6));
  return versions.length ? versions.sort(compare).at(-1) : null;
}

// The symbols musl's libc.so defines, from zig's copy of musl (the one cargo-zigbuild links the musl binaries
// against): zig's lib directory as `zig env` (or `python3 -m ziglang env`, the pip package) tells it.
function muslSymbols() {
  for (const [cmd, args] of [
    ['zig', ['env']],
    ['python3', ['-m', 'ziglang', 'env']],
  ]) {
    const out = spawnSync(cmd, args, { encoding: 'utf8' });
    const libDir = /"?\.?lib_dir"?\s*[:=]\s*"([^"]+)"/.exec(out.stdout ?? '')?.[1];
    const file = libDir && path.join(libDir, 'libc', 'musl', 'libc.S');
    if (file && fs.existsSync(file)) {
      return new Set([...fs.readFileSync(file, 'utf8').matchAll(/^([A-Za-z_][\w.]*):$/gm)].map((m) => m[1]));
    }
  }
  throw new Error("cannot find musl's symbol list: zig's lib/libc/musl/libc.S (`pip install ziglang`)");
}

// The libraries each C library's binaries may need. glibc's loader is named for the machine; musl's libc.so is its
// loader too (musl's loader answers for libc.so, as for its own soname, libc.musl-<machine>.so.1).
const GLIBC_LIBS = ['libc.so.6', 'libm.so.6', 'libpthread.so.0', 'libdl.so.2', 'librt.so.1'];
const LOADERS = { x64: 'ld-linux-x86-64.so.2', arm64: 'ld-linux-aarch64.so.1' };
const MUSL_MACHINES = { x64: 'x86_64', arm64: 'aarch64' };

// The problems of `file` as the prebuilt binary of `platform` ('linux-x64-gnu' ...): [] when it fits.
// `musl` is the set of musl's symbols (muslSymbols()), needed for a musl platform.
function check(file, platform, { musl = null } = {}) {
  const [os, arch, libc] = platform.split('-');
  if (os !== 'linux' || !MACHINES[arch] || !['gnu', 'musl'].includes(libc))
    throw new Error(`no such platform: ${platform}`);
  const elf = readElf(file);
  const problems = [];
  if (elf.type !== ET_DYN) problems.push(`ELF type ${elf.type}, not a shared library (${ET_DYN})`);
  if (elf.machine !== MACHINES[arch]) problems.push(`ELF machine ${elf.machine}, not ${arch}'s (${MACHINES[arch]})`);
  const strong = elf.undefined.filter((s) => !s.weak);
  if (libc === 'gnu') {
    const allowed = [...GLIBC_LIBS, LOADERS[arch]];
    for (const lib of elf.needed) if (!allowed.includes(lib)) problems.push(`needs ${lib}, not a glibc library`);
    for (const v of elf.versions) {
      if (!v.startsWith('GLIBC_')) problems.push(`needs symbol version ${v}, not glibc's`);
      else if (compare(v.slice(6), GLIBC_BASELINE) > 0)
        problems.push(`needs ${v}, above the baseline GLIBC_${GLIBC_BASELINE}`);
    }
    for (const s of strong)
      if (s.version === null)
        problems.push(`needs ${s.name} unversioned: glibc ${GLIBC_BASELINE} lacks it (newer, or not glibc's)`);
    if (!elf.versions.length) problems.push('needs no GLIBC_ version: not linked against glibc');
  } else {
    if (!musl) throw new Error("checking a musl binary needs musl's symbols (muslSymbols())");
    const allowed = ['libc.so', `libc.musl-${MUSL_MACHINES[arch]}.so.1`, `ld-musl-${MUSL_MACHINES[arch]}.so.1`];
    for (const lib of elf.needed) if (!allowed.includes(lib)) problems.push(`needs ${lib}, not musl's libc`);
    if (!elf.needed.some((lib) => allowed.includes(lib))) problems.push("does not need musl's libc");
    for (const v of elf.versions) problems.push(`needs symbol version ${v}: musl has none`);
    for (const s of strong) if (!musl.has(s.name)) problems.push(`needs ${s.name}, which musl does not define`);
  }
  return problems;
}

function main() {
  const [file, ...rest] = process.argv.slice(2);
  if (!file) {
    console.error('usage: node scripts/elf.js <file> [--platform=linux-<x64|arm64>-<gnu|musl>]');
    return 2;
  }
  const elf = readElf(file);
  const arch = Object.keys(MACHINES).find((a) => MACHINES[a] === elf.machine) ?? `machine ${elf.machine}`;
  console.log(
    `${file}: ${arch}, needs ${elf.needed.join(' ') || '(nothing)'}, ${elf.versions.join(' ') || 'no symbol versions'}`,
  );
  const platform = rest.find((a) => a.startsWith('--platform='))?.slice(11);
  if (!platform) return 0;
  const problems = check(file, platform, { musl: platform.endsWith('-musl') ? muslSymbols() : null });
  for (const problem of problems) console.error(`${file} (${platform}): ${problem}`);
  return problems.length ? 1 : 0;
}

module.exports = { readElf, highestGlibc, compare, muslSymbols, check, GLIBC_BASELINE };

if (require.main === module) process.exitCode = main();

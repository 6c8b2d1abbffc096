#!/usr/bin/env node
'use strict';

// The highest GLIBC_ symbol version a shared library requires, read from its dynamic symbol table with
// `objdump -T` (binutils) or, without objdump, `readelf --dyn-syms`. The library loads on any glibc at least that.
//
//   node scripts/glibc.js <file> [--max=2.17]   prints the version; exits 1 if it is above --max

const { spawnSync } = require('node:child_process');

const compare = (a, b) => {
  const [x, y] = [a.split('.').map(Number), b.split('.').map(Number)];
  for (let i = 0; i < Math.max(x.length, y.length); i++) {
    if ((x[i] ?? 0) !== (y[i] ?? 0)) return (x[i] ?? 0) - (y[i] ?? 0);
  }
  return 0;
};

// '2.17', or null when the file requires no versioned glibc symbol.
function highestGlibc(file) {
  let result = spawnSync('objdump', ['-T', file], { encoding: 'utf8' });
  if (result.error) result = spawnSync('readelf', ['--dyn-syms', '-W', file], { encoding: 'utf8' });
  if (result.error) throw new Error('neither objdump nor readelf found (install binutils)');
  if (result.status !== 0) throw new Error(`cannot read the symbols of ${file}: ${result.stderr.trim()}`);
  const versions = [...result.stdout.matchAll(/GLIBC_(\d+(?:\.\d+)+)/g)].map((m) => m[1]);
  return versions.length ? versions.sort(compare).at(-1) : null;
}

function main() {
  const [file, ...rest] = process.argv.slice(2);
  if (!file) {
    console.error('usage: node scripts/glibc.js <file> [--max=X.Y]');
    return 2;
  }
  const max = rest.find((a) => a.startsWith('--max='))?.slice(6);
  const highest = highestGlibc(file);
  console.log(`${file}: requires GLIBC_${highest ?? '(none)'}`);
  if (max && highest && compare(highest, max) > 0) {
    console.error(`${file} requires GLIBC_${highest}, above the baseline GLIBC_${max}`);
    return 1;
  }
  return 0;
}

module.exports = { highestGlibc, compare };

if (require.main === module) process.exitCode = main();

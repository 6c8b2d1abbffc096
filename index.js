#!/usr/bin/env node
'use strict';

// forkline: node:child_process's fork() with the IPC channel in Rust, and node:cluster's primary. This file only
// loads and re-exports: the JS layer is lib/ (one module per concern, named after Node's lib/internal), the native
// addon is src/ (see ARCHITECTURE.md).

// The backend first (lib/backend.js): the native addon, or the portable mode where it cannot load or
// FORKLINE_BACKEND=portable says so. FORKLINE_BACKEND=native with no addon that loads fails here, saying how to build it.
const backend = require('./lib/backend');
const { fork, spawn, ChildProcess } = backend.childProcess();
// Preloaded into a child (a parent chose `childRuntime: 'forkline'`), this starts the runtime before user code.
require('./lib/runtime');

// Plain assignments, so ESM's named imports (`import { fork } from 'forkline'`) see them. spawn() is forkline's
// for children with an 'ipc' slot.
exports.backend = backend.name;
exports.fork = fork;
exports.spawn = spawn;
exports.ChildProcess = ChildProcess;
// cluster, bus, registered and the rest of node:child_process (exec, spawnSync, ...) load on first use: a parent
// that only forks does not pay for node:cluster, net, dgram and the rest (about 8 MB of RSS), nor for
// node:child_process's own machinery (its ChildProcess, spawn_sync, process_wrap: ~0.4 MB). exec and the others are
// Node's own functions, re-exported as they are, so that swapping the require just works.
const lazy = {
  cluster: () => require('./lib/cluster'),
  bus: () => require('./lib/bus'),
  // What forkline/register did in this process (lib/register.js); reading it registers nothing.
  registered: () => require('./lib/register').registered(),
};
for (const name of ['spawnSync', 'exec', 'execSync', 'execFile', 'execFileSync']) {
  lazy[name] = () => require('node:child_process')[name];
}
for (const [name, get] of Object.entries(lazy)) Object.defineProperty(exports, name, { enumerable: true, get });
// The names for ESM's named imports (`import { cluster } from 'forkline'`): Node's cjs-module-lexer reads this
// annotation, as it reads esbuild's; it never runs.
0 && (module.exports = { cluster, bus, registered, spawnSync, exec, execSync, execFile, execFileSync });

if (require.main === module) require('./lib/cli').runCli(process.argv.slice(2));

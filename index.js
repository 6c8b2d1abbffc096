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
// for children with an 'ipc' slot; the rest of node:child_process is re-exported as it is, so that swapping the
// require just works.
exports.backend = backend.name;
exports.fork = fork;
exports.spawn = spawn;
exports.ChildProcess = ChildProcess;
// cluster and bus load on first use: a parent that only forks does not pay for node:cluster, net, dgram and the
// rest (about 8 MB of RSS). The getters are in the one form ESM's named-export detection (cjs-module-lexer) reads.
const lazy = {
  get cluster() {
    return require('./lib/cluster');
  },
  get bus() {
    return require('./lib/bus');
  },
  // What forkline/register did in this process (lib/register.js); reading it registers nothing.
  get registered() {
    return require('./lib/register').registered();
  },
};
Object.defineProperty(exports, 'cluster', {
  enumerable: true,
  get: function () {
    return lazy.cluster;
  },
});
Object.defineProperty(exports, 'bus', {
  enumerable: true,
  get: function () {
    return lazy.bus;
  },
});
Object.defineProperty(exports, 'registered', {
  enumerable: true,
  get: function () {
    return lazy.registered;
  },
});
// The rest of node:child_process, as it is, also on first use: a parent that only forks then does not load Node's
// child_process machinery (its ChildProcess, spawn_sync, process_wrap: about 1 MB of RSS).
const nodeChildProcess = {
  get spawnSync() {
    return require('node:child_process').spawnSync;
  },
  get exec() {
    return require('node:child_process').exec;
  },
  get execSync() {
    return require('node:child_process').execSync;
  },
  get execFile() {
    return require('node:child_process').execFile;
  },
  get execFileSync() {
    return require('node:child_process').execFileSync;
  },
};
Object.defineProperty(exports, 'spawnSync', {
  enumerable: true,
  get: function () {
    return nodeChildProcess.spawnSync;
  },
});
Object.defineProperty(exports, 'exec', {
  enumerable: true,
  get: function () {
    return nodeChildProcess.exec;
  },
});
Object.defineProperty(exports, 'execSync', {
  enumerable: true,
  get: function () {
    return nodeChildProcess.execSync;
  },
});
Object.defineProperty(exports, 'execFile', {
  enumerable: true,
  get: function () {
    return nodeChildProcess.execFile;
  },
});
Object.defineProperty(exports, 'execFileSync', {
  enumerable: true,
  get: function () {
    return nodeChildProcess.execFileSync;
  },
});

if (require.main === module) require('./lib/cli').runCli(process.argv.slice(2));

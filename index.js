#!/usr/bin/env node
'use strict';

// forkline: node:child_process's fork() with the IPC channel in Rust, and node:cluster's primary. This file only
// loads and re-exports: the JS layer is lib/ (one module per concern, named after Node's lib/internal), the native
// addon is src/ (see README.md, Architecture).

// The addon first: a missing build fails here, with a message that says how to build it.
require('./lib/binding');
const nodeChildProcess = require('node:child_process');
const { fork, spawn, ChildProcess } = require('./lib/child_process');
// Preloaded into a child (a parent chose `childRuntime: 'forkline'`), this starts the runtime before user code.
require('./lib/runtime');

// Plain assignments, so ESM's named imports (`import { fork } from 'forkline'`) see them. spawn() is forkline's
// for children with an 'ipc' slot; the rest of node:child_process is re-exported as it is, so that swapping the
// require just works.
exports.fork = fork;
exports.spawn = spawn;
exports.ChildProcess = ChildProcess;
exports.cluster = require('./lib/cluster');
exports.bus = require('./lib/bus');
exports.spawnSync = nodeChildProcess.spawnSync;
exports.exec = nodeChildProcess.exec;
exports.execSync = nodeChildProcess.execSync;
exports.execFile = nodeChildProcess.execFile;
exports.execFileSync = nodeChildProcess.execFileSync;

if (require.main === module) require('./lib/cli').runCli(process.argv.slice(2));

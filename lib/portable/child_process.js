'use strict';

// The portable backend's fork() and spawn(): node:child_process's own (its ChildProcess, argument handling, errors
// and events), after forkline's own options are checked as the native backend checks them. A child that has a
// channel then gets forkline's channel additions (lib/portable/channel.js). The child is never asked to start
// forkline's runtime: it gets Node's channel and no preload.

const nodeChildProcess = require('node:child_process');
const process = require('node:process');
const { validateMaxMessageSize, busyPollOf } = require('../validators');
const { resolveChildRuntime } = require('../runtime_env');
const { instrument } = require('./channel');
const { unsupported, fallback } = require('./unsupported');

// forkline's options for a child with a channel (`file` is what it runs): validated first, as the native backend
// does; then what needs the native core throws if asked for in code, or falls back to Node's channel if it comes
// from the environment (lib/portable/unsupported.js). Returns the options for Node, without forkline's.
function nodeOptions(options, file) {
  const { maxMessageSize, busyPoll, childRuntime, ...rest } = options;
  validateMaxMessageSize(maxMessageSize);
  const us = busyPollOf(options);
  if (maxMessageSize != null) throw unsupported('fork() option maxMessageSize');
  checkChildRuntime(childRuntime, file, 'fork() option');
  if (us > 0) {
    fallback('busyPoll', `${busyPoll != null ? 'busyPoll' : 'FORKLINE_BUSY_POLL'} is ignored: Node's channel waits`);
  }
  return rest;
}

// The child runtime a child running `file` would get (`option`: the fork() option or cluster setting, `what` names
// it): none here. Asked for in code it throws; from FORKLINE_CHILD_RUNTIME it is Node's channel.
function checkChildRuntime(option, file, what) {
  if (resolveChildRuntime(option, file) !== 'forkline') return;
  if (option != null) throw unsupported(`${what} childRuntime: 'forkline'`);
  fallback('childRuntime', "FORKLINE_CHILD_RUNTIME=forkline: children run on Node's channel");
}

// Node's fork() and spawn(). forkline/register puts forkline's in their place on node:child_process, which would
// call back into this module: it keeps Node's own for it (lib/register.js, state.node).
function nodeFunctions() {
  const registered = globalThis[Symbol.for('forkline.register')];
  return registered && registered.node ? registered.node : nodeChildProcess;
}

const isOptions = (value) => value !== null && typeof value === 'object' && !Array.isArray(value);

function fork(modulePath, args, options) {
  // Node's juggling: the options may come in place of the args.
  if (isOptions(args)) {
    options = args;
    args = [];
  }
  const node = nodeFunctions();
  // Anything else is Node's to reject.
  if (options != null && !isOptions(options)) return node.fork(modulePath, args, options);
  options ??= {};
  const child = node.fork(modulePath, args, nodeOptions(options, options.execPath || process.execPath));
  return instrument(child, options.serialization || 'json');
}

// A spawn with an 'ipc' slot has a channel, as fork()'s children; any other is Node's own, untouched.
function spawn(file, args, options) {
  const node = nodeFunctions();
  const opts = isOptions(args) ? args : options;
  if (!isOptions(opts) || !Array.isArray(opts.stdio) || !opts.stdio.includes('ipc')) {
    return node.spawn(file, args, options);
  }
  const forNode = nodeOptions(opts, file);
  const child = isOptions(args) ? node.spawn(file, forNode) : node.spawn(file, args, forNode);
  return instrument(child, opts.serialization || 'json');
}

module.exports = { fork, spawn, ChildProcess: nodeChildProcess.ChildProcess, checkChildRuntime };

'use strict';

// The parent's side of the child runtime (forkline on both ends): which runtime a child gets, and the environment
// that starts it. fork() with `childRuntime: 'forkline'` hands the child its channel under FORKLINE_CHANNEL_FD
// instead of NODE_CHANNEL_FD (so Node's bootstrap leaves it alone) and preloads lib/runtime.js with `--require` in
// NODE_OPTIONS; the runtime reads these variables back and removes them. A cluster worker's NODE_UNIQUE_ID goes as
// FORKLINE_UNIQUE_ID, so that Node's bootstrap does not start its worker side on a channel it does not have: the
// runtime starts it on its own once its channel is up.

const path = require('node:path');
const process = require('node:process');
const { makeError } = require('./errors');

const CHILD_RUNTIMES = ['node', 'forkline'];
const RUNTIME_FD = 'FORKLINE_CHANNEL_FD';
const RUNTIME_MODE = 'FORKLINE_CHANNEL_SERIALIZATION_MODE';
// The child's NODE_OPTIONS as its parent meant it (JSON: a string, or null for none), restored at start.
const RUNTIME_NODE_OPTIONS = 'FORKLINE_NODE_OPTIONS';
// The parent's busyPoll, for the child's end (µs, 0 = off; absent: the child's default).
const RUNTIME_BUSY_POLL = 'FORKLINE_CHANNEL_BUSY_POLL';
// A cluster worker's id (Node's NODE_UNIQUE_ID).
const RUNTIME_UNIQUE_ID = 'FORKLINE_UNIQUE_ID';
const RUNTIME_KEYS = [
  'NODE_CHANNEL_FD',
  'NODE_CHANNEL_SERIALIZATION_MODE',
  RUNTIME_FD,
  RUNTIME_MODE,
  RUNTIME_NODE_OPTIONS,
  RUNTIME_BUSY_POLL,
  RUNTIME_UNIQUE_ID,
];
// What the child preloads.
const PRELOAD = path.join(__dirname, 'runtime.js');

// 'node' or 'forkline'. The option wins; FORKLINE_CHILD_RUNTIME sets a whole process's default, which applies only
// to children of this process's own node (a child with another execPath may not be Node at all).
function resolveChildRuntime(option, file) {
  if (option != null) {
    if (!CHILD_RUNTIMES.includes(option)) {
      throw makeError('ERR_INVALID_ARG_VALUE', 'options.childRuntime', option, "must be one of: 'node', 'forkline'");
    }
    return option;
  }
  const fromEnv = process.env.FORKLINE_CHILD_RUNTIME;
  if (fromEnv === undefined || fromEnv === '') return 'node';
  if (!CHILD_RUNTIMES.includes(fromEnv)) {
    throw makeError(
      'ERR_INVALID_ARG_VALUE',
      'env.FORKLINE_CHILD_RUNTIME',
      fromEnv,
      "must be one of: 'node', 'forkline'",
    );
  }
  return file === process.execPath ? fromEnv : 'node';
}

function childRuntimeOf(options) {
  return options.childRuntime === 'forkline' ? 'forkline' : 'node';
}

// NODE_OPTIONS' own quoting (node_options.cc): double quotes, with backslash escapes inside them.
function quoteNodeOption(text) {
  return `"${text.replace(/[\\"]/g, (c) => `\\${c}`)}"`;
}

// The child's environment for the forkline runtime: the channel (and a cluster worker's id) under forkline's names,
// lib/runtime.js preloaded, and the parent's busyPoll if it has one (else the child's end takes its own default).
function childRuntimeEnv(envPairs, ipcIndex, serialization, busyPoll) {
  const preload = `--require ${quoteNodeOption(PRELOAD)}`;
  let nodeOptions = null;
  let uniqueId = null;
  const out = [];
  for (const pair of envPairs) {
    const key = pair.slice(0, pair.indexOf('='));
    if (key === 'NODE_UNIQUE_ID') {
      uniqueId = pair.slice(key.length + 1);
    } else if (key === 'NODE_OPTIONS') {
      nodeOptions = pair.slice(key.length + 1);
      // Where the user's NODE_OPTIONS was, so that the child's process.env keeps its order.
      out.push(undefined);
    } else if (!RUNTIME_KEYS.includes(key)) {
      out.push(pair);
    }
  }
  const options = `NODE_OPTIONS=${nodeOptions ? `${nodeOptions} ${preload}` : preload}`;
  const at = out.indexOf(undefined);
  if (at === -1) out.push(options);
  else out[at] = options;
  return [
    ...out.filter((pair) => pair !== undefined),
    `${RUNTIME_NODE_OPTIONS}=${JSON.stringify(nodeOptions)}`,
    `${RUNTIME_FD}=${ipcIndex}`,
    `${RUNTIME_MODE}=${serialization}`,
    ...(busyPoll === undefined ? [] : [`${RUNTIME_BUSY_POLL}=${busyPoll}`]),
    ...(uniqueId === null ? [] : [`${RUNTIME_UNIQUE_ID}=${uniqueId}`]),
  ];
}

module.exports = {
  RUNTIME_BUSY_POLL,
  RUNTIME_FD,
  RUNTIME_MODE,
  RUNTIME_NODE_OPTIONS,
  RUNTIME_UNIQUE_ID,
  resolveChildRuntime,
  childRuntimeOf,
  childRuntimeEnv,
};

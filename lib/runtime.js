'use strict';

// The child runtime: forkline's channel serving the child's process.send / process.on('message') /
// process.disconnect / process.channel, as Node's _forkChild (lib/child_process.js) would serve them with Node's own.
// A parent that chose it (lib/runtime_env.js) preloads this file; loaded so, it opens the Rust channel before any
// user code runs and removes every trace of itself from process.env, so grandchildren start as plain Node children.

const fs = require('node:fs');
const util = require('node:util');
// The process object of start-up, not the global at call time: code may replace globalThis.process (tinypool does).
const process = require('node:process');
const native = require('./binding');
const { setupChannel, flushPendingMessages, flushNow } = require('./channel');
const { isBusyPoll } = require('./validators');
const {
  RUNTIME_BUSY_POLL,
  RUNTIME_FD,
  RUNTIME_MODE,
  RUNTIME_NODE_OPTIONS,
  RUNTIME_UNIQUE_ID,
} = require('./runtime_env');

// How long an exiting child waits for its queued messages to leave (a parent that never reads would hang it).
const EXIT_FLUSH_MS = 30_000;

// The runtime cannot run: say so and exit, rather than run the child's code without its channel.
function runtimeFailed(reason) {
  try {
    fs.writeSync(2, `forkline: the child runtime cannot start: ${reason}\n`);
  } finally {
    process.exit(1);
  }
}

function startChildRuntime() {
  const env = process.env;
  const fd = Number(env[RUNTIME_FD]);
  const serialization = env[RUNTIME_MODE] || 'json';
  // The parent's busyPoll, else this process's default (as fork() takes it), else polling while it pays.
  const busyPoll = env[RUNTIME_BUSY_POLL] || env.FORKLINE_BUSY_POLL || undefined;
  const uniqueId = env[RUNTIME_UNIQUE_ID];
  let nodeOptions = null;
  try {
    nodeOptions = JSON.parse(env[RUNTIME_NODE_OPTIONS] ?? 'null');
  } catch {
    // Not ours to judge: drop our preload and leave no NODE_OPTIONS.
  }
  // Node deletes NODE_CHANNEL_FD from the env; we delete ours and put NODE_OPTIONS back as it was.
  delete env[RUNTIME_FD];
  delete env[RUNTIME_MODE];
  delete env[RUNTIME_NODE_OPTIONS];
  delete env[RUNTIME_BUSY_POLL];
  delete env[RUNTIME_UNIQUE_ID];
  if (typeof nodeOptions === 'string') env.NODE_OPTIONS = nodeOptions;
  else delete env.NODE_OPTIONS;

  if (process.channel !== undefined || typeof process.send === 'function') {
    runtimeFailed('this process already has an IPC channel (NODE_CHANNEL_FD was set too)');
  }
  if (!Number.isInteger(fd) || fd < 0) runtimeFailed(`${RUNTIME_FD} is not a file descriptor`);
  if (serialization !== 'json' && serialization !== 'advanced') {
    runtimeFailed(`unknown serialization ${util.inspect(serialization)}`);
  }
  let nat;
  let end = null;
  try {
    // One that is no valid window (only an env the parent did not check) leaves the default.
    const us = Number(busyPoll);
    nat = native.NativeChannel.open(fd, serialization, () => end._onWake(), isBusyPoll(us) ? us : undefined);
  } catch (err) {
    runtimeFailed(`cannot open the channel on fd ${fd} (${err.message})`);
  }

  end = setupChannel(process, nat, serialization, EXIT_FLUSH_MS);
  const control = end._control;

  // Node's _forkChild: the channel keeps the process alive only while someone listens for 'message' or
  // 'disconnect'; messages that came before the first 'message' listener wait for it.
  const counts = (name) => name === 'message' || name === 'disconnect';
  process.on('newListener', (name) => {
    process.nextTick(flushPendingMessages, end);
    if (counts(name)) control.refCounted();
  });
  process.on('removeListener', (name) => {
    if (counts(name)) control.unrefCounted();
  });
  // Listeners a preload before us added.
  for (const name of ['message', 'disconnect']) {
    for (let i = process.listenerCount(name); i > 0; i--) control.refCounted();
  }

  if (uniqueId !== undefined) startClusterWorker(uniqueId, end);
}

// Node's initializeClusterIPC (lib/internal/process/pre_execution.js), which its bootstrap runs right after the
// channel is set up when NODE_UNIQUE_ID is set: node:cluster, loaded while the variable is there, is the worker
// side; _setupWorker() makes cluster.worker, listens for the primary's messages and says 'online'; the variable goes
// so that grandchildren do not inherit it. As Node, only for a script (no argv[1], e.g. `node -e`: the variable stays
// and nothing starts).
function startClusterWorker(uniqueId, end) {
  process.env.NODE_UNIQUE_ID = uniqueId;
  if (!process.argv[1]) return;
  const cluster = require('node:cluster');
  if (typeof cluster._setupWorker !== 'function') {
    runtimeFailed('node:cluster was loaded as a primary before the runtime (by an earlier preload?)');
  }
  cluster._setupWorker();
  // Node's worker writes 'online' at once, before the user's script: a primary can then kill a worker that never
  // yields (test-cluster-kill-infinite-loop). Ours would wait for the end of the tick.
  flushNow(end);
  delete process.env.NODE_UNIQUE_ID;
}

if (process.env[RUNTIME_FD] !== undefined && require('node:worker_threads').isMainThread) startChildRuntime();

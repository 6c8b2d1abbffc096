'use strict';

// What the portable backend does with a feature that needs the native core. One rule, applied per feature in
// lib/portable/child_process.js and cluster.js (and listed in docs/api.md, "Portable mode"):
// - asked for in code, where leaving it out would change what the program sees (maxMessageSize drops long messages,
//   childRuntime: 'forkline' changes the child's channel and its exit guarantees): FORKLINE_UNSUPPORTED, thrown in
//   the caller's frame;
// - a process-wide default from the environment (FORKLINE_CHILD_RUNTIME, FORKLINE_BUSY_POLL,
//   NODE_CLUSTER_SCHED_POLICY=reuseport), or a knob that only trades speed (busyPoll, SCHED_REUSEPORT): what Node
//   does, said once per feature and process on NODE_DEBUG=forkline (lib/debug.js, part 'backend').

const backend = require('../backend');
const debug = require('../debug');
const { makeError } = require('../errors');

// FORKLINE_UNSUPPORTED for `what` (e.g. "fork() option maxMessageSize").
function unsupported(what) {
  return makeError('FORKLINE_UNSUPPORTED', what, backend.reason);
}

const said = new Set();

// One NODE_DEBUG line, the first time `feature` falls back in this process.
function fallback(feature, format, ...args) {
  if (said.has(feature)) return;
  said.add(feature);
  debug.backend(format, ...args);
}

module.exports = { unsupported, fallback };

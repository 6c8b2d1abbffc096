'use strict';

// Which backend serves this process, decided here, once: 'native' (the Rust addon owns the channel, the spawn and
// the cluster's sockets) or 'portable' (Node's own channel and cluster, with forkline's JS-level features on top:
// lib/portable/). FORKLINE_BACKEND=native|portable forces one; unset, the native addon is used if it loads
// (lib/binding.js), else the portable backend. A portable process says why on one NODE_DEBUG=forkline line
// (`backend: portable (...)`). Forcing 'native' where the addon does not load throws its load error.
//
// Each backend serves the same roles with modules of the same exports, so the rest of lib/ asks for a role here and
// never looks at which backend answered:
//   childProcess   { fork, spawn, ChildProcess }
//   channel        { sendEncoded(end, message, memo), channelStats(end) }   (what the bus and cluster.stats() use)
//   primary        { cluster, policyFromEnv }                              (node:cluster's primary side)
// plus peerUid(fd), the control socket's peer check (lib/cluster/control.js).

const process = require('node:process');
const { makeError } = require('./errors');
const debug = require('./debug');

const MODULES = {
  native: { childProcess: './child_process', channel: './channel', primary: './cluster/primary' },
  portable: {
    childProcess: './portable/child_process',
    channel: './portable/channel',
    primary: './portable/cluster',
  },
};

// FORKLINE_BACKEND: 'native', 'portable', or null when unset (the native addon if it loads).
function requested() {
  const value = process.env.FORKLINE_BACKEND;
  if (value === undefined || value === '') return null;
  if (!Object.hasOwn(MODULES, value)) {
    throw makeError('ERR_INVALID_ARG_VALUE', 'env.FORKLINE_BACKEND', value, "must be one of: 'native', 'portable'");
  }
  return value;
}

let chosen = null;

// { name, reason }: reason says why the portable backend serves (null for the native one).
function current() {
  if (chosen !== null) return chosen;
  const want = requested();
  if (want === 'portable') {
    chosen = { name: 'portable', reason: 'FORKLINE_BACKEND=portable' };
  } else {
    const { loadError } = require('./binding');
    if (!loadError) chosen = { name: 'native', reason: null };
    else if (want === 'native') throw loadError;
    // The load error without its advice to build from source: the portable mode serves.
    else chosen = { name: 'portable', reason: loadError.message.replace(/\. Build it from source.*$/s, '') };
  }
  if (chosen.name === 'portable') debug.backend('portable (%s)', chosen.reason);
  return chosen;
}

function role(name) {
  return require(MODULES[current().name][name]);
}

module.exports = {
  requested,
  get name() {
    return current().name;
  },
  get reason() {
    return current().reason;
  },
  childProcess: () => role('childProcess'),
  channel: () => role('channel'),
  primary: () => role('primary'),
  // The uid of the process at the other end of a Unix socket, or null where this backend cannot tell: Node has no
  // API for SO_PEERCRED (Linux), getpeereid (macOS) or GetNamedPipeClientProcessId (Windows); the addon asks Linux.
  peerUid: (fd) => (current().name === 'native' ? require('./binding').peerUid(fd) : null),
};

'use strict';

// What differs between the Node majors forkline runs on (20, 22, 24, 26), decided here, once: every other module asks
// this one by name and never reads process.version itself. Each entry says which change of Node's it follows (read in
// that version's lib/). Where the change can be seen from outside (a class Node exports) it is detected; where it is
// inside Node's own functions (a validator, a cluster key) it goes by the running major, as those changed only there.

const process = require('node:process');

const major = Number(process.versions.node.split('.')[0]);

module.exports = {
  major,

  // `child._channel` and `process._channel`, the deprecated aliases of `channel` (DEP0129): gone in Node 26
  // (lib/internal/child_process.js setupChannel no longer defines them).
  channelAlias: major < 26,

  // The channel object (`child.channel`, Node's Control) said 'unref' when its last counted reference went, up to
  // Node 22; Node 24 dropped the event.
  channelUnrefEvent: major < 24,

  // Node 26 validates `uid`/`gid` with validateInt32 and `timeout` with validateInteger(..., 0): a string is an
  // ERR_INVALID_ARG_TYPE, a fraction or a value out of range an ERR_OUT_OF_RANGE. Before, one check each:
  // ERR_INVALID_ARG_TYPE 'int32' for ids, ERR_OUT_OF_RANGE 'an unsigned integer' for the timeout.
  integerValidators: major >= 26,

  // Node 22's primary (lib/internal/cluster/primary.js queryServer) keys a server without the worker's listen index
  // when the port is not 0, and a worker that already holds the cached handle of that key gets a new one.
  clusterKeyByPort: major >= 22,

  // Node 24 publishes each spawn on the tracing channel `child_process.spawn` (start, then end or error), beside the
  // `child_process` channel every version has.
  spawnTracingChannel: major >= 24,

  // Node 24 warns DEP0190 once per process when spawn() gets args with `shell: true`.
  shellArgsDeprecation: major >= 24,

  // Node 24 clears spawn()'s `timeout` timer on 'close' (which always follows 'exit', or 'error' on a failed spawn)
  // rather than on 'exit'.
  timeoutClearedOnClose: major >= 24,

  // net.BoundSocket (Node 24.22, 26): a bound, not yet listening or connected socket, which send() passes as the
  // handle type 'net.BoundSocket'. Looked up when a handle is sent or received, not at load (node:net is not free).
  boundSocket() {
    const { BoundSocket } = require('node:net');
    return typeof BoundSocket === 'function' ? BoundSocket : null;
  },
};

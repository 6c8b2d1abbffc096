'use strict';

// cluster.stats(): one entry per worker of the primary, from what the primary knows (state, start, restarts), the
// connections handed to it and refused by it (`connectionsOf(worker)`: the native acceptor's tallies in Rust, or
// the portable backend's count of the workers' replies) and the worker channel's counters, from the backend's
// channel (lib/backend.js).

const backend = require('../backend');
const { kStarted, kRestarts } = require('./worker');

function clusterStats(cluster, connectionsOf) {
  const { channelStats } = backend.channel();
  const now = Date.now();
  return Object.values(cluster.workers).map((worker) => {
    const { handed, refused } = connectionsOf(worker);
    const proc = worker.process;
    return {
      id: worker.id,
      pid: proc.pid,
      state: worker.state,
      uptime: (now - worker[kStarted]) / 1000,
      restarts: worker[kRestarts] || 0,
      connections: { handed, refused },
      channel: channelStats(proc),
    };
  });
}

module.exports = { clusterStats };

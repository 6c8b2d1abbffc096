'use strict';

// cluster.stats(): one entry per worker of the primary, from what the primary knows (state, start, restarts), the
// round-robin acceptor's tallies in Rust (connections handed and refused, per server key) and the worker channel's
// counters.

const { channelStats } = require('../channel');
const { kStarted, kRestarts } = require('./worker');

function clusterStats(cluster, servers) {
  const now = Date.now();
  return Object.values(cluster.workers).map((worker) => {
    let handed = 0;
    let refused = 0;
    for (const server of servers.values()) {
      const tally = server.tally(worker.id);
      handed += tally.handed;
      refused += tally.refused;
    }
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

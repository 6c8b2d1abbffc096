'use strict';

// `require('forkline/cluster')`: the cluster module alone, as `require('node:cluster')` gives it. In a worker (a
// process forked by a cluster primary, forkline's or Node's), it is Node's own cluster, so that the one-file
// `if (cluster.isPrimary) ... else ...` program runs unchanged. The primary is the backend's (lib/backend.js).

const nodeCluster = require('node:cluster');

module.exports = nodeCluster.isWorker ? nodeCluster : require('../backend').primary().cluster;

'use strict';

// `require('forkline/cluster')`: the cluster module alone, as `require('node:cluster')` gives it.
module.exports = require('../index.js').cluster;

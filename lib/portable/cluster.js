'use strict';

// The portable backend's cluster primary: node:cluster's own (its workers, its round-robin and shared handles, its
// events), behind an object of forkline's that adds what the native primary adds in JS: settings.restart and
// 'giveup' (lib/cluster/restart.js), reload() (reload.js), stats() (stats.js), broadcast() and the bus gateway, and
// the cluster's trace points. Node's cluster stays as it is: this object forwards its events and reads its state,
// and each worker it forks gets forkline's channel additions (lib/portable/channel.js) on its ChildProcess.

const EventEmitter = require('node:events');
const nodeCluster = require('node:cluster');
const process = require('node:process');
const { instrument } = require('./channel');
const { checkChildRuntime } = require('./child_process');
const { fallback } = require('./unsupported');
const { kEnv, kNoRestart, kStarted } = require('../cluster/worker');
const { Restarts } = require('../cluster/restart');
const { rollingReload } = require('../cluster/reload');
const { clusterStats } = require('../cluster/stats');
const debug = require('../debug');
const busGateways = require('../bus/gateway');

const { SCHED_NONE, SCHED_RR } = nodeCluster;
// forkline's own policy; Node's channel and cluster have no SO_REUSEPORT sockets, so it becomes round-robin.
const SCHED_REUSEPORT = 3;
const POLICY_NAMES = { [SCHED_NONE]: 'none', [SCHED_RR]: 'rr', [SCHED_REUSEPORT]: 'reuseport' };

// The launcher's --policy and NODE_CLUSTER_SCHED_POLICY: 'reuseport' is forkline's; anything else as Node reads it
// (its default is round-robin, except on Windows).
function policyFromEnv(value) {
  if (value === 'none') return SCHED_NONE;
  if (value === 'rr') return SCHED_RR;
  if (value === 'reuseport') return SCHED_REUSEPORT;
  return nodeCluster.schedulingPolicy;
}

const cluster = new EventEmitter();
const restarts = new Restarts();
// Connections Node's round-robin handed to each worker and those it refused (the workers' `accepted` replies).
const tallies = new WeakMap();
let policyFrozen = false;

cluster.isWorker = false;
cluster.isMaster = true;
cluster.isPrimary = true;
cluster.Worker = nodeCluster.Worker;
cluster.SCHED_NONE = SCHED_NONE;
cluster.SCHED_RR = SCHED_RR;
cluster.SCHED_REUSEPORT = SCHED_REUSEPORT;
cluster.schedulingPolicy = policyFromEnv(process.env.NODE_CLUSTER_SCHED_POLICY);
for (const name of ['workers', 'settings']) {
  Object.defineProperty(cluster, name, {
    get: () => nodeCluster[name],
    set: (value) => (nodeCluster[name] = value),
    enumerable: true,
    configurable: true,
  });
}

for (const event of ['setup', 'fork', 'online', 'listening', 'disconnect', 'message']) {
  nodeCluster.on(event, (...args) => cluster.emit(event, ...args));
}
nodeCluster.on('exit', (worker, code, signal) => {
  debug.workerExit(worker, code, signal);
  cluster.emit('exit', worker, code, signal);
  restarts.onExit(cluster, worker);
});

// The policy is frozen by the first setup, as in Node: SCHED_REUSEPORT becomes round-robin here.
function freezePolicy() {
  if (policyFrozen) return;
  policyFrozen = true;
  if (cluster.schedulingPolicy === SCHED_REUSEPORT) {
    fallback('reuseport', "SCHED_REUSEPORT is round-robin: Node's cluster has no SO_REUSEPORT sockets");
    cluster.schedulingPolicy = SCHED_RR;
  }
  nodeCluster.schedulingPolicy = cluster.schedulingPolicy;
}

cluster.setupPrimary = function setupPrimary(options) {
  if (options != null && options.bus !== undefined) busGateways.configure(options.bus);
  freezePolicy();
  nodeCluster.setupPrimary(options);
};
cluster.setupMaster = cluster.setupPrimary;

cluster.fork = function forkWorker(env) {
  freezePolicy();
  // Node's cluster forks with its own execPath.
  checkChildRuntime(nodeCluster.settings.childRuntime, process.execPath, 'cluster setting');
  const bus = busGateways.gateway();
  const worker = nodeCluster.fork({ ...env, FORKLINE_BUS_HOST: bus.host });
  instrument(worker.process, nodeCluster.settings.serialization || 'json');
  worker[kEnv] = env;
  worker[kStarted] = Date.now();
  // A worker the primary kills on purpose is not restarted (lib/cluster/restart.js).
  const destroy = worker.destroy;
  Object.defineProperty(worker, 'destroy', {
    value: function destroyOnPurpose(...args) {
      this[kNoRestart] = true;
      return Reflect.apply(destroy, this, args);
    },
    writable: true,
    configurable: true,
    enumerable: false,
  });
  watchWorker(worker);
  debug.fork(worker);
  bus.attachWorker(worker);
  return worker;
};

// What JS sees of a worker's servers on its channel: the primary's answer to its queryServer (a server was set up:
// the 'schedule' trace), the connections Node's round-robin hands it and its answers (cluster.stats(): handed, and
// refused when it had no server for the connection any more, which then goes to another worker).
function watchWorker(worker) {
  const tally = { handed: 0, refused: 0 };
  tallies.set(worker, tally);
  const proc = worker.process;
  proc.on('internalMessage', (message) => {
    if (message.cmd === 'NODE_CLUSTER' && message.accepted === false) tally.refused++;
  });
  const send = proc.send;
  proc.send = function sendWatched(message) {
    if (message !== null && typeof message === 'object' && message.cmd === 'NODE_CLUSTER') {
      if (message.act === 'newconn') tally.handed++;
      else if (!message.errno && typeof message.key === 'string' && 'ack' in message) {
        debug.schedule(worker, message.key, POLICY_NAMES[nodeCluster.schedulingPolicy]);
      }
    }
    return Reflect.apply(send, this, arguments);
  };
}

cluster.disconnect = function disconnect(cb) {
  restarts.stop();
  nodeCluster.disconnect(() => {
    busGateways.release();
    if (typeof cb === 'function') cb();
  });
};

// Every worker of every host (through the bus's broker, if it has one) gets `message` as a plain 'message'.
cluster.broadcast = function broadcast(message) {
  return busGateways.gateway().broadcast(message);
};

// The native primary also keeps a copy of each connection it hands a worker being replaced; Node's round-robin
// hands a connection over once and for all, so there is nothing to hold here (docs/cluster.md, reload's limits).
cluster.reload = function reload(options, callback) {
  return rollingReload(cluster, options, callback, () => {});
};

cluster.stats = () => clusterStats(cluster, (worker) => tallies.get(worker) ?? { handed: 0, refused: 0 });

module.exports = { cluster, policyFromEnv };

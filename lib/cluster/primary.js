'use strict';

// node:cluster's primary (Node's lib/internal/cluster/primary.js), for workers that are plain Node processes running
// Node's own worker side. Each server key's sockets live in Rust (NativeServer): under round-robin it accepts and
// hands connections to workers off the JS thread, and takes their replies itself. Restarts are lib/cluster/restart.js,
// rolling reloads lib/cluster/reload.js.

const EventEmitter = require('node:events');
const os = require('node:os');
const path = require('node:path');
const process = require('node:process');
const native = require('../binding');
const { fork } = require('../child_process');
const { sendFd, nativeChannelOf } = require('../channel');
const { Worker, kEnv, kNoRestart, kStarted } = require('./worker');
const { Restarts } = require('./restart');
const { rollingReload } = require('./reload');
const { workerExecArgv } = require('./inspect');
const { clusterStats } = require('./stats');
const debug = require('../debug');
const nodeVersion = require('../node_version');
const busGateways = require('../bus/gateway');

const { EINVAL } = os.constants.errno;

const SCHED_NONE = 1;
const SCHED_RR = 2;
// forkline's own: every worker listens on a SO_REUSEPORT socket of its own and the kernel balances.
const SCHED_REUSEPORT = 3;
const POLICY_NAMES = { [SCHED_NONE]: 'none', [SCHED_RR]: 'rr', [SCHED_REUSEPORT]: 'reuseport' };

const cluster = new EventEmitter();
// Says 'disconnect' when the last worker is gone (cluster.disconnect's callback).
const intercom = new EventEmitter();
// Server keys -> NativeServer.
const servers = new Map();
let workerIds = 0;
let clusterInitialized = false;
let clusterSeq = 0;
let schedulingPolicy;
const restarts = new Restarts();

function policyFromEnv(value) {
  if (value === 'none') return SCHED_NONE;
  if (value === 'reuseport') return SCHED_REUSEPORT;
  return SCHED_RR;
}

// The primary's side of a worker (Node's primary.js adds these to Worker's prototype too).
Worker.prototype.disconnect = function disconnect() {
  this.exitedAfterDisconnect = true;
  sendToWorker(this, { act: 'disconnect' });
  removeServersOf(this);
  removeWorker(this);
  return this;
};

Worker.prototype.destroy = function destroy(signo) {
  // A worker the primary kills on purpose is not restarted (Node leaves exitedAfterDisconnect alone here).
  this[kNoRestart] = true;
  this.process.kill(signo || 'SIGTERM');
};

cluster.isWorker = false;
cluster.isMaster = true;
cluster.isPrimary = true;
cluster.Worker = Worker;
cluster.workers = {};
cluster.settings = {};
cluster.SCHED_NONE = SCHED_NONE;
cluster.SCHED_RR = SCHED_RR;
cluster.SCHED_REUSEPORT = SCHED_REUSEPORT;
cluster.schedulingPolicy = policyFromEnv(process.env.NODE_CLUSTER_SCHED_POLICY);

cluster.setupPrimary = function setupPrimary(options) {
  // The bus's settings (lib/bus/gateway.js): checked now, used when the first worker is forked.
  if (options != null && options.bus !== undefined) busGateways.configure(options.bus);
  const settings = {
    args: process.argv.slice(2),
    exec: process.argv[1],
    execArgv: process.execArgv,
    silent: false,
    ...cluster.settings,
    ...options,
  };
  // As Node: each process profiles to a file of its own.
  if (
    settings.execArgv.some((s) => s.startsWith('--prof')) &&
    !settings.execArgv.some((s) => s.startsWith('--logfile='))
  ) {
    settings.execArgv = [...settings.execArgv, '--logfile=v8-%p.log'];
  }
  cluster.settings = settings;
  if (clusterInitialized) return process.nextTick(() => cluster.emit('setup', settings));
  clusterInitialized = true;
  schedulingPolicy = cluster.schedulingPolicy; // Frozen from here on, as in Node.
  if (!POLICY_NAMES[schedulingPolicy]) {
    throw new Error(`Bad cluster.schedulingPolicy: ${schedulingPolicy}`);
  }
  process.nextTick(() => cluster.emit('setup', settings));
  // A primary that is itself a child: its parent may ask it to start every worker's inspector (Node's primary.js).
  process.on('internalMessage', (message) => {
    if (message.cmd !== 'NODE_DEBUG_ENABLED') return;
    for (const worker of Object.values(cluster.workers)) {
      if (worker.state === 'online' || worker.state === 'listening') {
        process._debugProcess(worker.process.pid);
      } else {
        worker.once('online', function debugWhenOnline() {
          process._debugProcess(this.process.pid);
        });
      }
    }
  });
};
cluster.setupMaster = cluster.setupPrimary;

cluster.fork = function forkWorker(env) {
  cluster.setupPrimary();
  const id = ++workerIds;
  const settings = cluster.settings;
  const execArgv = workerExecArgv(settings);
  // The host's bus gateway: the worker's bus (lib/bus/) speaks to it over internal messages.
  const bus = busGateways.gateway();
  const workerProcess = fork(settings.exec, settings.args, {
    cwd: settings.cwd,
    env: { ...process.env, ...env, NODE_UNIQUE_ID: `${id}`, FORKLINE_BUS_HOST: bus.host },
    serialization: settings.serialization,
    silent: settings.silent,
    windowsHide: settings.windowsHide,
    execArgv,
    stdio: settings.stdio,
    gid: settings.gid,
    uid: settings.uid,
    // 'forkline': the worker runs forkline's channel, and the runtime starts Node's worker side on it. Unset, the
    // process default applies (FORKLINE_CHILD_RUNTIME, else 'node').
    childRuntime: settings.childRuntime,
  });
  const worker = new Worker({ id, process: workerProcess });
  worker[kEnv] = env;
  worker[kStarted] = Date.now();
  debug.fork(worker);
  bus.attachWorker(worker);

  worker.on('message', function onWorkerMessage(message, handle) {
    cluster.emit('message', this, message, handle);
  });

  worker.process.once('exit', (exitCode, signalCode) => {
    // Removed only once disconnected too: until then the user may still want it.
    if (!worker.isConnected()) {
      removeServersOf(worker);
      removeWorker(worker);
    }
    // It holds nothing now: the connections it was handed and never touched go to the other workers.
    for (const server of servers.values()) server.reclaim(worker.id);
    worker.exitedAfterDisconnect = !!worker.exitedAfterDisconnect;
    worker.state = 'dead';
    debug.workerExit(worker, exitCode, signalCode);
    worker.emit('exit', exitCode, signalCode);
    cluster.emit('exit', worker, exitCode, signalCode);
    restarts.onExit(cluster, worker);
  });

  worker.process.once('disconnect', () => {
    removeServersOf(worker);
    if (worker.isDead()) removeWorker(worker);
    worker.exitedAfterDisconnect = !!worker.exitedAfterDisconnect;
    worker.state = 'disconnected';
    worker.emit('disconnect');
    cluster.emit('disconnect', worker);
  });

  worker.process.on('internalMessage', (message) => {
    if (message === null || typeof message !== 'object' || message.cmd !== 'NODE_CLUSTER') return;
    const act = Object.hasOwn(ACTS, message.act) ? ACTS[message.act] : undefined;
    if (act) act(worker, message);
  });
  process.nextTick(() => cluster.emit('fork', worker));
  cluster.workers[worker.id] = worker;
  return worker;
};

cluster.disconnect = function disconnect(cb) {
  restarts.stop();
  const workers = Object.values(cluster.workers);
  if (workers.length === 0) {
    process.nextTick(() => intercom.emit('disconnect'));
  } else {
    for (const worker of workers) {
      if (worker.isConnected()) worker.disconnect();
    }
  }
  intercom.once('disconnect', busGateways.release);
  if (typeof cb === 'function') intercom.once('disconnect', cb);
};

// Every worker of every host (through the bus's broker, if it has one) gets `message` as a plain 'message'.
cluster.broadcast = function broadcast(message) {
  return busGateways.gateway().broadcast(message);
};

cluster.reload = function reload(options, callback) {
  return rollingReload(cluster, options, callback, holdConnectionsOf);
};

// While reload() replaces `worker`, each connection handed to it is kept in the primary too (src/cluster/
// round_robin.rs), so that one it closes before reading it can go to another worker once it has exited.
function holdConnectionsOf(worker, on) {
  for (const server of servers.values()) server.hold(worker.id, on);
}

// forkline's own: what each worker is doing (lib/cluster/stats.js), with the acceptor's tallies of its servers.
cluster.stats = () => clusterStats(cluster, connectionsOf);

function connectionsOf(worker) {
  const total = { handed: 0, refused: 0 };
  for (const server of servers.values()) {
    const tally = server.tally(worker.id);
    total.handed += tally.handed;
    total.refused += tally.refused;
  }
  return total;
}

function removeWorker(worker) {
  delete cluster.workers[worker.id];
  if (Object.keys(cluster.workers).length === 0) intercom.emit('disconnect');
}

function removeServersOf(worker) {
  for (const [key, server] of servers) {
    if (server.remove(worker.id)) servers.delete(key);
  }
}

function sendToWorker(worker, message, fd, type) {
  const proc = worker.process;
  if (!proc.connected) return false;
  message = { cmd: 'NODE_CLUSTER', ...message, seq: clusterSeq++ };
  if (fd == null) return proc.send(message);
  return sendFd(proc, message, type, fd);
}

const ACTS = {
  online(worker) {
    worker.state = 'online';
    worker.emit('online');
    cluster.emit('online', worker);
  },

  exitedAfterDisconnect(worker, message) {
    worker.exitedAfterDisconnect = true;
    sendToWorker(worker, { ack: message.seq });
  },

  queryServer(worker, message) {
    if (worker.exitedAfterDisconnect) return;
    const key = serverKey(message);
    const cached = servers.get(key);
    // Node 22 on: a worker that already holds the cached server of its key (it listens on that port again) gets a
    // server of its own, which replaces the cached one only if it can listen (lib/node_version.js).
    let server = cached !== undefined && !(nodeVersion.clusterKeyByPort && cached.has(worker.id)) ? cached : undefined;
    let errno = 0;
    if (server === undefined) {
      try {
        server = native.NativeServer.open(serverSpec(key, message));
        if (cached === undefined) servers.set(key, server);
      } catch (err) {
        errno = -(os.constants.errno[err.message] || EINVAL);
      }
    }
    let fd = null;
    if (server !== undefined) {
      try {
        fd = server.add(worker.id, nativeChannelOf(worker.process));
        servers.set(key, server);
      } catch (err) {
        errno = -(os.constants.errno[err.message] || EINVAL);
        if (server.remove(worker.id) && servers.get(key) === server) servers.delete(key);
      }
    }
    if (server !== undefined && !server.data) server.data = message.data;
    if (server !== undefined && !errno) debug.schedule(worker, key, server.policy);
    const reply = { errno, key, ack: message.seq, data: server ? server.data : message.data };
    const sockname = errno === 0 && server.sockname();
    if (sockname) reply.sockname = sockname;
    if (fd == null || errno) return sendToWorker(worker, reply);
    const udp = message.addressType === 'udp4' || message.addressType === 'udp6';
    return sendToWorker(worker, reply, fd, udp ? 'dgram.Native' : 'net.Native');
  },

  listening(worker, message) {
    const info = {
      addressType: message.addressType,
      address: message.address,
      port: message.port,
      fd: message.fd,
    };
    worker.state = 'listening';
    worker.emit('listening', info);
    cluster.emit('listening', worker, info);
  },

  // A server in the worker closed; it may already be gone with the worker's disconnect.
  close(worker, message) {
    const server = servers.get(message.key);
    if (server && server.remove(worker.id)) servers.delete(message.key);
  },
};

// The key a worker's server goes by (Node's queryServer): its listen index counts too before Node 22, and from
// Node 22 only for port 0 (each such listen is a port of its own).
function serverKey(message) {
  const base = `${message.address}:${message.port}:${message.addressType}:${message.fd}`;
  return nodeVersion.clusterKeyByPort && message.port !== 0 ? base : `${base}:${message.index}`;
}

function serverSpec(key, message) {
  const { addressType, port } = message;
  let address = message.address;
  let kind = 'tcp';
  if (addressType === 'udp4' || addressType === 'udp6') {
    kind = addressType;
  } else if (port < 0) {
    kind = 'pipe';
    // As Node: the shorter of the relative and absolute path, for the ~100 byte limit of a socket address.
    if (typeof address === 'string') {
      const relative = path.relative(process.cwd(), address);
      if (relative.length < address.length) address = relative;
    }
  }
  return {
    key,
    policy: POLICY_NAMES[schedulingPolicy],
    kind,
    address: address ?? undefined,
    // null when the worker listens on an fd (dgram's bind({ fd }) asks with address and port null).
    port: typeof port === 'number' && port >= 0 ? port : undefined,
    fd: message.fd ?? undefined,
    flags: message.flags ?? undefined,
    // Workers send what listen() got (0 or false when none); Node's primary listens with `backlog || 511`.
    backlog: message.backlog || undefined,
    readableAll: message.readableAll ?? undefined,
    writableAll: message.writableAll ?? undefined,
  };
}

module.exports = { cluster, policyFromEnv };

'use strict';

// `require('forkline/bus')`: one bus per process, in the role the process has. A worker of a forkline cluster (its
// primary set FORKLINE_BUS_HOST) speaks to its primary over IPC; any other process is its host's gateway: the
// cluster primary, or a standalone process after `await bus.connect({ url })`. See lib/bus/gateway.js.

const cluster = require('node:cluster');
const process = require('node:process');
const gateways = require('./gateway');
const { Bus, LocalLink, WorkerLink } = require('./client');

const isWorker = cluster.isWorker && typeof process.send === 'function' && !!process.env.FORKLINE_BUS_HOST;

const bus = new Bus(() => (isWorker ? new WorkerLink((message) => bus.deliver(message)) : new LocalLink()));
gateways.hooks.onError = (err) => bus.report(err);
gateways.hooks.onLocal = (message) => bus.deliver(message);

// In a worker the primary owns the connection: connect() only hands the bus back.
bus.connect = async function connect(options = {}) {
  if (isWorker) return bus;
  gateways.configure(options);
  await gateways.gateway().ready();
  return bus;
};

bus.close = async function close() {
  if (isWorker) return;
  bus.resetLink();
  await gateways.closeGateway();
};

Object.defineProperty(bus, 'role', {
  get: () => {
    if (isWorker) return 'worker';
    return gateways.hasGateway() && gateways.gateway().workerCount > 0 ? 'primary' : 'standalone';
  },
  enumerable: true,
});

Object.defineProperty(bus, 'host', {
  get: () => (isWorker ? process.env.FORKLINE_BUS_HOST : gateways.gateway().host),
  enumerable: true,
});

// So that `const { publish } = require('forkline/bus')` works too.
for (const name of ['publish', 'subscribe', 'enqueue', 'process', 'request', 'respond'])
  bus[name] = bus[name].bind(bus);

module.exports = bus;

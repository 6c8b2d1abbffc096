'use strict';

// cluster.Worker (Node's lib/internal/cluster/worker.js): what a worker is on either side. The primary adds
// disconnect() and destroy() to its prototype (lib/cluster/primary.js), as Node's primary.js does.

const EventEmitter = require('node:events');

// The env a worker was forked with, so that a restart or a reload forks its replacement alike.
const kEnv = Symbol('kEnv');
// Set when the primary kills a worker on purpose: such a worker is not restarted.
const kNoRestart = Symbol('kNoRestart');
// When the worker was forked (ms since the epoch), and how many restarts its slot has seen, for cluster.stats().
const kStarted = Symbol('kStarted');
const kRestarts = Symbol('kRestarts');

// A function constructor, as Node's: `Worker(options)` and `Worker.call({}, options)` return a Worker too.
function Worker(options) {
  if (!(this instanceof Worker)) return new Worker(options);
  EventEmitter.call(this);
  if (options === null || typeof options !== 'object') options = {};
  this.exitedAfterDisconnect = undefined;
  this.state = options.state || 'none';
  this.id = options.id | 0;
  if (options.process) {
    this.process = options.process;
    this.process.on('error', (code, signal) => this.emit('error', code, signal));
    this.process.on('message', (message, handle) => this.emit('message', message, handle));
  }
}

Object.setPrototypeOf(Worker.prototype, EventEmitter.prototype);
Object.setPrototypeOf(Worker, EventEmitter);

Worker.prototype.kill = function kill(...args) {
  return this.destroy(...args);
};

Worker.prototype.send = function send(...args) {
  return this.process.send(...args);
};

Worker.prototype.isDead = function isDead() {
  return this.process.exitCode != null || this.process.signalCode != null;
};

Worker.prototype.isConnected = function isConnected() {
  return this.process.connected;
};

module.exports = { Worker, kEnv, kNoRestart, kStarted, kRestarts };

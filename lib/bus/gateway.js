'use strict';

// The host's gateway: one per host, in the cluster primary (or in a standalone process). It routes everything within
// the host itself (topic listeners, queue handlers and responders of its workers and of its own process, each an
// Endpoint) and, when a broker URL is set, holds the host's one set of broker connections (a transport). Workers
// reach it over their IPC channel with internal messages (`cmd: 'NODE_FORKLINE_BUS'`, lib/bus/client.js). This file
// is the wiring: settings, endpoints, the bounded queue of broker operations while the broker is away, and routing
// broker messages; the concerns are apart: lib/bus/topics.js (pub/sub, broadcast), lib/bus/queues.js (job queues and
// the request streams' consumers), lib/bus/requests.js (requests and their replies).

const EventEmitter = require('node:events');
const os = require('node:os');
const process = require('node:process');
const { makeError } = require('../errors');
const { validateName, errorToWire } = require('./codec');
const { Topics } = require('./topics');
const { Queues } = require('./queues');
const { Requests } = require('./requests');
const { BrokerQueue } = require('./pending');
const { parseUrl } = require('./transports/redis_clients');
const { sendEncoded } = require('../backend').channel();

// A write to a worker that has just died fails quietly: its 'exit' detaches it from the bus (its jobs go back).
const QUIET = { swallowErrors: true };

const CMD = 'NODE_FORKLINE_BUS';

const DEFAULTS = {
  namespace: 'forkline',
  claimTimeout: 30_000,
  maxMessageSize: 1024 * 1024,
  // Remote operations held while the broker is unreachable, and how long each may wait.
  maxPending: 1000,
  pendingTimeout: 5000,
  connectTimeout: 10_000,
  // 'replicated': enqueue() resolves once a replica has the job too (WAIT), or rejects after replicationTimeout.
  durability: 'primary',
  replicationTimeout: 1000,
  // Workers publish through connections of their own (lower latency, a connection per worker): off by default.
  directPublish: false,
};

// What survives JSON unchanged: no functions, Buffers, class instances.
function plainData(value) {
  if (value === null || ['string', 'number', 'boolean'].includes(typeof value)) return true;
  if (Array.isArray(value)) return value.every(plainData);
  if (typeof value !== 'object' || Object.getPrototypeOf(value) !== Object.prototype) return false;
  return Object.values(value).every((v) => v === undefined || plainData(v));
}

// The broker's deployment: one server, a primary under Sentinel, or a Redis Cluster (exactly one of these).
const DEPLOYMENTS = ['url', 'sentinels', 'cluster'];

const same = (a, b) => a === b || JSON.stringify(a) === JSON.stringify(b);

function urlList(value, what) {
  const list = typeof value === 'string' ? value.split(',').map((url) => url.trim()) : value;
  if (!Array.isArray(list)) throw makeError('ERR_INVALID_ARG_TYPE', what, ['string', 'Array'], value);
  if (list.length === 0 || list.some((url) => typeof url !== 'string' || url === '')) {
    throw makeError('ERR_INVALID_ARG_VALUE', what, value, 'must list one or more redis:// URLs');
  }
  list.forEach((url, i) => parseUrl(url, `${what}[${i}]`));
  return list;
}

function settingsFrom(options = {}) {
  if (options === null || typeof options !== 'object') {
    throw makeError('ERR_INVALID_ARG_TYPE', 'options.bus', 'Object', options);
  }
  const env = process.env;
  const config = {
    ...DEFAULTS,
    namespace: env.FORKLINE_BUS_NAMESPACE || DEFAULTS.namespace,
    host: `${os.hostname()}:${process.pid}`,
  };
  // The environment names a deployment only when the settings name none.
  if (DEPLOYMENTS.every((key) => options[key] === undefined)) {
    if (env.FORKLINE_BUS_CLUSTER) config.cluster = env.FORKLINE_BUS_CLUSTER;
    else if (env.FORKLINE_BUS_URL) config.url = env.FORKLINE_BUS_URL;
  }
  for (const [key, value] of Object.entries(options)) if (value !== undefined) config[key] = value;
  if (config.url !== undefined && typeof config.url !== 'string') {
    throw makeError('ERR_INVALID_ARG_TYPE', 'bus.url', 'string', config.url);
  }
  if (config.url === '') delete config.url;
  if (config.cluster !== undefined) config.cluster = urlList(config.cluster, 'bus.cluster');
  if (config.sentinels !== undefined) {
    config.sentinels = urlList(config.sentinels, 'bus.sentinels');
    if (typeof config.name !== 'string' || config.name === '') {
      throw makeError('ERR_INVALID_ARG_VALUE', 'bus.name', config.name, "must name Sentinel's primary");
    }
  }
  const named = DEPLOYMENTS.filter((key) => config[key] !== undefined);
  if (named.length > 1) {
    throw makeError('ERR_INVALID_ARG_VALUE', 'bus', named.join(', '), 'must name one of url, sentinels or cluster');
  }
  validateName(config.namespace, 'bus.namespace');
  if (typeof config.host !== 'string' || !/^[^\s]{1,200}$/.test(config.host)) {
    throw makeError('ERR_INVALID_ARG_VALUE', 'bus.host', config.host, 'must be 1 to 200 characters, no spaces');
  }
  const positive = ['claimTimeout', 'maxMessageSize', 'maxPending', 'pendingTimeout', 'connectTimeout'];
  for (const key of [...positive, 'replicationTimeout']) {
    if (!Number.isInteger(config[key]) || config[key] < 1) {
      throw makeError('ERR_OUT_OF_RANGE', `bus.${key}`, 'a positive integer', config[key]);
    }
  }
  if (config.durability !== 'primary' && config.durability !== 'replicated') {
    throw makeError('ERR_INVALID_ARG_VALUE', 'bus.durability', config.durability, "must be 'primary' or 'replicated'");
  }
  for (const key of ['redisOptions', 'clusterOptions']) {
    if (config[key] !== undefined && (config[key] === null || typeof config[key] !== 'object')) {
      throw makeError('ERR_INVALID_ARG_TYPE', `bus.${key}`, 'Object', config[key]);
    }
    // Workers that publish themselves get the settings over IPC, as JSON.
    if (config.directPublish && config[key] !== undefined && !plainData(config[key])) {
      throw makeError('ERR_INVALID_ARG_VALUE', `bus.${key}`, config[key], 'must be plain data with directPublish');
    }
  }
  if (typeof config.directPublish !== 'boolean') {
    throw makeError('ERR_INVALID_ARG_TYPE', 'bus.directPublish', 'boolean', config.directPublish);
  }
  config.broker = named.length === 1;
  return config;
}

// One party on the host: a worker (over IPC) or the gateway's own process.
class Endpoint {
  constructor(send, pid) {
    this.send = send;
    this.pid = pid;
    this.topics = new Set();
    // Queue key -> this endpoint's processor of it.
    this.procs = new Map();
    // Token -> the job or request handed to this endpoint and not finished yet.
    this.jobs = new Map();
    // A worker's: its ChildProcess, and what it gets at the end of this tick.
    this.child = null;
    this.outbox = null;
  }
}

// Distinct message lists a tick's fan-out looks through for one to share (workers mostly get the same or their own).
const MAX_SHARED = 8;

function sameItems(a, b) {
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
  return true;
}

class Gateway extends EventEmitter {
  #config;
  #transport = null;
  #closed = false;
  #workers = new Set();
  // Worker endpoints with messages for the end of this tick, in the order of their first.
  #outgoing = [];
  #pending = null;
  #topics;
  #queues;
  #requests;
  #readyPromise;

  constructor(config) {
    super();
    this.#config = config;
    this.host = config.host;
    // This process's own listeners and handlers (lib/bus/index.js).
    this.local = new Endpoint((message) => process.nextTick(hooks.onLocal, message), process.pid);
    if (config.broker) {
      const { RedisTransport } = require('./transports/redis');
      this.#transport = new RedisTransport(config);
    }
    // What the parts (topics, queues, requests) share: the settings, the broker, and the way to reach it.
    const gateway = this;
    const shared = {
      config,
      host: config.host,
      local: this.local,
      transport: this.#transport,
      workers: this.#workers,
      get closed() {
        return gateway.#closed;
      },
      channel: (kind, name) => this.#channel(kind, name),
      remote: (run) => this.#pending.run(run),
      report: (err) => this.#report(err),
    };
    this.#topics = new Topics(shared);
    this.#queues = new Queues(shared, (job, reply) => this.#requests.answer(job, reply));
    this.#requests = new Requests(shared, this.#queues);
    const transport = this.#transport;
    if (transport === null) {
      this.#readyPromise = Promise.resolve();
      return;
    }
    this.#pending = new BrokerQueue(transport, config);
    transport.on('message', (channel, text) => this.#onBrokerMessage(channel, text));
    transport.on('ready', () => {
      this.#pending.flush();
      this.#queues.onReady();
    });
    transport.on('connectionError', () => {});
    this.#readyPromise = new Promise((resolve) => transport.once('ready', resolve));
    transport.connect().catch(() => {}); // ioredis keeps trying; callers wait in the bounded queue.
    transport.subscribe(this.#channel('reply', this.host)).catch(() => {});
    transport.subscribe(this.#channel('broadcast')).catch(() => {});
  }

  get config() {
    return this.#config;
  }

  // Resolves once the broker answers (at once in local-only mode).
  ready(timeout = this.#config.connectTimeout) {
    let timer;
    const expired = new Promise((resolve, reject) => {
      timer = setTimeout(
        () => reject(makeError('FORKLINE_BUS_UNAVAILABLE', `no connection within ${timeout} ms`)),
        timeout,
      );
    });
    return Promise.race([this.#readyPromise, expired]).finally(() => clearTimeout(timer));
  }

  #channel(kind, name) {
    return name === undefined ? `${this.#config.namespace}:${kind}` : `${this.#config.namespace}:${kind}:${name}`;
  }

  // ------------------------------------------------------------------------------------------------------------
  // Endpoints.

  attachWorker(worker) {
    const child = worker.process;
    const ep = new Endpoint((message) => this.#post(ep, message), child.pid);
    ep.child = child;
    this.#workers.add(worker);
    const one = (message) => {
      const result = this.handle(ep, message);
      if (message.s === undefined) return result.catch((err) => this.#report(err));
      result.then(
        (r) => ep.send({ t: 'ack', s: message.s, r }),
        (err) => ep.send({ t: 'ack', s: message.s, e: errorToWire(err) }),
      );
    };
    child.on('internalMessage', (message) => {
      if (message === null || typeof message !== 'object' || message.cmd !== CMD) return;
      if (message.t !== 'batch') return one(message);
      if (Array.isArray(message.list))
        for (const item of message.list) if (item !== null && typeof item === 'object') one(item);
    });
    this.releaseWhenIdle = false;
    const detach = () => {
      if (!this.#workers.delete(worker)) return;
      this.#topics.detach(ep);
      this.#queues.detach(ep);
      if (this.#workers.size === 0 && this.releaseWhenIdle) release();
    };
    child.once('disconnect', detach);
    child.once('exit', detach);
  }

  #post(ep, message) {
    if (ep.outbox === null) {
      ep.outbox = [];
      if (this.#outgoing.length === 0) process.nextTick(() => this.#sendOutgoing());
      this.#outgoing.push(ep);
    }
    ep.outbox.push(message);
  }

  // What a worker got in one tick crosses as one message (a fan-out of many small messages would otherwise cost one
  // IPC message each), and workers that got the same messages (a fan-out) share its encoding.
  #sendOutgoing() {
    const eps = this.#outgoing;
    this.#outgoing = [];
    const shared = [];
    for (const ep of eps) {
      const list = ep.outbox;
      ep.outbox = null;
      let same = shared.find((other) => sameItems(other.list, list));
      if (same === undefined) {
        // `cmd` only on the envelope: it is what makes the message internal.
        const envelope = list.length > 1 ? { cmd: CMD, t: 'batch', list } : { ...list[0], cmd: CMD };
        same = { list, envelope, memo: new Map() };
        if (shared.length < MAX_SHARED) shared.push(same);
      }
      sendEncoded(ep.child, same.envelope, same.memo, QUIET);
    }
  }

  // One operation from an endpoint; resolves with its result in wire form.
  async handle(ep, message) {
    if (this.#closed) throw makeError('FORKLINE_BUS_CLOSED', 'The bus is closed');
    switch (message.t) {
      case 'sub':
        return this.#topics.subscribe(ep, message.topic);
      case 'unsub':
        return this.#topics.unsubscribe(ep, message.topic);
      case 'pub':
        return this.#topics.publish(ep, message.topic, message.m);
      case 'direct':
        return this.#directSettings();
      case 'enq':
        return this.#queues.enqueue(message.queue, message.m);
      case 'proc':
        return this.#queues.addProc(ep, 'job', message.queue, message.n, message.max);
      case 'resp':
        return this.#queues.addProc(ep, 'req', message.topic, message.n, 1);
      case 'unproc':
        return this.#queues.removeProc(ep, 'job', message.queue);
      case 'unresp':
        return this.#queues.removeProc(ep, 'req', message.topic);
      case 'done':
        return this.#queues.done(ep, message);
      case 'req':
        return this.#requests.request(message.topic, message.m, message.timeout);
      default:
        throw makeError('FORKLINE_BUS_MALFORMED_MESSAGE', `Unknown bus operation ${String(message.t)}`);
    }
  }

  // What a worker needs to publish to the broker itself (directPublish), or null.
  #directSettings() {
    const config = this.#config;
    if (!config.directPublish || this.#transport === null) return null;
    const keys = ['url', 'cluster', 'sentinels', 'name', 'namespace', 'host', 'redisOptions', 'clusterOptions'];
    const settings = {};
    for (const key of [...keys, 'maxMessageSize', 'maxPending', 'pendingTimeout']) {
      if (config[key] !== undefined) settings[key] = config[key];
    }
    return settings;
  }

  // cluster.broadcast(): every worker of every host gets `message` as a plain 'message'.
  broadcast(message) {
    return this.#topics.broadcast(message);
  }

  // ------------------------------------------------------------------------------------------------------------

  #onBrokerMessage(channel, text) {
    try {
      if (channel === this.#channel('reply', this.host)) return this.#requests.onReply(text);
      if (channel === this.#channel('broadcast')) return this.#topics.onBrokerMessage(undefined, text);
      const prefix = this.#channel('t', '');
      if (!channel.startsWith(prefix)) throw new Error('unknown channel');
      this.#topics.onBrokerMessage(channel.slice(prefix.length), text);
    } catch (err) {
      this.#report(
        makeError('FORKLINE_BUS_MALFORMED_MESSAGE', `Undecodable bus message on ${channel}: ${err.message}`),
      );
    }
  }

  // ------------------------------------------------------------------------------------------------------------

  #report(err) {
    this.emit('error', err);
  }

  get pendingRequests() {
    return this.#requests.pending;
  }

  get workerCount() {
    return this.#workers.size;
  }

  async close() {
    if (this.#closed) return;
    this.#closed = true;
    this.#queues.close();
    const closed = makeError('FORKLINE_BUS_CLOSED', 'The bus was closed');
    this.#pending?.close(closed);
    this.#requests.close(closed);
    if (this.#transport !== null) await this.#transport.close();
  }
}

// ---------------------------------------------------------------------------------------------------------------
// The process's one gateway, created when first needed with the settings given so far.

let settings = {};
let current = null;

function configure(options) {
  const next = { ...settings, ...options };
  settingsFrom(next); // Validates.
  if (current !== null) {
    const config = current.config;
    const changed = Object.keys(options).some((key) => options[key] !== undefined && !same(options[key], config[key]));
    if (changed) throw makeError('ERR_INVALID_ARG_VALUE', 'bus', options, 'cannot change once the bus has started');
  }
  settings = next;
}

// Set by lib/bus/index.js, which owns the 'error' event and this process's listeners.
const hooks = { onError: (err) => process.emitWarning(err), onLocal: () => {} };

function gateway() {
  if (current === null) {
    current = new Gateway(settingsFrom(settings));
    current.on('error', (err) => hooks.onError(err));
  }
  return current;
}

async function closeGateway() {
  const g = current;
  current = null;
  if (g !== null) await g.close();
}

// After cluster.disconnect(): the primary lets go of the broker unless its own process still uses the bus.
function release() {
  if (current === null) return;
  if (current.workerCount > 0) {
    current.releaseWhenIdle = true; // Once the last worker is gone.
    return;
  }
  const local = current.local;
  if (local.topics.size > 0 || local.procs.size > 0 || local.jobs.size > 0 || current.pendingRequests > 0) return;
  closeGateway().catch((err) => hooks.onError(err));
}

module.exports = { CMD, hooks, configure, gateway, closeGateway, release, hasGateway: () => current !== null };

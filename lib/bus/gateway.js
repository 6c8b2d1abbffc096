'use strict';

// The host's gateway: one per host, in the cluster primary (or in a standalone process). It routes everything within
// the host itself (topic listeners, queue handlers and responders of its workers and of its own process, each an
// Endpoint) and, when a broker URL is set, holds the host's one set of broker connections (a transport): one broker
// subscription per topic however many local listeners it has, one consumer per queue for the whole host. Workers
// reach it over their IPC channel with internal messages (`cmd: 'NODE_FORKLINE_BUS'`, lib/bus/client.js).
//
// Wire form of a published message (broker channel `<ns>:t:<topic>`): `<host>\n<pid>\n<JSON text>`; the JSON text
// is what the publisher encoded, passed on unparsed except for one check per host.

const EventEmitter = require('node:events');
const os = require('node:os');
const process = require('node:process');
const { makeError } = require('../errors');
const { validateName, encode, checkSize, errorToWire, errorFromWire } = require('./codec');

const CMD = 'NODE_FORKLINE_BUS';

const DEFAULTS = {
  namespace: 'forkline',
  claimTimeout: 30_000,
  maxMessageSize: 1024 * 1024,
  // Remote operations held while the broker is unreachable, and how long each may wait.
  maxPending: 1000,
  pendingTimeout: 5000,
  connectTimeout: 10_000,
};
// How long one XREADGROUP blocks before looking at the set of queues again.
const BLOCK_MS = 2000;
// Request streams keep about this many entries (requests are acknowledged as soon as they are read).
const REQUEST_STREAM_LEN = 10_000;

function settingsFrom(options = {}) {
  if (options === null || typeof options !== 'object') {
    throw makeError('ERR_INVALID_ARG_TYPE', 'options.bus', 'Object', options);
  }
  const env = process.env;
  const config = {
    ...DEFAULTS,
    url: env.FORKLINE_BUS_URL || undefined,
    namespace: env.FORKLINE_BUS_NAMESPACE || DEFAULTS.namespace,
    host: `${os.hostname()}:${process.pid}`,
  };
  for (const [key, value] of Object.entries(options)) if (value !== undefined) config[key] = value;
  if (config.url !== undefined && typeof config.url !== 'string') {
    throw makeError('ERR_INVALID_ARG_TYPE', 'bus.url', 'string', config.url);
  }
  validateName(config.namespace, 'bus.namespace');
  if (typeof config.host !== 'string' || !/^[^\s]{1,200}$/.test(config.host)) {
    throw makeError('ERR_INVALID_ARG_VALUE', 'bus.host', config.host, 'must be 1 to 200 characters, no spaces');
  }
  for (const key of ['claimTimeout', 'maxMessageSize', 'maxPending', 'pendingTimeout', 'connectTimeout']) {
    if (!Number.isInteger(config[key]) || config[key] < 1) {
      throw makeError('ERR_OUT_OF_RANGE', `bus.${key}`, 'a positive integer', config[key]);
    }
  }
  return config;
}

// One party on the host: a worker (over IPC) or the gateway's own process.
class Endpoint {
  constructor(send, pid) {
    this.send = send;
    this.pid = pid;
    this.topics = new Set();
    // Queue key → this endpoint's processor of it.
    this.procs = new Map();
    // Token → the job or request handed to this endpoint and not finished yet.
    this.jobs = new Map();
  }
}

class Gateway extends EventEmitter {
  #config;
  #transport = null;
  #closed = false;
  #workers = new Set();
  // topic → Set<Endpoint>
  #topics = new Map();
  // stream key → queue state (job queues and request topics alike)
  #queues = new Map();
  // Request id → { resolve, reject, timer } of requests made on this host.
  #requests = new Map();
  #offline = [];
  #tokens = 0;
  #ids = 0;
  #waiter = null;
  #reading = null;
  #claimTimer = null;
  #acks = null;
  #readyPromise;

  constructor(config) {
    super();
    this.#config = config;
    this.host = config.host;
    // This process's own listeners and handlers (lib/bus/index.js).
    this.local = new Endpoint((message) => process.nextTick(hooks.onLocal, message), process.pid);
    if (config.url === undefined) {
      this.#readyPromise = Promise.resolve();
      return;
    }
    const { RedisTransport } = require('./transports/redis');
    const transport = new RedisTransport(config);
    this.#transport = transport;
    transport.on('message', (channel, text) => this.#onBrokerMessage(channel, text));
    transport.on('ready', () => this.#flush());
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
    // What is sent to one worker in one tick crosses as one message (a fan-out of many small messages would
    // otherwise cost one IPC message each).
    let outbox = null;
    const flush = () => {
      const list = outbox;
      outbox = null;
      if (!child.connected) return;
      // `cmd` only on the envelope: it is what makes the message internal.
      if (list.length > 1) return child.send({ cmd: CMD, t: 'batch', list });
      list[0].cmd = CMD;
      child.send(list[0]);
    };
    const ep = new Endpoint((message) => {
      if (outbox === null) {
        outbox = [];
        process.nextTick(flush);
      }
      outbox.push(message);
    }, child.pid);
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
      this.#detach(ep);
      if (this.#workers.size === 0 && this.releaseWhenIdle) release();
    };
    child.once('disconnect', detach);
    child.once('exit', detach);
  }

  #detach(ep) {
    for (const topic of [...ep.topics]) this.#unsubscribe(ep, topic);
    for (const proc of [...ep.procs.values()]) this.#removeProc(ep, proc.q);
    const gone = { message: 'The worker handling it exited', code: 'FORKLINE_BUS_CLOSED' };
    for (const token of [...ep.jobs.keys()]) this.#done(ep, { k: token, e: gone });
  }

  // One operation from an endpoint; resolves with its result in wire form.
  async handle(ep, message) {
    if (this.#closed) throw makeError('FORKLINE_BUS_CLOSED', 'The bus is closed');
    switch (message.t) {
      case 'sub':
        return this.#subscribe(ep, message.topic);
      case 'unsub':
        return this.#unsubscribe(ep, message.topic);
      case 'pub':
        return this.#publish(ep, message.topic, message.m);
      case 'enq':
        return this.#enqueue(message.queue, message.m);
      case 'proc':
        return this.#addProc(ep, 'job', message.queue, message.n, message.max);
      case 'resp':
        return this.#addProc(ep, 'req', message.topic, message.n, 1);
      case 'unproc':
        return this.#removeProc(ep, this.#queues.get(this.#key('job', message.queue)));
      case 'unresp':
        return this.#removeProc(ep, this.#queues.get(this.#key('req', message.topic)));
      case 'done':
        return this.#done(ep, message);
      case 'req':
        return this.#request(message.topic, message.m, message.timeout);
      default:
        throw makeError('FORKLINE_BUS_MALFORMED_MESSAGE', `Unknown bus operation ${String(message.t)}`);
    }
  }

  // ------------------------------------------------------------------------------------------------------------
  // Broker operations: run now when connected, else wait in a bounded queue.

  #remote(run) {
    const transport = this.#transport;
    if (transport.ready && this.#offline.length === 0) return run().catch(unavailable);
    return new Promise((resolve, reject) => {
      const { maxPending, pendingTimeout } = this.#config;
      if (this.#offline.length >= maxPending) {
        return reject(makeError('FORKLINE_BUS_UNAVAILABLE', `${maxPending} operations already wait for it`));
      }
      const item = { run, resolve, reject, timer: null };
      item.timer = setTimeout(() => {
        const at = this.#offline.indexOf(item);
        if (at !== -1) this.#offline.splice(at, 1);
        reject(makeError('FORKLINE_BUS_UNAVAILABLE', `no connection within ${pendingTimeout} ms`));
      }, pendingTimeout);
      this.#offline.push(item);
    });
  }

  #flush() {
    // In order: the command connection pipelines what is issued in one tick.
    for (const item of this.#offline.splice(0)) {
      clearTimeout(item.timer);
      item.run().catch(unavailable).then(item.resolve, item.reject);
    }
    for (const q of this.#queues.values()) if (q.procs.length > 0 && !q.grouped) this.#ensureGroup(q);
    this.#wake();
  }

  // ------------------------------------------------------------------------------------------------------------
  // Pub/sub.

  async #subscribe(ep, topic) {
    validateName(topic, 'topic');
    ep.topics.add(topic);
    let eps = this.#topics.get(topic);
    if (eps === undefined) {
      eps = new Set();
      this.#topics.set(topic, eps);
    }
    eps.add(ep);
    if (eps.size === 1 && this.#transport !== null) {
      // While the broker is away the subscription waits in ioredis's own queue; local delivery works meanwhile.
      const subscribed = this.#transport.subscribe(this.#channel('t', topic));
      if (this.#transport.ready) await subscribed;
      else subscribed.catch(() => {});
    }
  }

  async #unsubscribe(ep, topic) {
    ep.topics.delete(topic);
    const eps = this.#topics.get(topic);
    if (eps === undefined || !eps.delete(ep) || eps.size > 0) return;
    this.#topics.delete(topic);
    if (this.#transport !== null) await this.#transport.unsubscribe(this.#channel('t', topic)).catch(() => {});
  }

  async #publish(ep, topic, m) {
    validateName(topic, 'topic');
    checkSize(m, this.#config.maxMessageSize);
    this.#deliver(topic, m, this.host, ep.pid);
    if (this.#transport !== null) {
      const text = `${this.host}\n${ep.pid}\n${m}`;
      await this.#remote(() => this.#transport.publish(this.#channel('t', topic), text));
    }
  }

  // Workers get the value (their channel encodes it once more anyway, and they then parse once); this process's
  // own listeners get the text, so that no listener here can change what the workers get.
  #deliver(topic, m, h, p, value) {
    const eps = this.#topics.get(topic);
    if (eps === undefined) return;
    let toWorker;
    for (const ep of eps) {
      if (ep === this.local) ep.send({ t: 'msg', topic, m, h, p });
      else ep.send((toWorker ??= { t: 'msg', topic, v: value === undefined ? JSON.parse(m) : value, h, p }));
    }
  }

  // cluster.broadcast(): every worker of every host gets `message` as a plain 'message'.
  async broadcast(message) {
    const m = encode(message);
    checkSize(m, this.#config.maxMessageSize);
    for (const worker of this.#workers) if (worker.process.connected) worker.process.send(message);
    if (this.#transport !== null) {
      const text = `${this.host}\n${process.pid}\n${m}`;
      await this.#remote(() => this.#transport.publish(this.#channel('broadcast'), text));
    }
  }

  #onBrokerMessage(channel, text) {
    try {
      if (channel === this.#channel('reply', this.host)) {
        const reply = JSON.parse(text);
        this.#settle(String(reply.rid), reply);
        return;
      }
      const first = text.indexOf('\n');
      const second = text.indexOf('\n', first + 1);
      if (first === -1 || second === -1) throw new Error('no header');
      const h = text.slice(0, first);
      if (h === this.host) return; // Delivered locally when it was published.
      const p = Number(text.slice(first + 1, second));
      const m = text.slice(second + 1);
      const value = JSON.parse(m);
      if (channel === this.#channel('broadcast')) {
        for (const worker of this.#workers) if (worker.process.connected) worker.process.send(value);
        return;
      }
      const prefix = this.#channel('t', '');
      if (!channel.startsWith(prefix)) throw new Error('unknown channel');
      this.#deliver(channel.slice(prefix.length), m, h, p, value);
    } catch (err) {
      this.#report(
        makeError('FORKLINE_BUS_MALFORMED_MESSAGE', `Undecodable bus message on ${channel}: ${err.message}`),
      );
    }
  }

  // ------------------------------------------------------------------------------------------------------------
  // Queues and requests: the same machinery. A job queue's stream is `<ns>:q:<queue>`, a request topic's
  // `<ns>:r:<topic>`; in local-only mode the backlog is the whole queue.

  #key(kind, name) {
    return this.#channel(kind === 'job' ? 'q' : 'r', name);
  }

  #queue(kind, name) {
    const key = this.#key(kind, name);
    let q = this.#queues.get(key);
    if (q === undefined) {
      q = { key, kind, name, procs: [], backlog: [], running: new Set(), next: 0, group: null, grouped: false };
      this.#queues.set(key, q);
    }
    return q;
  }

  // How many more entries to read: the handlers' room, plus as many again waiting here so that a handler that
  // finishes finds its next job without a round trip to the broker (they stay this host's, kept fresh and reclaimed
  // if it dies).
  #free(q) {
    let free = -q.backlog.length;
    for (const proc of q.procs) free += 2 * proc.n - proc.inflight;
    return free;
  }

  // Read again once half of that is free: a handler that is idle always is, and reads come in batches.
  #readable(q) {
    let capacity = 0;
    for (const proc of q.procs) capacity += proc.n;
    return q.grouped && capacity > 0 && this.#free(q) >= capacity;
  }

  // Acknowledgements made in one tick go to the broker as one XACK and one XDEL per stream.
  #ack(key, rid) {
    if (this.#acks === null) {
      this.#acks = new Map();
      process.nextTick(() => {
        const acks = this.#acks;
        this.#acks = null;
        for (const [stream, ids] of acks) this.#remote(() => this.#transport.ack(stream, ids)).catch(() => {});
      });
    }
    const ids = this.#acks.get(key);
    if (ids === undefined) this.#acks.set(key, [rid]);
    else ids.push(rid);
  }

  async #enqueue(queue, m) {
    validateName(queue, 'queue');
    checkSize(m, this.#config.maxMessageSize);
    if (this.#transport !== null) {
      return this.#remote(() => this.#transport.add(this.#key('job', queue), { m, a: 0 }));
    }
    return this.#enqueueLocal(queue, { m, a: 0 });
  }

  #enqueueLocal(queue, job) {
    const q = this.#queue('job', queue);
    const id = `${Date.now()}-${++this.#ids}`;
    q.backlog.push({ rid: id, id, ...job });
    this.#dispatch(q);
    return id;
  }

  async #addProc(ep, kind, name, n, max) {
    validateName(name, kind === 'job' ? 'queue' : 'topic');
    const q = this.#queue(kind, name);
    if (ep.procs.has(q.key)) {
      throw makeError('ERR_INVALID_ARG_VALUE', kind === 'job' ? 'queue' : 'topic', name, 'has a handler already');
    }
    const proc = { ep, q, n, max, inflight: 0 };
    q.procs.push(proc);
    ep.procs.set(q.key, proc);
    if (this.#transport === null) return this.#dispatch(q);
    this.#startConsuming();
    // While the broker is away the group is made when it is back (#flush); the handler is registered meanwhile.
    await this.#ensureGroup(q).catch(() => {});
  }

  #ensureGroup(q) {
    if (q.group === null) {
      q.group = this.#remote(() => this.#transport.ensureGroup(q.key)).then(
        () => {
          q.grouped = true;
          this.#wake();
        },
        (err) => {
          q.group = null;
          throw err;
        },
      );
    }
    return q.group;
  }

  #removeProc(ep, q) {
    const proc = q && ep.procs.get(q.key);
    if (!proc) return;
    ep.procs.delete(q.key);
    q.procs.splice(q.procs.indexOf(proc), 1);
    // What this host read for it and nobody here can take goes back to the broker (or stays, locally).
    if (this.#transport !== null && q.procs.length === 0) {
      for (const job of q.backlog.splice(0)) this.#giveBack(q, job);
    }
    this.#wake();
  }

  // Hands jobs to processors with room, round-robin.
  #dispatch(q) {
    while (q.backlog.length > 0) {
      const proc = this.#pick(q);
      if (proc === undefined) break;
      const job = q.backlog.shift();
      if (q.kind === 'req' && Date.now() > job.d) continue;
      proc.inflight++;
      const k = ++this.#tokens;
      proc.ep.jobs.set(k, { proc, job });
      q.running.add(job);
      if (q.kind === 'job') {
        proc.ep.send({ t: 'job', queue: q.name, k, id: job.id, m: job.m, a: job.a, err: job.error });
      } else {
        proc.ep.send({ t: 'ask', topic: q.name, k, m: job.m });
      }
    }
  }

  #pick(q) {
    const procs = q.procs;
    for (let i = 0; i < procs.length; i++) {
      const proc = procs[(q.next + i) % procs.length];
      if (proc.inflight < proc.n) {
        q.next = (q.next + i + 1) % procs.length;
        return proc;
      }
    }
    return undefined;
  }

  // A job or request finished (or its endpoint left: `e` then says so).
  #done(ep, message) {
    const entry = ep.jobs.get(message.k);
    if (entry === undefined) return;
    ep.jobs.delete(message.k);
    const { proc, job } = entry;
    const q = proc.q;
    proc.inflight--;
    q.running.delete(job);
    if (q.kind === 'req') {
      this.#answer(job, message.e !== undefined ? { e: message.e } : { m: message.m });
    } else if (message.back) {
      // The endpoint had stopped processing (its 'unproc' follows): the job goes back uncounted, to someone else.
      proc.n = 0;
      q.backlog.unshift(job);
    } else if (message.e === undefined) {
      if (this.#transport !== null) this.#ack(q.key, job.rid);
    } else {
      this.#fail(q, job, proc.max, message.e);
    }
    if (q.backlog.length > 0 && q.procs.length === 0 && this.#transport !== null) {
      for (const rest of q.backlog.splice(0)) this.#giveBack(q, rest);
    }
    this.#dispatch(q);
    this.#wake();
  }

  // A throw: again at the back of the queue, or past maxAttempts into `<queue>:dead`.
  #fail(q, job, max, wireError) {
    const attempts = job.a + 1;
    const error = String(wireError.message);
    if (this.#transport === null) {
      if (attempts >= max) this.#enqueueLocal(`${q.name}:dead`, { m: job.m, a: attempts, error, origin: job.id });
      else {
        q.backlog.push({ ...job, a: attempts });
        this.#dispatch(q);
      }
      return;
    }
    const fields = { m: job.m, a: attempts, id: job.id };
    const run =
      attempts >= max
        ? () => this.#transport.deadLetter(q.key, job.rid, this.#key('job', `${q.name}:dead`), { ...fields, error })
        : () => this.#transport.requeue(q.key, job.rid, fields);
    this.#remote(run).catch(() => {}); // Still pending at the broker: reclaimed after claimTimeout.
  }

  #giveBack(q, job) {
    if (q.kind === 'req') return; // Already acknowledged: at most once.
    this.#remote(() => this.#transport.requeue(q.key, job.rid, { m: job.m, a: job.a, id: job.id })).catch(() => {});
  }

  // ------------------------------------------------------------------------------------------------------------
  // Requests: into the topic's request stream (or local backlog); the reply comes back on this host's channel.

  #request(topic, m, timeout) {
    validateName(topic, 'topic');
    checkSize(m, this.#config.maxMessageSize);
    if (!Number.isInteger(timeout) || timeout < 1) {
      throw makeError('ERR_OUT_OF_RANGE', 'options.timeout', 'a positive integer', timeout);
    }
    const rid = `${++this.#ids}`;
    const d = Date.now() + timeout;
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.#requests.delete(rid);
        if (this.#transport === null) {
          // Local-only: take it out of the backlog, or a topic nobody answers would keep every request.
          const q = this.#queue('req', topic);
          const at = q.backlog.findIndex((job) => job.rid === rid);
          if (at !== -1) q.backlog.splice(at, 1);
        }
        reject(makeError('FORKLINE_BUS_TIMEOUT', topic, timeout));
      }, timeout);
      this.#requests.set(rid, { resolve, reject, timer });
      if (this.#transport === null) {
        const q = this.#queue('req', topic);
        q.backlog.push({ rid, m, r: this.host, d });
        this.#dispatch(q);
        return;
      }
      const fields = { m, r: this.host, rid, d };
      this.#remote(() => this.#transport.add(this.#key('req', topic), fields, REQUEST_STREAM_LEN)).catch((err) =>
        this.#settle(rid, { e: errorToWire(err), local: true }),
      );
    });
  }

  #answer(job, reply) {
    if (job.r === this.host) return this.#settle(job.rid, reply);
    const text = JSON.stringify({ rid: job.rid, ...reply });
    this.#remote(() => this.#transport.publish(this.#channel('reply', job.r), text)).catch(() => {});
  }

  #settle(rid, reply) {
    const request = this.#requests.get(rid);
    if (request === undefined) return;
    this.#requests.delete(rid);
    clearTimeout(request.timer);
    if (reply.e !== undefined) request.reject(errorFromWire(reply.e, !reply.local));
    else request.resolve(reply.m);
  }

  // ------------------------------------------------------------------------------------------------------------
  // Consuming from the broker: one blocking XREADGROUP for every queue this host processes, reading no more than its
  // handlers have room for; a timer keeps this host's jobs fresh and reclaims those of dead hosts.

  #startConsuming() {
    if (this.#claimTimer !== null) return;
    const period = Math.max(50, Math.floor(this.#config.claimTimeout / 3));
    this.#claimTimer = setInterval(() => this.#claimRound(), period);
    this.#claimTimer.unref();
    this.#readLoop();
  }

  #readyQueues() {
    return [...this.#queues.values()].filter((q) => this.#readable(q));
  }

  #wake() {
    if (this.#waiter !== null) {
      const waiter = this.#waiter;
      this.#waiter = null;
      waiter();
    }
    if (
      this.#reading !== null &&
      this.#readyQueues()
        .map((q) => q.key)
        .join('\n') !== this.#reading
    ) {
      this.#transport.unblock();
    }
  }

  async #readLoop() {
    while (!this.#closed) {
      const queues = this.#readyQueues();
      if (queues.length === 0 || !this.#transport.ready) {
        await new Promise((resolve) => {
          this.#waiter = resolve;
          if (queues.length > 0) setTimeout(resolve, 100); // The broker is away: look again soon.
        });
        continue;
      }
      const keys = queues.map((q) => q.key);
      const count = Math.min(...queues.map((q) => this.#free(q)));
      let reply;
      this.#reading = keys.join('\n');
      try {
        reply = await this.#transport.read(keys, count, BLOCK_MS);
      } catch (err) {
        if (/NOGROUP/.test(err.message)) {
          // The broker lost the groups (it lost its data): make them again.
          for (const q of queues) {
            q.grouped = false;
            q.group = null;
            this.#ensureGroup(q).catch(() => {});
          }
        }
        await new Promise((resolve) => setTimeout(resolve, 100));
        continue;
      } finally {
        this.#reading = null;
      }
      for (const [key, entries] of reply) {
        const q = this.#queues.get(key);
        if (q !== undefined) for (const [rid, fields] of entries) this.#take(q, rid, fields);
        if (q !== undefined) this.#dispatch(q);
      }
    }
  }

  #take(q, rid, f) {
    if (typeof f.m !== 'string') {
      this.#report(makeError('FORKLINE_BUS_MALFORMED_MESSAGE', `Entry ${rid} of ${q.key} has no message`));
      this.#ack(q.key, rid);
      return;
    }
    if (q.kind === 'req') {
      this.#ack(q.key, rid);
      const d = Number(f.d);
      if (Date.now() <= d) q.backlog.push({ rid: f.rid, m: f.m, r: f.r, d });
      return;
    }
    const job = { rid, id: f.id || rid, m: f.m, a: Number(f.a) || 0 };
    if (f.error !== undefined) job.error = f.error;
    q.backlog.push(job);
  }

  async #claimRound() {
    if (this.#closed || !this.#transport.ready) return;
    for (const q of this.#queues.values()) {
      if (q.kind !== 'job' || !q.grouped) continue;
      const mine = [...q.backlog, ...q.running].map((job) => job.rid);
      try {
        if (mine.length > 0) await this.#transport.touch(q.key, mine);
        if (q.procs.length === 0) continue;
        const max = Math.max(...q.procs.map((proc) => proc.max));
        for (const [rid, f] of await this.#transport.claim(q.key, this.#config.claimTimeout, 100)) {
          // A job whose consumer died counts as an attempt, so a job that kills its host cannot loop for ever.
          const attempts = (Number(f.a) || 0) + 1;
          const fields = { m: f.m, a: attempts, id: f.id || rid };
          if (attempts >= max) {
            const dead = this.#key('job', `${q.name}:dead`);
            await this.#transport.deadLetter(q.key, rid, dead, { ...fields, error: 'its consumer died' });
          } else await this.#transport.requeue(q.key, rid, fields);
        }
      } catch {
        // The broker went away; the next round tries again.
      }
    }
  }

  // ------------------------------------------------------------------------------------------------------------

  #report(err) {
    this.emit('error', err);
  }

  get pendingRequests() {
    return this.#requests.size;
  }

  get workerCount() {
    return this.#workers.size;
  }

  async close() {
    if (this.#closed) return;
    this.#closed = true;
    clearInterval(this.#claimTimer);
    this.#wake();
    const closed = makeError('FORKLINE_BUS_CLOSED', 'The bus was closed');
    for (const item of this.#offline.splice(0)) {
      clearTimeout(item.timer);
      item.reject(closed);
    }
    for (const request of this.#requests.values()) {
      clearTimeout(request.timer);
      request.reject(closed);
    }
    this.#requests.clear();
    if (this.#transport !== null) await this.#transport.close();
  }
}

// A Redis reply error is the caller's; any other failure means the connection is gone.
function unavailable(err) {
  if (err && err.name === 'ReplyError') throw err;
  throw makeError('FORKLINE_BUS_UNAVAILABLE', err && err.message);
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
    const changed = Object.keys(options).some((key) => options[key] !== undefined && options[key] !== config[key]);
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

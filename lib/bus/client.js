'use strict';

// The bus as a process sees it (`require('forkline/bus')`): listeners, queue handlers and responders of this process,
// and a link to the host's gateway. In a worker the link is the IPC channel to the primary, with internal messages
// only (`cmd: 'NODE_FORKLINE_BUS'`: Node emits them as 'internalMessage', never as 'message', and listening to
// 'internalMessage' does not keep the worker alive); in the primary or a standalone process the gateway is in the
// same process and the link a direct call.

const EventEmitter = require('node:events');
const process = require('node:process');
const { performance } = require('node:perf_hooks');
const { makeError } = require('../errors');
const { validateName, validateFunction, encode, checkSize, errorToWire, errorFromWire } = require('./codec');
const { DirectPublisher } = require('./direct');
const gateways = require('./gateway');

const { CMD } = gateways;

// Link to the gateway in this process (whichever is current: the primary closes an idle one).
class LocalLink {
  call(message) {
    const gateway = gateways.gateway();
    return gateway.handle(gateway.local, message);
  }

  send(message) {
    this.call(message).catch(() => {});
  }

  publish(topic, m) {
    return this.call({ t: 'pub', topic, m });
  }
}

// Link to the primary's gateway over the worker's IPC channel.
// What the worker sends in one tick crosses as one message, as the gateway's replies do.
class WorkerLink {
  #seq = 0;
  #pending = new Map();
  #outbox = null;
  // The worker's own publisher (directPublish): undefined until asked, then a promise of the answer, then a
  // DirectPublisher or null (publishes go through the primary).
  #direct = undefined;

  constructor(onMessage) {
    const one = (message) => {
      if (message.t !== 'ack') return onMessage(message);
      const pending = this.#pending.get(message.s);
      if (pending === undefined) return;
      this.#pending.delete(message.s);
      if (message.e !== undefined) pending.reject(errorFromWire(message.e, false));
      else pending.resolve(message.r);
    };
    process.on('internalMessage', (message) => {
      if (message === null || typeof message !== 'object' || message.cmd !== CMD) return;
      if (message.t !== 'batch') return one(message);
      for (const item of message.list) one(item);
    });
  }

  call(message) {
    return new Promise((resolve, reject) => {
      if (!process.connected) return reject(makeError('FORKLINE_BUS_CLOSED', 'The channel to the primary is closed'));
      const s = ++this.#seq;
      this.#pending.set(s, { resolve, reject });
      message.s = s;
      this.send(message);
    });
  }

  // The primary says on the first publish whether this worker publishes to the broker itself; publishes made
  // meanwhile wait for the answer, so that they keep their order.
  publish(topic, m) {
    const direct = this.#direct;
    if (direct === null) return this.call({ t: 'pub', topic, m });
    if (direct === undefined || direct instanceof Promise) {
      if (direct === undefined) {
        this.#direct = this.call({ t: 'direct' }).then(
          (settings) => {
            this.#direct = settings ? new DirectPublisher(settings) : null;
            if (this.#direct !== null) process.once('disconnect', () => this.#direct.close());
          },
          () => (this.#direct = null),
        );
      }
      return this.#direct.then(() => this.publish(topic, m));
    }
    checkSize(m, direct.maxMessageSize);
    return direct.publish(topic, m);
  }

  send(message) {
    if (this.#outbox === null) {
      this.#outbox = [];
      process.nextTick(() => this.#flush());
    }
    this.#outbox.push(message);
  }

  #flush() {
    const list = this.#outbox;
    this.#outbox = null;
    const failed = (err) => {
      if (!err) return;
      const closed = makeError('FORKLINE_BUS_CLOSED', `The channel to the primary failed: ${err.message}`);
      for (const message of list) {
        const pending = message.s !== undefined && this.#pending.get(message.s);
        if (!pending) continue;
        this.#pending.delete(message.s);
        pending.reject(closed);
      }
    };
    if (!process.connected) return failed(new Error('it is closed'));
    if (list.length === 1) list[0].cmd = CMD;
    process.send(list.length === 1 ? list[0] : { cmd: CMD, t: 'batch', list }, failed);
  }
}

const positive = (value, name, fallback) => {
  if (value === undefined) return fallback;
  if (!Number.isInteger(value) || value < 1) throw makeError('ERR_OUT_OF_RANGE', name, 'a positive integer', value);
  return value;
};

class Bus extends EventEmitter {
  #link = null;
  #makeLink;
  #topics = new Map();
  #procs = new Map();
  #responders = new Map();

  constructor(makeLink) {
    super();
    this.#makeLink = makeLink;
  }

  // After close(): the next call starts a new gateway, with nothing of the old one's.
  resetLink() {
    this.#link = null;
    this.#topics.clear();
    this.#procs.clear();
    this.#responders.clear();
  }

  get #bus() {
    if (this.#link === null) this.#link = this.#makeLink(this);
    return this.#link;
  }

  // Undecodable broker messages and failures with no caller to tell: an 'error' event, or a warning when nobody
  // listens (never a crash).
  report(err) {
    if (this.listenerCount('error') > 0) this.emit('error', err);
    else process.emitWarning(err);
  }

  async publish(topic, message) {
    validateName(topic, 'topic');
    await this.#bus.publish(topic, encode(message));
  }

  async subscribe(topic, listener) {
    validateName(topic, 'topic');
    validateFunction(listener, 'listener');
    let state = this.#topics.get(topic);
    const entry = { listener };
    if (state === undefined) {
      state = { entries: new Set([entry]), ready: null };
      this.#topics.set(topic, state);
      state.ready = this.#bus.call({ t: 'sub', topic });
      state.ready.catch(() => {
        if (this.#topics.get(topic) === state) this.#topics.delete(topic);
      });
    } else state.entries.add(entry);
    await state.ready;
    let subscribed = true;
    return async () => {
      if (!subscribed) return;
      subscribed = false;
      state.entries.delete(entry);
      if (state.entries.size > 0 || this.#topics.get(topic) !== state) return;
      this.#topics.delete(topic);
      await this.#bus.call({ t: 'unsub', topic });
    };
  }

  async enqueue(queue, job) {
    validateName(queue, 'queue');
    return this.#bus.call({ t: 'enq', queue, m: encode(job, 'job') });
  }

  process(queue, handler, options = {}) {
    validateName(queue, 'queue');
    validateFunction(handler, 'handler');
    const concurrency = positive(options.concurrency, 'options.concurrency', 1);
    const maxAttempts = positive(options.maxAttempts, 'options.maxAttempts', 3);
    return this.#register(this.#procs, { t: 'proc', queue, n: concurrency, max: maxAttempts }, queue, handler);
  }

  respond(topic, handler, options = {}) {
    validateName(topic, 'topic');
    validateFunction(handler, 'handler');
    const concurrency = positive(options.concurrency, 'options.concurrency', 64);
    return this.#register(this.#responders, { t: 'resp', topic, n: concurrency }, topic, handler);
  }

  // process() and respond(): one handler per name per process; returns its async stop().
  #register(table, message, name, handler) {
    if (table.has(name))
      throw makeError('ERR_INVALID_ARG_VALUE', message.queue ? 'queue' : 'topic', name, 'has a handler already');
    const n = message.n;
    const state = { handler, n, active: 0, waiting: [], running: new Set(), stopped: false, ready: null };
    table.set(name, state);
    state.ready = this.#bus.call(message).catch((err) => {
      if (table.get(name) === state) table.delete(name);
      this.report(err);
    });
    return async () => {
      if (state.stopped) return;
      state.stopped = true;
      // Jobs waiting here go back (in reverse: the gateway puts each at the front, so they keep their order).
      const link = this.#bus;
      for (const waiting of state.waiting.splice(0).reverse()) this.#giveBack(link, waiting, 'job');
      await state.ready;
      if (table.get(name) === state) {
        table.delete(name);
        const t = message.t === 'proc' ? 'unproc' : 'unresp';
        await this.#bus.call(message.queue ? { t, queue: name } : { t, topic: name }).catch(() => {});
      }
      await Promise.allSettled(state.running);
    };
  }

  async request(topic, message, options = {}) {
    validateName(topic, 'topic');
    const timeout = positive(options.timeout, 'options.timeout', 5000);
    const reply = await this.#bus.call({ t: 'req', topic, m: encode(message), timeout });
    return JSON.parse(reply);
  }

  // From the gateway: a published message, a job, or a request to answer.
  deliver(message) {
    if (message.t === 'msg') return this.#onPublished(message, message.v, message.m);
    if (message.t === 'msgs') {
      // Messages of one publisher on one topic, as values (from a worker's gateway) or texts (in its own process).
      const { vs, ms } = message;
      if (Array.isArray(vs)) for (const v of vs) this.#onPublished(message, v, undefined);
      else if (Array.isArray(ms)) for (const m of ms) this.#onPublished(message, undefined, m);
      return;
    }
    if (message.t === 'job') return this.#run(this.#procs.get(message.queue), message, 'job');
    if (message.t === 'ask') return this.#run(this.#responders.get(message.topic), message, 'ask');
  }

  // `v`, the message's value, or else `m`, its text.
  #onPublished({ topic, h, p }, v, m) {
    const state = this.#topics.get(topic);
    if (state === undefined) return;
    let value = v;
    try {
      if (value === undefined) value = JSON.parse(m);
    } catch (err) {
      return this.report(
        makeError('FORKLINE_BUS_MALFORMED_MESSAGE', `Undecodable bus message on ${topic}: ${err.message}`),
      );
    }
    const info = { topic, host: h, pid: p };
    for (const { listener } of [...state.entries]) {
      // As an EventEmitter's: a throw from a listener is the program's uncaught exception.
      try {
        listener(value, info);
      } catch (err) {
        process.nextTick(() => {
          throw err;
        });
      }
    }
  }

  // A job or request to run. The gateway may hand a process more jobs than its concurrency when its handler is quick
  // (lib/bus/queues.js #depth): those wait here, in order, and go back if the handler stops first.
  #run(state, message, kind) {
    const link = this.#bus;
    if (state === undefined || state.stopped) return this.#giveBack(link, message, kind);
    if (kind === 'job' && state.active >= state.n) {
      state.waiting.push(message);
      return;
    }
    state.active++;
    const info =
      kind === 'job'
        ? { queue: message.queue, id: message.id, attempt: message.a + 1, ...(message.err && { error: message.err }) }
        : { topic: message.topic };
    const t0 = performance.now();
    const run = (async () => state.handler(JSON.parse(message.m), info))();
    const settled = run.then(
      (result) => {
        // How long the handler took (ms), for the gateway's batching.
        const d = Math.round((performance.now() - t0) * 1000) / 1000;
        if (kind === 'job') return link.send({ t: 'done', k: message.k, d });
        let m;
        try {
          m = encode(result === undefined ? null : result, 'reply');
        } catch (err) {
          return link.send({ t: 'done', k: message.k, e: errorToWire(err) });
        }
        link.send({ t: 'done', k: message.k, m });
      },
      (err) => link.send({ t: 'done', k: message.k, e: errorToWire(err) }),
    );
    state.running.add(settled);
    settled.finally(() => {
      state.running.delete(settled);
      state.active--;
      if (state.waiting.length > 0) this.#run(state, state.waiting.shift(), kind);
    });
  }

  #giveBack(link, message, kind) {
    if (kind === 'job') return link.send({ t: 'done', k: message.k, back: true });
    link.send({ t: 'done', k: message.k, e: { message: 'The responder stopped', code: 'FORKLINE_BUS_CLOSED' } });
  }
}

module.exports = { Bus, LocalLink, WorkerLink };

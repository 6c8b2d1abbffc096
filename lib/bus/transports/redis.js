'use strict';

// The Redis transport: the host's whole set of broker connections. Any other transport (NATS) offers the same
// methods and events:
//   connect(), close(), ready, 'ready', 'down', 'message'(channel, text), 'error'(err)
//   publish(channel, text), subscribe(channel), unsubscribe(channel)
//   add(stream, fields) → id, ensureGroup(stream), read(streams, count, blockMs) → [[stream, [[id, fields]]]],
//   unblock(), ack(stream, ids), requeue(stream, id, fields), deadLetter(stream, id, dead, fields),
//   claim(stream, idleMs, count) → [[id, fields]], touch(stream, ids), clientCount()
// Queues are Redis Streams with one consumer group per stream; the consumer is the host. Every connection is named
// `forkline:<namespace>:<host>:<role>` so that CLIENT LIST shows what each host holds.

const EventEmitter = require('node:events');
const process = require('node:process');
const { makeError } = require('../../errors');

const GROUP = 'forkline';

// Keeps a job's ownership fresh only while this host still owns it: XCLAIM alone would take back a job another host
// has already reclaimed from us.
const TOUCH_SCRIPT = `
for i = 3, #ARGV do
  local p = redis.call('XPENDING', KEYS[1], ARGV[1], ARGV[i], ARGV[i], 1)
  if p[1] and p[1][2] == ARGV[2] then redis.call('XCLAIM', KEYS[1], ARGV[1], ARGV[2], 0, ARGV[i], 'JUSTID') end
end
return 0`;

function loadClient() {
  try {
    return require('ioredis');
  } catch (err) {
    throw makeError('FORKLINE_BUS_NO_CLIENT', err.message);
  }
}

class RedisTransport extends EventEmitter {
  #url;
  #name;
  #consumer;
  #Redis;
  #cmd = null;
  #sub = null;
  #block = null;
  #blockId = null;
  // 0: no command yet this tick, 1: one written, 2: the rest corked (in #corked) until the tick ends.
  #tick = 0;
  #corked = null;

  constructor({ url, namespace, host, redisOptions }) {
    super();
    this.#Redis = loadClient();
    this.#url = url;
    this.#name = `forkline:${namespace}:${host}`.replace(/\s/g, '_');
    this.#consumer = host;
    this.redisOptions = redisOptions || {};
  }

  get ready() {
    return this.#cmd !== null && this.#cmd.status === 'ready';
  }

  #open(role, options) {
    const client = new this.#Redis(this.#url, {
      connectionName: `${this.#name}:${role}`,
      lazyConnect: true,
      ...this.redisOptions,
      ...options,
    });
    // ioredis logs unhandled 'error's itself; the bus reports the state through 'down' and 'ready'.
    client.on('error', (err) => this.emit('connectionError', err));
    return client;
  }

  async connect() {
    // The command connection queues nothing of its own: while it is down the gateway holds the bounded queue, and a
    // command cut off mid-flight is not sent again (publish is at most once).
    this.#cmd = this.#open('cmd', {
      enableOfflineQueue: false,
      autoResendUnfulfilledCommands: false,
      maxRetriesPerRequest: 0,
    });
    this.#cmd.defineCommand('forklineTouch', { numberOfKeys: 1, lua: TOUCH_SCRIPT });
    this.#cmd.on('ready', () => this.emit('ready'));
    this.#cmd.on('close', () => this.emit('down'));
    // ioredis subscribes again to every channel after a reconnect (autoResubscribe). No ready check (INFO) on this
    // one: a SUBSCRIBE written while it runs puts the connection in subscriber mode first, and the INFO then fails
    // the connection (redis/ioredis#2037); Redis takes SUBSCRIBE while it is still loading its data anyway.
    this.#sub = this.#open('sub', { autoResubscribe: true, maxRetriesPerRequest: null, enableReadyCheck: false });
    this.#sub.on('message', (channel, text) => this.emit('message', channel, text));
    await Promise.all([this.#cmd.connect(), this.#sub.connect()]);
  }

  // The blocking connection (XREADGROUP) is opened only when this host first consumes a queue.
  async #blocking() {
    if (this.#block === null) {
      this.#block = this.#open('block', { enableOfflineQueue: false, maxRetriesPerRequest: 0 });
      this.#block.on('ready', () => {
        this.#blockId = null;
        this.#block.client('ID').then(
          (id) => (this.#blockId = id),
          () => {},
        );
      });
      await this.#block.connect();
    }
    return this.#block;
  }

  // The first command of a tick is written at once (latency); those that follow it in the same tick are corked and
  // leave together when the tick ends (throughput). ioredis's own auto-pipelining waits for setImmediate, a whole
  // turn of the event loop, even for a lone command.
  #commands() {
    const cmd = this.#cmd;
    if (this.#tick === 0) {
      this.#tick = 1;
      process.nextTick(() => this.#endTick());
    } else if (this.#tick === 1 && cmd.stream && cmd.stream.writable) {
      this.#tick = 2;
      this.#corked = cmd.stream;
      this.#corked.cork();
    }
    return cmd;
  }

  #endTick() {
    this.#tick = 0;
    if (this.#corked !== null) {
      this.#corked.uncork();
      this.#corked = null;
    }
  }

  publish(channel, text) {
    return this.#commands().publish(channel, text);
  }

  subscribe(channel) {
    return this.#sub.subscribe(channel);
  }

  unsubscribe(channel) {
    return this.#sub.unsubscribe(channel);
  }

  add(stream, fields, maxLen) {
    const args = maxLen ? [stream, 'MAXLEN', '~', maxLen, '*'] : [stream, '*'];
    return this.#commands().xadd(...args, ...flatten(fields));
  }

  async ensureGroup(stream) {
    try {
      // From the start of the stream: jobs enqueued before the first consumer are processed too.
      await this.#cmd.xgroup('CREATE', stream, GROUP, '0', 'MKSTREAM');
    } catch (err) {
      if (!/BUSYGROUP/.test(err.message)) throw err;
    }
  }

  async read(streams, count, blockMs) {
    const block = await this.#blocking();
    const reply = await block.xreadgroup(
      'GROUP',
      GROUP,
      this.#consumer,
      'COUNT',
      count,
      'BLOCK',
      blockMs,
      'STREAMS',
      ...streams,
      ...streams.map(() => '>'),
    );
    if (reply === null) return [];
    return reply.map(([stream, entries]) => [stream, entries.map(([id, flat]) => [id, unflatten(flat)])]);
  }

  // Wakes the blocked XREADGROUP (it returns as a timeout would) so that the next read sees a changed set of queues.
  unblock() {
    if (this.#blockId === null || !this.ready) return;
    this.#cmd.client('UNBLOCK', this.#blockId).catch(() => {});
  }

  // Acknowledged entries are deleted too, so that a stream holds only what is waiting or being worked on. Not in a
  // transaction: an entry acknowledged but not deleted is never delivered again.
  ack(stream, ids) {
    const cmd = this.#commands();
    return Promise.all([cmd.xack(stream, GROUP, ...ids), cmd.xdel(stream, ...ids)]);
  }

  requeue(stream, id, fields) {
    return this.#move(stream, id, stream, fields);
  }

  deadLetter(stream, id, dead, fields) {
    return this.#move(stream, id, dead, fields);
  }

  // Entry `id` of `stream` becomes a new entry of `to` with `fields`, in one transaction.
  #move(stream, id, to, fields) {
    return this.#cmd
      .multi()
      .xadd(to, '*', ...flatten(fields))
      .xack(stream, GROUP, id)
      .xdel(stream, id)
      .exec();
  }

  // Jobs another consumer has held longer than idleMs (its host died): they become this host's.
  async claim(stream, idleMs, count) {
    const [, entries] = await this.#cmd.xautoclaim(stream, GROUP, this.#consumer, idleMs, '0-0', 'COUNT', count);
    return entries.filter((entry) => entry && entry[1]).map(([id, flat]) => [id, unflatten(flat)]);
  }

  touch(stream, ids) {
    return this.#cmd.forklineTouch(stream, GROUP, this.#consumer, ...ids);
  }

  async close() {
    const clients = [this.#cmd, this.#sub, this.#block].filter(Boolean);
    this.#cmd = this.#sub = this.#block = null;
    await Promise.all(clients.map((client) => client.quit().catch(() => client.disconnect())));
  }
}

function flatten(fields) {
  const out = [];
  for (const [key, value] of Object.entries(fields)) out.push(key, String(value));
  return out;
}

function unflatten(flat) {
  const fields = {};
  for (let i = 0; i + 1 < flat.length; i += 2) fields[flat[i]] = flat[i + 1];
  return fields;
}

module.exports = { RedisTransport };

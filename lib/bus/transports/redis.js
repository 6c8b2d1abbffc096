'use strict';

// The Redis transport: the host's whole set of broker connections. Any other transport (NATS) offers the same
// methods and events:
//   connect(), close(), ready, 'ready', 'down', 'message'(channel, text), 'connectionError'(err)
//   publish(channel, text), subscribe(channel), unsubscribe(channel), key(kind, name) -> stream key
//   add(stream, fields, maxLen) -> id, addReplicated(stream, fields) -> id, ensureGroup(stream),
//   readGroup(stream) -> group, read(group, streams, count, blockMs) -> [[stream, [[id, fields]]]], unblock(group),
//   closeReader(group), ack(stream, ids), requeue(stream, id, fields), deadLetter(stream, id, dead, fields),
//   claim(stream, idleMs, count) -> [[id, fields]], touch(stream, ids), isUnavailable(err)
// Queues are Redis Streams with one consumer group per stream; the consumer is the host. Every connection is named
// `forkline:<namespace>:<host>:<role>` so that CLIENT LIST shows what each host holds. The deployment (one server,
// Sentinel, Cluster) is redis_clients.js's concern; what differs here on a Cluster: keys carry hash tags, pub/sub is
// sharded when the servers have it, and each consumed stream has a blocking connection of its own.

const EventEmitter = require('node:events');
const process = require('node:process');
const { makeError } = require('../../errors');
const { Clients } = require('./redis_clients');
const { PublishOrder } = require('./publish_order');

const GROUP = 'forkline';

// Keeps a job's ownership fresh only while this host still owns it: XCLAIM alone would take back a job another host
// has already reclaimed from us.
const TOUCH_SCRIPT = `
for i = 3, #ARGV do
  local p = redis.call('XPENDING', KEYS[1], ARGV[1], ARGV[i], ARGV[i], 1)
  if p[1] and p[1][2] == ARGV[2] then redis.call('XCLAIM', KEYS[1], ARGV[1], ARGV[2], 0, ARGV[i], 'JUSTID') end
end
return 0`;

// Replies that mean "no usable primary right now" (a failover, a node loading its data, a slot moving), not a
// mistake of the caller: the bus reports them as FORKLINE_BUS_UNAVAILABLE.
const UNAVAILABLE_REPLY = /^(READONLY|LOADING|MASTERDOWN|CLUSTERDOWN|TRYAGAIN|NOREPLICAS|UNBLOCKED)/;

class RedisTransport extends EventEmitter {
  #clients;
  #namespace;
  #consumer;
  #replicationTimeout;
  #replicated;
  #settleMs;
  #cmd = null;
  #sub = null;
  #durable = null;
  // On a Cluster: publishes held until their node's connection is ready (publish_order.js).
  #order = null;
  #closed = false;
  // The cmd connection answered since it was (re)made; on a Cluster, once pub/sub's kind is known too.
  #up = false;
  // On a Cluster: whether pub/sub is sharded (SSUBSCRIBE/SPUBLISH, Redis 7), known once the cluster answers.
  #sharded = null;
  #subOpened;
  #openedSub;
  // Channels subscribed to, so that a subscriber made later (a Cluster's) takes them all.
  #channels = new Set();
  // Blocking reads: group -> { client, id }.
  #readers = new Map();
  // 0: no command yet this tick, 1: one written, 2: the rest corked (in #corked) until the tick ends.
  #tick = 0;
  #corked = null;
  // Replicated adds by group: { busy (a batch is in flight), adds (the next batch) }.
  #waits = new Map();
  // Subscriber connections each channel reached at its last publish, and until when a publish that reaches fewer
  // must reject (after the broker was away: hosts whose subscriber is not back yet would miss it).
  #receivers = new Map();
  #unsettledUntil = 0;

  // `publishOnly`: a worker's direct publisher (directPublish), with only a command connection, named `pub`.
  #publishOnly;

  constructor(config, { publishOnly = false } = {}) {
    super();
    this.#publishOnly = publishOnly;
    this.#clients = new Clients(config);
    this.#namespace = config.namespace;
    this.#consumer = config.host;
    this.#replicated = config.durability === 'replicated';
    this.#replicationTimeout = config.replicationTimeout;
    this.#settleMs = config.pendingTimeout;
    this.#subOpened = new Promise((resolve) => (this.#openedSub = resolve));
  }

  get ready() {
    return this.#up && this.#connected();
  }

  #connected() {
    if (this.#cmd === null || this.#cmd.status !== 'ready') return false;
    return this.#durable === null || this.#durable.status === 'ready';
  }

  // Whether a failed command means "no usable broker" (FORKLINE_BUS_UNAVAILABLE) rather than a mistake of the caller.
  isUnavailable(err) {
    return !err || err.name !== 'ReplyError' || UNAVAILABLE_REPLY.test(err.message);
  }

  // Whether pub/sub is sharded (null until a Cluster answered; false on one server).
  get sharded() {
    return this.#sharded;
  }

  // The stream of a job queue (kind 'q') or of a request topic ('r'). On a Cluster every key of one queue shares a
  // hash slot: `{<ns>:q:<queue>}`, and its dead letters (`<queue>:dead`, `<queue>:dead:dead`, ...)
  // `{<ns>:q:<queue>}:dead`, so that moving a job there is one transaction. On one server, no braces.
  key(kind, name) {
    if (!this.#clients.cluster) return `${this.#namespace}:${kind}:${name}`;
    let base = name;
    let suffix = '';
    while (base.length > 5 && base.endsWith(':dead')) {
      base = base.slice(0, -5);
      suffix += ':dead';
    }
    return `{${this.#namespace}:${kind}:${base}}${suffix}`;
  }

  #watch(client) {
    // ioredis logs unhandled 'error's itself; the bus reports the state through 'down' and 'ready'.
    client.on('error', (err) => this.emit('connectionError', err));
    return client;
  }

  async connect() {
    const cluster = this.#clients.cluster;
    // The command connection queues nothing of its own: while it is down the gateway holds the bounded queue, and a
    // command cut off mid-flight is not sent again (publish is at most once).
    const noQueue = { enableOfflineQueue: false, autoResendUnfulfilledCommands: false, maxRetriesPerRequest: 0 };
    // On a Cluster the same: a command cut off by a node's failure is not sent again (retryDelayOnFailover). Its
    // offline queue stays on: with it off, ioredis refuses a command for a node whose connection is still being
    // made ("Connection is closed."), and the gateway sends nothing while the Cluster is not ready anyway.
    const noResend = { retryDelayOnFailover: 0 };
    const cmd = this.#watch(this.#clients.open(this.#publishOnly ? 'pub' : 'cmd', noQueue, noResend));
    this.#cmd = cmd;
    cmd.defineCommand('forklineTouch', { numberOfKeys: 1, lua: TOUCH_SCRIPT });
    if (cluster) this.#order = new PublishOrder(cmd, this.#clients.Command);
    cmd.on('ready', () => this.#onReady());
    cmd.on('close', () => this.#onDown());
    if (cluster) {
      // One node failing over leaves the Cluster 'ready': its channels' subscribers come back later.
      for (const event of ['node error', '-node']) cmd.on(event, () => this.#unsettle(Date.now() + this.#settleMs));
    } else if (!this.#publishOnly) this.#openSub(false);
    if (this.#replicated) {
      const durable = this.#watch(this.#clients.open('durable', noQueue, { ...noResend, slotsRefreshInterval: 0 }));
      this.#durable = durable;
      durable.on('ready', () => this.#onReady());
      durable.on('close', () => this.#onDown());
    }
    await Promise.all([cmd.connect(), this.#sub?.connect(), this.#durable?.connect()]);
  }

  async #onReady() {
    if (this.#closed || !this.#connected()) return;
    if (this.#clients.cluster && this.#sharded === null) {
      let sharded;
      try {
        sharded = await this.#hasShardedPubSub();
      } catch {
        return; // The connection went again: its next 'ready' tries once more.
      }
      if (this.#closed || this.#sharded !== null) return;
      this.#sharded = sharded;
      if (!this.#publishOnly) {
        this.#openSub(sharded);
        this.#sub.connect().catch(() => {});
      }
    }
    if (this.#unsettledUntil === Infinity) this.#unsettledUntil = Date.now() + this.#settleMs;
    this.#up = true;
    this.emit('ready');
  }

  #onDown() {
    if (this.#closed) return;
    this.#up = false;
    this.#unsettle(Infinity);
    this.emit('down');
  }

  #unsettle(until) {
    if (until > this.#unsettledUntil) this.#unsettledUntil = until;
  }

  // SSUBSCRIBE and SPUBLISH came with Redis 7.0.
  async #hasShardedPubSub() {
    try {
      const [info] = await this.#cmd.call('COMMAND', 'INFO', 'SPUBLISH');
      return Array.isArray(info);
    } catch (err) {
      if (!/unknown command|not allowed|NOPERM/i.test(err.message)) throw err;
      const info = await this.#cmd.info('server');
      const [, major] = /redis_version:(\d+)/.exec(info) || [];
      return Number(major) >= 7;
    }
  }

  // ioredis subscribes again to every channel after a reconnect (autoResubscribe; a Cluster's sharded subscribers
  // after a slot moved). No ready check (INFO) on a single server's subscriber: a SUBSCRIBE written while it runs
  // puts the connection in subscriber mode first, and the INFO then fails the connection (redis/ioredis#2037); Redis
  // takes SUBSCRIBE while it is still loading its data anyway.
  #openSub(sharded) {
    const sub = this.#watch(
      this.#clients.open(
        'sub',
        { autoResubscribe: true, maxRetriesPerRequest: null, enableReadyCheck: false },
        // No ready check (CLUSTER INFO) on a Cluster's subscriber: it would hold a node connection for nothing.
        { shardedSubscribers: sharded, enableOfflineQueue: true, enableReadyCheck: false, slotsRefreshInterval: 5000 },
      ),
    );
    sub.on(sharded ? 'smessage' : 'message', (channel, text) => this.emit('message', channel, text));
    if (sharded) this.#followSlots(sub);
    this.#sub = sub;
    for (const channel of this.#channels) this.#subscribeOn(channel).catch(() => {});
    this.#openedSub();
  }

  // When a slot moves, its node ends the sharded subscriptions of its channels (an `sunsubscribe` nobody asked for,
  // which ioredis reports as a command queue error): the slot map is read again, a few times while the nodes agree
  // on the new owner, and ioredis subscribes again on the node that has the slot now. A periodic read of the map
  // (slotsRefreshInterval) is the fallback.
  #followSlots(sub) {
    let timers = [];
    sub.on('nodeError', (err) => {
      if (!/sunsubscribe/.test(err && err.message) || this.#closed) return;
      for (const timer of timers) clearTimeout(timer);
      timers = [0, 250, 1000, 2500].map((ms) => setTimeout(() => !this.#closed && sub.refreshSlotsCache(), ms));
      for (const timer of timers) timer.unref();
    });
  }

  #subscribeOn(channel) {
    return this.#sharded ? this.#sub.ssubscribe(channel) : this.#sub.subscribe(channel);
  }

  subscribe(channel) {
    this.#channels.add(channel);
    if (this.#sub !== null) return this.#subscribeOn(channel);
    return this.#subOpened.then(() => this.#channels.has(channel) && this.#subscribeOn(channel));
  }

  unsubscribe(channel) {
    this.#channels.delete(channel);
    if (this.#sub === null) return Promise.resolve();
    return this.#sharded ? this.#sub.sunsubscribe(channel) : this.#sub.unsubscribe(channel);
  }

  // The first command of a tick is written at once (latency); those that follow it in the same tick are corked and
  // leave together when the tick ends (throughput). ioredis's own auto-pipelining waits for setImmediate, a whole
  // turn of the event loop, even for a lone command. (A Cluster writes to each node as it goes.)
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

  async publish(channel, text) {
    const reached = await this.#publishOn(this.#commands(), channel, text);
    // Classic PUBLISH on a Cluster counts only the subscribers of the node that took it, whichever that was.
    if (this.#clients.cluster && !this.#sharded) return;
    const before = this.#receivers.get(channel);
    if (before !== undefined && reached < before && Date.now() < this.#unsettledUntil) {
      throw makeError(
        'FORKLINE_BUS_UNAVAILABLE',
        `the message reached ${reached} of the ${before} subscriber connections ${channel} had before the broker ` +
          'went away (the others may not be back yet)',
      );
    }
    if (before === undefined && this.#receivers.size >= 4096) this.#receivers.clear();
    this.#receivers.set(channel, reached);
  }

  #publishOn(cmd, channel, text) {
    if (this.#order === null) return cmd.publish(channel, text);
    // SPUBLISH goes to the channel's node; classic PUBLISH, which any node takes, to that one too rather than to one
    // picked at random each time: one connection keeps one publisher's messages in order.
    return this.#order.run(channel, (node) =>
      this.#sharded ? cmd.spublish(channel, text) : (node ?? cmd).publish(channel, text),
    );
  }

  add(stream, fields, maxLen) {
    const args = maxLen ? [stream, 'MAXLEN', '~', maxLen, '*'] : [stream, '*'];
    return this.#commands().xadd(...args, ...flatten(fields));
  }

  // XADD, then WAIT until a replica has it too, on a connection of its own so that a slow replica holds up nothing
  // else. Group commit: per group (one server: all; Cluster: a stream) one batch is in flight, and what is added
  // meanwhile leaves as the next batch (XADDs, then one WAIT) when it returns. Rejects with
  // FORKLINE_BUS_UNAVAILABLE when no replica confirms within replicationTimeout (the entry may still be there).
  addReplicated(stream, fields) {
    const group = this.#clients.cluster ? stream : '';
    let batch = this.#waits.get(group);
    if (batch === undefined) this.#waits.set(group, (batch = { busy: false, adds: [] }));
    if (!batch.busy && batch.adds.length === 0) process.nextTick(() => this.#sendWait(group, batch));
    return new Promise((resolve, reject) => batch.adds.push({ stream, fields, resolve, reject }));
  }

  #sendWait(group, batch) {
    if (batch.busy || batch.adds.length === 0) return;
    const adds = batch.adds;
    batch.adds = [];
    batch.busy = true;
    const settle = (each) => {
      adds.forEach(each);
      batch.busy = false;
      if (batch.adds.length > 0) this.#sendWait(group, batch);
      else if (this.#waits.get(group) === batch) this.#waits.delete(group);
    };
    if (this.#durable === null)
      return settle(({ reject }) => reject(makeError('FORKLINE_BUS_CLOSED', 'The bus was closed')));
    const pipeline = this.#durable.pipeline();
    for (const { stream, fields } of adds) pipeline.xadd(stream, '*', ...flatten(fields));
    pipeline.wait(1, this.#replicationTimeout);
    pipeline.exec().then(
      (results) => {
        const [waitErr, replicas] = results[results.length - 1];
        const short =
          waitErr ||
          (replicas < 1 &&
            makeError('FORKLINE_BUS_UNAVAILABLE', `no replica had the job within ${this.#replicationTimeout} ms`));
        settle(({ resolve, reject }, i) => {
          const [err, id] = results[i];
          if (err || short) reject(err || short);
          else resolve(id);
        });
      },
      (err) => settle(({ reject }) => reject(err)),
    );
  }

  async ensureGroup(stream) {
    try {
      // From the start of the stream: jobs enqueued before the first consumer are processed too.
      await this.#cmd.xgroup('CREATE', stream, GROUP, '0', 'MKSTREAM');
    } catch (err) {
      if (!/BUSYGROUP/.test(err.message)) throw err;
    }
  }

  // Streams read together share a blocking connection. One server: every stream in one XREADGROUP. Cluster: a
  // command's keys must share a hash slot, and each queue has a slot of its own: one group (and connection) each.
  readGroup(stream) {
    return this.#clients.cluster ? stream : '';
  }

  #reader(group) {
    let reader = this.#readers.get(group);
    if (reader === undefined) {
      const client = this.#watch(
        this.#clients.open(
          'block',
          { enableOfflineQueue: false, maxRetriesPerRequest: 0 },
          // A moved slot is followed when the read meets it (MOVED), without refreshing the map every few seconds
          // (each refresh is a connection of its own).
          { enableReadyCheck: false, slotsRefreshInterval: 0 },
        ),
      );
      reader = { client, id: null, connected: null };
      if (!this.#clients.cluster) {
        // Its id, for CLIENT UNBLOCK from the command connection (the same server).
        client.on('ready', () => {
          reader.id = null;
          client.client('ID').then(
            (id) => (reader.id = id),
            () => {},
          );
        });
      }
      reader.connected = client.connect().catch(() => {});
      this.#readers.set(group, reader);
    }
    return reader;
  }

  async read(group, streams, count, blockMs) {
    const reader = this.#reader(group);
    await reader.connected;
    const reply = await reader.client.xreadgroup(
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

  // Wakes a blocked XREADGROUP (it returns as a timeout would) so that the next read sees a changed set of queues.
  // On a Cluster a group is one stream, whose set never changes: its read just runs out (blockMs).
  unblock(group) {
    const reader = this.#readers.get(group);
    if (reader === undefined || reader.id === null || !this.ready) return;
    this.#cmd.client('UNBLOCK', reader.id).catch(() => {});
  }

  // A group nobody here reads any more lets go of its connection (on one server the one group stays).
  closeReader(group) {
    const reader = this.#readers.get(group);
    if (reader === undefined || !this.#clients.cluster) return;
    this.#readers.delete(group);
    reader.client.disconnect();
  }

  // Acknowledged entries are deleted too, so that a stream holds only what is waiting or being worked on: one write,
  // not a transaction (an entry acknowledged but not deleted is never delivered again).
  ack(stream, ids) {
    return this.#commands()
      .pipeline()
      .xack(stream, GROUP, ...ids)
      .xdel(stream, ...ids)
      .exec();
  }

  requeue(stream, id, fields) {
    return this.#move(stream, id, stream, fields);
  }

  deadLetter(stream, id, dead, fields) {
    return this.#move(stream, id, dead, fields);
  }

  // Entry `id` of `stream` becomes a new entry of `to` with `fields`, in one transaction (one hash slot).
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
    this.#closed = true;
    this.#up = false;
    const clients = [this.#cmd, this.#sub, this.#durable].filter(Boolean);
    const readers = [...this.#readers.values()].map((reader) => reader.client);
    this.#cmd = this.#sub = this.#durable = null;
    this.#readers.clear();
    // A blocked read would hold QUIT up to its timeout.
    for (const client of readers) client.disconnect();
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

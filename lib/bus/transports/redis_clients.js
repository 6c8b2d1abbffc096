'use strict';

// How the Redis transport opens a connection in each deployment: one server (`url`), a primary found through Sentinel
// (`sentinels` + `name`), or a Redis Cluster (`cluster`: startup nodes). The transport asks for a client by role
// (cmd, sub, block, durable) with the options that role needs; this file turns the bus's settings into ioredis's.

const { makeError } = require('../../errors');

function loadClient() {
  try {
    return require('ioredis');
  } catch (err) {
    throw makeError('FORKLINE_BUS_NO_CLIENT', err.message);
  }
}

// `redis://[user:password@]host:port` -> ioredis's fields. Credentials and TLS of a sentinel or cluster URL are the
// connection's own (a URL without them adds none).
function parseUrl(text, what) {
  let url;
  try {
    url = new URL(text);
  } catch {
    throw makeError('ERR_INVALID_ARG_VALUE', what, text, 'must be a redis:// or rediss:// URL');
  }
  if (url.protocol !== 'redis:' && url.protocol !== 'rediss:') {
    throw makeError('ERR_INVALID_ARG_VALUE', what, text, 'must be a redis:// or rediss:// URL');
  }
  const node = { host: url.hostname.replace(/^\[|\]$/g, ''), port: Number(url.port) || 6379 };
  if (url.username) node.username = decodeURIComponent(url.username);
  if (url.password) node.password = decodeURIComponent(url.password);
  if (url.protocol === 'rediss:') node.tls = {};
  return node;
}

// Reconnecting quickly matters after a failover: ioredis's default waits up to 2 s between tries.
const retryStrategy = (times) => Math.min(times * 50, 500);

// A write on a primary that was just demoted (a failover) is answered READONLY: the connection is made again, which
// asks the sentinels for the new primary. The command itself fails (the bus reports FORKLINE_BUS_UNAVAILABLE).
const reconnectOnError = (err) => (/^READONLY/.test(err.message) ? 1 : false);

class Clients {
  #Redis;
  #config;
  #name;

  constructor(config) {
    this.#Redis = loadClient();
    this.#config = config;
    this.#name = `forkline:${config.namespace}:${config.host}`.replace(/\s/g, '_');
    if (config.cluster !== undefined) this.nodes = config.cluster.map((url, i) => parseUrl(url, `bus.cluster[${i}]`));
    else if (config.sentinels !== undefined) {
      this.sentinels = config.sentinels.map((url, i) => parseUrl(url, `bus.sentinels[${i}]`));
    } else parseUrl(config.url, 'bus.url');
  }

  // ioredis's Command (its hashSlot of a key, for a Cluster).
  get Command() {
    return this.#Redis.Command;
  }

  get cluster() {
    return this.#config.cluster !== undefined;
  }

  get sentinel() {
    return this.#config.sentinels !== undefined;
  }

  // A client for `role`: `options` are per connection (ioredis's RedisOptions); on a Cluster, `clusterOptions` apply
  // to the Cluster object (its offline queue, for one).
  open(role, options = {}, clusterOptions = {}) {
    const config = this.#config;
    const own = { connectionName: `${this.#name}:${role}`, lazyConnect: true, retryStrategy, ...options };
    if (this.cluster) {
      // Credentials and TLS from the first startup node's URL, for every node.
      const { username, password, tls } = this.nodes[0];
      const auth = {};
      if (username !== undefined) auth.username = username;
      if (password !== undefined) auth.password = password;
      if (tls !== undefined) auth.tls = tls;
      return new this.#Redis.Cluster(
        this.nodes.map(({ host, port }) => ({ host, port })),
        {
          lazyConnect: true,
          ...config.clusterOptions,
          ...clusterOptions,
          // Node connections do not reconnect by themselves: the Cluster object does (its clusterRetryStrategy).
          redisOptions: { ...auth, connectionName: own.connectionName, ...config.redisOptions, ...options },
        },
      );
    }
    if (this.sentinel) {
      const first = this.sentinels[0];
      const sentinelAuth = {};
      if (first.username !== undefined) sentinelAuth.sentinelUsername = first.username;
      if (first.password !== undefined) sentinelAuth.sentinelPassword = first.password;
      if (first.tls !== undefined) sentinelAuth.enableTLSForSentinelMode = true;
      return new this.#Redis({
        sentinels: this.sentinels.map(({ host, port }) => ({ host, port })),
        name: config.name,
        sentinelRetryStrategy: retryStrategy,
        reconnectOnError,
        ...sentinelAuth,
        ...own,
        ...config.redisOptions,
        ...options,
      });
    }
    return new this.#Redis(config.url, { ...own, ...config.redisOptions, ...options });
  }
}

module.exports = { Clients, parseUrl };

'use strict';

// Real Redis deployments for the bus tests, from PATH, on free ports of 127.0.0.1, each server in a temp dir of its
// own, with the append-only file on (so a restart keeps the queues):
// - RedisServer: one redis-server; stop() and start() again keep the port and the dir.
// - RedisCluster: three redis-servers with --cluster-enabled, joined by `redis-cli --cluster create` (3 primaries).
// - RedisSentinels: a primary, its replica and three sentinels (`redis-server --sentinel`) watching it as 'mymaster'.
// destroy() stops every process it started and removes the dirs. The helpers speak to the servers through redis-cli
// (redis-tools, which Debian's redis-server package depends on), so they need no client library.

const fs = require('node:fs');
const net = require('node:net');
const os = require('node:os');
const path = require('node:path');
const { execFile, spawn, spawnSync } = require('node:child_process');

function onPath(command) {
  return !spawnSync(command, ['--version'], { encoding: 'utf8' }).error;
}

function redisServerPath() {
  return onPath('redis-server') ? 'redis-server' : null;
}

// What the cluster and sentinel sets need on top of redis-server, or null.
function redisToolsMissing() {
  if (!onPath('redis-server')) return 'redis-server is not on PATH (apt-get install redis-server)';
  if (!onPath('redis-cli')) return 'redis-cli is not on PATH (apt-get install redis-tools)';
  return null;
}

function redisMajor() {
  const out = spawnSync('redis-server', ['--version'], { encoding: 'utf8' }).stdout || '';
  const match = /v=(\d+)\./.exec(out);
  return match ? Number(match[1]) : 0;
}

function freePort() {
  return new Promise((resolve, reject) => {
    const server = net.createServer();
    server.on('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address();
      server.close(() => resolve(port));
    });
  });
}

function portIsFree(port) {
  return new Promise((resolve) => {
    const server = net.createServer();
    server.on('error', () => resolve(false));
    server.listen(port, '127.0.0.1', () => server.close(() => resolve(true)));
  });
}

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

// Polls `check` (async, truthy when done) every 50 ms for up to `ms`.
async function waitFor(what, check, ms = 20_000) {
  const deadline = Date.now() + ms;
  for (;;) {
    let last;
    try {
      if (await check()) return;
    } catch (err) {
      last = err;
    }
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}${last ? `: ${last.message}` : ''}`);
    await sleep(50);
  }
}

// One command through redis-cli; resolves with its output (raw replies, one line each).
function cli(port, ...args) {
  return new Promise((resolve, reject) => {
    execFile('redis-cli', ['-h', '127.0.0.1', '-p', String(port), '--raw', ...args], { timeout: 10_000 }, (err, out) =>
      err ? reject(err) : resolve(out),
    );
  });
}

// `INFO`-style `key:value` lines (or CLUSTER INFO's) → an object.
function fields(text) {
  const out = {};
  for (const line of text.split(/\r?\n/)) {
    const at = line.indexOf(':');
    if (at > 0) out[line.slice(0, at)] = line.slice(at + 1).trim();
  }
  return out;
}

// Every server still running, so that none outlives a test process that ends early.
const live = new Set();
process.on('exit', () => {
  for (const child of live) child.kill('SIGKILL');
});

class RedisServer {
  constructor(port, dir, extra = []) {
    this.port = port;
    this.dir = dir;
    this.extra = extra;
    this.url = `redis://127.0.0.1:${port}`;
    this.child = null;
  }

  // `extra`: more redis-server arguments; `port`: a port chosen by the caller.
  static async create(extra = [], port) {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'forkline-redis-'));
    const server = new RedisServer(port ?? (await freePort()), dir, extra);
    try {
      await server.start();
    } catch (err) {
      await server.destroy();
      throw err;
    }
    return server;
  }

  args() {
    return [
      '--port',
      String(this.port),
      '--bind',
      '127.0.0.1',
      '--dir',
      this.dir,
      '--appendonly',
      'yes',
      '--save',
      '',
      '--daemonize',
      'no',
      '--loglevel',
      'warning',
      ...this.extra,
    ];
  }

  async start() {
    if (this.child !== null) throw new Error(`redis-server on port ${this.port} is running already`);
    const child = spawn('redis-server', this.args(), { stdio: ['ignore', 'pipe', 'pipe'] });
    this.child = child;
    live.add(child);
    child.once('exit', () => live.delete(child));
    let output = '';
    child.stdout.on('data', (d) => (output += d));
    child.stderr.on('data', (d) => (output += d));
    const deadline = Date.now() + 10_000;
    for (;;) {
      if (child.exitCode !== null || child.signalCode !== null) {
        this.child = null;
        throw new Error(`redis-server exited: ${output}`);
      }
      if (await this.#answers()) return;
      if (Date.now() > deadline) {
        await this.kill();
        throw new Error(`redis-server did not start: ${output}`);
      }
      await sleep(50);
    }
  }

  // One PING over a raw socket.
  #answers() {
    return new Promise((resolve) => {
      const socket = net.connect(this.port, '127.0.0.1');
      socket.setTimeout(1000);
      socket.on('connect', () => socket.write('PING\r\n'));
      socket.on('data', (d) => {
        socket.destroy();
        resolve(d.toString().startsWith('+PONG'));
      });
      socket.on('error', () => resolve(false));
      socket.on('timeout', () => {
        socket.destroy();
        resolve(false);
      });
    });
  }

  cli(...args) {
    return cli(this.port, ...args);
  }

  // SIGTERM: redis-server writes its append-only file and exits.
  async stop() {
    const child = this.child;
    if (child === null || child.exitCode !== null || child.signalCode !== null) return;
    this.child = null;
    const exited = new Promise((resolve) => child.once('exit', resolve));
    child.kill('SIGTERM');
    const timer = setTimeout(() => child.kill('SIGKILL'), 10_000);
    await exited;
    clearTimeout(timer);
  }

  // kill -9: nothing written, connections cut.
  async kill() {
    const child = this.child;
    if (child === null || child.exitCode !== null || child.signalCode !== null) return;
    this.child = null;
    const exited = new Promise((resolve) => child.once('exit', resolve));
    child.kill('SIGKILL');
    await exited;
  }

  async destroy() {
    await this.stop();
    fs.rmSync(this.dir, { recursive: true, force: true });
  }
}

// Three primaries, no replicas. Redis 7 takes the cluster bus port as --cluster-port; older servers use port + 10000.
class RedisCluster {
  constructor(nodes) {
    this.nodes = nodes;
    this.urls = nodes.map((node) => node.url);
  }

  // `extra`: more redis-server arguments for every node.
  static async create({ count = 3, extra: more = [] } = {}) {
    const major = redisMajor();
    const nodes = [];
    try {
      for (let i = 0; i < count; i++) {
        let port;
        const extra = ['--cluster-enabled', 'yes', '--cluster-config-file', 'nodes.conf', ...more];
        extra.push('--cluster-node-timeout', '3000');
        if (major >= 7) {
          port = await freePort();
          extra.push('--cluster-port', String(await freePort()));
        } else {
          do port = 20000 + Math.floor(Math.random() * 30000);
          while (!(await portIsFree(port)) || !(await portIsFree(port + 10000)));
        }
        nodes.push(await RedisServer.create(extra, port));
      }
      const addresses = nodes.map((node) => `127.0.0.1:${node.port}`);
      await new Promise((resolve, reject) => {
        execFile(
          'redis-cli',
          ['--cluster', 'create', ...addresses, '--cluster-replicas', '0', '--cluster-yes'],
          { timeout: 60_000 },
          (err, out, errOut) => (err ? reject(new Error(`redis-cli --cluster create: ${out}${errOut}`)) : resolve()),
        );
      });
      const cluster = new RedisCluster(nodes);
      await cluster.waitUntilSettled();
      return cluster;
    } catch (err) {
      await Promise.all(nodes.map((node) => node.destroy()));
      throw err;
    }
  }

  // Every node says the cluster is ok and knows every node.
  async waitUntilSettled() {
    await waitFor('the cluster to settle', async () => {
      for (const node of this.nodes) {
        const info = fields(await node.cli('CLUSTER', 'INFO'));
        if (info.cluster_state !== 'ok' || Number(info.cluster_known_nodes) !== this.nodes.length) return false;
      }
      return true;
    });
  }

  async nodeId(node) {
    return (await node.cli('CLUSTER', 'MYID')).trim();
  }

  async slotOf(key) {
    return Number((await this.nodes[0].cli('CLUSTER', 'KEYSLOT', key)).trim());
  }

  // The node that serves `slot`, as every node sees it.
  async ownerOf(slot) {
    const ids = await Promise.all(this.nodes.map((node) => this.nodeId(node)));
    const out = await this.nodes[0].cli('CLUSTER', 'NODES');
    for (const line of out.split('\n')) {
      const parts = line.trim().split(' ');
      if (parts.length < 9 || !parts[2].includes('master')) continue;
      for (const range of parts.slice(8)) {
        if (range.startsWith('[')) continue;
        const [from, to = from] = range.split('-').map(Number);
        if (slot >= from && slot <= to) return this.nodes[ids.indexOf(parts[0])];
      }
    }
    throw new Error(`no node serves slot ${slot}`);
  }

  // Moves hash slot `slot` (and its keys) to node `to`, as redis-cli --cluster reshard does for one slot:
  // IMPORTING / MIGRATING, MIGRATE the keys in batches, then SETSLOT NODE everywhere.
  async moveSlot(slot, to) {
    const from = await this.ownerOf(slot);
    if (from === to) throw new Error(`slot ${slot} is on that node already`);
    const [fromId, toId] = await Promise.all([this.nodeId(from), this.nodeId(to)]);
    await to.cli('CLUSTER', 'SETSLOT', String(slot), 'IMPORTING', fromId);
    await from.cli('CLUSTER', 'SETSLOT', String(slot), 'MIGRATING', toId);
    for (;;) {
      const keys = (await from.cli('CLUSTER', 'GETKEYSINSLOT', String(slot), '100')).split('\n').filter(Boolean);
      if (keys.length === 0) break;
      const out = await from.cli('MIGRATE', '127.0.0.1', String(to.port), '', '0', '10000', 'KEYS', ...keys);
      if (!/OK|NOKEY/.test(out)) throw new Error(`MIGRATE: ${out}`);
    }
    for (const node of [to, from, ...this.nodes.filter((n) => n !== to && n !== from)]) {
      await node.cli('CLUSTER', 'SETSLOT', String(slot), 'NODE', toId);
    }
    await waitFor(`slot ${slot} to be served by its new node everywhere`, async () => {
      for (const node of this.nodes) {
        const out = await node.cli('CLUSTER', 'NODES');
        const mine = out.split('\n').find((line) => line.startsWith(toId));
        if (!mine) return false;
        const served = mine
          .trim()
          .split(' ')
          .slice(8)
          .some((range) => {
            const [a, b = a] = range.split('-').map(Number);
            return slot >= a && slot <= b;
          });
        if (!served) return false;
      }
      return true;
    });
  }

  async destroy() {
    await Promise.all(this.nodes.map((node) => node.destroy()));
  }
}

// A primary, a replica of it, and three sentinels (quorum 2) that fail it over one second after it stops answering.
class RedisSentinels {
  constructor(primary, replica, sentinels) {
    this.name = 'mymaster';
    this.servers = [primary, replica];
    this.sentinels = sentinels;
    this.urls = sentinels.map((s) => `redis://127.0.0.1:${s.port}`);
  }

  static async create() {
    const started = [];
    try {
      // A replica syncs at once (Redis waits 5 s by default for more replicas to share one transfer).
      const quick = ['--repl-diskless-sync-delay', '0'];
      const primary = await RedisServer.create(quick);
      started.push(primary);
      const replica = await RedisServer.create([...quick, '--replicaof', '127.0.0.1', String(primary.port)]);
      started.push(replica);
      await waitFor(
        'the replica to sync',
        async () => fields(await replica.cli('INFO', 'replication')).master_link_status === 'up',
      );
      const sentinels = [];
      for (let i = 0; i < 3; i++) {
        const port = await freePort();
        const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'forkline-sentinel-'));
        const conf = path.join(dir, 'sentinel.conf');
        fs.writeFileSync(
          conf,
          [
            `port ${port}`,
            'bind 127.0.0.1',
            `dir ${dir}`,
            `sentinel monitor mymaster 127.0.0.1 ${primary.port} 2`,
            'sentinel down-after-milliseconds mymaster 1000',
            'sentinel failover-timeout mymaster 10000',
            'sentinel parallel-syncs mymaster 1',
            '',
          ].join('\n'),
        );
        const sentinel = new RedisServer(port, dir);
        sentinel.args = () => [conf, '--sentinel', '--loglevel', 'warning', '--daemonize', 'no'];
        started.push(sentinel);
        sentinels.push(sentinel);
        await sentinel.start();
      }
      const set = new RedisSentinels(primary, replica, sentinels);
      // Each sentinel knows the replica and the two other sentinels (they meet through the primary every 2 s).
      await waitFor('the sentinels to know each other and the replica', async () => {
        for (const sentinel of sentinels) {
          const master = pairs(await sentinel.cli('SENTINEL', 'MASTER', 'mymaster'));
          if (Number(master['num-slaves']) < 1 || Number(master['num-other-sentinels']) < 2) return false;
        }
        return true;
      });
      return set;
    } catch (err) {
      await Promise.all(started.map((server) => server.destroy()));
      throw err;
    }
  }

  // The port of the primary the sentinels name now.
  async primaryPort() {
    const out = (await this.sentinels[0].cli('SENTINEL', 'GET-MASTER-ADDR-BY-NAME', this.name)).split('\n');
    return Number(out[1]);
  }

  async primary() {
    const port = await this.primaryPort();
    return this.servers.find((server) => server.port === port);
  }

  async destroy() {
    await Promise.all([...this.sentinels, ...this.servers].map((server) => server.destroy()));
  }
}

// SENTINEL MASTER's raw reply: name and value on alternate lines.
function pairs(text) {
  const lines = text.split('\n');
  const out = {};
  for (let i = 0; i + 1 < lines.length; i += 2) out[lines[i]] = lines[i + 1];
  return out;
}

module.exports = { RedisServer, RedisCluster, RedisSentinels, redisServerPath, redisToolsMissing, waitFor, cli };

'use strict';

// Keeps one publisher's messages in order on a Redis Cluster. A Cluster opens a node's connection at the first
// command for it and queues commands in that connection's offline queue until its handshake (CLIENT SETNAME, the
// ready check) is over, but ioredis writes a command with Redis's "loading" flag at once while the handshake runs
// (Redis.sendCommand's `writable`), and PUBLISH and SPUBLISH have that flag: the second publish to a node left
// before the first, which waited in the queue. So a publish for a node whose connection is not ready waits here until
// it is (or has failed: ioredis then answers the publish itself), behind the publishes that already wait for it.

const SLOT_CACHE = 4096;

// A node connection's states on the way to 'ready' (the others: 'ready', and 'close' or 'end' once it failed).
const OPENING = new Set(['wait', 'connecting', 'connect', 'reconnecting']);
// The events that end that way.
const OPENED = ['ready', 'close', 'end'];

class PublishOrder {
  #cluster;
  #Command;
  // channel -> hash slot
  #slots = new Map();
  // node connection (an ioredis Redis) -> the promise of its being ready or gone
  #waiting = new Map();

  // `cluster`: an ioredis Cluster; `Command`: ioredis's Command (for its hash slot of a key).
  constructor(cluster, Command) {
    this.#cluster = cluster;
    this.#Command = Command;
  }

  // Runs `send(node)` now, or once `node`'s connection is ready: the node that serves `channel` (undefined while the
  // slot map is not known: ioredis then holds the command in the Cluster's own offline queue).
  run(channel, send) {
    const node = this.nodeOf(channel);
    if (node === undefined) return send(undefined);
    let ready = this.#waiting.get(node);
    if (ready === undefined) {
      if (!OPENING.has(node.status)) return send(node);
      ready = new Promise((resolve) => {
        const done = () => {
          for (const event of OPENED) node.off(event, done);
          resolve();
        };
        for (const event of OPENED) node.on(event, done);
      });
      // First in line, so that a publish made after the ones waiting now cannot go before them.
      ready.then(() => this.#waiting.delete(node));
      this.#waiting.set(node, ready);
      if (node.status === 'wait') node.connect().catch(() => {}); // ioredis's lazy connection; failures: 'close'.
    }
    return ready.then(() => send(node));
  }

  // The connection of the node that serves `channel` (a primary), or undefined while the slot map is not known.
  nodeOf(channel) {
    let slot = this.#slots.get(channel);
    if (slot === undefined) {
      slot = new this.#Command('spublish', [channel]).getSlot();
      if (this.#slots.size >= SLOT_CACHE) this.#slots.clear();
      this.#slots.set(channel, slot);
    }
    const key = this.#cluster.slots[slot]?.[0];
    if (key === undefined) return undefined;
    return this.#cluster.nodes('master').find(({ options }) => `${options.host}:${options.port}` === key);
  }
}

module.exports = { PublishOrder };

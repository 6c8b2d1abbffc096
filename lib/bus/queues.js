'use strict';

// Queues in the host's gateway: job queues and request topics share this machinery. A job queue's stream is
// `<ns>:q:<queue>`, a request topic's `<ns>:r:<topic>` (on a Cluster with hash tags: the transport's key()); in
// local-only mode the backlog is the whole queue. Consuming from the broker: a blocking XREADGROUP per read group (on
// one server every queue this host processes; on a Cluster each queue), reading no more than the host's prefetch
// bound (#bound); a timer keeps this host's jobs fresh and reclaims those of dead hosts.

const process = require('node:process');
const { makeError } = require('../errors');
const { validateName, checkSize } = require('./codec');

// How long one XREADGROUP blocks before looking at the set of queues again.
const BLOCK_MS = 2000;

// A process whose handler is quick holds jobs beyond its concurrency, waiting in its own process, so that jobs reach
// it (and their acknowledgements leave it) in batches: as many as it runs in about HOLD_MS, at most MAX_HELD.
const HOLD_MS = 1;
const MAX_HELD = 32;

// Acknowledgements wait this long (or for the next read) to leave together: one XACK and one XDEL per stream.
const ACK_DELAY_MS = 5;
const MAX_ACKS = 1000;

class Queues {
  #gw;
  #onAnswer;
  // stream key -> queue state
  #queues = new Map();
  #tokens = 0;
  #ids = 0;
  // Read group (lib/bus/transports/redis.js readGroup) -> its loop's state { waiter, reading }.
  #readers = new Map();
  #claimTimer = null;
  #acks = null;
  #ackCount = 0;
  #ackTimer = null;

  // `gw`: what the gateway shares with its parts (lib/bus/gateway.js); `onAnswer(job, reply)`: a request finished.
  constructor(gw, onAnswer) {
    this.#gw = gw;
    this.#onAnswer = onAnswer;
  }

  key(kind, name) {
    const transport = this.#gw.transport;
    const short = kind === 'job' ? 'q' : 'r';
    return transport === null ? this.#gw.channel(short, name) : transport.key(short, name);
  }

  #queue(kind, name) {
    const key = this.key(kind, name);
    let q = this.#queues.get(key);
    if (q === undefined) {
      const reader = this.#gw.transport === null ? null : this.#gw.transport.readGroup(key);
      q = { key, kind, name, reader, procs: [], backlog: [], running: new Set(), next: 0, group: null, grouped: false };
      this.#queues.set(key, q);
    }
    return q;
  }

  // Jobs `proc` may hold at once: its concurrency, and more waiting in its process when its handler is quick
  // (requests never wait there: they are answered as they come, up to the responder's concurrency).
  #depth(proc) {
    if (proc.time === null || proc.q.kind !== 'job') return proc.n;
    return proc.n + Math.min(MAX_HELD, Math.floor((HOLD_MS * proc.n) / Math.max(proc.time, 0.001)));
  }

  // The host's prefetch bound for `q`: what its processes may hold, plus as many again as they run at once waiting
  // here, so that a handler that finishes finds its next job without a round trip to the broker. What the host holds
  // stays its own: kept fresh, and reclaimed by another host if this one dies.
  #bound(q) {
    let bound = 0;
    for (const proc of q.procs) bound += this.#depth(proc) + proc.n;
    return bound;
  }

  // How many more entries to read.
  #free(q) {
    let free = this.#bound(q) - q.backlog.length;
    for (const proc of q.procs) free -= proc.inflight;
    return free;
  }

  // Read again once half of the bound is free: a handler that is idle always is, and reads come in batches.
  #readable(q) {
    const bound = this.#bound(q);
    return q.grouped && bound > 0 && this.#free(q) * 2 >= bound;
  }

  // Acknowledgements wait a little (ACK_DELAY_MS, or the next read) and go to the broker together: per stream, one
  // XACK and one XDEL in one write. A host that dies before they leave has its jobs done again (at least once).
  #ack(key, rid) {
    if (this.#acks === null) {
      this.#acks = new Map();
      this.#ackTimer = setTimeout(() => this.#flushAcks(), ACK_DELAY_MS);
    }
    const ids = this.#acks.get(key);
    if (ids === undefined) this.#acks.set(key, [rid]);
    else ids.push(rid);
    if (++this.#ackCount >= MAX_ACKS) this.#flushAcks();
  }

  #flushAcks() {
    const acks = this.#acks;
    if (acks === null) return;
    clearTimeout(this.#ackTimer);
    this.#acks = null;
    this.#ackCount = 0;
    const transport = this.#gw.transport;
    for (const [stream, ids] of acks) this.#gw.remote(() => transport.ack(stream, ids)).catch(() => {});
  }

  async enqueue(queue, m) {
    validateName(queue, 'queue');
    checkSize(m, this.#gw.config.maxMessageSize);
    const transport = this.#gw.transport;
    if (transport !== null) {
      const key = this.key('job', queue);
      if (this.#gw.config.durability === 'replicated') {
        return this.#gw.remote(() => transport.addReplicated(key, { m, a: 0 }));
      }
      return this.#gw.remote(() => transport.add(key, { m, a: 0 }));
    }
    return this.#enqueueLocal(queue, { m, a: 0 });
  }

  #enqueueLocal(queue, job) {
    const id = `${Date.now()}-${++this.#ids}`;
    this.pushLocal('job', queue, { rid: id, id, ...job });
    return id;
  }

  // Local-only mode: `job` joins the backlog of queue `name` (of `kind`).
  pushLocal(kind, name, job) {
    const q = this.#queue(kind, name);
    q.backlog.push(job);
    this.#dispatch(q);
  }

  // Local-only mode: the entry `rid` leaves the backlog (a request nobody took in time).
  withdrawLocal(kind, name, rid) {
    const q = this.#queue(kind, name);
    const at = q.backlog.findIndex((job) => job.rid === rid);
    if (at !== -1) q.backlog.splice(at, 1);
  }

  async addProc(ep, kind, name, n, max) {
    validateName(name, kind === 'job' ? 'queue' : 'topic');
    const q = this.#queue(kind, name);
    if (ep.procs.has(q.key)) {
      throw makeError('ERR_INVALID_ARG_VALUE', kind === 'job' ? 'queue' : 'topic', name, 'has a handler already');
    }
    // time: how long its handler takes (ms, a moving average of what the process reports), once it has run.
    const proc = { ep, q, n, max, inflight: 0, time: null };
    q.procs.push(proc);
    ep.procs.set(q.key, proc);
    if (this.#gw.transport === null) return this.#dispatch(q);
    this.#startConsuming(q.reader);
    // While the broker is away the group is made when it is back (onReady); the handler is registered meanwhile.
    await this.#ensureGroup(q).catch(() => {});
  }

  #ensureGroup(q) {
    if (q.group === null) {
      q.group = this.#gw
        .remote(() => this.#gw.transport.ensureGroup(q.key))
        .then(
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

  removeProc(ep, kind, name) {
    this.#removeProc(ep, this.#queues.get(this.key(kind, name)));
  }

  #removeProc(ep, q) {
    const proc = q && ep.procs.get(q.key);
    if (!proc) return;
    ep.procs.delete(q.key);
    q.procs.splice(q.procs.indexOf(proc), 1);
    // What this host read for it and nobody here can take goes back to the broker (or stays, locally).
    if (this.#gw.transport !== null && q.procs.length === 0) {
      for (const job of q.backlog.splice(0)) this.#giveBack(q, job);
    }
    this.#wake();
  }

  // An endpoint left: its handlers go, and what it held goes back. A process runs its jobs in the order it got them,
  // so of those it held, the first `n` of each queue were running (a try: it counts) and the rest were waiting.
  detach(ep) {
    for (const proc of [...ep.procs.values()]) this.#removeProc(ep, proc.q);
    const gone = { message: 'The worker handling it exited', code: 'FORKLINE_BUS_CLOSED' };
    const started = new Map();
    for (const [token, { proc }] of [...ep.jobs]) {
      const count = started.get(proc) ?? 0;
      started.set(proc, count + 1);
      this.done(ep, count < proc.n ? { k: token, e: gone } : { k: token, back: true });
    }
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
      if (proc.inflight < this.#depth(proc)) {
        q.next = (q.next + i + 1) % procs.length;
        return proc;
      }
    }
    return undefined;
  }

  // A job or request finished (or its endpoint left: `e` then says so).
  done(ep, message) {
    const entry = ep.jobs.get(message.k);
    if (entry === undefined) return;
    ep.jobs.delete(message.k);
    const { proc, job } = entry;
    const q = proc.q;
    const transport = this.#gw.transport;
    proc.inflight--;
    q.running.delete(job);
    const d = message.d;
    if (typeof d === 'number' && d >= 0 && d < 1e9) proc.time = proc.time === null ? d : proc.time * 0.8 + d * 0.2;
    if (q.kind === 'req') {
      this.#onAnswer(job, message.e !== undefined ? { e: message.e } : { m: message.m });
    } else if (message.back) {
      // The endpoint had stopped processing (its 'unproc' follows): the job goes back uncounted, to someone else.
      proc.n = 0;
      q.backlog.unshift(job);
    } else if (message.e === undefined) {
      if (transport !== null) this.#ack(q.key, job.rid);
    } else {
      this.#fail(q, job, proc.max, message.e);
    }
    if (q.backlog.length > 0 && q.procs.length === 0 && transport !== null) {
      for (const rest of q.backlog.splice(0)) this.#giveBack(q, rest);
    }
    this.#dispatch(q);
    this.#wake();
  }

  // A throw: again at the back of the queue, or past maxAttempts into `<queue>:dead`.
  #fail(q, job, max, wireError) {
    const attempts = job.a + 1;
    const error = String(wireError.message);
    const transport = this.#gw.transport;
    if (transport === null) {
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
        ? () => transport.deadLetter(q.key, job.rid, this.key('job', `${q.name}:dead`), { ...fields, error })
        : () => transport.requeue(q.key, job.rid, fields);
    this.#gw.remote(run).catch(() => {}); // Still pending at the broker: reclaimed after claimTimeout.
  }

  #giveBack(q, job) {
    if (q.kind === 'req') return; // Already acknowledged: at most once.
    const transport = this.#gw.transport;
    this.#gw.remote(() => transport.requeue(q.key, job.rid, { m: job.m, a: job.a, id: job.id })).catch(() => {});
  }

  // ------------------------------------------------------------------------------------------------------------
  // Consuming from the broker.

  // The broker is (back) up: groups it does not have yet are made, and reading resumes.
  onReady() {
    for (const q of this.#queues.values()) if (q.procs.length > 0 && !q.grouped) this.#ensureGroup(q);
    this.#wake();
  }

  #startConsuming(group) {
    if (this.#claimTimer === null) {
      const period = Math.max(50, Math.floor(this.#gw.config.claimTimeout / 3));
      this.#claimTimer = setInterval(() => this.#claimRound(), period);
      this.#claimTimer.unref();
    }
    if (!this.#readers.has(group)) {
      const reader = { waiter: null, reading: null };
      this.#readers.set(group, reader);
      this.#readLoop(group, reader);
    }
  }

  #readyQueues(group) {
    const ready = [];
    for (const q of this.#queues.values()) if (q.reader === group && this.#readable(q)) ready.push(q);
    return ready;
  }

  #consumed(group) {
    for (const q of this.#queues.values()) if (q.reader === group && q.procs.length > 0) return true;
    return false;
  }

  #wake() {
    for (const [group, reader] of this.#readers) {
      if (reader.waiter !== null) {
        const waiter = reader.waiter;
        reader.waiter = null;
        waiter();
      }
      if (
        reader.reading !== null &&
        this.#readyQueues(group)
          .map((q) => q.key)
          .join('\n') !== reader.reading
      ) {
        this.#gw.transport.unblock(group);
      }
    }
  }

  async #readLoop(group, reader) {
    const transport = this.#gw.transport;
    while (!this.#gw.closed) {
      const queues = this.#readyQueues(group);
      if (queues.length === 0 || !transport.ready) {
        if (queues.length === 0 && !this.#consumed(group)) break;
        // A consumer group that could not be made (the broker went away meanwhile) is tried again, every second.
        const ungrouped = [...this.#queues.values()].filter(
          (q) => q.reader === group && q.procs.length > 0 && !q.grouped,
        );
        if (transport.ready) for (const q of ungrouped) this.#ensureGroup(q).catch(() => {});
        await new Promise((resolve) => {
          reader.waiter = resolve;
          // The broker is away: look again soon.
          if (queues.length > 0 || ungrouped.length > 0) setTimeout(resolve, queues.length > 0 ? 100 : 1000).unref();
        });
        continue;
      }
      // What was done since the last read leaves first.
      this.#flushAcks();
      const keys = queues.map((q) => q.key);
      const count = Math.min(...queues.map((q) => this.#free(q)));
      let reply;
      reader.reading = keys.join('\n');
      try {
        reply = await transport.read(group, keys, count, BLOCK_MS);
      } catch (err) {
        if (/NOGROUP/.test(err.message)) {
          // The broker lost the groups (it lost its data, or a failover lost what had not reached the replica):
          // make them again.
          for (const q of queues) {
            q.grouped = false;
            q.group = null;
            this.#ensureGroup(q).catch(() => {});
          }
        }
        await new Promise((resolve) => setTimeout(resolve, 100));
        continue;
      } finally {
        reader.reading = null;
      }
      for (const [key, entries] of reply) {
        const q = this.#queues.get(key);
        if (q !== undefined) for (const [rid, fields] of entries) this.#take(q, rid, fields);
        if (q !== undefined) this.#dispatch(q);
      }
    }
    this.#readers.delete(group);
    if (!this.#gw.closed) transport.closeReader(group);
  }

  #take(q, rid, f) {
    if (typeof f.m !== 'string') {
      this.#gw.report(makeError('FORKLINE_BUS_MALFORMED_MESSAGE', `Entry ${rid} of ${q.key} has no message`));
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
    const transport = this.#gw.transport;
    if (this.#gw.closed || !transport.ready) return;
    for (const q of this.#queues.values()) {
      if (q.kind !== 'job' || !q.grouped) continue;
      const mine = [...q.backlog, ...q.running].map((job) => job.rid);
      try {
        if (mine.length > 0) await transport.touch(q.key, mine);
        if (q.procs.length === 0) continue;
        const max = Math.max(...q.procs.map((proc) => proc.max));
        for (const [rid, f] of await transport.claim(q.key, this.#gw.config.claimTimeout, 100)) {
          // A job whose consumer died counts as an attempt, so a job that kills its host cannot loop for ever.
          const attempts = (Number(f.a) || 0) + 1;
          const fields = { m: f.m, a: attempts, id: f.id || rid };
          if (attempts >= max) {
            const dead = this.key('job', `${q.name}:dead`);
            await transport.deadLetter(q.key, rid, dead, { ...fields, error: 'its consumer died' });
          } else await transport.requeue(q.key, rid, fields);
        }
      } catch {
        // The broker went away; the next round tries again.
      }
    }
  }

  close() {
    clearInterval(this.#claimTimer);
    this.#flushAcks();
    this.#wake();
  }
}

module.exports = { Queues };

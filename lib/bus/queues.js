'use strict';

// Queues in the host's gateway: job queues and request topics share this machinery. A job queue's stream is
// `<ns>:q:<queue>`, a request topic's `<ns>:r:<topic>`; in local-only mode the backlog is the whole queue. Consuming
// from the broker: one blocking XREADGROUP for every queue this host processes, reading no more than its handlers
// have room for; a timer keeps this host's jobs fresh and reclaims those of dead hosts.

const process = require('node:process');
const { makeError } = require('../errors');
const { validateName, checkSize } = require('./codec');

// How long one XREADGROUP blocks before looking at the set of queues again.
const BLOCK_MS = 2000;

class Queues {
  #gw;
  #onAnswer;
  // stream key → queue state
  #queues = new Map();
  #tokens = 0;
  #ids = 0;
  #waiter = null;
  #reading = null;
  #claimTimer = null;
  #acks = null;

  // `gw`: what the gateway shares with its parts (lib/bus/gateway.js); `onAnswer(job, reply)`: a request finished.
  constructor(gw, onAnswer) {
    this.#gw = gw;
    this.#onAnswer = onAnswer;
  }

  key(kind, name) {
    return this.#gw.channel(kind === 'job' ? 'q' : 'r', name);
  }

  #queue(kind, name) {
    const key = this.key(kind, name);
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
        const transport = this.#gw.transport;
        for (const [stream, ids] of acks) this.#gw.remote(() => transport.ack(stream, ids)).catch(() => {});
      });
    }
    const ids = this.#acks.get(key);
    if (ids === undefined) this.#acks.set(key, [rid]);
    else ids.push(rid);
  }

  async enqueue(queue, m) {
    validateName(queue, 'queue');
    checkSize(m, this.#gw.config.maxMessageSize);
    const transport = this.#gw.transport;
    if (transport !== null) {
      return this.#gw.remote(() => transport.add(this.key('job', queue), { m, a: 0 }));
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
    const proc = { ep, q, n, max, inflight: 0 };
    q.procs.push(proc);
    ep.procs.set(q.key, proc);
    if (this.#gw.transport === null) return this.#dispatch(q);
    this.#startConsuming();
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

  // An endpoint left: its handlers go, and what it held goes back.
  detach(ep) {
    for (const proc of [...ep.procs.values()]) this.#removeProc(ep, proc.q);
    const gone = { message: 'The worker handling it exited', code: 'FORKLINE_BUS_CLOSED' };
    for (const token of [...ep.jobs.keys()]) this.done(ep, { k: token, e: gone });
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
  done(ep, message) {
    const entry = ep.jobs.get(message.k);
    if (entry === undefined) return;
    ep.jobs.delete(message.k);
    const { proc, job } = entry;
    const q = proc.q;
    const transport = this.#gw.transport;
    proc.inflight--;
    q.running.delete(job);
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

  #startConsuming() {
    if (this.#claimTimer !== null) return;
    const period = Math.max(50, Math.floor(this.#gw.config.claimTimeout / 3));
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
      this.#gw.transport.unblock();
    }
  }

  async #readLoop() {
    const transport = this.#gw.transport;
    while (!this.#gw.closed) {
      const queues = this.#readyQueues();
      if (queues.length === 0 || !transport.ready) {
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
        reply = await transport.read(keys, count, BLOCK_MS);
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
    this.#wake();
  }
}

module.exports = { Queues };

'use strict';

// The channel end both sides share (Node's setupChannel(target) in lib/internal/child_process.js): send() with
// per-tick batching and callbacks by write number, the inbox that holds messages until a 'message' listener,
// handles, disconnect, and `channel` (Node's Control). ChildProcess (lib/child_process.js) is a ChannelEnd; the
// child runtime (lib/runtime.js) gives the same methods to `process` through setupChannel(). Over 600 lines on
// purpose: this is one state machine (write numbers, the outbox, the inbox, the handle in flight), as Node keeps it
// in one setupChannel(); cut in two, each half would reach into the other's state.

const EventEmitter = require('node:events');
const util = require('node:util');
// The process object of start-up, not the global at call time: code may replace globalThis.process (tinypool does).
const process = require('node:process');
const { makeError, errnoException } = require('./errors');
const { validateObject } = require('./validators');
const { codecFor, decodeFrame } = require('./serialization');
const { HANDLE_TYPES, handleType, closeFd } = require('./handles');
const debug = require('./debug');
const nodeVersion = require('./node_version');

// Node's send() returns false once this much is queued behind the socket.
const HIGH_WATER_MARK = 64 * 1024 * 2;
// Sends made in one tick leave together; past this many bytes they leave at once, to bound the batch.
const FLUSH_BYTES = 256 * 1024;

const INTERNAL_PREFIX = 'NODE_';

function isInternal(message) {
  return (
    message !== null &&
    typeof message === 'object' &&
    typeof message.cmd === 'string' &&
    message.cmd.length > INTERNAL_PREFIX.length &&
    message.cmd.startsWith(INTERNAL_PREFIX)
  );
}

// An inbox entry that is not a plain user message: internal messages and channel/process events. User messages sit
// in the inbox as themselves, so the common case allocates nothing extra.
class Signal {
  constructor(kind, payload) {
    this.kind = kind;
    this.payload = payload;
  }
}

// ---------------------------------------------------------------------------------------------------------------
// child.channel / process.channel: Node's Control object (ref/unref keep or release the event loop; fd). The child
// runtime also counts refs as Node's does: its channel holds the loop only while 'message' or 'disconnect' listeners
// (or unfinished writes) exist, until ref()/unref() are called explicitly.

class Control extends EventEmitter {
  #end;
  #refs = 0;
  #refExplicitlySet = false;
  constructor(end) {
    super();
    this.#end = end;
  }
  refCounted() {
    if (++this.#refs === 1 && !this.#refExplicitlySet) this.#ref();
  }
  unrefCounted() {
    if (--this.#refs === 0 && !this.#refExplicitlySet) {
      this.#unref();
      if (nodeVersion.channelUnrefEvent) this.emit('unref');
    }
  }
  ref() {
    this.#refExplicitlySet = true;
    this.#ref();
  }
  unref() {
    this.#refExplicitlySet = true;
    this.#unref();
  }
  #ref() {
    const end = this.#end;
    if (end._channelOpen) end._native.refChannel();
  }
  #unref() {
    const end = this.#end;
    if (end._channelOpen) end._native.unrefChannel();
  }
  get fd() {
    const end = this.#end;
    return end._channelOpen ? end._native.channelFd : undefined;
  }
  // forkline's own: the channel's counters (index.d.ts ChannelStats). They stay readable once the channel closed.
  stats() {
    return this.#end._stats();
  }
}

// Ends that have sent, until their channel ends: those with sends waiting for the end of the tick are flushed on
// process 'exit' too, so a parent that sends and then exits still delivers, as Node's synchronous writes do. An end
// joins once rather than at each flush: a Set added to and deleted from at every flush of hundreds of channels
// rehashes into new tables that live long enough to be promoted, then die (~1 MB/s of old space with 200 children).
const exitList = new Set();
// Replies sent while a wake's batch is emitted: the first half of them (at most EARLY_WRITES_MAX) go out one write
// each, the rest in one write when the batch ends. A peer that waits for replies (a pipelined echo: a few requests
// in flight) then wakes on the first and works on it while this end builds the rest, instead of the two ends taking
// turns a batch at a time. Only while this process serves one channel at a time (no other end woke within
// SOLO_MS): with several busy channels this process is the bottleneck, every write costs them all, and one write
// per batch serves them best. Measured with node children, 8 in flight each: one child 0.9x of node's parent with
// one write per batch, ~1.1x with early writes; 10 and 100 children 1.3-1.55x with one write per batch, 1.0-1.1x
// with early writes.
const EARLY_WRITES_MAX = 8;
const SOLO_MS = 1;
// The end whose wake ran last (its `_endId`: not the end itself, which may be gone), and when (nowMs()).
let lastWoken = 0;
let lastWokenAt = 0;
let endIds = 0;
let exitHookInstalled = false;

// Milliseconds on a monotonic clock. Not performance.now(): its first call loads perf_hooks and nine internal modules
// (~0.75 MB of RSS, measured on Node 26) in every process that forks.
function nowMs() {
  const [s, ns] = process.hrtime();
  return s * 1e3 + ns / 1e6;
}

function flushAll() {
  for (const child of exitList) if (child._flushScheduled) child._flush();
}

// ---------------------------------------------------------------------------------------------------------------
// ChannelEnd.

class ChannelEnd extends EventEmitter {
  constructor() {
    super();
    this._initChannel();
  }

  // The channel state, set up apart from the constructor so that the child runtime can give it to `process`.
  _initChannel() {
    this.connected = false;
    this.channel = undefined;
    this._native = null;
    this._channelOpen = false;
    this._disconnectCalled = false;
    this._codec = codecFor('json');
    // Outgoing: messages of this tick, as text, and the callbacks waiting for their write.
    this._outbox = [];
    this._outBytes = 0;
    this._flushScheduled = false;
    // In `exitList` (above).
    this._listed = false;
    // True while _onWake emits a batch: sends made meanwhile are flushed when it ends, but for the first few
    // (`_earlyWrites`, see EARLY_WRITES_MAX).
    this._inWake = false;
    this._earlyWrites = 0;
    this._endId = ++endIds;
    this._writeSeq = 0;
    this._callbacks = [];
    // Batches holding sends with neither callback nor swallowErrors: a failed write is an 'error' event for those.
    this._bareSeqs = [];
    this._queuedBytes = 0;
    this._needDrain = false;
    // A handle sent and not yet acknowledged, as far as we know (the core knows for sure).
    this._handleInFlight = false;
    // Incoming: parsed messages and events not yet emitted, and messages waiting for a 'message' listener.
    this._inbox = [];
    this._inboxAt = 0;
    this._pendingMessages = [];
    // What only JS knows for stats(): send() returning false, and the errors JS itself finds (code -> count).
    this._sendFalse = 0;
    this._errorCounts = { __proto__: null };
  }

  // What users see of this end, in traces: the end itself (a ChildProcess), or `process` for the child runtime.
  get _subject() {
    return this;
  }

  // The core's counters (src/core/channel/stats.rs) with JS's added.
  _stats() {
    const stats = this._native.stats();
    stats.backpressureEvents = this._sendFalse;
    for (const code in this._errorCounts) stats.errors[code] = (stats.errors[code] || 0) + this._errorCounts[code];
    return stats;
  }

  // An error found in JS (the core counts its own).
  _countError(err) {
    this._errorCounts[err.code] = (this._errorCounts[err.code] || 0) + 1;
    return err;
  }

  _send(message, handle, options, callback) {
    if (message === undefined) throw makeError('ERR_MISSING_ARGS', 'message');
    const type = typeof message;
    if (type !== 'string' && type !== 'object' && type !== 'number' && type !== 'boolean') {
      throw makeError('ERR_INVALID_ARG_TYPE', 'message', ['string', 'object', 'number', 'boolean'], message);
    }
    if (handle) {
      const type = handleType(handle);
      const conversion = HANDLE_TYPES[type];
      const fd = conversion.fd(handle);
      // Node: a handle sent twice, or with nothing native left in it, goes as a plain message.
      if (typeof fd === 'number' && fd >= 0) return this._sendHandle(message, handle, type, fd, options, callback);
    }
    // Encode now, as Node does: a value that cannot be encoded throws in the caller's frame.
    return this._queue(this._codec.encode(message), options, callback);
  }

  // Puts an encoded message in the tick's outbox; send()'s return value.
  _queue(encoded, options, callback) {
    const held = this._heldBehindHandle();
    this._outbox.push(encoded);
    this._outBytes += encoded.length;
    this._expect(this._writeSeq + 1, options, callback);
    // During 'exit' no later tick comes: send now.
    if (this._outBytes >= FLUSH_BYTES || process._exiting) {
      this._flush();
    } else if (!this._flushScheduled) {
      this._flushScheduled = true;
      if (!this._listed) {
        this._listed = true;
        exitList.add(this);
      }
      if (!exitHookInstalled) {
        exitHookInstalled = true;
        process.on('exit', flushAll);
      }
      // Inside _onWake the flush comes at its end, but for the wake's early writes.
      if (!this._inWake) process.nextTick(flushNT, this);
      else if (this._earlyWrites > 0) {
        this._earlyWrites--;
        this._flush();
      }
    }
    return held ? held === 1 : this._belowHighWaterMark();
  }

  _sendHandle(message, handle, type, fd, options, callback) {
    const conversion = HANDLE_TYPES[type];
    const envelope = { cmd: 'NODE_HANDLE', type, msg: message };
    if (conversion.envelope) conversion.envelope(envelope, handle, options, this);
    const encoded = this._codec.encode(envelope);
    // Earlier sends go first; later ones wait in the core until the child acknowledges this handle.
    this._flush();
    const held = this._heldBehindHandle();
    const seq = this._writeSeq + 1;
    this._expect(seq, options, callback);
    debug.handle(this._subject, 'send', type);
    const written = this._wrote(seq, this._native.writeHandle(encoded, fd));
    // As Node: the handle is handed over whether or not the write went, so a send that failed closes it too.
    if (conversion.postSend) conversion.postSend(handle, options);
    if (!written) return this._belowHighWaterMark();
    if (held) return held === 1;
    // This handle is the one in flight: what follows waits for its ACK.
    this._handleInFlight = true;
    return this._belowHighWaterMark();
  }

  // While a handle waits for the peer's ACK, later sends queue behind it and, as Node's send() (which returns
  // `_handleQueue.length === 1`), only the first one queued says true. Returns how many are queued with this one:
  // those the core holds and this tick's not flushed yet (all sent after the handle); 0 when no handle is in flight.
  // The core's count follows an ACK as Node's queue does: what followed the next handle is queued behind it.
  _heldBehindHandle() {
    if (!this._handleInFlight) return 0;
    const held = this._native.heldWrites();
    if (held < 0) {
      this._handleInFlight = false;
      return 0;
    }
    return held + this._outbox.length + 1;
  }

  // Notes whom to tell when write number `seq` completes or fails: the callback, or else (unless errors are
  // swallowed) the 'error' event.
  _expect(seq, options, callback) {
    if (typeof callback === 'function') this._callbacks.push({ seq, callback });
    else if (!options.swallowErrors && this._bareSeqs[this._bareSeqs.length - 1] !== seq) this._bareSeqs.push(seq);
  }

  // Accounts for native write number `seq` (`result`: bytes still queued, or -errno); false if it failed.
  _wrote(seq, result) {
    if (result < 0) {
      this._failWrites(seq, errnoException(result, 'write'));
      return false;
    }
    this._writeSeq = seq;
    this._queuedBytes = result;
    if (result === 0) {
      // On the wire already: nothing can fail any more, and only callbacks need a later tick.
      while (this._bareSeqs.length && this._bareSeqs[0] <= seq) this._bareSeqs.shift();
      if (this._callbacks.length) process.nextTick(completeWritesNT, this, seq);
    }
    return true;
  }

  // send()'s return value, as Node's: false once too much waits behind the socket ('drain' follows).
  _belowHighWaterMark() {
    const ok = this._queuedBytes < HIGH_WATER_MARK;
    if (!ok && !this._needDrain) debug.backpressure(this._subject, true, this._queuedBytes);
    if (!ok) this._needDrain = true;
    return ok;
  }

  // Hands this tick's messages to the channel in one native call.
  _flush() {
    this._flushScheduled = false;
    if (this._outbox.length === 0) return;
    // The same array for the channel's life (one made per flush can outlive a scavenge between two flushes).
    const data = this._codec.join(this._outbox);
    this._outbox.length = 0;
    this._outBytes = 0;
    const native = this._native;
    this._wrote(this._writeSeq + 1, typeof data === 'string' ? native.writeLine(data) : native.write(data));
  }

  // Calls back every send up to `seq` with `err`; sends without a callback report it once as 'error', unless
  // `quiet`.
  _failWrites(seq, err, quiet = false) {
    let told = false;
    while (this._callbacks.length && this._callbacks[0].seq <= seq) {
      process.nextTick(this._callbacks.shift().callback, err);
      told = true;
    }
    let bare = false;
    while (this._bareSeqs.length && this._bareSeqs[0] <= seq) {
      this._bareSeqs.shift();
      bare = true;
    }
    if (bare && !quiet) process.nextTick(() => this.emit('error', err));
    if (told || bare) debug.error(this._subject, err);
  }

  _completeWrites(seq) {
    while (this._bareSeqs.length && this._bareSeqs[0] <= seq) this._bareSeqs.shift();
    while (this._callbacks.length && this._callbacks[0].seq <= seq) {
      this._callbacks.shift().callback(null);
    }
  }

  // ---- incoming: the core wakes us once per batch ----

  _onWake() {
    const events = this._native.poll();
    for (let i = 0; i < events.length; i++) {
      const ev = events[i];
      // Json lines come as bare strings (the hot path builds no event object).
      if (typeof ev === 'string') {
        if (this._receiving()) this._parseLines(ev);
        continue;
      }
      switch (ev.kind) {
        // Node stops reading at disconnect(): what arrives after it is not delivered.
        case 'lines':
          if (this._receiving()) this._parseLines(ev.text);
          break;
        case 'frames':
          if (this._receiving()) this._parseFrames(ev.bytes);
          break;
        case 'written':
          this._onWritten(ev);
          break;
        case 'handle':
          if (this._receiving()) this._inbox.push(new Signal('handle', ev));
          else closeFd(ev.fd);
          break;
        case 'error':
          if (ev.code === 'FORKLINE_HANDLE_NOT_RECEIVED') {
            // Node's own report when the peer NACKs a handle past MAX_HANDLE_RETRANSMISSIONS.
            process.emitWarning(ev.message, 'SentHandleNotReceivedWarning');
          } else if (this._receiving()) {
            // Faults in what the peer sent; after disconnect() nothing it sent is read for us, so nor are they
            // (our own shutdown may cut its last message short).
            this._inbox.push(new Signal('error', makeError(ev.code, ev.message)));
          }
          break;
        case 'readError':
          this._inbox.push(new Signal('error', errnoException(ev.errno, ev.syscall)));
          break;
        case 'eof':
          this._inbox.push(new Signal('eof'));
          break;
        case 'exit':
          this._inbox.push(new Signal('exit', ev));
          break;
      }
    }
    this._inWake = true;
    const now = nowMs();
    const solo = lastWoken === this._endId || now - lastWokenAt > SOLO_MS;
    lastWoken = this._endId;
    lastWokenAt = now;
    this._earlyWrites = solo ? Math.min(EARLY_WRITES_MAX, Math.ceil((this._inbox.length - this._inboxAt) / 2)) : 0;
    try {
      this._drainInbox();
    } finally {
      this._inWake = false;
      // What the listeners sent leaves now, in one write, without waiting for a tick.
      if (this._flushScheduled) this._flush();
    }
  }

  _parseLines(text) {
    const inbox = this._inbox;
    let start = 0;
    let end;
    while ((end = text.indexOf('\n', start)) !== -1) {
      const line = text.slice(start, end);
      start = end + 1;
      let message;
      try {
        message = JSON.parse(line);
      } catch (err) {
        const shown = line.length > 64 ? `${line.slice(0, 61)}...` : line;
        const fault = makeError(
          'FORKLINE_MALFORMED_MESSAGE',
          `IPC message is not valid JSON (${err.message}): ${shown}`,
        );
        inbox.push(new Signal('error', this._countError(fault)));
        continue;
      }
      inbox.push(isInternal(message) ? new Signal('internal', message) : message);
    }
  }

  // `run` holds whole frames (the core checked every length); each is deserialized on its own, so one bad frame
  // costs only itself. Buffers in messages are views into `run`, as Node's DefaultDeserializer makes them.
  _parseFrames(run) {
    const inbox = this._inbox;
    let at = 0;
    while (at < run.length) {
      const end = at + 4 + run.readUInt32BE(at);
      const body = run.subarray(at, end);
      at = end;
      let message;
      try {
        message = decodeFrame(body, 4);
      } catch (err) {
        const fault = makeError(
          'FORKLINE_MALFORMED_MESSAGE',
          `IPC message is not valid V8 serializer data (${err.message})`,
        );
        inbox.push(new Signal('error', this._countError(fault)));
        continue;
      }
      inbox.push(isInternal(message) ? new Signal('internal', message) : message);
    }
  }

  // Emits what the inbox holds. A listener that throws ends this call (the throw reaches 'uncaughtException', as
  // in Node), and the rest of the inbox goes out on the next tick instead of being lost.
  _drainInbox() {
    let finished = false;
    let later = false;
    try {
      const inbox = this._inbox;
      const start = this._inboxAt;
      while (this._inboxAt < inbox.length) {
        const item = inbox[this._inboxAt];
        // Node's 'exit' comes from the process handle, an I/O callback of its own: the ticks and promise jobs of
        // what this batch emitted run before it (so a listener they add still sees it).
        if (item instanceof Signal && item.kind === 'exit' && this._inboxAt > start) {
          later = true;
          setImmediate(() => this._drainInbox());
          return;
        }
        this._inboxAt++;
        if (item instanceof Signal) this._onSignal(item);
        else if (this._receiving()) this._emitMessage('message', item, undefined);
      }
      finished = true;
    } finally {
      if (finished) {
        this._inbox.length = 0;
        this._inboxAt = 0;
      } else if (!later) {
        process.nextTick(() => this._drainInbox());
      }
    }
  }

  // Node stops receiving at disconnect(): nothing read after that call is delivered (EOF ends the stream anyway).
  _receiving() {
    return !this._disconnectCalled;
  }

  _emitMessage(event, message, handle) {
    if (event === 'internalMessage' || this.listenerCount('message') > 0) this.emit(event, message, handle);
    else this._pendingMessages.push([message, handle]);
  }

  // A NODE_HANDLE envelope and the fd the core paired with it (and already acknowledged). The fd becomes an object
  // of the envelope's type, or is closed: it is never left behind.
  _receiveHandle({ text, bytes, fd }) {
    let envelope;
    try {
      envelope = text !== undefined ? JSON.parse(text) : decodeFrame(bytes, 4);
    } catch (err) {
      closeFd(fd);
      this._channelFault(
        this._countError(makeError('FORKLINE_MALFORMED_MESSAGE', `handle message is malformed (${err.message})`)),
      );
      return;
    }
    const conversion = Object.hasOwn(HANDLE_TYPES, envelope.type) ? HANDLE_TYPES[envelope.type] : undefined;
    if (!conversion) {
      closeFd(fd);
      this._channelFault(
        this._countError(
          makeError('FORKLINE_BAD_HANDLE', `a handle of unknown type ${util.inspect(envelope.type)} arrived; closed`),
        ),
      );
      return;
    }
    let handle;
    try {
      handle = conversion.got(envelope, fd, this);
    } catch (err) {
      closeFd(fd);
      this._channelFault(this._countError(err));
      return;
    }
    debug.handle(this._subject, 'receive', envelope.type);
    this._emitMessage(isInternal(envelope.msg) ? 'internalMessage' : 'message', envelope.msg, handle);
  }

  _onSignal(item) {
    switch (item.kind) {
      case 'internal':
        debug.internal(this._subject, item.payload);
        if (this._receiving()) this._emitMessage('internalMessage', item.payload, undefined);
        break;
      case 'handle':
        if (this._receiving()) this._receiveHandle(item.payload);
        else closeFd(item.payload.fd);
        break;
      case 'error':
        this._channelFault(item.payload);
        break;
      case 'eof':
        this._onEof();
        break;
      case 'exit':
        this._onExit(item.payload);
        break;
    }
  }

  // A fault on the wire must not crash the parent: it is an 'error' event when someone listens, a warning if not.
  _channelFault(err) {
    debug.error(this._subject, err);
    if (this.listenerCount('error') > 0) this.emit('error', err);
    else process.emitWarning(err);
  }

  _onWritten(ev) {
    this._queuedBytes = ev.queued;
    this._completeWrites(ev.seq);
    // A write that fails after send() returned (the peer went away meanwhile) is never an 'error' event: Node's
    // req.oncomplete (lib/internal/child_process.js) ignores such failures, so a program with no 'error' listener
    // must not crash on them; 'disconnect' tells the story. Unlike Node, the callbacks learn of it.
    if (ev.code) this._failWrites(ev.failed, errnoException(ev.errno, ev.syscall), true);
    if (this._needDrain && ev.queued === 0 && this._outbox.length === 0) {
      this._needDrain = false;
      debug.backpressure(this._subject, false, 0);
      this.emit('drain');
    }
  }

  // The end of the channel: the peer closed it, or our disconnect() is done (Node: channel.onread at EOF, then
  // target.disconnect()). ChildProcess adds its own ordering against exit and close.
  _onEof() {
    if (this._endChannel()) process.nextTick(emitDisconnectNT, this);
  }

  // Lets go of the ended channel; true if it was still connected (so 'disconnect' is owed).
  _endChannel() {
    if (this._channelOpen) debug.close(this._subject, 'eof');
    this._channelOpen = false;
    this._native.releaseChannel();
    this.channel = null;
    if (!this.connected) return (this._unlist(), false);
    this._flush();
    this._unlist();
    this.connected = false;
    return true;
  }

  _unlist() {
    if (this._listed) {
      this._listed = false;
      exitList.delete(this);
    }
  }
}

function emitDisconnectNT(end) {
  end.emit('disconnect');
}

function flushNT(child) {
  if (child._flushScheduled) child._flush();
}

function completeWritesNT(child, seq) {
  child._completeWrites(seq);
}

function flushPendingMessages(child) {
  if (child.listenerCount('message') === 0) return;
  const messages = child._pendingMessages;
  child._pendingMessages = [];
  for (const [message, handle] of messages) child.emit('message', message, handle);
}

// The child runtime's end (Node's setupChannel(process, ...)): ChannelEnd's state and methods on an object of its
// own, which emits on `process` and keeps `connected` and `channel` there as Node's plain properties. Not on `process`
// itself: `process` has dictionary-mode properties, so each access to the channel's state there was a hash lookup
// (with the state on `process`, the runtime child's round trip cost ~17% more instructions than Node's own child).
class ProcessEnd extends ChannelEnd {
  constructor(target, nat, serialization, exitFlushMs) {
    super();
    this._target = target;
    this._native = nat;
    this._codec = codecFor(serialization);
    this._channelOpen = true;
    this._exitFlushMs = exitFlushMs;
    this._writesHeld = false;
    this._control = null;
  }

  get _subject() {
    return this._target;
  }

  // Node's `connected` and `channel` are plain properties of `process`: kept there as they change.
  get connected() {
    return this._connected;
  }

  set connected(value) {
    this._connected = value;
    if (this._target) this._target.connected = value;
  }

  get channel() {
    return this._channelProp;
  }

  set channel(value) {
    this._channelProp = value;
    if (this._target) this._target.channel = value;
  }

  // Events are `process`'s (lib/socket_list.js listens on the end too).
  emit(...args) {
    return this._target.emit(...args);
  }

  listenerCount(name) {
    return this._target.listenerCount(name);
  }

  on(name, listener) {
    this._target.on(name, listener);
    return this;
  }

  once(name, listener) {
    this._target.once(name, listener);
    return this;
  }

  removeListener(name, listener) {
    this._target.removeListener(name, listener);
    return this;
  }

  off(name, listener) {
    return this.removeListener(name, listener);
  }

  // Unfinished writes hold the loop as listeners do (Node: control.refCounted() per async write).
  _holdWrites(hold) {
    if (hold === this._writesHeld || !this._control) return;
    this._writesHeld = hold;
    if (hold) this._control.refCounted();
    else this._control.unrefCounted();
  }

  _wrote(seq, result) {
    const ok = super._wrote(seq, result);
    if (result > 0) this._holdWrites(true);
    return ok;
  }

  _onWritten(ev) {
    super._onWritten(ev);
    if (ev.queued === 0) this._holdWrites(false);
  }

  // At exit the reactor thread dies with the process: what is queued leaves first (nodejs/node#36268 loses it).
  _flush() {
    super._flush();
    if (process._exiting && this._channelOpen) this._native.waitWritten(this._exitFlushMs);
  }
}

// Sets up the child runtime's channel on `target` (the child's `process`): send(), disconnect(), `connected`,
// `channel` (and Node's deprecated `_channel`) there, the state on a ProcessEnd. Returns the end; its `_control`
// is the Control, to which the runtime adds Node's listener ref counting (_forkChild).
function setupChannel(target, nat, serialization, exitFlushMs) {
  const end = new ProcessEnd(target, nat, serialization, exitFlushMs);
  end.connected = true;
  const control = new Control(end);
  end._control = control;
  end.channel = control;
  target.send = function send(message, handle, options, callback) {
    return sendOn(end, message, handle, options, callback);
  };
  target.disconnect = function disconnect() {
    disconnectOn(end);
  };
  defineChannelAlias(target);
  target.on('exit', () => end._flush());
  debug.open(target, serialization);
  return end;
}

// send() and disconnect() exist only on an end that has a channel, as Node's setupChannel() defines them.
function send(message, handle, options, callback) {
  return sendOn(this, message, handle, options, callback);
}

function sendOn(end, message, handle, options, callback) {
  if (typeof handle === 'function') {
    callback = handle;
    handle = undefined;
    options = undefined;
  } else if (typeof options === 'function') {
    callback = options;
    options = undefined;
  } else if (options !== undefined) {
    validateObject(options, 'options');
  }
  options = { swallowErrors: false, ...options };
  if (end.connected) {
    const ok = end._send(message, handle, options, callback);
    if (!ok) end._sendFalse++;
    return ok;
  }
  end._sendFalse++;
  const ex = end._countError(makeError('ERR_IPC_CHANNEL_CLOSED'));
  if (typeof callback === 'function') process.nextTick(callback, ex);
  else process.nextTick(() => end.emit('error', ex));
  return false;
}

function disconnect() {
  disconnectOn(this);
}

function disconnectOn(end) {
  if (!end.connected) {
    end.emit('error', end._countError(makeError('ERR_IPC_DISCONNECTED')));
    return;
  }
  // What was sent before disconnect() still goes out; the core closes the socket once it has. Nothing more is
  // received from here on, not even what was already read (Node's docs; Node itself emits the rest of a chunk).
  end._flush();
  end.connected = false;
  end._disconnectCalled = true;
  // Node's _disconnect(): the channel property goes at once; the socket closes once queued writes are out.
  end.channel = null;
  debug.close(end._subject, 'disconnect');
  end._native.closeChannel();
  process.nextTick(() => end.emit('disconnect'));
}

const CHANNEL_DEPRECATION = '_channel is deprecated. Use ChildProcess.channel instead.';
const deprecatedChannelGet = util.deprecate((end) => end.channel, CHANNEL_DEPRECATION, 'DEP0129');
const deprecatedChannelSet = util.deprecate(
  (end, value) => {
    end.channel = value;
  },
  CHANNEL_DEPRECATION,
  'DEP0129',
);

// What Node's setupChannel() puts on an end that has a channel: send(), disconnect() and, before Node 26, the
// deprecated `_channel` alias of `channel` (both of its accessors warn, once per process, as Node's).
function defineChannelApi(end) {
  end.send = send;
  end.disconnect = disconnect;
  defineChannelAlias(end);
}

function defineChannelAlias(target) {
  if (!nodeVersion.channelAlias) return;
  Object.defineProperty(target, '_channel', {
    get() {
      return deprecatedChannelGet(this);
    },
    set(value) {
      deprecatedChannelSet(this, value);
    },
    configurable: true,
    enumerable: false,
  });
}

// Sends `fd` as a handle of `type` (a Native kind: the cluster primary's listening sockets are no JS objects), with
// the same NODE_HANDLE handshake as send(message, handle).
function sendFd(end, message, type, fd) {
  return end._sendHandle(message, null, type, fd, { swallowErrors: false });
}

// Sends `message` as send(message) would, with its encoding shared: `memo` (a Map, one per message) keeps each
// codec's bytes of it, so a message fanned out to many ends is encoded once. The bytes join the end's outbox like
// any send's (same tick batching, write numbers and 'error' on a failed write, unless `options.swallowErrors`).
// False if the channel is closed.
function sendEncoded(end, message, memo, options = { swallowErrors: false }) {
  if (!end.connected) return false;
  let encoded = memo.get(end._codec);
  // `true`: the bytes are shared by several outboxes (the advanced codec must not reuse them after the first write).
  if (encoded === undefined) memo.set(end._codec, (encoded = end._codec.encode(message, true)));
  const ok = end._queue(encoded, options, undefined);
  if (!ok) end._sendFalse++;
  return ok;
}

// An end's channel counters (Control#stats), also once its channel is gone (cluster.stats() of a disconnected worker);
// null for an end that never had a native side (a spawn that failed at once).
function channelStats(end) {
  return end._native ? end._stats() : null;
}

// The native channel under an end, for native code that writes to it too (the round-robin hand-off in Rust).
function nativeChannelOf(end) {
  return end._native;
}

// Writes what this tick has sent at once, rather than at the end of the tick: for a message that must leave before
// code that may never yield runs (the runtime's cluster worker says 'online' before the user's script, as Node's).
function flushNow(end) {
  end._flush();
}

module.exports = {
  ChannelEnd,
  Control,
  setupChannel,
  defineChannelApi,
  sendFd,
  sendEncoded,
  nativeChannelOf,
  channelStats,
  flushPendingMessages,
  flushNow,
  emitDisconnectNT,
};

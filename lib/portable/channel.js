'use strict';

// The portable backend's channel is Node's own (setupChannel in lib/internal/child_process.js frames, parses, passes
// handles and keeps the handshake). This module adds what forkline gives on top of a channel and JS can know: the
// counters of `channel.stats()`, the 'drain' event, and lib/debug.js's trace points. It watches Node's channel of
// one ChildProcess through these seams, each set on that child's objects, never on a prototype:
//   - the channel pipe's writeUtf8String / writeBuffer (json / advanced): one call per message written, with the
//     handle it carries and libuv's result; its bytesWritten, bytesRead and writeQueueSize (StreamBase's counters);
//   - Control#unrefCounted(), which Node calls as each write that had to wait completes: when 'drain' is due;
//   - the child's send() and disconnect() (send() returning false, a closed channel) and emit() (messages as Node's
//     channel hands them out, so a message held for a 'message' listener counts once it is emitted);
//   - the pipe's onread, to tell Node's own disconnect() at EOF from the user's.
// It also emits 'close' after the parent's own disconnect(), as forkline does: Node counts the channel as closed
// only when it reads EOF, which never comes once it closed the pipe itself, so its 'close' never comes either
// (docs/compatibility.md); the channel is counted as Node's maybeClose() counts it (_closesGot / _closesNeeded).
// The pipe is the one Node keeps under its kChannelHandle symbol, looked up by description: Node 20 to 26 keep it
// there, and without it there are no counters (stats() throws FORKLINE_UNSUPPORTED) but the rest still works.

const process = require('node:process');
const { makeError, errnoException } = require('../errors');
const { handleType } = require('../handles');
const debug = require('../debug');

// Node's send() says false past this many queued bytes (setupChannel: `channel.writeQueueSize < (65536 * 2)`).
const HIGH_WATER_MARK = 64 * 1024 * 2;

const kCounters = Symbol('kCounters');

function channelPipeOf(child) {
  const key = Object.getOwnPropertySymbols(child).find((sym) => sym.description === 'kChannelHandle');
  const pipe = key === undefined ? null : child[key];
  return pipe && typeof pipe.writeQueueSize === 'number' && typeof pipe.bytesRead === 'number' ? pipe : null;
}

// Sets a property the way Node's own methods are not: non-enumerable, so the child's keys stay Node's.
function hide(target, name, value) {
  Object.defineProperty(target, name, { value, writable: true, configurable: true, enumerable: false });
}

// One channel's counters (index.d.ts ChannelStats), kept once the channel has closed.
class Counters {
  #pipe;
  #closed = null;
  messagesSent = 0;
  bytesSent = 0;
  handlesSent = 0;
  messagesReceived = 0;
  handlesReceived = 0;
  backpressureEvents = 0;
  errors = { __proto__: null };

  constructor(pipe) {
    this.#pipe = pipe;
  }

  error(code) {
    this.errors[code] = (this.errors[code] || 0) + 1;
  }

  // Node closes the pipe once (at disconnect() or EOF); its C++ counters go with it, so they are read first.
  close() {
    if (this.#closed === null && this.#pipe !== null) this.#closed = { bytesReceived: this.#pipe.bytesRead };
  }

  snapshot() {
    if (this.#pipe === null) {
      throw makeError('FORKLINE_UNSUPPORTED', 'channel.stats()', "this Node's channel does not expose its pipe");
    }
    const open = this.#closed === null;
    return {
      messagesSent: this.messagesSent,
      bytesSent: this.bytesSent,
      handlesSent: this.handlesSent,
      messagesReceived: this.messagesReceived,
      bytesReceived: open ? this.#pipe.bytesRead : this.#closed.bytesReceived,
      handlesReceived: this.handlesReceived,
      bytesQueued: open ? this.#pipe.writeQueueSize : 0,
      errors: { ...this.errors },
      backpressureEvents: this.backpressureEvents,
    };
  }
}

// Gives a ChildProcess of node:child_process (or of node:cluster) forkline's channel additions; traces its spawn.
// Once: a cluster worker forked through forkline/register's fork() has them already.
function instrument(child, serialization) {
  if (child[kCounters]) return child;
  debug.spawn(child);
  const control = child.channel;
  if (!control) return child;
  const pipe = channelPipeOf(child);
  const counters = new Counters(pipe);
  hide(child, kCounters, counters);
  hide(control, 'stats', () => counters.snapshot());
  let needDrain = false;

  if (pipe !== null) {
    for (const method of ['writeUtf8String', 'writeBuffer']) {
      const write = pipe[method];
      // Nothing here may write to a stream (a trace line on a piped stderr would): Node reads whether this write
      // went async from state that every stream write sets, once this returns. The traces wait for the next tick.
      hide(pipe, method, function written(req, data, handle) {
        const before = this.bytesWritten;
        const err = write.call(this, req, data, handle);
        if (err !== 0) {
          const ex = errnoException(err, 'write');
          counters.error(ex.code);
          process.nextTick(() => debug.error(child, ex));
          return err;
        }
        counters.messagesSent++;
        counters.bytesSent += this.bytesWritten - before;
        if (handle) counters.handlesSent++;
        if (!needDrain && this.writeQueueSize >= HIGH_WATER_MARK) {
          needDrain = true;
          const queued = this.writeQueueSize;
          process.nextTick(() => debug.backpressure(child, true, queued));
        }
        return err;
      });
    }
    const close = pipe.close;
    hide(pipe, 'close', function closed(...args) {
      counters.close();
      return close.apply(this, args);
    });
    // Node's completion of a write that waited: the queue may have emptied. 'drain' comes after that write's
    // callback, as the native channel orders them.
    const unrefCounted = control.unrefCounted;
    hide(control, 'unrefCounted', function writeDone() {
      unrefCounted.call(this);
      if (needDrain && pipe.writeQueueSize === 0) process.nextTick(drainNT);
    });
  }
  const drainNT = () => {
    if (!needDrain || pipe.writeQueueSize !== 0) return;
    needDrain = false;
    debug.backpressure(child, false, 0);
    child.emit('drain');
  };

  const send = child.send;
  child.send = function sendCounted(message, handle) {
    const connected = this.connected;
    const ok = Reflect.apply(send, this, arguments);
    if (!connected) counters.error('ERR_IPC_CHANNEL_CLOSED');
    else if (handle !== null && typeof handle === 'object') debug.handle(this, 'send', typeOf(handle));
    if (!ok) counters.backpressureEvents++;
    return ok;
  };

  // Node's read callback, at EOF, disconnects the channel itself and counts it as closed.
  let inRead = false;
  let eof = false;
  if (pipe !== null && typeof pipe.onread === 'function') {
    const onread = pipe.onread;
    pipe.onread = function onreadWatched(arrayBuffer) {
      if (!arrayBuffer) eof = true;
      inRead = true;
      try {
        return Reflect.apply(onread, this, arguments);
      } finally {
        inRead = false;
      }
    };
  }

  let ownDisconnect = false;
  const disconnect = child.disconnect;
  child.disconnect = function disconnectTraced(...args) {
    if (!this.connected) counters.error('ERR_IPC_DISCONNECTED');
    else if (!inRead) {
      ownDisconnect = true;
      debug.close(this, 'disconnect');
    }
    return Reflect.apply(disconnect, this, args);
  };

  const emit = child.emit;
  hide(child, 'emit', function emitCounted(event, message, handle) {
    if (event === 'message' || event === 'internalMessage') received(event, message, handle);
    return Reflect.apply(emit, this, arguments);
  });
  // A handle's own message is emitted twice by Node: the NODE_HANDLE envelope as 'internalMessage' (with the raw
  // handle, or none if its fd was lost), then what it carried, with the handle object. The envelope is what crossed.
  const received = (event, message, handle) => {
    if (handle !== undefined && !isEnvelope(message)) return;
    counters.messagesReceived++;
    if (event !== 'internalMessage') return;
    if (!isEnvelope(message)) debug.internal(child, message);
    else if (handle) {
      counters.handlesReceived++;
      debug.handle(child, 'receive', message.type);
    }
  };

  debug.open(child, serialization);
  child.on('disconnect', () => {
    counters.close();
    debug.close(child, 'eof');
    if (ownDisconnect && !eof && typeof child._closesNeeded === 'number') {
      if (++child._closesGot === child._closesNeeded) child.emit('close', child.exitCode, child.signalCode);
    }
  });
  child.on('exit', (code, signal) => debug.exit(child, code, signal));
  return child;
}

// The envelope type a handle travels as, for the trace; Node's channel has already accepted it.
function typeOf(handle) {
  try {
    return handleType(handle);
  } catch {
    return undefined;
  }
}

function isEnvelope(message) {
  return message !== null && typeof message === 'object' && message.cmd === 'NODE_HANDLE';
}

// lib/channel.js's sendEncoded for a Node channel: the bus's fan-out sends each message through send(), as Node's
// channel encodes every message itself (no shared encoding: `memo` is unused). `options` are send()'s. False if
// the channel is closed.
function sendEncoded(end, message, memo, options) {
  if (!end.connected) return false;
  return end.send(message, undefined, options);
}

// An end's counters, also once its channel is gone; null for a child that never had a channel.
function channelStats(end) {
  const counters = end[kCounters];
  return counters ? counters.snapshot() : null;
}

module.exports = { instrument, sendEncoded, channelStats };

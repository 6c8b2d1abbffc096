#!/usr/bin/env node
'use strict';

// forkline: node:child_process's fork() with the IPC channel in Rust. This file is the thin JS half: Node's option
// juggling and validation, the EventEmitter classes and their event order, and the user payload codec (JSON).
// Sockets, framing, spawn, kill and reaping live in src/ (see README.md).

let native;
try {
  native = require('./forkline.node');
} catch (err) {
  // Preloaded as a child's runtime (see the end of this file): without the addon there is no channel. Exit loudly.
  if (process.env.FORKLINE_CHANNEL_FD !== undefined) {
    require('node:fs').writeSync(
      2,
      `forkline: the child runtime cannot start: cannot load ./forkline.node (${err.message})\n`,
    );
    process.exit(1);
  }
  throw new Error(
    `forkline: cannot load its native addon ./forkline.node (${err.message}). ` +
      'Build it from source with `npm run build` (needs Rust/cargo).',
    { cause: err },
  );
}

const EventEmitter = require('node:events');
const dgram = require('node:dgram');
const fs = require('node:fs');
const net = require('node:net');
const os = require('node:os');
const util = require('node:util');
const v8 = require('node:v8');
const nodeChildProcess = require('node:child_process');
const { fileURLToPath } = require('node:url');

// ---------------------------------------------------------------------------------------------------------------
// Errors: Node's codes and messages (lib/internal/errors.js), then forkline's own channel faults.

const ERRORS = {
  ERR_IPC_CHANNEL_CLOSED: [Error, () => 'Channel closed'],
  ERR_IPC_DISCONNECTED: [Error, () => 'IPC channel is already disconnected'],
  ERR_IPC_ONE_PIPE: [Error, () => 'Child process can have only one IPC pipe'],
  ERR_CHILD_PROCESS_IPC_REQUIRED: [
    Error,
    (name) => `Forked processes must have an IPC channel, missing value 'ipc' in ${name}`,
  ],
  ERR_MISSING_ARGS: [TypeError, (name) => `The "${name}" argument must be specified`],
  ERR_INVALID_ARG_TYPE: [TypeError, invalidArgTypeMessage],
  ERR_INVALID_ARG_VALUE: [
    TypeError,
    (name, value, reason = 'is invalid') => {
      let shown = util.inspect(value);
      if (shown.length > 128) shown = `${shown.slice(0, 128)}...`;
      return `The ${name.includes('.') ? 'property' : 'argument'} '${name}' ${reason}. Received ${shown}`;
    },
  ],
  ERR_INVALID_SYNC_FORK_INPUT: [
    TypeError,
    (value) => `Asynchronous forks do not support Buffer, TypedArray, DataView or string input: ${value}`,
  ],
  ERR_OUT_OF_RANGE: [
    RangeError,
    (name, range, value) => {
      let received;
      if (Number.isInteger(value) && Math.abs(value) > 2 ** 32) received = addNumericalSeparator(String(value));
      else received = util.inspect(value);
      return `The value of "${name}" is out of range. It must be ${range}. Received ${received}`;
    },
  ],
  ERR_UNKNOWN_SIGNAL: [TypeError, (sig) => `Unknown signal: ${sig}`],
  ERR_INVALID_HANDLE_TYPE: [TypeError, () => 'This handle type cannot be sent'],
  // forkline's own: faults on the wire, reported as 'error' events instead of crashing the parent.
  FORKLINE_MALFORMED_MESSAGE: [Error, (detail) => detail],
  FORKLINE_MESSAGE_TOO_LARGE: [Error, (detail) => detail],
  FORKLINE_TRUNCATED_MESSAGE: [Error, (detail) => detail],
  FORKLINE_STRAY_FD: [Error, (detail) => detail],
  FORKLINE_FD_LOST: [Error, (detail) => detail],
  FORKLINE_BAD_HANDLE: [Error, (detail) => detail],
  FORKLINE_INTERNAL: [Error, (detail) => detail],
  FORKLINE_HANDLE_NOT_RECEIVED: [Error, (detail) => detail],
};

// Node's ERR_INVALID_ARG_TYPE wording (lib/internal/errors.js): expected types, then classes, then anything else.
const K_TYPES = ['string', 'function', 'number', 'object', 'Function', 'Object', 'boolean', 'bigint', 'symbol'];
const CLASS_NAME = /^([A-Z][a-z0-9]*)+$/;

function listOf(items, prefix) {
  if (items.length > 2) return `${prefix}${items.slice(0, -1).join(', ')}, or ${items[items.length - 1]}`;
  return `${prefix}${items.join(' or ')}`;
}

function invalidArgTypeMessage(name, expected, actual) {
  if (!Array.isArray(expected)) expected = [expected];
  let msg = name.endsWith(' argument')
    ? `The ${name} `
    : `The "${name}" ${name.includes('.') ? 'property' : 'argument'} `;
  msg += 'must be ';
  const types = [];
  const instances = [];
  const other = [];
  for (const value of expected) {
    if (K_TYPES.includes(value)) types.push(value.toLowerCase());
    else if (CLASS_NAME.test(value)) instances.push(value);
    else other.push(value);
  }
  if (instances.length > 0 && types.includes('object')) {
    types.splice(types.indexOf('object'), 1);
    instances.push('Object');
  }
  const parts = [];
  if (types.length > 0) parts.push(types.length > 1 ? listOf(types, 'one of type ') : `of type ${types[0]}`);
  if (instances.length > 0) parts.push(listOf(instances, 'an instance of '));
  if (other.length > 0) {
    if (other.length > 1) parts.push(listOf(other, 'one of '));
    else parts.push(`${other[0].toLowerCase() !== other[0] ? 'an ' : ''}${other[0]}`);
  }
  return `${msg}${parts.join(' or ')}. Received ${describe(actual)}`;
}

function addNumericalSeparator(digits) {
  let res = '';
  let i = digits.length;
  const start = digits[0] === '-' ? 1 : 0;
  for (; i >= start + 4; i -= 3) res = `_${digits.slice(i - 3, i)}${res}`;
  return `${digits.slice(0, i)}${res}`;
}

// Node's determineSpecificType.
function describe(value) {
  if (value == null) return String(value);
  if (typeof value === 'function') return `function ${value.name}`;
  if (typeof value === 'object') {
    if (value.constructor && value.constructor.name) return `an instance of ${value.constructor.name}`;
    return util.inspect(value, { depth: -1 });
  }
  let shown = util.inspect(value, { colors: false });
  if (shown.length > 28) shown = `${shown.slice(0, 25)}...`;
  return `type ${typeof value} (${shown})`;
}

function makeError(code, ...args) {
  const [Base, message] = ERRORS[code];
  const err = new Base(message(...args));
  err.code = code;
  // Node's errors print as `TypeError [ERR_X]: message`.
  Object.defineProperty(err, 'toString', {
    value() {
      return `${this.name} [${this.code}]: ${this.message}`;
    },
    enumerable: false,
    configurable: true,
    writable: true,
  });
  return err;
}

// Node's ErrnoException: `write EPIPE`, with errno (negative, as libuv's), code and syscall.
function errnoException(errno, syscall, original) {
  const code = util.getSystemErrorName(errno);
  const err = new Error(original ? `${syscall} ${code} ${original}` : `${syscall} ${code}`);
  err.errno = errno;
  err.code = code;
  err.syscall = syscall;
  return err;
}

class AbortError extends Error {
  constructor(message = 'The operation was aborted', options = undefined) {
    super(message, options);
    this.code = 'ABORT_ERR';
    this.name = 'AbortError';
  }
}

// ---------------------------------------------------------------------------------------------------------------
// Validation (Node's lib/internal/validators.js, the parts fork() uses).

function validateString(value, name) {
  if (typeof value !== 'string') throw makeError('ERR_INVALID_ARG_TYPE', name, 'string', value);
}

function validateObject(value, name) {
  if (value === null || typeof value !== 'object' || Array.isArray(value)) {
    throw makeError('ERR_INVALID_ARG_TYPE', name, 'Object', value);
  }
}

function validateArray(value, name) {
  if (!Array.isArray(value)) throw makeError('ERR_INVALID_ARG_TYPE', name, 'Array', value);
}

function validateBoolean(value, name) {
  if (typeof value !== 'boolean') throw makeError('ERR_INVALID_ARG_TYPE', name, 'boolean', value);
}

function isInt32(value) {
  return value === (value | 0);
}

function validateTimeout(timeout) {
  if (timeout != null && !(Number.isInteger(timeout) && timeout >= 0)) {
    throw makeError('ERR_OUT_OF_RANGE', 'timeout', 'an unsigned integer', timeout);
  }
}

function validateAbortSignal(signal, name) {
  if (signal !== undefined && (signal === null || typeof signal !== 'object' || !('aborted' in signal))) {
    throw makeError('ERR_INVALID_ARG_TYPE', name, 'AbortSignal', signal);
  }
}

function validateNullCheck(value, name) {
  if (typeof value === 'string' && value.includes('\u0000')) {
    throw makeError('ERR_INVALID_ARG_VALUE', name, value, 'must be a string without null bytes');
  }
}

// Node's getValidatedPath: a string, Buffer/Uint8Array or file: URL, without null bytes.
function toPath(value, name) {
  const path = value instanceof URL ? fileURLToPath(value) : value;
  if (typeof path !== 'string' && !(path instanceof Uint8Array)) {
    throw makeError('ERR_INVALID_ARG_TYPE', name, ['string', 'Buffer', 'URL'], value);
  }
  const text = typeof path === 'string' ? path : Buffer.from(path).toString();
  if (text.includes('\u0000')) {
    throw makeError('ERR_INVALID_ARG_VALUE', name, path, 'must be a string, Uint8Array, or URL without null bytes');
  }
  return text;
}

// ---------------------------------------------------------------------------------------------------------------
// Signals.

const SIGNALS = os.constants.signals;
const SIGNAL_NAMES = Object.fromEntries(Object.entries(SIGNALS).map(([name, number]) => [number, name]));
const { ESRCH, EINVAL, ENOSYS, EMFILE, ENFILE } = os.constants.errno;

function convertToValidSignal(signal) {
  if (typeof signal === 'number' && SIGNAL_NAMES[signal]) return signal;
  if (typeof signal === 'string') {
    const number = SIGNALS[signal.toUpperCase()];
    if (number) return number;
  }
  throw makeError('ERR_UNKNOWN_SIGNAL', signal);
}

function sanitizeKillSignal(killSignal) {
  if (typeof killSignal === 'string' || typeof killSignal === 'number') return convertToValidSignal(killSignal);
  if (killSignal != null) {
    throw makeError('ERR_INVALID_ARG_TYPE', 'options.killSignal', ['string', 'number'], killSignal);
  }
  return SIGNALS.SIGTERM;
}

// ---------------------------------------------------------------------------------------------------------------
// The wire codecs (Node's lib/internal/child_process/serialization.js). Rust frames the bytes; JS turns values into
// bytes and back, since JSON and V8's serializer are native in V8 and the fastest way to JS objects.

// Node's send() returns false once this much is queued behind the socket.
const HIGH_WATER_MARK = 64 * 1024 * 2;
// Sends made in one tick leave together; past this many bytes they leave at once, to bound the batch.
const FLUSH_BYTES = 256 * 1024;

const json = {
  encode(message) {
    return `${JSON.stringify(message)}\n`;
  },
  join(parts) {
    return parts.length === 1 ? parts[0] : parts.join('');
  },
};

// Node's ChildProcessSerializer: V8's format, with ArrayBufferViews as host objects (so a Buffer arrives as a
// Buffer) and other native objects written as plain objects, as JSON would.
const kArrayBufferViewTag = 0;
const kNotArrayBufferViewTag = 1;

class ChildProcessSerializer extends v8.DefaultSerializer {
  _writeHostObject(object) {
    if (ArrayBuffer.isView(object)) {
      this.writeUint32(kArrayBufferViewTag);
      return super._writeHostObject(object);
    }
    this.writeUint32(kNotArrayBufferViewTag);
    this.writeValue({ ...object });
  }
}

class ChildProcessDeserializer extends v8.DefaultDeserializer {
  _readHostObject() {
    const tag = this.readUint32();
    if (tag === kArrayBufferViewTag) return super._readHostObject();
    if (tag !== kNotArrayBufferViewTag) throw new Error(`unknown host object tag ${tag}`);
    return this.readValue();
  }
}

// Reads one value from a frame; `skip` is 4 when `frame` still starts with its length prefix.
function decodeFrame(frame, skip) {
  const des = new ChildProcessDeserializer(frame.subarray(skip));
  des.readHeader();
  return des.readValue();
}

const advanced = {
  // One frame: a 4-byte big-endian length, then the serializer's header and value.
  encode(message) {
    const ser = new ChildProcessSerializer();
    ser.writeRawBytes(Buffer.allocUnsafe(4));
    ser.writeHeader();
    ser.writeValue(message);
    const frame = ser.releaseBuffer();
    frame.writeUInt32BE(frame.length - 4, 0);
    return frame;
  },
  join(parts) {
    return parts.length === 1 ? parts[0] : Buffer.concat(parts);
  },
};

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
// Handles (Node's handleConversion in lib/internal/child_process.js). The core sends an fd with its envelope and
// keeps a duplicate until the peer's ACK; here a handle object gives up its fd, and a received fd becomes an object.

function nop() {}

let wraps;
// Node's raw handle classes, for the 'Native' kinds.
function handleWraps() {
  if (!wraps) {
    const { TCP, constants: tcp } = process.binding('tcp_wrap');
    const { Pipe, constants: pipe } = process.binding('pipe_wrap');
    const { UDP } = process.binding('udp_wrap');
    wraps = { TCP, Pipe, UDP, tcpSocket: tcp.SOCKET, pipeSocket: pipe.SOCKET };
  }
  return wraps;
}

function dgramHandle(socket) {
  const state = Object.getOwnPropertySymbols(socket).find((sym) => sym.description === 'state symbol');
  return state && socket[state] ? socket[state].handle : undefined;
}

// Closes an fd that could not become a handle, so none leaks.
function closeFd(fd) {
  try {
    fs.closeSync(fd);
  } catch {
    // Already closed by whatever failed.
  }
}

function openWrap(handle, fd) {
  const err = handle.open(fd);
  if (err) throw errnoException(err, 'open');
  return handle;
}

const HANDLE_TYPES = {
  'net.Socket': {
    fd: (socket) => (socket._handle ? socket._handle.fd : undefined),
    envelope(envelope, socket, options) {
      if (socket.server) {
        envelope.key = socket.server._connectionKey;
        // Act like the socket is detached.
        if (!options.keepOpen) socket.server._connections--;
      }
    },
    // The socket is handed over: detach it now; the core's duplicate keeps the connection open until the ACK.
    postSend(socket, options) {
      if (options.keepOpen) return;
      const handle = socket._handle;
      handle.onread = nop;
      socket._handle = null;
      socket.setTimeout(0);
      const { freeParser, HTTPParser } = require('node:_http_common');
      if (socket.parser && socket.parser instanceof HTTPParser) {
        freeParser(socket.parser, null, socket);
        if (socket._httpMessage) socket._httpMessage.detachSocket(socket);
      }
      handle.close();
    },
    got: (envelope, fd) => new net.Socket({ fd, readable: true, writable: true }),
  },
  'net.Server': {
    fd: (server) => (server._handle ? server._handle.fd : undefined),
    got(envelope, fd) {
      const server = new net.Server();
      server.listen({ fd });
      return server;
    },
  },
  'net.Native': {
    fd: (handle) => handle.fd,
    got(envelope, fd) {
      const { TCP, Pipe, tcpSocket, pipeSocket } = handleWraps();
      return openWrap(native.socketKind(fd) === 'pipe' ? new Pipe(pipeSocket) : new TCP(tcpSocket), fd);
    },
  },
  'dgram.Socket': {
    fd: (socket) => {
      const handle = dgramHandle(socket);
      return handle ? handle.fd : undefined;
    },
    envelope(envelope, socket) {
      envelope.dgramType = socket.type;
    },
    got(envelope, fd) {
      const socket = dgram.createSocket(envelope.dgramType);
      socket.bind({ fd });
      return socket;
    },
  },
  'dgram.Native': {
    fd: (handle) => handle.fd,
    got: (envelope, fd) => openWrap(new (handleWraps().UDP)(), fd),
  },
};

function handleType(handle) {
  if (handle instanceof net.Socket) return 'net.Socket';
  if (handle instanceof net.Server) return 'net.Server';
  if (handle instanceof dgram.Socket) return 'dgram.Socket';
  const { TCP, Pipe, UDP } = handleWraps();
  if (handle instanceof TCP || handle instanceof Pipe) return 'net.Native';
  if (handle instanceof UDP) return 'dgram.Native';
  throw makeError('ERR_INVALID_HANDLE_TYPE');
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
      this.emit('unref');
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
}

// Children whose sends are waiting for the end of the tick; flushed on process 'exit' too, so a parent that sends
// and then exits still delivers, as Node's synchronous writes do.
const unflushed = new Set();
let exitHookInstalled = false;

function flushAll() {
  for (const child of unflushed) child._flush();
}

// ---------------------------------------------------------------------------------------------------------------
// ChannelEnd: what both ends of a channel share (Node's setupChannel(target) in lib/internal/child_process.js):
// send() with per-tick batching and callbacks by write number, the inbox that holds messages until a listener,
// handles, disconnect. ChildProcess is one; the child runtime (#7) gives the same methods to `process`.

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
    this._codec = json;
    // Outgoing: messages of this tick, as text, and the callbacks waiting for their write.
    this._outbox = [];
    this._outBytes = 0;
    this._flushScheduled = false;
    // A write that fails after it was queued: callbacks get the error either way; true keeps it from being an
    // 'error' event for sends without one (the child runtime: Node's child ignores such failures, and 'disconnect'
    // tells the story).
    this._quietAsyncWriteErrors = false;
    // True while _onWake emits a batch: sends made meanwhile are flushed when it ends.
    this._inWake = false;
    this._writeSeq = 0;
    this._callbacks = [];
    // Batches holding sends with neither callback nor swallowErrors: a failed write is an 'error' event for those.
    this._bareSeqs = [];
    this._queuedBytes = 0;
    this._needDrain = false;
    // Incoming: parsed messages and events not yet emitted, and messages waiting for a 'message' listener.
    this._inbox = [];
    this._inboxAt = 0;
    this._pendingMessages = [];
  }

  send(message, handle, options, callback) {
    if (this.channel === undefined) {
      // Node: a child spawned without an 'ipc' slot has no send() at all.
      throw new TypeError('subprocess.send is not a function');
    }
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
    if (this.connected) return this._send(message, handle, options, callback);
    const ex = makeError('ERR_IPC_CHANNEL_CLOSED');
    if (typeof callback === 'function') process.nextTick(callback, ex);
    else process.nextTick(() => this.emit('error', ex));
    return false;
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
    const encoded = this._codec.encode(message);
    this._outbox.push(encoded);
    this._outBytes += encoded.length;
    this._expect(this._writeSeq + 1, options, callback);
    // During 'exit' no later tick comes: send now.
    if (this._outBytes >= FLUSH_BYTES || process._exiting) {
      this._flush();
    } else if (!this._flushScheduled) {
      this._flushScheduled = true;
      unflushed.add(this);
      if (!exitHookInstalled) {
        exitHookInstalled = true;
        process.on('exit', flushAll);
      }
      // Inside _onWake the flush comes at its end.
      if (!this._inWake) process.nextTick(flushNT, this);
    }
    return this._belowHighWaterMark();
  }

  _sendHandle(message, handle, type, fd, options, callback) {
    const conversion = HANDLE_TYPES[type];
    const envelope = { cmd: 'NODE_HANDLE', type, msg: message };
    if (conversion.envelope) conversion.envelope(envelope, handle, options);
    const encoded = this._codec.encode(envelope);
    // Earlier sends go first; later ones wait in the core until the child acknowledges this handle.
    this._flush();
    const seq = this._writeSeq + 1;
    this._expect(seq, options, callback);
    if (!this._wrote(seq, this._native.writeHandle(encoded, fd))) return false;
    if (conversion.postSend) conversion.postSend(handle, options);
    return this._belowHighWaterMark();
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
    if (!ok) this._needDrain = true;
    return ok;
  }

  // Hands this tick's messages to the channel in one native call.
  _flush() {
    this._flushScheduled = false;
    unflushed.delete(this);
    if (this._outbox.length === 0) return;
    const data = this._codec.join(this._outbox);
    this._outbox = [];
    this._outBytes = 0;
    this._wrote(this._writeSeq + 1, this._native.write(data));
  }

  // Calls back every send up to `seq` with `err`; sends without a callback report it once as 'error'.
  _failWrites(seq, err, quiet = false) {
    while (this._callbacks.length && this._callbacks[0].seq <= seq) {
      process.nextTick(this._callbacks.shift().callback, err);
    }
    let bare = false;
    while (this._bareSeqs.length && this._bareSeqs[0] <= seq) {
      this._bareSeqs.shift();
      bare = true;
    }
    if (bare && !quiet) process.nextTick(() => this.emit('error', err));
  }

  _completeWrites(seq) {
    while (this._bareSeqs.length && this._bareSeqs[0] <= seq) this._bareSeqs.shift();
    while (this._callbacks.length && this._callbacks[0].seq <= seq) {
      this._callbacks.shift().callback(null);
    }
  }

  disconnect() {
    if (!this.connected) {
      this.emit('error', makeError('ERR_IPC_DISCONNECTED'));
      return;
    }
    // What was sent before disconnect() still goes out; the core closes the socket once it has. Nothing more is
    // received from here on, not even what was already read (Node's docs; Node itself emits the rest of a chunk).
    this._flush();
    this.connected = false;
    this._disconnectCalled = true;
    // Node's _disconnect(): the channel property goes at once; the socket closes once queued writes are out.
    this.channel = null;
    this._native.closeChannel();
    process.nextTick(() => this.emit('disconnect'));
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
          } else {
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
        inbox.push(
          new Signal(
            'error',
            makeError('FORKLINE_MALFORMED_MESSAGE', `IPC message is not valid JSON (${err.message}): ${shown}`),
          ),
        );
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
        inbox.push(
          new Signal(
            'error',
            makeError('FORKLINE_MALFORMED_MESSAGE', `IPC message is not valid V8 serializer data (${err.message})`),
          ),
        );
        continue;
      }
      inbox.push(isInternal(message) ? new Signal('internal', message) : message);
    }
  }

  // Emits what the inbox holds. A listener that throws ends this call (the throw reaches 'uncaughtException', as
  // in Node), and the rest of the inbox goes out on the next tick instead of being lost.
  _drainInbox() {
    let finished = false;
    try {
      const inbox = this._inbox;
      while (this._inboxAt < inbox.length) {
        const item = inbox[this._inboxAt++];
        if (item instanceof Signal) this._onSignal(item);
        else if (this._receiving()) this._emitMessage('message', item, undefined);
      }
      finished = true;
    } finally {
      if (finished) {
        this._inbox = [];
        this._inboxAt = 0;
      } else {
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
      this._channelFault(makeError('FORKLINE_MALFORMED_MESSAGE', `handle message is malformed (${err.message})`));
      return;
    }
    const conversion = Object.hasOwn(HANDLE_TYPES, envelope.type) ? HANDLE_TYPES[envelope.type] : undefined;
    if (!conversion) {
      closeFd(fd);
      this._channelFault(
        makeError('FORKLINE_BAD_HANDLE', `a handle of unknown type ${util.inspect(envelope.type)} arrived; closed`),
      );
      return;
    }
    let handle;
    try {
      handle = conversion.got(envelope, fd);
    } catch (err) {
      closeFd(fd);
      this._channelFault(err);
      return;
    }
    this._emitMessage(isInternal(envelope.msg) ? 'internalMessage' : 'message', envelope.msg, handle);
  }

  _onSignal(item) {
    switch (item.kind) {
      case 'internal':
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
    if (this.listenerCount('error') > 0) this.emit('error', err);
    else process.emitWarning(err);
  }

  _onWritten(ev) {
    this._queuedBytes = ev.queued;
    this._completeWrites(ev.seq);
    if (ev.code) this._failWrites(ev.failed, errnoException(ev.errno, ev.syscall), this._quietAsyncWriteErrors);
    if (this._needDrain && ev.queued === 0 && this._outbox.length === 0) {
      this._needDrain = false;
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
    this._channelOpen = false;
    this._native.releaseChannel();
    this.channel = null;
    if (!this.connected) return false;
    this._flush();
    this.connected = false;
    return true;
  }
}

function emitDisconnectNT(end) {
  end.emit('disconnect');
}

// ---------------------------------------------------------------------------------------------------------------
// ChildProcess.

class ChildProcess extends ChannelEnd {
  constructor() {
    super();
    this._closesNeeded = 1;
    this._closesGot = 0;
    this.signalCode = null;
    this.exitCode = null;
    this.killed = false;
    this.spawnfile = null;
    this.spawnargs = [];
    this.pid = undefined;
    this.stdin = null;
    this.stdout = null;
    this.stderr = null;
    this.stdio = [];
    this._exited = false;
  }

  spawn(options) {
    validateObject(options, 'options');
    const { slots, ipcIndex } = normalizeStdio(options.stdio === undefined ? 'pipe' : options.stdio);
    const serialization = options.serialization || 'json';
    if (serialization !== 'json' && serialization !== 'advanced') {
      throw makeError(
        'ERR_INVALID_ARG_VALUE',
        'options.serialization',
        options.serialization,
        "must be one of: undefined, 'json', 'advanced'",
      );
    }
    this._codec = serialization === 'advanced' ? advanced : json;
    let envPairs = options.envPairs ? [...options.envPairs] : [];
    if (ipcIndex !== -1 && childRuntimeOf(options, envPairs) === 'forkline') {
      envPairs = childRuntimeEnv(envPairs, ipcIndex, serialization);
    } else if (ipcIndex !== -1) {
      envPairs.push(`NODE_CHANNEL_FD=${ipcIndex}`, `NODE_CHANNEL_SERIALIZATION_MODE=${serialization}`);
    }
    this.spawnfile = options.file;
    this.spawnargs = options.args;

    let nat;
    try {
      nat = native.NativeChild.spawn(
        {
          file: options.file,
          args: options.args,
          env: envPairs,
          cwd: options.cwd,
          stdio: slots,
          detached: !!options.detached,
          uid: options.uid,
          gid: options.gid,
          serialization,
          maxMessageSize: options.maxMessageSize,
        },
        () => this._onWake(),
      );
    } catch (err) {
      // The core reports system errors by their code (e.g. 'EBADF'); anything else is ours.
      const errno = os.constants.errno[err.message];
      if (errno) throw errnoException(-errno, 'spawn');
      throw err;
    }
    this._native = nat;

    const spawnErrno = nat.spawnErrno;
    if (spawnErrno != null) {
      process.nextTick(onErrorNT, this, spawnErrno);
      // Node gives up here too: no fds left to set up stdio with.
      if (spawnErrno === -EMFILE || spawnErrno === -ENFILE) return spawnErrno;
    } else {
      process.nextTick(onSpawnNT, this);
    }
    this.pid = nat.pid ?? undefined;

    const fds = nat.takeStdio();
    const stdio = slots.map((slot, i) => {
      if (slot.kind === 'ipc') {
        this._closesNeeded++;
        return null;
      }
      if (slot.kind !== 'pipe') return null;
      const socket = createSocket(fds[i], i > 0);
      if (i > 0) {
        this._closesNeeded++;
        socket.on('close', () => maybeClose(this));
      }
      return socket;
    });
    this.stdin = stdio.length >= 1 ? stdio[0] : null;
    this.stdout = stdio.length >= 2 ? stdio[1] : null;
    this.stderr = stdio.length >= 3 ? stdio[2] : null;
    this.stdio = stdio;

    if (ipcIndex !== -1) {
      this._channelOpen = true;
      this.connected = true;
      this.channel = new Control(this);
      // Node queues messages that arrive before a 'message' listener exists, and hands them over once one does.
      this.on('newListener', () => process.nextTick(flushPendingMessages, this));
    } else {
      nat.unrefChannel();
    }
    return spawnErrno ?? 0;
  }

  kill(sig) {
    const signal = sig === 0 ? sig : convertToValidSignal(sig === undefined ? 'SIGTERM' : sig);
    if (this._native && !this._exited && this.pid !== undefined) {
      const err = this._native.kill(signal);
      if (err === 0) {
        this.killed = true;
        return true;
      }
      if (err === -ESRCH) {
        // Already dead.
      } else if (err === -EINVAL || err === -ENOSYS) {
        throw errnoException(err, 'kill');
      } else {
        this.emit('error', errnoException(err, 'kill'));
      }
    }
    return false;
  }

  ref() {
    if (this._native && !this._exited) this._native.refProcess();
  }

  unref() {
    if (this._native && !this._exited) this._native.unrefProcess();
  }

  _onEof() {
    if (this._endChannel()) {
      // Node emits this on a later tick of the EOF's own callback; we are at the top of ours already, and emitting
      // now keeps it ahead of an 'exit' read in the same batch. A child that never ran has no exit to precede,
      // and there Node's order is 'close', then 'disconnect'.
      if (this.pid === undefined) process.nextTick(emitDisconnectNT, this);
      else this.emit('disconnect');
    }
    maybeClose(this);
  }

  _onExit(ev) {
    this._exited = true;
    this._native.unrefProcess();
    if (ev.signal != null) this.signalCode = SIGNAL_NAMES[ev.signal] ?? `SIG${ev.signal}`;
    else this.exitCode = ev.exitCode ?? null;
    if (this.stdin) this.stdin.destroy();
    this.emit('exit', this.exitCode, this.signalCode);
    process.nextTick(flushStdio, this);
    maybeClose(this);
  }
}

if (Symbol.dispose) {
  ChildProcess.prototype[Symbol.dispose] = function dispose() {
    if (!this.killed) this.kill();
  };
}

function onSpawnNT(child) {
  child.emit('spawn');
}

// Node reports exec failures (ENOENT, EACCES, ...) as an 'error' event with exitCode set to the negative errno.
function onErrorNT(child, errno) {
  child._exited = true;
  child._native.unrefProcess();
  child.exitCode = errno;
  if (child.stdin) child.stdin.destroy();
  const err = errnoException(errno, child.spawnfile ? `spawn ${child.spawnfile}` : 'spawn');
  if (child.spawnfile) err.path = child.spawnfile;
  err.spawnargs = child.spawnargs.slice(1);
  child.emit('error', err);
  process.nextTick(flushStdio, child);
  maybeClose(child);
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

// If no one read a stdio stream, pull it through so it can end and 'close' can fire (Node's flushStdio).
function flushStdio(child) {
  for (const stream of child.stdio) {
    if (!stream || !stream.readable || stream._readableState.readableListening) continue;
    stream.resume();
  }
}

function maybeClose(child) {
  child._closesGot++;
  if (child._closesGot === child._closesNeeded) child.emit('close', child.exitCode, child.signalCode);
}

function createSocket(fd, readable) {
  return new net.Socket({ fd, readable, writable: !readable });
}

// Node's getValidStdio: each slot becomes 'pipe', 'ipc', 'ignore' or a file descriptor.
function normalizeStdio(stdio) {
  if (typeof stdio === 'string') stdio = stdioStringToArray(stdio);
  else if (!Array.isArray(stdio)) throw makeError('ERR_INVALID_ARG_VALUE', 'stdio', stdio);
  const list = [...stdio];
  while (list.length < 3) list.push(undefined);
  let ipcIndex = -1;
  const slots = list.map((value, i) => {
    if (value == null) return { kind: i < 3 ? 'pipe' : 'ignore' };
    if (value === 'ignore') return { kind: 'ignore' };
    if (value === 'pipe' || value === 'overlapped' || (typeof value === 'number' && value < 0)) return { kind: 'pipe' };
    if (value === 'ipc') {
      if (ipcIndex !== -1) throw makeError('ERR_IPC_ONE_PIPE');
      ipcIndex = i;
      return { kind: 'ipc' };
    }
    if (value === 'inherit') return { kind: 'fd', fd: i };
    if (typeof value === 'number') return { kind: 'fd', fd: value };
    if (typeof value === 'object') {
      const fd = typeof value.fd === 'number' ? value.fd : value._handle && value._handle.fd;
      if (typeof fd === 'number' && fd >= 0) return { kind: 'fd', fd };
    }
    // Node's wording for these, though fork() is no synchronous fork.
    if (typeof value === 'string' || ArrayBuffer.isView(value)) {
      throw makeError('ERR_INVALID_SYNC_FORK_INPUT', util.inspect(value));
    }
    throw makeError('ERR_INVALID_ARG_VALUE', 'stdio', value);
  });
  return { slots, ipcIndex };
}

function stdioStringToArray(stdio, channel) {
  let list;
  switch (stdio) {
    case 'ignore':
    case 'overlapped':
    case 'pipe':
      list = [stdio, stdio, stdio];
      break;
    case 'inherit':
      list = [0, 1, 2];
      break;
    default:
      throw makeError('ERR_INVALID_ARG_VALUE', 'stdio', stdio);
  }
  if (channel) list.push(channel);
  return list;
}

// ---------------------------------------------------------------------------------------------------------------
// fork(): Node's lib/child_process.js fork() and normalizeSpawnArguments(), for the options fork() takes.

function fork(modulePath, args, options) {
  modulePath = toPath(modulePath, 'modulePath');
  if (args == null) {
    args = [];
  } else if (typeof args === 'object' && !Array.isArray(args)) {
    options = args;
    args = [];
  } else {
    validateArray(args, 'args');
  }
  if (options != null) validateObject(options, 'options');
  options = { ...options, shell: false };
  options.execPath = options.execPath || process.execPath;
  validateNullCheck(options.execPath, 'options.execPath');

  let execArgv = options.execArgv || process.execArgv;
  if (execArgv === process.execArgv && process._eval != null) {
    // Remove the -e switch to avoid fork bombing ourselves (as Node does).
    const index = execArgv.lastIndexOf(process._eval);
    if (index > 0) {
      execArgv = execArgv.slice();
      execArgv.splice(index - 1, 2);
    }
  }
  for (let i = 0; i < execArgv.length; i++) validateNullCheck(execArgv[i], `options.execArgv[${i}]`);
  args = [...(Array.isArray(execArgv) ? execArgv : [execArgv]), modulePath, ...args];

  if (typeof options.stdio === 'string') {
    options.stdio = stdioStringToArray(options.stdio, 'ipc');
  } else if (!Array.isArray(options.stdio)) {
    // fd 3 is the channel; stdin/out/err are inherited unless silent.
    options.stdio = stdioStringToArray(options.silent ? 'pipe' : 'inherit', 'ipc');
  } else if (!options.stdio.includes('ipc')) {
    throw makeError('ERR_CHILD_PROCESS_IPC_REQUIRED', 'options.stdio');
  }
  return spawnWithOptions(options.execPath, args, options);
}

function spawnWithOptions(file, args, options) {
  const normalized = normalizeSpawnArguments(file, args, options);
  validateTimeout(options.timeout);
  validateAbortSignal(options.signal, 'options.signal');
  const killSignal = sanitizeKillSignal(options.killSignal);

  const child = new ChildProcess();
  child.spawn(normalized);

  if (options.timeout > 0) {
    let timeoutId = setTimeout(() => {
      if (timeoutId) {
        try {
          child.kill(killSignal);
        } catch (err) {
          child.emit('error', err);
        }
        timeoutId = null;
      }
    }, options.timeout);
    child.once('exit', () => {
      if (timeoutId) {
        clearTimeout(timeoutId);
        timeoutId = null;
      }
    });
  }

  if (options.signal) {
    const signal = options.signal;
    const onAbort = () => abortChildProcess(child, killSignal, signal.reason);
    if (signal.aborted) {
      process.nextTick(onAbort);
    } else {
      signal.addEventListener('abort', onAbort, { once: true });
      child.once('exit', () => signal.removeEventListener('abort', onAbort));
    }
  }
  return child;
}

function abortChildProcess(child, killSignal, reason) {
  try {
    if (child.kill(killSignal)) child.emit('error', new AbortError(undefined, { cause: reason }));
  } catch (err) {
    child.emit('error', err);
  }
}

function normalizeSpawnArguments(file, args, options) {
  validateString(file, 'file');
  validateNullCheck(file, 'file');
  let cwd;
  if (options.cwd != null) cwd = toPath(options.cwd, 'options.cwd');
  if (options.detached != null) validateBoolean(options.detached, 'options.detached');
  if (options.uid != null && !isInt32(options.uid)) {
    throw makeError('ERR_INVALID_ARG_TYPE', 'options.uid', 'int32', options.uid);
  }
  if (options.gid != null && !isInt32(options.gid)) {
    throw makeError('ERR_INVALID_ARG_TYPE', 'options.gid', 'int32', options.gid);
  }
  if (options.argv0 != null) {
    validateString(options.argv0, 'options.argv0');
    validateNullCheck(options.argv0, 'options.argv0');
  }
  if (options.maxMessageSize != null) {
    const max = options.maxMessageSize;
    if (!Number.isInteger(max) || max < 1) {
      throw makeError('ERR_OUT_OF_RANGE', 'options.maxMessageSize', 'a positive integer', max);
    }
  }
  args.forEach((arg, i) => validateNullCheck(arg, `args[${i}]`));

  const env = options.env || process.env;
  const envPairs = [];
  // Node copies inherited enumerable properties too (for...in), skipping undefined values.
  for (const key in env) {
    const value = env[key];
    if (value !== undefined) {
      validateNullCheck(key, `options.env['${key}']`);
      validateNullCheck(value, `options.env['${key}']`);
      envPairs.push(`${key}=${value}`);
    }
  }
  return {
    file,
    // The native side takes strings; Node's spawn turns each argument into one too.
    args: [typeof options.argv0 === 'string' ? options.argv0 : file, ...args].map(String),
    envPairs,
    cwd,
    stdio: options.stdio,
    detached: !!options.detached,
    uid: options.uid ?? undefined,
    gid: options.gid ?? undefined,
    serialization: options.serialization,
    maxMessageSize: options.maxMessageSize,
    childRuntime: resolveChildRuntime(options.childRuntime, file),
  };
}

// ---------------------------------------------------------------------------------------------------------------
// cluster: node:cluster's primary (lib/internal/cluster/primary.js and worker.js), for workers that are plain Node
// processes running Node's own worker side. Each server key's sockets live in Rust (NativeServer): under
// round-robin it accepts and hands connections to workers off the JS thread, and takes their replies itself.

const SCHED_NONE = 1;
const SCHED_RR = 2;
// forkline's own: every worker listens on a SO_REUSEPORT socket of its own and the kernel balances.
const SCHED_REUSEPORT = 3;
const POLICY_NAMES = { [SCHED_NONE]: 'none', [SCHED_RR]: 'rr', [SCHED_REUSEPORT]: 'reuseport' };
const RESTART_DEFAULTS = { maxRestarts: 5, windowMs: 60_000 };

const kEnv = Symbol('kEnv');
const kNoRestart = Symbol('kNoRestart');

const cluster = new EventEmitter();
// Says 'disconnect' when the last worker is gone (cluster.disconnect's callback).
const intercom = new EventEmitter();
// Server keys → NativeServer.
const servers = new Map();
let workerIds = 0;
let clusterInitialized = false;
let clusterSeq = 0;
let schedulingPolicy;
const restarts = { deaths: [], gaveUp: false, stopped: false };
let reloading = Promise.resolve();

function policyFromEnv(value) {
  if (value === 'none') return SCHED_NONE;
  if (value === 'reuseport') return SCHED_REUSEPORT;
  return SCHED_RR;
}

// Node's worker.js, with the primary's disconnect/destroy (primary.js).
class Worker extends EventEmitter {
  constructor(options) {
    super();
    if (options === null || typeof options !== 'object') options = {};
    this.exitedAfterDisconnect = undefined;
    this.state = options.state || 'none';
    this.id = options.id | 0;
    if (options.process) {
      this.process = options.process;
      this.process.on('error', (code, signal) => this.emit('error', code, signal));
      this.process.on('message', (message, handle) => this.emit('message', message, handle));
    }
  }

  kill(...args) {
    return this.destroy(...args);
  }

  send(...args) {
    return this.process.send(...args);
  }

  isDead() {
    return this.process.exitCode != null || this.process.signalCode != null;
  }

  isConnected() {
    return this.process.connected;
  }

  disconnect() {
    this.exitedAfterDisconnect = true;
    sendToWorker(this, { act: 'disconnect' });
    removeServersOf(this);
    removeWorker(this);
    return this;
  }

  destroy(signo) {
    // A worker the primary kills on purpose is not restarted (Node leaves exitedAfterDisconnect alone here).
    this[kNoRestart] = true;
    this.process.kill(signo || 'SIGTERM');
  }
}

cluster.isWorker = false;
cluster.isMaster = true;
cluster.isPrimary = true;
cluster.Worker = Worker;
cluster.workers = {};
cluster.settings = {};
cluster.SCHED_NONE = SCHED_NONE;
cluster.SCHED_RR = SCHED_RR;
cluster.SCHED_REUSEPORT = SCHED_REUSEPORT;
cluster.schedulingPolicy = policyFromEnv(process.env.NODE_CLUSTER_SCHED_POLICY);

cluster.setupPrimary = function setupPrimary(options) {
  const settings = {
    args: process.argv.slice(2),
    exec: process.argv[1],
    execArgv: process.execArgv,
    silent: false,
    ...cluster.settings,
    ...options,
  };
  // As Node: each process profiles to a file of its own.
  if (
    settings.execArgv.some((s) => s.startsWith('--prof')) &&
    !settings.execArgv.some((s) => s.startsWith('--logfile='))
  ) {
    settings.execArgv = [...settings.execArgv, '--logfile=v8-%p.log'];
  }
  cluster.settings = settings;
  if (clusterInitialized) return process.nextTick(() => cluster.emit('setup', settings));
  clusterInitialized = true;
  schedulingPolicy = cluster.schedulingPolicy; // Frozen from here on, as in Node.
  if (!POLICY_NAMES[schedulingPolicy]) {
    throw new Error(`Bad cluster.schedulingPolicy: ${schedulingPolicy}`);
  }
  process.nextTick(() => cluster.emit('setup', settings));
};
cluster.setupMaster = cluster.setupPrimary;

function restartSettings() {
  const restart = cluster.settings.restart;
  if (!restart) return null;
  return { ...RESTART_DEFAULTS, ...(typeof restart === 'object' ? restart : {}) };
}

cluster.fork = function forkWorker(env) {
  cluster.setupPrimary();
  const id = ++workerIds;
  const settings = cluster.settings;
  const workerProcess = fork(settings.exec, settings.args, {
    cwd: settings.cwd,
    env: { ...process.env, ...env, NODE_UNIQUE_ID: `${id}` },
    serialization: settings.serialization,
    silent: settings.silent,
    windowsHide: settings.windowsHide,
    execArgv: [...settings.execArgv],
    stdio: settings.stdio,
    gid: settings.gid,
    uid: settings.uid,
    // Node's worker-side cluster code runs on Node's own channel (FORKLINE_CHILD_RUNTIME does not apply).
    childRuntime: 'node',
  });
  const worker = new Worker({ id, process: workerProcess });
  worker[kEnv] = env;

  worker.on('message', function onWorkerMessage(message, handle) {
    cluster.emit('message', this, message, handle);
  });

  worker.process.once('exit', (exitCode, signalCode) => {
    // Removed only once disconnected too: until then the user may still want it.
    if (!worker.isConnected()) {
      removeServersOf(worker);
      removeWorker(worker);
    }
    worker.exitedAfterDisconnect = !!worker.exitedAfterDisconnect;
    worker.state = 'dead';
    worker.emit('exit', exitCode, signalCode);
    cluster.emit('exit', worker, exitCode, signalCode);
    maybeRestart(worker);
  });

  worker.process.once('disconnect', () => {
    removeServersOf(worker);
    if (worker.isDead()) removeWorker(worker);
    worker.exitedAfterDisconnect = !!worker.exitedAfterDisconnect;
    worker.state = 'disconnected';
    worker.emit('disconnect');
    cluster.emit('disconnect', worker);
  });

  worker.process.on('internalMessage', (message) => {
    if (message === null || typeof message !== 'object' || message.cmd !== 'NODE_CLUSTER') return;
    const act = Object.hasOwn(ACTS, message.act) ? ACTS[message.act] : undefined;
    if (act) act(worker, message);
  });
  process.nextTick(() => cluster.emit('fork', worker));
  cluster.workers[worker.id] = worker;
  return worker;
};

// A worker that died on its own is forked again, unless too many died lately: then 'giveup', once.
function maybeRestart(worker) {
  const restart = restartSettings();
  if (!restart || restarts.stopped || restarts.gaveUp) return;
  if (worker.exitedAfterDisconnect || worker[kNoRestart]) return;
  const now = Date.now();
  restarts.deaths = restarts.deaths.filter((t) => now - t < restart.windowMs);
  restarts.deaths.push(now);
  if (restarts.deaths.length > restart.maxRestarts) {
    restarts.gaveUp = true;
    cluster.emit('giveup', worker, restarts.deaths.length);
    return;
  }
  cluster.fork(worker[kEnv]);
}

cluster.disconnect = function disconnect(cb) {
  restarts.stopped = true;
  const workers = Object.values(cluster.workers);
  if (workers.length === 0) {
    process.nextTick(() => intercom.emit('disconnect'));
  } else {
    for (const worker of workers) {
      if (worker.isConnected()) worker.disconnect();
    }
  }
  if (typeof cb === 'function') intercom.once('disconnect', cb);
};

// A rolling restart: each worker alive now is replaced by a new one, which must be serving (listening, if the
// old one was) before the old one is disconnected, so that a server never stops accepting. The next replacement
// starts once the old worker has exited; one still running `timeout` ms after its disconnect is killed.
const RELOAD_TIMEOUT = 10_000;

cluster.reload = function reload(options, callback) {
  if (typeof options === 'function') {
    callback = options;
    options = undefined;
  }
  if (options != null) validateObject(options, 'options');
  const timeout = options?.timeout ?? RELOAD_TIMEOUT;
  if (!Number.isInteger(timeout) || timeout < 0) {
    throw makeError('ERR_OUT_OF_RANGE', 'options.timeout', 'a non-negative integer', timeout);
  }
  const run = reloading.then(async () => {
    for (const old of Object.values(cluster.workers)) {
      if (old.isDead() || !old.isConnected() || old.exitedAfterDisconnect) continue;
      const fresh = cluster.fork(old[kEnv]);
      await workerReached(fresh, old.state === 'listening' ? 'listening' : 'online');
      const exited = new Promise((resolve) => old.once('exit', resolve));
      old.disconnect();
      const killer = setTimeout(() => old.destroy(), timeout);
      await exited;
      clearTimeout(killer);
    }
  });
  reloading = run.catch(nop);
  if (typeof callback === 'function') run.then(() => callback(null), callback);
  return run;
};

function workerReached(worker, event) {
  return new Promise((resolve, reject) => {
    const onEvent = () => {
      worker.off('exit', onExit);
      resolve();
    };
    const onExit = (code, signal) => {
      worker.off(event, onEvent);
      const err = new Error(`worker ${worker.id} exited (${signal || code}) before it was ${event}`);
      err.code = 'FORKLINE_RELOAD_FAILED';
      reject(err);
    };
    worker.once(event, onEvent);
    worker.once('exit', onExit);
  });
}

function removeWorker(worker) {
  delete cluster.workers[worker.id];
  if (Object.keys(cluster.workers).length === 0) intercom.emit('disconnect');
}

function removeServersOf(worker) {
  for (const [key, server] of servers) {
    if (server.remove(worker.id)) servers.delete(key);
  }
}

function sendToWorker(worker, message, fd, type) {
  const proc = worker.process;
  if (!proc.connected) return false;
  message = { cmd: 'NODE_CLUSTER', ...message, seq: clusterSeq++ };
  if (fd == null) return proc.send(message);
  return proc._sendHandle(message, null, type, fd, { swallowErrors: false });
}

const ACTS = {
  online(worker) {
    worker.state = 'online';
    worker.emit('online');
    cluster.emit('online', worker);
  },

  exitedAfterDisconnect(worker, message) {
    worker.exitedAfterDisconnect = true;
    sendToWorker(worker, { ack: message.seq });
  },

  queryServer(worker, message) {
    if (worker.exitedAfterDisconnect) return;
    const key = `${message.address}:${message.port}:${message.addressType}:${message.fd}:${message.index}`;
    let server = servers.get(key);
    let errno = 0;
    if (server === undefined) {
      try {
        server = native.NativeServer.open(serverSpec(key, message));
        servers.set(key, server);
      } catch (err) {
        errno = -(os.constants.errno[err.message] || EINVAL);
      }
    }
    let fd = null;
    if (server !== undefined) {
      try {
        fd = server.add(worker.id, worker.process._native);
      } catch (err) {
        errno = -(os.constants.errno[err.message] || EINVAL);
        if (server.remove(worker.id)) servers.delete(key);
      }
    }
    if (server !== undefined && !server.data) server.data = message.data;
    const reply = { errno, key, ack: message.seq, data: server ? server.data : message.data };
    const sockname = errno === 0 && server.sockname();
    if (sockname) reply.sockname = sockname;
    if (fd == null || errno) return sendToWorker(worker, reply);
    const udp = message.addressType === 'udp4' || message.addressType === 'udp6';
    return sendToWorker(worker, reply, fd, udp ? 'dgram.Native' : 'net.Native');
  },

  listening(worker, message) {
    const info = {
      addressType: message.addressType,
      address: message.address,
      port: message.port,
      fd: message.fd,
    };
    worker.state = 'listening';
    worker.emit('listening', info);
    cluster.emit('listening', worker, info);
  },

  // A server in the worker closed; it may already be gone with the worker's disconnect.
  close(worker, message) {
    const server = servers.get(message.key);
    if (server && server.remove(worker.id)) servers.delete(message.key);
  },
};

function serverSpec(key, message) {
  const { addressType, port } = message;
  let address = message.address;
  let kind = 'tcp';
  if (addressType === 'udp4' || addressType === 'udp6') {
    kind = addressType;
  } else if (port < 0) {
    kind = 'pipe';
    // As Node: the shorter of the relative and absolute path, for the ~100 byte limit of a socket address.
    if (typeof address === 'string') {
      const relative = require('node:path').relative(process.cwd(), address);
      if (relative.length < address.length) address = relative;
    }
  }
  return {
    key,
    policy: POLICY_NAMES[schedulingPolicy],
    kind,
    address: address ?? undefined,
    port: port >= 0 ? port : undefined,
    fd: message.fd ?? undefined,
    flags: message.flags ?? undefined,
    // Workers send what listen() got (0 or false when none); Node's primary listens with `backlog || 511`.
    backlog: message.backlog || undefined,
    readableAll: message.readableAll ?? undefined,
    writableAll: message.writableAll ?? undefined,
  };
}

// In a worker (a process forked by a cluster primary, forkline's or Node's), the cluster module is Node's own.
const nodeCluster = require('node:cluster');
const clusterExport = nodeCluster.isWorker ? nodeCluster : cluster;

// ---------------------------------------------------------------------------------------------------------------
// The child runtime (#7): forkline on both ends. fork() with `childRuntime: 'forkline'` hands the child its channel
// under FORKLINE_CHANNEL_FD instead of NODE_CHANNEL_FD (so Node's bootstrap leaves it alone) and preloads this file
// with `--require` in NODE_OPTIONS. Loaded so, this file serves the child's process.send / process.on('message') /
// process.disconnect / process.channel with the Rust channel, as Node's _forkChild (lib/child_process.js) would,
// and then removes every trace of itself from process.env, so grandchildren start as plain Node children.

const CHILD_RUNTIMES = ['node', 'forkline'];
const RUNTIME_FD = 'FORKLINE_CHANNEL_FD';
const RUNTIME_MODE = 'FORKLINE_CHANNEL_SERIALIZATION_MODE';
// The child's NODE_OPTIONS as its parent meant it (JSON: a string, or null for none), restored at start.
const RUNTIME_NODE_OPTIONS = 'FORKLINE_NODE_OPTIONS';
const RUNTIME_KEYS = [
  'NODE_CHANNEL_FD',
  'NODE_CHANNEL_SERIALIZATION_MODE',
  RUNTIME_FD,
  RUNTIME_MODE,
  RUNTIME_NODE_OPTIONS,
];
// How long an exiting child waits for its queued messages to leave (a parent that never reads would hang it).
const EXIT_FLUSH_MS = 30_000;

// 'node' or 'forkline'. The option wins; FORKLINE_CHILD_RUNTIME sets a whole process's default, which applies only
// to children of this process's own node (a child with another execPath may not be Node at all).
function resolveChildRuntime(option, file) {
  if (option != null) {
    if (!CHILD_RUNTIMES.includes(option)) {
      throw makeError('ERR_INVALID_ARG_VALUE', 'options.childRuntime', option, "must be one of: 'node', 'forkline'");
    }
    return option;
  }
  const fromEnv = process.env.FORKLINE_CHILD_RUNTIME;
  if (fromEnv === undefined || fromEnv === '') return 'node';
  if (!CHILD_RUNTIMES.includes(fromEnv)) {
    throw makeError(
      'ERR_INVALID_ARG_VALUE',
      'env.FORKLINE_CHILD_RUNTIME',
      fromEnv,
      "must be one of: 'node', 'forkline'",
    );
  }
  return file === process.execPath ? fromEnv : 'node';
}

// Cluster workers (NODE_UNIQUE_ID) run Node's worker-side cluster code at bootstrap, before any preload: it needs
// Node's own channel.
function childRuntimeOf(options, envPairs) {
  if (options.childRuntime !== 'forkline') return 'node';
  return envPairs.some((pair) => pair.startsWith('NODE_UNIQUE_ID=')) ? 'node' : 'forkline';
}

// NODE_OPTIONS' own quoting (node_options.cc): double quotes, with backslash escapes inside them.
function quoteNodeOption(text) {
  return `"${text.replace(/[\\"]/g, (c) => `\\${c}`)}"`;
}

// The child's environment for the forkline runtime: the channel under forkline's names, this file preloaded.
function childRuntimeEnv(envPairs, ipcIndex, serialization) {
  const preload = `--require ${quoteNodeOption(__filename)}`;
  let nodeOptions = null;
  const out = [];
  for (const pair of envPairs) {
    const key = pair.slice(0, pair.indexOf('='));
    if (key === 'NODE_OPTIONS') {
      nodeOptions = pair.slice(key.length + 1);
      // Where the user's NODE_OPTIONS was, so that the child's process.env keeps its order.
      out.push(undefined);
    } else if (!RUNTIME_KEYS.includes(key)) {
      out.push(pair);
    }
  }
  const options = `NODE_OPTIONS=${nodeOptions ? `${nodeOptions} ${preload}` : preload}`;
  const at = out.indexOf(undefined);
  if (at === -1) out.push(options);
  else out[at] = options;
  return [
    ...out.filter((pair) => pair !== undefined),
    `${RUNTIME_NODE_OPTIONS}=${JSON.stringify(nodeOptions)}`,
    `${RUNTIME_FD}=${ipcIndex}`,
    `${RUNTIME_MODE}=${serialization}`,
  ];
}

// The runtime cannot run: say so and exit, rather than run the child's code without its channel.
function runtimeFailed(reason) {
  try {
    fs.writeSync(2, `forkline: the child runtime cannot start: ${reason}\n`);
  } finally {
    process.exit(1);
  }
}

function startChildRuntime() {
  const env = process.env;
  const fd = Number(env[RUNTIME_FD]);
  const serialization = env[RUNTIME_MODE] || 'json';
  let nodeOptions = null;
  try {
    nodeOptions = JSON.parse(env[RUNTIME_NODE_OPTIONS] ?? 'null');
  } catch {
    // Not ours to judge: drop our preload and leave no NODE_OPTIONS.
  }
  // Node deletes NODE_CHANNEL_FD from the env; we delete ours and put NODE_OPTIONS back as it was.
  delete env[RUNTIME_FD];
  delete env[RUNTIME_MODE];
  delete env[RUNTIME_NODE_OPTIONS];
  if (typeof nodeOptions === 'string') env.NODE_OPTIONS = nodeOptions;
  else delete env.NODE_OPTIONS;

  if (process.channel !== undefined || typeof process.send === 'function') {
    runtimeFailed('this process already has an IPC channel (NODE_CHANNEL_FD was set too)');
  }
  if (!Number.isInteger(fd) || fd < 0) runtimeFailed(`${RUNTIME_FD} is not a file descriptor`);
  if (serialization !== 'json' && serialization !== 'advanced') {
    runtimeFailed(`unknown serialization ${util.inspect(serialization)}`);
  }
  let nat;
  try {
    nat = native.NativeChannel.open(fd, serialization, () => process._onWake());
  } catch (err) {
    runtimeFailed(`cannot open the channel on fd ${fd} (${err.message})`);
  }

  // Node's setupChannel(process, ...): the same methods as a ChildProcess's channel side, on `process`. Node's
  // send/disconnect/connected/channel are plain properties; forkline's own state stays out of sight.
  const shared = ChannelEnd.prototype;
  for (const name of Object.getOwnPropertyNames(shared)) {
    if (name === 'constructor') continue;
    const visible = name === 'send' || name === 'disconnect';
    Object.defineProperty(process, name, {
      value: shared[name],
      writable: true,
      configurable: true,
      enumerable: visible,
    });
  }
  const before = new Set(Object.keys(process));
  shared._initChannel.call(process);
  for (const key of Object.keys(process)) {
    if (!before.has(key) && key.startsWith('_')) Object.defineProperty(process, key, { enumerable: false });
  }
  const hide = (name, value) =>
    Object.defineProperty(process, name, { value, writable: true, configurable: true, enumerable: false });
  hide('_native', nat);
  hide('_codec', serialization === 'advanced' ? advanced : json);
  hide('_channelOpen', true);
  // A parent that goes away while a big send is under way must not crash the child: Node's child ignores a
  // queued write that fails (req.oncomplete in lib/internal/child_process.js), and so do we, 'disconnect' follows.
  hide('_quietAsyncWriteErrors', true);
  process.connected = true;
  const control = new Control(process);
  process.channel = control;

  // Unfinished writes hold the loop as listeners do (Node: control.refCounted() per async write).
  let writesHeld = false;
  const holdWrites = (hold) => {
    if (hold === writesHeld) return;
    writesHeld = hold;
    if (hold) control.refCounted();
    else control.unrefCounted();
  };
  hide('_wrote', function _wrote(seq, result) {
    const ok = shared._wrote.call(this, seq, result);
    if (result > 0) holdWrites(true);
    return ok;
  });
  hide('_onWritten', function _onWritten(ev) {
    shared._onWritten.call(this, ev);
    if (ev.queued === 0) holdWrites(false);
  });
  // At exit the writer thread dies with the process: what is queued leaves first (nodejs/node#36268 loses it).
  hide('_flush', function _flush() {
    shared._flush.call(this);
    if (process._exiting && this._channelOpen) this._native.waitWritten(EXIT_FLUSH_MS);
  });
  process.on('exit', () => process._flush());

  // Node's _forkChild: the channel keeps the process alive only while someone listens for 'message' or
  // 'disconnect'; messages that came before the first 'message' listener wait for it.
  const counts = (name) => name === 'message' || name === 'disconnect';
  process.on('newListener', (name) => {
    process.nextTick(flushPendingMessages, process);
    if (counts(name)) control.refCounted();
  });
  process.on('removeListener', (name) => {
    if (counts(name)) control.unrefCounted();
  });
  // Listeners a preload before us added.
  for (const name of ['message', 'disconnect']) {
    for (let i = process.listenerCount(name); i > 0; i--) control.refCounted();
  }
}

if (process.env[RUNTIME_FD] !== undefined && require('node:worker_threads').isMainThread) startChildRuntime();

// ---------------------------------------------------------------------------------------------------------------
// Exports: forkline's fork() and ChildProcess, and the rest of node:child_process as it is, so that swapping the
// require just works. Plain assignments, so ESM's named imports (`import { fork } from 'forkline'`) see them.

exports.fork = fork;
exports.ChildProcess = ChildProcess;
exports.cluster = clusterExport;
exports.spawn = nodeChildProcess.spawn;
exports.spawnSync = nodeChildProcess.spawnSync;
exports.exec = nodeChildProcess.exec;
exports.execSync = nodeChildProcess.execSync;
exports.execFile = nodeChildProcess.execFile;
exports.execFileSync = nodeChildProcess.execFileSync;

// ---------------------------------------------------------------------------------------------------------------
// The launcher: `npx forkline cluster [-w N] [--policy rr|none|reuseport] [--restart[=N]] app.js [args...]` runs an
// unmodified app under this primary. SIGINT/SIGTERM disconnect the workers gracefully (a second signal, or the
// grace period running out, kills them); SIGHUP/SIGUSR2 reload them one by one.

const CLI_USAGE = `Usage: forkline cluster [options] <app.js> [app args...]

Options:
  -w, --workers <n>     workers to run (default: the number of CPUs)
  -p, --policy <name>   rr (default), none or reuseport
  -r, --restart[=<n>]   re-fork workers that die, giving up after <n> deaths a minute (default 5)
  -g, --grace <ms>      how long a graceful shutdown may take before workers are killed (default 10000)
  -h, --help            this text

Signals: SIGINT/SIGTERM shut down gracefully, SIGHUP/SIGUSR2 reload the workers one by one.`;

function parseCli(argv) {
  const opts = { workers: os.availableParallelism(), policy: 'rr', restart: false, grace: 10_000 };
  const number = (flag, value) => {
    const n = Number(value);
    if (!Number.isInteger(n) || n < 1) throw new Error(`${flag} needs a positive integer, got ${util.inspect(value)}`);
    return n;
  };
  if (argv[0] !== 'cluster') throw new Error(argv[0] === undefined ? 'no command given' : `unknown command ${argv[0]}`);
  let i = 1;
  for (; i < argv.length && argv[i].startsWith('-'); i++) {
    const [flag, inline] = argv[i].split(/=(.*)/s, 2);
    const value = () => (inline !== undefined ? inline : argv[++i]);
    if (flag === '-h' || flag === '--help') return { help: true };
    else if (flag === '-w' || flag === '--workers') opts.workers = number(flag, value());
    else if (flag === '-p' || flag === '--policy') {
      opts.policy = value();
      if (!['rr', 'none', 'reuseport'].includes(opts.policy)) throw new Error(`unknown policy ${opts.policy}`);
    } else if (flag === '-r' || flag === '--restart') {
      opts.restart = { maxRestarts: inline !== undefined ? number(flag, inline) : RESTART_DEFAULTS.maxRestarts };
    } else if (flag === '-g' || flag === '--grace') opts.grace = number(flag, value());
    else if (flag === '--') {
      i++;
      break;
    } else throw new Error(`unknown option ${flag}`);
  }
  if (i >= argv.length) throw new Error('no app given');
  return { ...opts, app: argv[i], args: argv.slice(i + 1) };
}

function runCli(argv) {
  let opts;
  try {
    opts = parseCli(argv);
  } catch (err) {
    process.stderr.write(`forkline: ${err.message}\n\n${CLI_USAGE}\n`);
    process.exitCode = 2;
    return;
  }
  if (opts.help) {
    process.stdout.write(`${CLI_USAGE}\n`);
    return;
  }
  const log = (text) => process.stderr.write(`[forkline] ${text}\n`);
  cluster.schedulingPolicy = policyFromEnv(opts.policy);
  cluster.setupPrimary({ exec: require('node:path').resolve(opts.app), args: opts.args, restart: opts.restart });
  cluster.on('exit', (worker, code, signal) => {
    if (!worker.exitedAfterDisconnect) log(`worker ${worker.id} (pid ${worker.process.pid}) died (${signal || code})`);
  });
  cluster.on('giveup', (worker, deaths) => {
    log(`${deaths} workers died within ${restartSettings().windowMs} ms: giving up`);
    process.exitCode = 1;
  });
  let stopping = false;
  const stop = (signal) => {
    if (stopping) {
      log(`${signal} again: killing the workers`);
      for (const worker of Object.values(cluster.workers)) worker.process.kill('SIGKILL');
      process.exit(1);
    }
    stopping = true;
    log(`${signal}: disconnecting the workers`);
    const timer = setTimeout(() => {
      log(`workers still running after ${opts.grace} ms: killing them`);
      for (const worker of Object.values(cluster.workers)) worker.process.kill('SIGKILL');
      process.exitCode = 1;
    }, opts.grace);
    timer.unref();
    cluster.disconnect(() => clearTimeout(timer));
  };
  const reload = (signal) => {
    if (stopping) return;
    log(`${signal}: reloading the workers`);
    cluster.reload().then(
      () => log('reload done'),
      (err) => log(`reload failed: ${err.message}`),
    );
  };
  for (const signal of ['SIGINT', 'SIGTERM']) process.on(signal, stop);
  for (const signal of ['SIGHUP', 'SIGUSR2']) process.on(signal, reload);
  for (let n = 0; n < opts.workers; n++) cluster.fork();
}

if (require.main === module) runCli(process.argv.slice(2));

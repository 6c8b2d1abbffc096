'use strict';

// Errors: Node's codes and messages (lib/internal/errors.js), then forkline's own channel faults. Each code is
// declared once, here.

const util = require('node:util');

const ERRORS = {
  ERR_IPC_CHANNEL_CLOSED: [Error, () => 'Channel closed'],
  ERR_IPC_DISCONNECTED: [Error, () => 'IPC channel is already disconnected'],
  ERR_IPC_ONE_PIPE: [Error, () => 'Child process can have only one IPC pipe'],
  ERR_CHILD_PROCESS_IPC_REQUIRED: [
    Error,
    (name) => `Forked processes must have an IPC channel, missing value 'ipc' in ${name}`,
  ],
  ERR_CHILD_CLOSED_BEFORE_REPLY: [Error, () => 'Child closed before reply received'],
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
  ERR_SOCKET_BAD_PORT: [
    RangeError,
    (name, port, allowZero = true) =>
      `${name} should be ${allowZero ? '>=' : '>'} 0 and < 65536. Received ${describe(port)}.`,
  ],
  ERR_INVALID_HANDLE_TYPE: [TypeError, () => 'This handle type cannot be sent'],
  ERR_WORKER_HANDLE_NOT_TRANSFERABLE: [
    Error,
    (name) =>
      `${name} cannot be transferred in its current state; it must be a freshly created or accepted handle that ` +
      'has not started reading and has no pending writes',
  ],
  // forkline's own: faults on the wire, reported as 'error' events instead of crashing the parent.
  FORKLINE_MALFORMED_MESSAGE: [Error, (detail) => detail],
  FORKLINE_MESSAGE_TOO_LARGE: [Error, (detail) => detail],
  FORKLINE_TRUNCATED_MESSAGE: [Error, (detail) => detail],
  FORKLINE_STRAY_FD: [Error, (detail) => detail],
  FORKLINE_FD_LOST: [Error, (detail) => detail],
  FORKLINE_BAD_HANDLE: [Error, (detail) => detail],
  FORKLINE_INTERNAL: [Error, (detail) => detail],
  FORKLINE_HANDLE_NOT_RECEIVED: [Error, (detail) => detail],
  FORKLINE_BAD_MEMFD: [Error, (detail) => detail],
  // Asked for explicitly, but it needs the native core, and this process runs the portable backend (lib/backend.js).
  FORKLINE_UNSUPPORTED: [
    Error,
    (what, reason) => `${what} needs forkline's native core; this process runs the portable backend (${reason})`,
  ],
  // The bus (lib/bus/).
  FORKLINE_BUS_TIMEOUT: [Error, (topic, ms) => `No reply to a request on ${topic} within ${ms} ms`],
  FORKLINE_BUS_UNAVAILABLE: [Error, (detail) => `The bus's broker is unreachable: ${detail}`],
  FORKLINE_BUS_MESSAGE_TOO_LARGE: [RangeError, (size, max) => `A bus message of ${size} bytes is over ${max} bytes`],
  FORKLINE_BUS_HANDLE: [TypeError, () => 'A handle (socket, server) cannot travel on the bus'],
  FORKLINE_BUS_MALFORMED_MESSAGE: [Error, (detail) => detail],
  FORKLINE_BUS_NO_CLIENT: [
    Error,
    (detail) => `The bus needs the optional package ioredis for a broker URL (npm install ioredis): ${detail}`,
  ],
  FORKLINE_BUS_REMOTE_ERROR: [Error, (detail) => detail],
  FORKLINE_BUS_CLOSED: [Error, (detail) => detail],
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

module.exports = { makeError, errnoException, AbortError };

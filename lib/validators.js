'use strict';

// Argument validation (Node's lib/internal/validators.js, the parts fork() and cluster use), signal names, and
// forkline's own fork() options, checked alike by both backends (lib/backend.js).

const os = require('node:os');
const { fileURLToPath } = require('node:url');
const { Buffer } = require('node:buffer');
const process = require('node:process');
const { makeError } = require('./errors');
const nodeVersion = require('./node_version');

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

// Node's validateInteger and validateInt32 (lib/internal/validators.js): a non-number is a type error, a fraction or
// a number out of [min, max] a range error.
function validateInteger(value, name, min = Number.MIN_SAFE_INTEGER, max = Number.MAX_SAFE_INTEGER) {
  if (typeof value !== 'number') throw makeError('ERR_INVALID_ARG_TYPE', name, 'number', value);
  if (!Number.isInteger(value)) throw makeError('ERR_OUT_OF_RANGE', name, 'an integer', value);
  if (value < min || value > max) throw makeError('ERR_OUT_OF_RANGE', name, `>= ${min} && <= ${max}`, value);
}

function validateInt32(value, name, min = -2147483648, max = 2147483647) {
  validateInteger(value, name, min, max);
}

// spawn()'s `timeout`, as the running Node checks it (lib/node_version.js).
function validateTimeout(timeout) {
  if (timeout == null) return;
  if (nodeVersion.integerValidators) {
    validateInteger(timeout, 'timeout', 0);
  } else if (!(Number.isInteger(timeout) && timeout >= 0)) {
    throw makeError('ERR_OUT_OF_RANGE', 'timeout', 'an unsigned integer', timeout);
  }
}

// spawn()'s `uid` and `gid`, as the running Node checks them.
function validateId(value, name) {
  if (value == null) return;
  if (nodeVersion.integerValidators) validateInt32(value, name);
  else if (!isInt32(value)) throw makeError('ERR_INVALID_ARG_TYPE', name, 'int32', value);
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

function validatePort(port, name = 'Port', allowZero = true) {
  if (
    (typeof port !== 'number' && typeof port !== 'string') ||
    (typeof port === 'string' && port.trim().length === 0) ||
    +port !== +port >>> 0 ||
    port > 0xffff ||
    (port === 0 && !allowZero)
  ) {
    throw makeError('ERR_SOCKET_BAD_PORT', name, port, allowZero);
  }
  return port | 0;
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

const SIGNALS = os.constants.signals;
const SIGNAL_NAMES = Object.fromEntries(Object.entries(SIGNALS).map(([name, number]) => [number, name]));

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

// forkline's `maxMessageSize`: bytes, a positive integer when given.
function validateMaxMessageSize(max) {
  if (max != null && (!Number.isInteger(max) || max < 1)) {
    throw makeError('ERR_OUT_OF_RANGE', 'options.maxMessageSize', 'a positive integer', max);
  }
}

// forkline's `busyPoll` (µs after each send and receive, 0 = off), else the process default FORKLINE_BUSY_POLL;
// undefined when neither is set: the channel then polls while it pays (src/core/spin.rs).
const MAX_BUSY_POLL = 1_000_000;
const isBusyPoll = (us) => Number.isInteger(us) && us >= 0 && us <= MAX_BUSY_POLL;
function busyPollOf(options) {
  if (options.busyPoll != null) {
    const us = options.busyPoll;
    if (!isBusyPoll(us)) {
      throw makeError('ERR_OUT_OF_RANGE', 'options.busyPoll', `an integer from 0 to ${MAX_BUSY_POLL}`, us);
    }
    return us;
  }
  const fromEnv = process.env.FORKLINE_BUSY_POLL;
  if (fromEnv === undefined || fromEnv === '') return undefined;
  const us = Number(fromEnv);
  if (!isBusyPoll(us)) {
    throw makeError('ERR_OUT_OF_RANGE', 'env.FORKLINE_BUSY_POLL', `an integer from 0 to ${MAX_BUSY_POLL}`, fromEnv);
  }
  return us;
}

module.exports = {
  validateString,
  validateObject,
  validateArray,
  validateBoolean,
  validateInteger,
  validateInt32,
  validateTimeout,
  validateId,
  validateAbortSignal,
  validateNullCheck,
  validatePort,
  toPath,
  SIGNALS,
  SIGNAL_NAMES,
  convertToValidSignal,
  sanitizeKillSignal,
  validateMaxMessageSize,
  busyPollOf,
  isBusyPoll,
};

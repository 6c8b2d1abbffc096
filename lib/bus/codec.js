'use strict';

// What may travel on the bus, and how: names are checked here, messages become JSON text once (in the process that
// publishes) and stay text through the gateway and the broker until a listener gets them.

const dgram = require('node:dgram');
const net = require('node:net');
const { Buffer } = require('node:buffer');
const { makeError } = require('../errors');

// Letters, digits and `. _ - : / @`; the rest (spaces, `*`, `?`, `[`) are kept out of broker channel names.
const NAME = /^[\w.:/@-]{1,256}$/;

function validateName(name, what) {
  if (typeof name !== 'string') throw makeError('ERR_INVALID_ARG_TYPE', what, 'string', name);
  if (!NAME.test(name)) {
    throw makeError('ERR_INVALID_ARG_VALUE', what, name, 'must be 1 to 256 letters, digits or . _ - : / @');
  }
}

function validateFunction(fn, what) {
  if (typeof fn !== 'function') throw makeError('ERR_INVALID_ARG_TYPE', what, 'Function', fn);
}

const isHandle = (value) => value instanceof net.Socket || value instanceof net.Server || value instanceof dgram.Socket;

// The message as JSON text. Handles are refused by name: they cannot cross hosts.
function encode(message, what = 'message') {
  if (message === undefined) throw makeError('ERR_INVALID_ARG_VALUE', what, message, 'must be JSON-serializable');
  if (isHandle(message)) throw makeError('FORKLINE_BUS_HANDLE');
  if (message !== null && typeof message === 'object') {
    for (const value of Object.values(message)) if (isHandle(value)) throw makeError('FORKLINE_BUS_HANDLE');
  }
  let text;
  try {
    text = JSON.stringify(message);
  } catch (err) {
    throw makeError('ERR_INVALID_ARG_VALUE', what, message, `cannot be serialized (${err.message})`);
  }
  if (text === undefined) throw makeError('ERR_INVALID_ARG_VALUE', what, message, 'must be JSON-serializable');
  return text;
}

function checkSize(text, max) {
  // Cheap bound first: a UTF-8 byte is at most 3 per UTF-16 unit.
  if (text.length * 3 <= max) return;
  const size = Buffer.byteLength(text);
  if (size > max) throw makeError('FORKLINE_BUS_MESSAGE_TOO_LARGE', size, max);
}

// Errors cross the IPC channel and the broker as plain objects.
function errorToWire(err) {
  if (err instanceof Error) return { message: err.message, code: err.code, name: err.name };
  return { message: String(err) };
}

function errorFromWire(wire, remote) {
  const err = remote ? makeError('FORKLINE_BUS_REMOTE_ERROR', wire.message) : new Error(wire.message);
  if (!remote && wire.code !== undefined) err.code = wire.code;
  if (remote && wire.code !== undefined) err.remoteCode = wire.code;
  if (!remote && wire.name && wire.name !== 'Error') {
    Object.defineProperty(err, 'name', { value: wire.name, configurable: true, writable: true });
  }
  return err;
}

module.exports = { validateName, validateFunction, encode, checkSize, errorToWire, errorFromWire };

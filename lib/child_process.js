'use strict';

// ChildProcess and fork(): Node's lib/internal/child_process.js ChildProcess (spawn, kill, the order of 'exit',
// 'disconnect' and 'close', stdio) and lib/child_process.js fork() with normalizeSpawnArguments(), for the options
// fork() takes. The channel side of a ChildProcess is lib/channel.js; spawn, kill and reaping are native.

const net = require('node:net');
const os = require('node:os');
const util = require('node:util');
const process = require('node:process');
const native = require('./binding');
const { makeError, errnoException, AbortError } = require('./errors');
const {
  validateString,
  validateObject,
  validateArray,
  validateBoolean,
  validateId,
  validateTimeout,
  validateAbortSignal,
  validateNullCheck,
  toPath,
  SIGNAL_NAMES,
  convertToValidSignal,
  sanitizeKillSignal,
  validateMaxMessageSize,
  busyPollOf,
} = require('./validators');
const { codecFor } = require('./serialization');
const { ChannelEnd, Control, defineChannelApi, flushPendingMessages, emitDisconnectNT } = require('./channel');
const { resolveChildRuntime, childRuntimeOf, childRuntimeEnv } = require('./runtime_env');
const debug = require('./debug');
const nodeVersion = require('./node_version');

const { ESRCH, EINVAL, ENOSYS, EMFILE, ENFILE, EACCES, EAGAIN, ENOENT } = os.constants.errno;
// Errors of spawning that Node reports as an 'error' event instead of throwing.
const RUNTIME_SPAWN_ERRORS = [EACCES, EAGAIN, EMFILE, ENFILE, ENOENT];

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
    debug.created(this);
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
    this._codec = codecFor(serialization);
    let envPairs = options.envPairs ? [...options.envPairs] : [];
    if (ipcIndex !== -1 && childRuntimeOf(options) === 'forkline') {
      envPairs = childRuntimeEnv(envPairs, ipcIndex, serialization, options.busyPoll);
    } else if (ipcIndex !== -1) {
      envPairs.push(`NODE_CHANNEL_FD=${ipcIndex}`, `NODE_CHANNEL_SERIALIZATION_MODE=${serialization}`);
    }
    this.spawnfile = options.file;
    this.spawnargs = options.args;

    debug.spawning(this, options);
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
          busyPoll: options.busyPoll,
        },
        () => this._onWake(),
      );
    } catch (err) {
      // The core reports system errors by their code (e.g. 'EBADF'); anything else is ours.
      const errno = os.constants.errno[err.message];
      if (!errno) throw err;
      debug.spawnFailed(this, errnoException(-errno, 'spawn'));
      // Node's run-time errors are an 'error' event on the child it returns, not a throw; at EMFILE/ENFILE there
      // is no stdio or channel to set up either (lib/internal/child_process.js ChildProcess.prototype.spawn).
      if (!RUNTIME_SPAWN_ERRORS.includes(errno)) throw errnoException(-errno, 'spawn');
      process.nextTick(onErrorNT, this, -errno);
      return -errno;
    }
    this._native = nat;

    const spawnErrno = nat.spawnErrno;
    if (spawnErrno != null) {
      debug.spawnFailed(this, errnoException(spawnErrno, 'spawn'));
      process.nextTick(onErrorNT, this, spawnErrno);
      // Node gives up here too: no fds left to set up stdio with.
      if (spawnErrno === -EMFILE || spawnErrno === -ENFILE) return spawnErrno;
    } else {
      debug.spawned(this);
      process.nextTick(onSpawnNT, this);
    }
    this.pid = nat.pid ?? undefined;
    debug.spawn(this);

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
      defineChannelApi(this);
      debug.open(this, serialization);
      // Node queues messages that arrive before a 'message' listener exists, and hands them over once one does.
      this.on('newListener', () => process.nextTick(flushPendingMessages, this));
    } else {
      nat.unrefChannel();
    }
    return spawnErrno ?? 0;
  }

  kill(sig) {
    const signal = sig === 0 ? sig : convertToValidSignal(sig === undefined ? 'SIGTERM' : sig);
    // What send() accepted is on the socket before the signal, as with Node's synchronous writes.
    if (this._flushScheduled) this._flush();
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
    debug.exit(this, this.exitCode, this.signalCode);
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
  if (child._native) child._native.unrefProcess();
  child.exitCode = errno;
  if (child.stdin) child.stdin.destroy();
  const err = errnoException(errno, child.spawnfile ? `spawn ${child.spawnfile}` : 'spawn');
  if (child.spawnfile) err.path = child.spawnfile;
  err.spawnargs = child.spawnargs.slice(1);
  child.emit('error', err);
  process.nextTick(flushStdio, child);
  maybeClose(child);
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
  if (child._closesGot !== child._closesNeeded) return;
  // Nothing native is left to report: let go of it, or its reference to this object would keep both forever.
  if (child._native) child._native.retire();
  child.emit('close', child.exitCode, child.signalCode);
}

// Every 'pipe' slot is a socketpair, as libuv makes them: the parent's end is writable in every slot (stdout and
// extra slots included) and readable in all but stdin (Node's createSocket in lib/internal/child_process.js).
function createSocket(fd, readable) {
  return new net.Socket({ fd, readable, writable: true });
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
// fork().

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
  // Own properties only, as Node: an option inherited from a tampered Object.prototype is not an option.
  options = { __proto__: null, ...options, shell: false };
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

// Node's spawn(file[, args][, options]). A child with an 'ipc' slot gets forkline's channel, whatever it runs; any
// other spawn is Node's own, since without a channel forkline has nothing to add.
function spawn(file, args, options) {
  validateString(file, 'file');
  validateNullCheck(file, 'file');
  if (file.length === 0) throw makeError('ERR_INVALID_ARG_VALUE', 'file', file, 'cannot be empty');
  if (Array.isArray(args)) {
    args = args.slice();
  } else if (args == null) {
    args = [];
  } else if (typeof args !== 'object') {
    throw makeError('ERR_INVALID_ARG_TYPE', 'args', 'object', args);
  } else {
    options = args;
    args = [];
  }
  if (options === undefined) options = {};
  else validateObject(options, 'options');
  // Own properties only (Node's normalizeSpawnArguments), the 'ipc' slot included.
  options = { __proto__: null, ...options };
  if (!Array.isArray(options.stdio) || !options.stdio.includes('ipc')) {
    return require('node:child_process').spawn(file, args, options);
  }
  const shell = options.shell;
  if (shell != null && typeof shell !== 'boolean' && typeof shell !== 'string') {
    throw makeError('ERR_INVALID_ARG_TYPE', 'options.shell', ['boolean', 'string'], shell);
  }
  if (shell) {
    validateNullCheck(shell, 'options.shell');
    if (args.length > 0) warnShellArgs();
    const command = [file, ...args].join(' ');
    file = typeof shell === 'string' ? shell : '/bin/sh';
    args = ['-c', command];
  }
  return spawnWithOptions(file, args, options);
}

let warnedShellArgs = false;
function warnShellArgs() {
  if (!nodeVersion.shellArgsDeprecation || warnedShellArgs) return;
  warnedShellArgs = true;
  process.emitWarning(
    'Passing args to a child process with shell option true can lead to security vulnerabilities, ' +
      'as the arguments are not escaped, only concatenated.',
    'DeprecationWarning',
    'DEP0190',
  );
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
    child.once(nodeVersion.timeoutClearedOnClose ? 'close' : 'exit', () => {
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
  validateId(options.uid, 'options.uid');
  validateId(options.gid, 'options.gid');
  if (options.argv0 != null) {
    validateString(options.argv0, 'options.argv0');
    validateNullCheck(options.argv0, 'options.argv0');
  }
  validateMaxMessageSize(options.maxMessageSize);
  const busyPoll = busyPollOf(options);
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
    __proto__: null,
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
    busyPoll,
    childRuntime: resolveChildRuntime(options.childRuntime, file),
  };
}

module.exports = { ChildProcess, fork, spawn };

'use strict';

// forkline/register: `node --import forkline/register app.js` (or `-r`, or either in NODE_OPTIONS) puts the forks
// and the cluster of a program that never names forkline on forkline. Node's own module objects are changed in
// place, so every way of reaching them sees the change: require('node:child_process') and its 'child_process'
// alias, the ESM default import (the same object) and named imports (module.syncBuiltinESMExports()), whether the
// importing module was loaded before this one or after.
//
// - node:child_process: `fork` becomes forkline's, `spawn` forkline's for calls with an 'ipc' slot. The rest stays
//   Node's, untouched: without a channel forkline has nothing to add.
// - node:cluster, in a primary: each property but isPrimary/isWorker/isMaster becomes an accessor onto forkline's
//   cluster (lib/cluster), so Node's object behaves as forkline's, its events included (an EventEmitter's state is
//   its `_events` & co., forwarded too). Those three stay data properties because Node's net reads them on every
//   listen(), and reading them must not load anything. In a cluster worker node:cluster is left alone: it is Node's
//   worker side, which forkline's primary speaks to.
//
// Nothing of forkline loads until the first fork (or the first use of node:cluster): a process that inherited the
// flag and never forks pays for loading node:child_process and node:cluster only. If forkline cannot load then (no
// addon for this platform, and no portable backend), Node's functions are put back and called, and the reason is
// said once: a NODE_DEBUG=forkline line, or a warning when FORKLINE_REGISTER was set explicitly; forkline's portable
// backend serves the forks, but its cluster is Node's own primary, so node:cluster stays Node's there.
//
// This module is the only one in lib/ that knows about registering; the rest of lib/ is used as any program uses it.

const fs = require('node:fs');
const path = require('node:path');
const process = require('node:process');
const util = require('node:util');

const MODULES = ['child_process', 'cluster'];
// Node's cluster keys that keep their own value (see above): equal in Node's primary and in forkline's.
const CLUSTER_CONSTANTS = ['isPrimary', 'isWorker', 'isMaster'];
// What forkline's cluster has beyond Node's (lib/cluster/primary.js), there from the start so that reading one loads
// it like any other property (register.test.js checks this list against forkline's cluster).
const CLUSTER_ADDITIONS = ['SCHED_REUSEPORT', 'broadcast', 'reload', 'stats'];
// The state, shared by every copy of forkline in the process (an app's own and the one NODE_OPTIONS resolved), so
// that the second to register does nothing and each reports the same.
const kState = Symbol.for('forkline.register');
const SPECIFIER = 'forkline/register';
const CJS_ENTRY = path.join(__dirname, '..', 'register.js');
const ESM_ENTRY = path.join(__dirname, '..', 'register.mjs');

// NODE_DEBUG=forkline (every part of forkline, as lib/debug.js) or NODE_DEBUG=forkline:register.
const log = (() => {
  const all = util.debuglog('forkline');
  if (all.enabled) return (format, ...args) => all(`register: ${format}`, ...args);
  const one = util.debuglog('forkline:register');
  return one.enabled ? one : null;
})();

// ---------------------------------------------------------------------------------------------------------------
// What to replace.

// FORKLINE_REGISTER: a comma-separated list of module names (the `node:` prefix is optional), or 'none' (or empty)
// for nothing; unset means every module. Unknown names are reported and ignored.
function requested(env) {
  const value = env.FORKLINE_REGISTER;
  if (value === undefined) return { names: MODULES.slice(), unknown: [] };
  const names = [];
  const unknown = [];
  for (let name of value.split(',')) {
    name = name
      .trim()
      .toLowerCase()
      .replace(/^node:/, '');
    if (name === '' || name === 'none') continue;
    if (!MODULES.includes(name)) unknown.push(name);
    else if (!names.includes(name)) names.push(name);
  }
  return { names, unknown };
}

// ---------------------------------------------------------------------------------------------------------------
// Loading forkline, on first use.

let forkline; // forkline's index.js once loaded; null if it cannot load.
let state;

function loadForkline() {
  if (forkline !== undefined) return forkline;
  try {
    forkline = require('../index.js');
  } catch (err) {
    forkline = null;
    giveUp(`forkline cannot load (${err.message})`);
  }
  // The portable backend's cluster is Node's own primary behind forkline's object (lib/portable/cluster.js), and
  // Node's primary works on node:cluster itself: it must stay Node's. Its forks are Node's fork() with forkline's
  // additions, which it takes from state.node rather than from node:child_process.
  if (forkline && forkline.backend === 'portable') {
    giveUp("forkline runs its portable backend, whose cluster is Node's own", ['cluster']);
  }
  return forkline;
}

// Puts the replaced properties of Node's modules back (all of them, or those of `names`), and says why once.
function giveUp(reason, names = MODULES) {
  for (const name of names) {
    if (!state.requested.includes(name) || name in state.skipped) continue;
    state.skipped[name] = reason;
    if (restore[name]) restore[name]();
  }
  state.replaced = state.replaced.filter((name) => !names.includes(name));
  say(`${reason}: ${names.map((name) => `node:${name}`).join(' and ')} stay${names.length > 1 ? '' : 's'} Node's own`);
  syncESM();
}

const said = new Set();
function say(message) {
  if (said.has(message)) return;
  said.add(message);
  if (log) log('%s', message);
  else if (state.explicit) process.emitWarning(message, { code: 'FORKLINE_REGISTER' });
}

function syncESM() {
  require('node:module').syncBuiltinESMExports();
}

const restore = {};

// ---------------------------------------------------------------------------------------------------------------
// node:child_process.

// Whether spawn(file[, args][, options]) asks for a channel: Node's argument juggling, then forkline's own test
// (lib/child_process.js spawn), so that the two always agree on who serves the call.
function wantsIpc(args, options) {
  const opts = args != null && typeof args === 'object' && !Array.isArray(args) ? args : options;
  return opts != null && typeof opts === 'object' && Array.isArray(opts.stdio) && opts.stdio.includes('ipc');
}

function replaceChildProcess() {
  const cp = require('node:child_process');
  const nodeFork = cp.fork;
  const nodeSpawn = cp.spawn;

  // Node's fork() and spawn() lengths and names, so that the replacements look like what they replace.
  const fork = named(nodeFork, function (modulePath) {
    const impl = loadForkline();
    if (!impl) return Reflect.apply(nodeFork, this, arguments);
    if (log) log('fork %s from %s', modulePath, caller(fork));
    return served('child_process.fork', () => Reflect.apply(impl.fork, this, arguments));
  });
  const spawn = named(nodeSpawn, function (file, args, options) {
    if (!wantsIpc(args, options)) return Reflect.apply(nodeSpawn, this, arguments);
    const impl = loadForkline();
    if (!impl) return Reflect.apply(nodeSpawn, this, arguments);
    if (log) log('spawn %s (ipc) from %s', file, caller(spawn));
    return served('child_process.spawn', () => Reflect.apply(impl.spawn, this, arguments));
  });

  cp.fork = fork;
  cp.spawn = spawn;
  // Node's own, for forkline's portable backend, which calls them (lib/portable/child_process.js).
  state.node = { fork: nodeFork, spawn: nodeSpawn };
  restore.child_process = () => {
    if (cp.fork === fork) cp.fork = nodeFork;
    if (cp.spawn === spawn) cp.spawn = nodeSpawn;
  };
}

function named(original, fn) {
  Object.defineProperty(fn, 'name', { value: original.name });
  Object.defineProperty(fn, 'length', { value: original.length });
  return fn;
}

// ---------------------------------------------------------------------------------------------------------------
// node:cluster, in a primary.

function replaceCluster() {
  // A worker: Node's bootstrap made node:cluster its worker side (and removed NODE_UNIQUE_ID), or will (a runtime
  // worker, lib/runtime.js, preloaded after us: loading node:cluster now would make it a primary).
  const worker = "this process is a cluster worker: node:cluster stays Node's worker side";
  if ('NODE_UNIQUE_ID' in process.env || 'FORKLINE_UNIQUE_ID' in process.env) return worker;
  // Someone loaded node:cluster before us: they may hold named ESM imports of it, which only a sync updates, and a
  // sync needs forkline's cluster loaded.
  const loadedBefore = isLoaded('cluster');
  const cluster = require('node:cluster');
  if (cluster.isWorker) return worker;
  if (Object.keys(cluster.workers).length > 0 || Object.keys(cluster.settings).length > 0) {
    return "node:cluster was set up before forkline/register ran: it stays Node's";
  }
  const saved = new Map(); // key -> Node's own property descriptor
  for (const key of Reflect.ownKeys(cluster)) {
    if (!CLUSTER_CONSTANTS.includes(key)) saved.set(key, Object.getOwnPropertyDescriptor(cluster, key));
  }
  let target; // forkline's cluster, once loaded; null if it cannot load
  let loading = false;

  // forkline's cluster, loaded on first use; while it loads (it reads node:cluster itself) and if it cannot,
  // Node's own object stands in.
  const nodeOwn = {};
  for (const [key, desc] of saved) Object.defineProperty(nodeOwn, key, desc);
  function forklineCluster() {
    if (target !== undefined) return target ?? nodeOwn;
    if (loading) return nodeOwn;
    loading = true;
    try {
      const impl = loadForkline();
      // Given up on while forkline loaded (its portable backend): Node's object is back as it was.
      target = impl && !('cluster' in state.skipped) ? impl.cluster : null;
    } catch (err) {
      target = null;
      giveUp(`forkline's cluster cannot load (${err.message})`, ['cluster']);
    } finally {
      loading = false;
    }
    if (!target) return nodeOwn;
    // Listeners added to Node's object before us move over.
    for (const name of Reflect.ownKeys(nodeOwn._events || {})) {
      for (const listener of [].concat(nodeOwn._events[name])) target.on(name, listener);
    }
    // forkline's own additions appear on Node's object too (any not in CLUSTER_ADDITIONS from now on). ESM's named
    // exports of a builtin are fixed at its first import, so these are reached through the object.
    for (const key of Reflect.ownKeys(target)) {
      if (!(key in cluster)) forward(key, true);
    }
    return target;
  }

  const traced = log
    ? function fork(env) {
        const impl = forklineCluster();
        if (impl !== nodeOwn) log('cluster.fork from %s', caller(traced));
        return impl.fork(env);
      }
    : null;

  function forward(key, enumerable) {
    Object.defineProperty(cluster, key, {
      configurable: true,
      enumerable,
      get() {
        const impl = forklineCluster();
        if (key === 'fork' && traced && impl !== nodeOwn) return traced;
        return impl[key];
      },
      set(value) {
        forklineCluster()[key] = value;
      },
    });
  }
  for (const [key, desc] of saved) forward(key, desc.enumerable);
  for (const key of CLUSTER_ADDITIONS) if (!saved.has(key)) forward(key, true);

  restore.cluster = () => {
    for (const key of Reflect.ownKeys(cluster)) {
      if (!saved.has(key) && !CLUSTER_CONSTANTS.includes(key)) delete cluster[key];
    }
    for (const [key] of saved) Object.defineProperty(cluster, key, Object.getOwnPropertyDescriptor(nodeOwn, key));
  };
  if (loadedBefore && forklineCluster() !== nodeOwn) syncESM();
  return null;
}

// Whether a builtin was loaded by anyone before now.
function isLoaded(id) {
  return process.moduleLoadList.some((entry) => entry.endsWith(` ${id}`) && /^(Native|Builtin)Module /.test(entry));
}

// ---------------------------------------------------------------------------------------------------------------
// Tracing and the report.

// The file:line that called `fn` (for NODE_DEBUG lines only).
function caller(fn) {
  const holder = {};
  const limit = Error.stackTraceLimit;
  Error.stackTraceLimit = 1;
  Error.captureStackTrace(holder, fn);
  Error.stackTraceLimit = limit;
  const line = (holder.stack || '').split('\n')[1] || '';
  const at = /\(([^()]+)\)\s*$/.exec(line) || /at (.+)$/.exec(line);
  return at ? at[1] : '(unknown)';
}

// Which hook a fork went through, set while it runs (spawn is synchronous up to the channel's opening).
let via = null;
function served(name, call) {
  const outer = via;
  via = name;
  try {
    return call();
  } finally {
    via = outer;
  }
}

// FORKLINE_REGISTER_REPORT=<file>: at exit, each process that ran the register module appends one JSON line to the
// file: what was replaced, and every child forkline forked (through the hooks, the cluster, or require('forkline'))
// with its channel's stats() as they ended. Children inherit the variable with NODE_OPTIONS, so one file tells
// what a whole tree of processes did. Off, nothing is listened to.
function startReport(file) {
  const dc = require('node:diagnostics_channel');
  const forks = [];
  const byChild = new Map();
  dc.subscribe('forkline:channel:open', ({ end, serialization, runtime }) => {
    if (runtime !== 'parent') return;
    const entry = {
      pid: end.pid,
      file: end.spawnfile,
      args: end.spawnargs,
      via: via || 'forkline',
      serialization,
      channel: end.channel,
    };
    forks.push(entry);
    byChild.set(end, entry);
  });
  dc.subscribe('forkline:cluster:fork', ({ worker }) => {
    const entry = byChild.get(worker.process);
    if (entry) entry.via = 'cluster';
  });
  dc.subscribe('forkline:exit', ({ child }) => byChild.delete(child));
  process.on('exit', () => {
    const record = {
      pid: process.pid,
      ppid: process.ppid,
      node: process.version,
      argv: process.argv,
      registered: registered(),
      forks: forks.map(({ channel, ...entry }) => ({ ...entry, stats: statsOf(channel) })),
    };
    try {
      fs.appendFileSync(file, `${JSON.stringify(record)}\n`);
    } catch (err) {
      say(`FORKLINE_REGISTER_REPORT: cannot write ${file} (${err.message})`);
    }
  });
}

function statsOf(channel) {
  try {
    return channel.stats();
  } catch {
    return null;
  }
}

// ---------------------------------------------------------------------------------------------------------------
// Children inherit the flag (NODE_OPTIONS, and fork()'s default execArgv) and resolve `forkline/register` from
// their own cwd, where forkline may not be installed: a child started elsewhere would fail to start. The flag is
// rewritten to this entry's absolute path, for this process's children.

function pinEntry() {
  const quote = (file) => (/[\s"\\]/.test(file) ? `"${file.replace(/(["\\])/g, '\\$1')}"` : file);
  const entryFor = (flag) => (flag === '--import' ? ESM_ENTRY : CJS_ENTRY);
  const options = process.env.NODE_OPTIONS;
  if (options && options.includes(SPECIFIER)) {
    process.env.NODE_OPTIONS = options.replace(
      /(^|\s)(--import|--require|-r)(=|\s+)forkline\/register(?=\s|$)/g,
      (_, space, flag, sep) => `${space}${flag}${sep}${quote(entryFor(flag))}`,
    );
  }
  const argv = process.execArgv;
  for (let i = 0; i < argv.length; i++) {
    const eq = /^(--import|--require|-r)=forkline\/register$/.exec(argv[i]);
    if (eq) argv[i] = `${eq[1]}=${entryFor(eq[1])}`;
    else if (argv[i] === SPECIFIER && /^(--import|--require|-r)$/.test(argv[i - 1])) argv[i] = entryFor(argv[i - 1]);
  }
}

// ---------------------------------------------------------------------------------------------------------------

function register() {
  if (globalThis[kState]) return registered();
  const env = process.env;
  const { names, unknown } = requested(env);
  state = {
    ran: true,
    explicit: env.FORKLINE_REGISTER !== undefined,
    requested: names,
    replaced: [],
    skipped: {},
  };
  globalThis[kState] = state;
  if (unknown.length) {
    say(`FORKLINE_REGISTER: unknown module ${unknown.join(', ')} (known: ${MODULES.join(', ')})`);
    // Said here once: the children inherit the names that mean something.
    env.FORKLINE_REGISTER = names.join(',') || 'none';
  }
  pinEntry();
  // Never break the program: whatever goes wrong here leaves the module as Node's. child_process first, and its
  // named ESM exports synced before node:cluster's accessors exist: a sync reads every export of every builtin, and
  // would load forkline's cluster through them.
  for (const name of MODULES.filter((n) => names.includes(n))) {
    try {
      const skipped = name === 'cluster' ? replaceCluster() : replaceChildProcess();
      if (skipped) state.skipped[name] = skipped;
      else if (!(name in state.skipped)) state.replaced.push(name); // skipped: it gave up already (giveUp said why)
    } catch (err) {
      if (restore[name]) restore[name]();
      state.skipped[name] = `cannot replace it (${err.message})`;
      say(`${name}: ${state.skipped[name]}`);
    }
    if (name === 'child_process') syncESM();
  }
  if (log) {
    const skipped = Object.entries(state.skipped).map(([name, why]) => `; ${name} not: ${why}`);
    log('replaced %s%s', state.replaced.join(', ') || 'nothing', skipped.join(''));
  }
  if (env.FORKLINE_REGISTER_REPORT) {
    // Absolute for the children too, which may start elsewhere.
    env.FORKLINE_REGISTER_REPORT = path.resolve(env.FORKLINE_REGISTER_REPORT);
    startReport(env.FORKLINE_REGISTER_REPORT);
  }
  return registered();
}

// What `require('forkline').registered` says: whether the register module ran in this process, which modules it
// asked for, which it replaced, and why it left any alone.
function registered() {
  const s = globalThis[kState];
  if (!s) return Object.freeze({ ran: false, requested: [], replaced: [], skipped: {} });
  return Object.freeze({
    ran: true,
    requested: s.requested.slice(),
    replaced: s.replaced.slice(),
    skipped: { ...s.skipped },
  });
}

module.exports = { register, registered };

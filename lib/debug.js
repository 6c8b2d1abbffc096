'use strict';

// Tracing: what a channel and a cluster go through, as NODE_DEBUG lines (util.debuglog) and as node:diagnostics_channel
// messages. `NODE_DEBUG=forkline` shows everything; `forkline:channel`, `forkline:cluster` or `forkline:backend` one
// part (backend: why the portable backend serves, and what falls back to Node's behaviour in it). Each channel
// publishes only when someone subscribes, and each log line is formatted only when its section is on (NODE_DEBUG
// is read once, at start-up, as Node reads it): with nobody listening a trace point costs a property read and a
// boolean test.
//
// diagnostics_channel names and what they carry (`end` is the ChildProcess, or `process` under the child runtime):
//   forkline:spawn                { child, pid, file, args }
//   forkline:exit                 { child, pid, code, signal }
//   forkline:channel:open         { end, serialization, runtime: 'parent' | 'child' }
//   forkline:channel:close        { end, reason: 'disconnect' | 'eof' }
//   forkline:channel:handle       { end, step: 'send' | 'receive' | 'ack' | 'nack', type }
//   forkline:channel:backpressure { end, on: boolean, queuedBytes }
//   forkline:channel:error        { end, error }
//   forkline:cluster:fork         { worker }
//   forkline:cluster:schedule     { worker, key, policy }
//   forkline:cluster:exit         { worker, code, signal }
//   forkline:cluster:restart      { worker, deaths } (giveup: { worker, deaths, gaveUp: true })
//   forkline:cluster:reload       { step: 'start' | 'replace' | 'done', old, fresh }

const util = require('node:util');
const dc = require('node:diagnostics_channel');
const process = require('node:process');
const nodeVersion = require('./node_version');

// The logger for one part: `forkline` (every part, lines prefixed with the part) or `forkline:<part>`; null if off.
function logger(part) {
  const all = util.debuglog('forkline');
  if (all.enabled) return (format, ...args) => all(`${part}: ${format}`, ...args);
  const one = util.debuglog(`forkline:${part}`);
  return one.enabled ? one : null;
}

const log = { channel: logger('channel'), cluster: logger('cluster'), backend: logger('backend') };

const ch = {
  spawn: dc.channel('forkline:spawn'),
  exit: dc.channel('forkline:exit'),
  open: dc.channel('forkline:channel:open'),
  close: dc.channel('forkline:channel:close'),
  handle: dc.channel('forkline:channel:handle'),
  backpressure: dc.channel('forkline:channel:backpressure'),
  error: dc.channel('forkline:channel:error'),
  fork: dc.channel('forkline:cluster:fork'),
  schedule: dc.channel('forkline:cluster:schedule'),
  workerExit: dc.channel('forkline:cluster:exit'),
  restart: dc.channel('forkline:cluster:restart'),
  reload: dc.channel('forkline:cluster:reload'),
};

// Node's own channels, published as Node's ChildProcess does (lib/internal/child_process.js), so that a tool that
// watches Node's spawns sees forkline's too: `child_process` when a ChildProcess is made, and on Node 24 and later
// the tracing channel `child_process.spawn` around the spawn itself.
const nodeCh = {
  created: dc.channel('child_process'),
  spawn: nodeVersion.spawnTracingChannel ? dc.tracingChannel('child_process.spawn') : null,
};

// Who an end is in a log line.
const who = (end) => (end === process ? `child runtime pid ${process.pid}` : `child pid ${end.pid}`);

function created(child) {
  if (nodeCh.created.hasSubscribers) nodeCh.created.publish({ process: child });
}

// The tracing channel's start, before the spawn; then spawned(child) or spawnFailed(child, err).
function spawning(child, options) {
  if (nodeCh.spawn && nodeCh.spawn.start.hasSubscribers) nodeCh.spawn.start.publish({ process: child, options });
}

function spawnFailed(child, err) {
  if (nodeCh.spawn && nodeCh.spawn.error.hasSubscribers) nodeCh.spawn.error.publish({ process: child, error: err });
}

function spawned(child) {
  if (nodeCh.spawn && nodeCh.spawn.end.hasSubscribers) nodeCh.spawn.end.publish({ process: child });
}

function spawn(child) {
  if (ch.spawn.hasSubscribers) {
    ch.spawn.publish({ child, pid: child.pid, file: child.spawnfile, args: child.spawnargs });
  }
  if (log.channel) log.channel('spawn pid %s: %s %j', child.pid, child.spawnfile, child.spawnargs);
}

function exit(child, code, signal) {
  if (ch.exit.hasSubscribers) ch.exit.publish({ child, pid: child.pid, code, signal });
  if (log.channel) log.channel('exit pid %s: code %s signal %s', child.pid, code, signal);
}

function open(end, serialization) {
  const runtime = end === process ? 'child' : 'parent';
  if (ch.open.hasSubscribers) ch.open.publish({ end, serialization, runtime });
  if (log.channel) log.channel('open (%s, %s)', who(end), serialization);
}

function close(end, reason) {
  if (ch.close.hasSubscribers) ch.close.publish({ end, reason });
  if (log.channel) log.channel('closed (%s): %s', who(end), reason);
}

function handle(end, step, type) {
  if (ch.handle.hasSubscribers) ch.handle.publish({ end, step, type });
  if (log.channel) log.channel('handle %s (%s)%s', step, who(end), type ? `: ${type}` : '');
}

// The handshake's replies reach JS as internal messages; only they are traced here.
function internal(end, message) {
  if (!log.channel && !ch.handle.hasSubscribers) return;
  if (message.cmd === 'NODE_HANDLE_ACK') handle(end, 'ack');
  else if (message.cmd === 'NODE_HANDLE_NACK') handle(end, 'nack');
}

function backpressure(end, on, queuedBytes) {
  if (ch.backpressure.hasSubscribers) ch.backpressure.publish({ end, on, queuedBytes });
  if (log.channel) {
    log.channel('backpressure %s (%s): %d bytes queued', on ? 'on' : 'off', who(end), queuedBytes);
  }
}

function error(end, err) {
  if (ch.error.hasSubscribers) ch.error.publish({ end, error: err });
  if (log.channel) log.channel('error (%s): %s %s', who(end), err.code, err.message);
}

function fork(worker) {
  if (ch.fork.hasSubscribers) ch.fork.publish({ worker });
  if (log.cluster) log.cluster('fork worker %d pid %s', worker.id, worker.process.pid);
}

function schedule(worker, key, policy) {
  if (ch.schedule.hasSubscribers) ch.schedule.publish({ worker, key, policy });
  if (log.cluster) log.cluster('worker %d serves %s (%s)', worker.id, key, policy);
}

function workerExit(worker, code, signal) {
  if (ch.workerExit.hasSubscribers) ch.workerExit.publish({ worker, code, signal });
  if (log.cluster) {
    log.cluster('worker %d pid %s exited: code %s signal %s', worker.id, worker.process.pid, code, signal);
  }
}

function restart(worker, deaths, gaveUp = false) {
  if (ch.restart.hasSubscribers) ch.restart.publish({ worker, deaths, gaveUp });
  if (log.cluster) {
    log.cluster(
      gaveUp ? 'giving up: %d deaths, last worker %d' : 'restart after %d deaths: worker %d',
      deaths,
      worker.id,
    );
  }
}

function reload(step, old, fresh) {
  if (ch.reload.hasSubscribers) ch.reload.publish({ step, old, fresh });
  if (log.cluster) {
    log.cluster('reload %s%s', step, old ? `: worker ${old.id} -> ${fresh ? fresh.id : '?'}` : '');
  }
}

// The backend's own lines (lib/backend.js, lib/portable/): one each, so they go to NODE_DEBUG only.
function backend(format, ...args) {
  if (log.backend) log.backend(format, ...args);
}

module.exports = {
  backend,
  created,
  spawning,
  spawnFailed,
  spawned,
  spawn,
  exit,
  open,
  close,
  handle,
  internal,
  backpressure,
  error,
  fork,
  schedule,
  workerExit,
  restart,
  reload,
};

'use strict';

// Inspector ports for workers (Node's lib/internal/util/inspector.js and createWorkerProcess in
// lib/internal/cluster/primary.js): a primary run with --inspect, --inspect-brk, --inspect-port or --debug-port (on
// its command line or in NODE_OPTIONS) gives each worker `--inspect-port` of its own, so the workers' inspectors do
// not fight over the primary's port.

const process = require('node:process');
const { makeError } = require('../errors');
const { validatePort } = require('../validators');

const MIN_PORT = 1024;
const MAX_PORT = 65535;
const INSPECT_ARG = /--inspect(?:-brk|-port)?|--debug-port/;

// Ports handed out so far: the next worker gets process.debugPort plus this.
let debugPortOffset = 1;

function isUsingInspector(execArgv) {
  return execArgv.some((arg) => INSPECT_ARG.test(arg)) || INSPECT_ARG.test(process.env.NODE_OPTIONS);
}

// `inspectPort`: settings.inspectPort (a number, a function giving one, or undefined for the next free offset).
function getInspectPort(inspectPort) {
  if (typeof inspectPort === 'function') {
    inspectPort = inspectPort();
  } else if (inspectPort == null) {
    inspectPort = process.debugPort + debugPortOffset;
    if (inspectPort > MAX_PORT) inspectPort = inspectPort - MAX_PORT + MIN_PORT - 1;
    debugPortOffset++;
  }
  validatePort(inspectPort);
  return inspectPort;
}

// The execArgv a new worker gets from the cluster's settings.
function workerExecArgv(settings) {
  if (settings.inspectPort === null) throw makeError('ERR_SOCKET_BAD_PORT', 'Port', null, true);
  const execArgv = [...settings.execArgv];
  if (isUsingInspector(settings.execArgv)) execArgv.push(`--inspect-port=${getInspectPort(settings.inspectPort)}`);
  return execArgv;
}

module.exports = { workerExecArgv };

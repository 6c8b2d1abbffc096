'use strict';

// Which Node the bench measures with: `--node <path>`, or `--node-major <N>`: that major's official binary from the
// version matrix's cache (scripts/node-majors.js, which installs it there from the npm registry if it is missing).
// bench.js runs itself again under that Node when it is not the one running, so that both sides and every child run
// on it (children are forked with process.execPath).

const fs = require('node:fs');
const path = require('node:path');

// The Node binary asked for, or null when neither option is given. Throws with what went wrong.
function resolveNode({ node, major }) {
  if (node !== undefined && major !== undefined) throw new Error('give --node or --node-major, not both');
  if (node !== undefined) {
    if (node === '') throw new Error('--node needs the path of a node binary');
    const file = path.resolve(node);
    if (!isExecutable(file)) throw new Error(`--node ${node}: no executable file there`);
    return file;
  }
  if (major !== undefined) {
    if (!/^\d+$/.test(major))
      throw new Error(`--node-major needs a major version number, got ${JSON.stringify(major)}`);
    const { ensureNode } = require('../scripts/node-majors');
    try {
      return ensureNode(Number(major));
    } catch (err) {
      throw new Error(`Node ${major}: ${err.message}; or give a binary with --node <path>`);
    }
  }
  return null;
}

function isExecutable(file) {
  try {
    fs.accessSync(file, fs.constants.X_OK);
    return fs.statSync(file).isFile();
  } catch {
    return false;
  }
}

// Whether `file` is the binary running now.
function isRunning(file) {
  const real = (f) => {
    try {
      return fs.realpathSync(f);
    } catch {
      return f;
    }
  };
  return real(file) === real(process.execPath);
}

module.exports = { resolveNode, isRunning };

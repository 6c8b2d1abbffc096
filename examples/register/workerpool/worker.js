'use strict';

// pipeline.js's worker: the two stages.
const workerpool = require('workerpool');

const LINE = /^(\S+) \S+ \S+ \[([^\]]+)\] "(\S+) (\S+) [^"]*" (\d{3}) (\d+)$/;

function parse(line) {
  const m = LINE.exec(line);
  if (!m) throw new Error(`not a log line: ${line}`);
  return { ip: m[1], time: m[2], method: m[3], path: m[4], status: Number(m[5]), bytes: Number(m[6]) };
}

function score(record) {
  return (record.status >= 500 ? 100 : 1) + (record.method === 'GET' ? 0 : 2) + Math.ceil(record.bytes / 1000);
}

workerpool.worker({ parse, score });

'use strict';

// Where a bus message's time goes, for the latency scenario's hop rows: while on, this process notes the moment its
// ioredis is handed a PUBLISH to a channel ending in `:<topic>` and the moment one of its subscriber connections
// emits a message from such a channel (process.hrtime: one clock for every process of the machine). ioredis is
// wrapped only while tracing, so that the timed trips run on the untouched library.

const Redis = require('ioredis');

const SENT = Symbol('stamped');
const now = () => Number(process.hrtime.bigint()) / 1e3;

let saved = null;

function start(topic) {
  if (saved !== null) stop();
  const stamps = { write: [], read: [] };
  const proto = Redis.prototype;
  saved = { stamps, sendCommand: proto.sendCommand, emit: Object.hasOwn(proto, 'emit') ? proto.emit : undefined };
  const { sendCommand, emit } = proto;
  const suffix = `:${topic}`;
  proto.sendCommand = function (command, stream) {
    if (command.name === 'publish' && !command[SENT] && String(command.args[0]).endsWith(suffix)) {
      command[SENT] = true;
      stamps.write.push(now());
    }
    return sendCommand.call(this, command, stream);
  };
  proto.emit = function (event, channel, ...rest) {
    if (event === 'message' && String(channel).endsWith(suffix)) stamps.read.push(now());
    return emit.call(this, event, channel, ...rest);
  };
}

// Stops tracing: the stamps noted, { write, read } (µs).
function stop() {
  if (saved === null) return { write: [], read: [] };
  const proto = Redis.prototype;
  proto.sendCommand = saved.sendCommand;
  if (saved.emit === undefined) delete proto.emit;
  else proto.emit = saved.emit;
  const { stamps } = saved;
  saved = null;
  return stamps;
}

module.exports = { start, stop, now };

'use strict';

// The wire codecs (Node's lib/internal/child_process/serialization.js). Rust frames the bytes; JS turns values into
// bytes and back, since JSON and V8's serializer are native in V8 and the fastest way to JS objects. Both codecs
// have the same shape: encode(message) gives one frame, join(frames) what one native write takes.

// A json frame is JSON.stringify's string as it is: the native write adds each write's last newline, so a big
// message is never concatenated into a string V8 must copy whole to flatten before it can be written.
const json = {
  encode(message) {
    return JSON.stringify(message);
  },
  join(parts) {
    return parts.length === 1 ? parts[0] : parts.join('\n');
  },
};

// V8's format with Node's host objects (lib/v8_wire.js), loaded on first use as Node loads its serialization
// lazily: a json-only process does not load node:v8.
let wire;
const v8Wire = () => wire ?? (wire = require('./v8_wire'));

const advanced = {
  // One frame: a 4-byte big-endian length, then the serializer's header and value. `shared`: the frame will be
  // queued on several channels (lib/v8_wire.js then keeps its bytes until they are all gone).
  encode(message, shared = false) {
    return v8Wire().encode(message, shared);
  },
  join(parts) {
    return v8Wire().join(parts);
  },
};

// Reads one value from an advanced frame: buf[start, end) holds the serializer's header and value (`start` is 4
// when `buf` is one frame with its length prefix).
function decodeFrame(buf, start, end = buf.length) {
  return v8Wire().decode(buf, start, end);
}

function codecFor(serialization) {
  return serialization === 'advanced' ? advanced : json;
}

module.exports = { json, advanced, codecFor, decodeFrame };

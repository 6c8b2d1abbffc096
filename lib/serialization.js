'use strict';

// The wire codecs (Node's lib/internal/child_process/serialization.js). Rust frames the bytes; JS turns values into
// bytes and back, since JSON and V8's serializer are native in V8 and the fastest way to JS objects. Both codecs
// have the same shape: encode(message) gives one frame, join(frames) what one native write takes.

const { Buffer } = require('node:buffer');

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

// Node's ChildProcessSerializer: V8's format, with ArrayBufferViews as host objects (so a Buffer arrives as a
// Buffer) and other native objects written as plain objects, as JSON would. Made on first use, as Node loads its
// serialization lazily: a json-only process does not load node:v8.
const kArrayBufferViewTag = 0;
const kNotArrayBufferViewTag = 1;

let v8Classes;
function v8Codec() {
  if (v8Classes) return v8Classes;
  const v8 = require('node:v8');
  class ChildProcessSerializer extends v8.DefaultSerializer {
    _writeHostObject(object) {
      if (ArrayBuffer.isView(object)) {
        this.writeUint32(kArrayBufferViewTag);
        return super._writeHostObject(object);
      }
      this.writeUint32(kNotArrayBufferViewTag);
      this.writeValue({ ...object });
    }
  }
  class ChildProcessDeserializer extends v8.DefaultDeserializer {
    _readHostObject() {
      const tag = this.readUint32();
      if (tag === kArrayBufferViewTag) return super._readHostObject();
      if (tag !== kNotArrayBufferViewTag) throw new Error(`unknown host object tag ${tag}`);
      return this.readValue();
    }
  }
  v8Classes = { ChildProcessSerializer, ChildProcessDeserializer };
  return v8Classes;
}

// Reads one value from a frame; `skip` is 4 when `frame` still starts with its length prefix.
function decodeFrame(frame, skip) {
  const des = new (v8Codec().ChildProcessDeserializer)(frame.subarray(skip));
  des.readHeader();
  return des.readValue();
}

const advanced = {
  // One frame: a 4-byte big-endian length, then the serializer's header and value.
  encode(message) {
    const ser = new (v8Codec().ChildProcessSerializer)();
    ser.writeRawBytes(Buffer.allocUnsafe(4));
    ser.writeHeader();
    ser.writeValue(message);
    const frame = ser.releaseBuffer();
    frame.writeUInt32BE(frame.length - 4, 0);
    return frame;
  },
  join(parts) {
    return parts.length === 1 ? parts[0] : Buffer.concat(parts);
  },
};

function codecFor(serialization) {
  return serialization === 'advanced' ? advanced : json;
}

module.exports = { json, advanced, codecFor, decodeFrame };

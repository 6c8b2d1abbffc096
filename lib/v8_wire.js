'use strict';

// The advanced codec: V8's serialization format (v8/src/objects/value-serializer.cc) with Node's host objects for
// ArrayBufferViews (its ChildProcessSerializer, lib/internal/child_process/serialization.js; Node 24.22 and 26.12 do
// the same in C++, src/node_ipc_serdes.cc). Messages are mostly plain objects, arrays, strings, numbers, Buffers,
// Dates, Maps and Sets; those are written and read here in JS, which V8 compiles to a tight loop, straight into one
// buffer shared by the tick's messages. A v8.Serializer per message costs several JS <-> C++ crossings and an external
// ArrayBuffer for the garbage collector to find; here one message costs a view onto the shared buffer. Any other
// value (a class instance, a BigInt, an Error, a Proxy, a typed array V8 writes another way...) goes through V8's
// own serializer, whole, as before.
//
// The bytes are V8's: the header is read from the running V8 (its version differs across majors), and a self-check
// at first use compares this encoder with V8's serializer on every value kind, falling back to V8 alone if they ever
// differ; the tests compare them with node:child_process's own bytes on each major. Where V8 picks an encoding by how
// it holds a value rather than by the value, JS cannot see which, and this codec picks the usual one: V8 writes an
// integer as a double when it holds it in a heap number (a property that once held a fraction, an array that passed
// through being all doubles or was made where such arrays were made, a result of arithmetic in doubles), an array
// with holes it never had as sparse (one made by `new Array(n)`), and a Latin-1 string it holds in two bytes a
// char (a slice of a longer string) in two bytes. Here an integer is an int32 unless it sits in an array of numbers
// with a fraction among them (as JSON.parse, literals and map() make such arrays), an array is dense, a string one
// byte a char whenever it can be. Either way the receiver reads the same value.

const { Buffer } = require('node:buffer');
const v8 = require('node:v8');
const { isProxy, isDate, isMap, isSet, isArgumentsObject, isModuleNamespaceObject } = require('node:util').types;

// Methods called on values, taken at load as Node's primordials are, so that a patched prototype changes nothing.
const uncurryThis = Function.prototype.bind.bind(Function.prototype.call);
const ObjectPrototype = Object.prototype;
const ArrayPrototype = Array.prototype;
const DatePrototype = Date.prototype;
const MapPrototype = Map.prototype;
const SetPrototype = Set.prototype;
const { getPrototypeOf, keys: objectKeys, defineProperty } = Object;
const { isArray } = Array;
const { isView } = ArrayBuffer;
const DatePrototypeGetTime = uncurryThis(Date.prototype.getTime);
const MapPrototypeForEach = uncurryThis(Map.prototype.forEach);
const MapPrototypeSet = uncurryThis(Map.prototype.set);
const SetPrototypeForEach = uncurryThis(Set.prototype.forEach);
const SetPrototypeAdd = uncurryThis(Set.prototype.add);
const ArrayPrototypeSlice = uncurryThis(Array.prototype.slice);
const TypedArrayPrototypeGetToStringTag = uncurryThis(
  Object.getOwnPropertyDescriptor(getPrototypeOf(Uint8Array.prototype), Symbol.toStringTag).get,
);
const TypedArrayPrototypeGetBuffer = uncurryThis(
  Object.getOwnPropertyDescriptor(getPrototypeOf(Uint8Array.prototype), 'buffer').get,
);
const TypedArrayPrototypeGetByteOffset = uncurryThis(
  Object.getOwnPropertyDescriptor(getPrototypeOf(Uint8Array.prototype), 'byteOffset').get,
);
const TypedArrayPrototypeGetByteLength = uncurryThis(
  Object.getOwnPropertyDescriptor(getPrototypeOf(Uint8Array.prototype), 'byteLength').get,
);
const BufferPrototypeLatin1Write = uncurryThis(Buffer.prototype.latin1Write);
const BufferPrototypeUcs2Write = uncurryThis(Buffer.prototype.ucs2Write);
const BufferPrototypeLatin1Slice = uncurryThis(Buffer.prototype.latin1Slice);
const BufferPrototypeUcs2Slice = uncurryThis(Buffer.prototype.ucs2Slice);

// V8's SerializationTag values used here.
const T_PADDING = 0x00;
const T_UNDEFINED = 0x5f; // _
const T_NULL = 0x30; // 0
const T_TRUE = 0x54; // T
const T_FALSE = 0x46; // F
const T_INT32 = 0x49; // I
const T_UINT32 = 0x55; // U
const T_DOUBLE = 0x4e; // N
const T_ONE_BYTE_STRING = 0x22; // "
const T_TWO_BYTE_STRING = 0x63; // c
const T_OBJECT_REFERENCE = 0x5e; // ^
const T_BEGIN_OBJECT = 0x6f; // o
const T_END_OBJECT = 0x7b; // {
const T_BEGIN_DENSE_ARRAY = 0x41; // A
const T_END_DENSE_ARRAY = 0x24; // $
const T_BEGIN_SPARSE_ARRAY = 0x61; // a
const T_END_SPARSE_ARRAY = 0x40; // @
const T_DATE = 0x44; // D
const T_BEGIN_MAP = 0x3b; // ;
const T_END_MAP = 0x3a; // :
const T_BEGIN_SET = 0x27; // '
const T_END_SET = 0x2c; // ,
const T_HOST_OBJECT = 0x5c; // \

// Node's host object tags (ChildProcessSerializer) and its view type indices (lib/v8.js arrayBufferViewTypes; 10 is
// a Buffer). DataView (9) and Float16Array (13) are left to V8's serializer.
const kArrayBufferViewTag = 0;
const kNotArrayBufferViewTag = 1;
const kBufferIndex = 10;
const VIEW_INDEX = {
  __proto__: null,
  Int8Array: 0,
  Uint8Array: 1,
  Uint8ClampedArray: 2,
  Int16Array: 3,
  Uint16Array: 4,
  Int32Array: 5,
  Uint32Array: 6,
  Float32Array: 7,
  Float64Array: 8,
  BigInt64Array: 11,
  BigUint64Array: 12,
};
const VIEW_TYPES = [
  Int8Array,
  Uint8Array,
  Uint8ClampedArray,
  Int16Array,
  Uint16Array,
  Int32Array,
  Uint32Array,
  Float32Array,
  Float64Array,
  null,
  null,
  BigInt64Array,
  BigUint64Array,
];

// What the running V8 writes before a value (0xFF and its format version), and its Smi range: V8 writes an integer
// it holds as a Smi as an int32, any other number as a double (32-bit Smis here, 31-bit with pointer compression).
const probe = v8.serialize(0);
const HEADER = Uint8Array.prototype.slice.call(probe, 0, probe.length - 2);
const SMI_MAX = v8.serialize(2 ** 30)[HEADER.length] === T_INT32 ? 2 ** 31 - 1 : 2 ** 30 - 1;
const SMI_MIN = -SMI_MAX - 1;

// Thrown (never beyond this module) where a value, or a frame, is not one of the shapes handled here: the message
// then goes through V8's serializer or deserializer, whole.
const UNSUPPORTED = Symbol('v8_wire: unsupported');

// ---------------------------------------------------------------------------------------------------------------
// V8's own serializer (Node's ChildProcessSerializer), for what the JS codec leaves to it.

let v8Classes;
function v8Codec() {
  if (v8Classes) return v8Classes;
  class ChildProcessSerializer extends v8.DefaultSerializer {
    _writeHostObject(object) {
      if (isView(object)) {
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

// One frame by V8: a 4-byte big-endian length, then the serializer's header and value.
function v8Encode(message) {
  const ser = new (v8Codec().ChildProcessSerializer)();
  ser.writeRawBytes(Buffer.allocUnsafe(4));
  ser.writeHeader();
  ser.writeValue(message);
  const frame = ser.releaseBuffer();
  frame.writeUInt32BE(frame.length - 4, 0);
  return frame;
}

function v8Decode(buf, start, end) {
  const des = new (v8Codec().ChildProcessDeserializer)(buf.subarray(start, end));
  des.readHeader();
  return des.readValue();
}

// ---------------------------------------------------------------------------------------------------------------
// Encoder. Frames are written one after another into a slab; each send gets a view of its frame, and the views of
// a tick's sends, being adjacent, join into one view without a copy. join() is the channel's flush handing them to
// the native write, which sends them or copies what it cannot send at once: once every frame written into the slab
// has been joined, nothing refers to its bytes any more and the next frame starts again at its beginning, so a
// steady stream (or a large message sent again and again) writes into memory already faulted in. A frame encoded to
// be shared (one message fanned out to many channels: several outboxes hold it) keeps its slab from being reused;
// so does a frame that is never joined (a handle's envelope, written apart). A full or kept slab is left to the
// views that hold it and a new one begun.

const SLAB_SIZE = 256 * 1024;
// A slab grown for a large message is kept for the next one while large messages keep coming, and let go after
// this long without one (as the native side lets its memfd go).
const LARGE_SLAB_IDLE_MS = 2000;
// Objects in a message are found again (V8 writes a second occurrence as a reference) by a scan of this list while
// it is short, then by a Map.
const SEEN_SCAN = 32;

let slab = Buffer.allocUnsafeSlow(SLAB_SIZE);
let pos = 0;
// Where the frame being written begins in the slab.
let frameStart = 0;
// Frames written into this slab and not joined yet, and whether one of them is shared.
let outstanding = 0;
let pinned = false;
// When a frame last needed a slab larger than SLAB_SIZE, and the timer that lets such a slab go.
let lastLarge = 0;
let largeTimer = null;
let seen = [];
let seenMap = null;
// True while a message is being written: a getter that sends from inside it gets V8's serializer instead.
let busy = false;
// Scratch for V8's doubles (host byte order, as V8 writes them).
const f64 = new Float64Array(1);
const f64Bytes = new Uint8Array(f64.buffer);

// Makes room for `n` more bytes of the frame being written, moving it to a new slab if needed.
function ensure(n) {
  if (pos + n <= slab.length) return;
  const used = pos - frameStart;
  const size = used + n + (used + n) / 8 + 4096;
  const next = Buffer.allocUnsafeSlow(Math.max(SLAB_SIZE, size));
  slab.copy(next, 0, frameStart, pos);
  slab = next;
  frameStart = 0;
  pos = used;
  outstanding = 0;
  pinned = false;
}

// The slab is (or will be) larger than SLAB_SIZE: let it go once large frames stop.
function large() {
  lastLarge = Date.now();
  if (largeTimer === null) {
    largeTimer = setTimeout(dropLargeSlab, LARGE_SLAB_IDLE_MS);
    largeTimer.unref();
  }
}

function dropLargeSlab() {
  largeTimer = null;
  if (slab.length <= SLAB_SIZE) return;
  const idle = Date.now() - lastLarge;
  if (idle < LARGE_SLAB_IDLE_MS) {
    largeTimer = setTimeout(dropLargeSlab, LARGE_SLAB_IDLE_MS - idle);
    largeTimer.unref();
    return;
  }
  // Views of it still queued keep it until they are written.
  slab = Buffer.allocUnsafeSlow(SLAB_SIZE);
  pos = 0;
  outstanding = 0;
  pinned = false;
}

// Starts a frame: at the slab's beginning when nothing refers to its bytes any more.
function beginFrame() {
  if (outstanding === 0 && !pinned) pos = 0;
  frameStart = pos;
}

function writeVarint(v) {
  while (v >= 0x80) {
    slab[pos++] = (v & 0x7f) | 0x80;
    v >>>= 7;
  }
  slab[pos++] = v;
}

function varintSize(v) {
  let n = 1;
  while (v >= 0x80) {
    v >>>= 7;
    n++;
  }
  return n;
}

function writeDouble(v) {
  f64[0] = v;
  slab[pos++] = T_DOUBLE;
  for (let i = 0; i < 8; i++) slab[pos++] = f64Bytes[i];
}

function isSmi(v) {
  return (v | 0) === v && v <= SMI_MAX && v >= SMI_MIN && (v !== 0 || 1 / v > 0);
}

function writeNumber(v) {
  if (isSmi(v)) {
    slab[pos++] = T_INT32;
    writeVarint(((v << 1) ^ (v >> 31)) >>> 0);
  } else {
    writeDouble(v);
  }
}

// A string as V8 writes a flat one: one byte a char if every char fits (Latin-1), else UTF-16 aligned to an even
// offset from the start of the frame (V8 pads before the tag; its buffer starts with Node's length prefix).
function writeString(s) {
  const len = s.length;
  if (len <= 32) {
    ensure(2 * len + 12);
    const start = pos;
    slab[pos++] = T_ONE_BYTE_STRING;
    slab[pos++] = len;
    for (let i = 0; i < len; i++) {
      const c = s.charCodeAt(i);
      if (c > 0xff) {
        pos = start;
        return writeTwoByte(s, len);
      }
      slab[pos++] = c;
    }
    return;
  }
  if (Buffer.byteLength(s, 'utf8') !== len) {
    for (let i = 0; i < len; i++) {
      if (s.charCodeAt(i) > 0xff) {
        ensure(2 * len + 12);
        return writeTwoByte(s, len);
      }
    }
  }
  ensure(len + 12);
  slab[pos++] = T_ONE_BYTE_STRING;
  writeVarint(len);
  pos += BufferPrototypeLatin1Write(slab, s, pos, len);
}

function writeTwoByte(s, len) {
  const bytes = 2 * len;
  if ((pos - frameStart + 1 + varintSize(bytes)) & 1) slab[pos++] = T_PADDING;
  slab[pos++] = T_TWO_BYTE_STRING;
  writeVarint(bytes);
  pos += BufferPrototypeUcs2Write(slab, s, pos, bytes);
}

function writeValue(v) {
  ensure(16);
  switch (typeof v) {
    case 'string':
      return writeString(v);
    case 'number':
      return writeNumber(v);
    case 'boolean':
      slab[pos++] = v ? T_TRUE : T_FALSE;
      return;
    case 'undefined':
      slab[pos++] = T_UNDEFINED;
      return;
    case 'object':
      if (v === null) {
        slab[pos++] = T_NULL;
        return;
      }
      return writeObject(v);
    default:
      // BigInt; symbols and functions, which V8 refuses with its own error.
      throw UNSUPPORTED;
  }
}

// The id V8 gave `o` in this message (its objects are numbered in the order they are first written), or -1.
function idOf(o) {
  if (seenMap !== null) {
    const id = seenMap.get(o);
    return id === undefined ? -1 : id;
  }
  for (let i = 0; i < seen.length; i++) if (seen[i] === o) return i;
  return -1;
}

function addSeen(o) {
  if (seenMap !== null) {
    seenMap.set(o, seenMap.size);
  } else if (seen.length < SEEN_SCAN) {
    seen.push(o);
  } else {
    seenMap = new Map();
    for (let i = 0; i < seen.length; i++) seenMap.set(seen[i], i);
    seenMap.set(o, seen.length);
  }
}

function writeObject(o) {
  const id = idOf(o);
  if (id !== -1) {
    slab[pos++] = T_OBJECT_REFERENCE;
    writeVarint(id);
    return;
  }
  if (isView(o)) {
    addSeen(o);
    return writeView(o);
  }
  // A Proxy's traps and an arguments object are V8's to refuse.
  if (isProxy(o)) throw UNSUPPORTED;
  const proto = getPrototypeOf(o);
  if (proto === ObjectPrototype) {
    if (isArgumentsObject(o)) throw UNSUPPORTED;
    addSeen(o);
    return writeProperties(o, objectKeys(o));
  }
  if (proto === ArrayPrototype && isArray(o)) {
    addSeen(o);
    return writeArray(o);
  }
  if (proto === DatePrototype && isDate(o)) {
    addSeen(o);
    ensure(9);
    slab[pos++] = T_DATE;
    f64[0] = DatePrototypeGetTime(o);
    for (let i = 0; i < 8; i++) slab[pos++] = f64Bytes[i];
    return;
  }
  if (proto === MapPrototype && isMap(o)) {
    addSeen(o);
    return writeCollection(o, T_BEGIN_MAP, T_END_MAP, MapPrototypeForEach);
  }
  if (proto === SetPrototype && isSet(o)) {
    addSeen(o);
    return writeCollection(o, T_BEGIN_SET, T_END_SET, SetPrototypeForEach);
  }
  if (proto === null && !isModuleNamespaceObject(o)) {
    addSeen(o);
    return writeProperties(o, objectKeys(o));
  }
  throw UNSUPPORTED;
}

// A plain object: its own enumerable string-keyed properties in order, array indices first and written as
// numbers, as V8 does.
function writeProperties(o, keys) {
  slab[pos++] = T_BEGIN_OBJECT;
  const n = keys.length;
  for (let i = 0; i < n; i++) {
    writeKey(keys[i]);
    writeValue(o[keys[i]]);
  }
  ensure(6);
  slab[pos++] = T_END_OBJECT;
  writeVarint(n);
}

function writeKey(key) {
  const c = key.charCodeAt(0);
  if (c >= 0x30 && c <= 0x39) {
    // An array index (a canonical integer below 2 ** 32 - 1) is a number in V8's key list.
    const n = Number(key);
    if (n < 4294967295 && `${n >>> 0}` === key) {
      ensure(16);
      return writeNumber(n);
    }
  }
  writeString(key);
}

// An array as V8 writes a packed one: its length, its elements, its other properties (none here), their count and
// the length again. One with holes or named properties is left to V8 (it writes those sparse, or with the extra
// properties). A number array with a non-int32 in it is written all in doubles, as V8 holds such an array.
//
// The elements are read from a copy: optimized code that has met arrays of several element kinds at one load moves
// the array it reads to the most general kind (an array of doubles to one of boxed numbers), which would slow the
// sender's own code on its array afterwards. The builtin slice copies it as it is, and only the copy is read.
function writeArray(a) {
  const len = a.length;
  if (objectKeys(a).length !== len) throw UNSUPPORTED;
  const list = ArrayPrototypeSlice(a);
  slab[pos++] = T_BEGIN_DENSE_ARRAY;
  writeVarint(len);
  let doubles = len > 0;
  let fraction = false;
  for (let i = 0; i < len && doubles; i++) {
    const v = list[i];
    if (typeof v !== 'number') doubles = false;
    else if (!fraction && !isSmi(v)) fraction = true;
  }
  if (doubles && fraction) {
    ensure(9 * len);
    for (let i = 0; i < len; i++) writeDouble(list[i]);
  } else {
    for (let i = 0; i < len; i++) {
      const v = list[i];
      if (v === undefined && !(i in a)) throw UNSUPPORTED;
      writeValue(v);
    }
  }
  ensure(12);
  slab[pos++] = T_END_DENSE_ARRAY;
  writeVarint(0);
  writeVarint(len);
}

// A Map or Set: its entries as they are when it is reached (V8 copies its table first), then the count of values.
let entries = [];
function collect(value, key) {
  entries.push(key, value);
}
function collectValue(value) {
  entries.push(value);
}

function writeCollection(c, begin, end, forEach) {
  const mine = entries;
  entries = [];
  forEach(c, begin === T_BEGIN_MAP ? collect : collectValue);
  const list = entries;
  entries = mine;
  slab[pos++] = begin;
  for (let i = 0; i < list.length; i++) writeValue(list[i]);
  ensure(6);
  slab[pos++] = end;
  writeVarint(list.length);
}

// Node's host object for an ArrayBufferView: tag, type index (10 for a Buffer), byte length, bytes.
function writeView(view) {
  const name = TypedArrayPrototypeGetToStringTag(view);
  // A DataView (no tag) is V8's to write.
  if (name === undefined) throw UNSUPPORTED;
  const index = view.constructor === Buffer ? kBufferIndex : VIEW_INDEX[name];
  if (index === undefined) throw UNSUPPORTED;
  const length = TypedArrayPrototypeGetByteLength(view);
  ensure(length + 16);
  slab[pos++] = T_HOST_OBJECT;
  slab[pos++] = kArrayBufferViewTag;
  slab[pos++] = index;
  writeVarint(length);
  if (length > 0) {
    slab.set(new Uint8Array(TypedArrayPrototypeGetBuffer(view), TypedArrayPrototypeGetByteOffset(view), length), pos);
    pos += length;
  }
}

function resetSeen() {
  seen.length = 0;
  seenMap = null;
}

// Encodes one message as a frame (the 4-byte big-endian length, V8's header, the value). The Buffer returned is a
// view of the slab, valid until it is passed to join(); with `shared`, for as long as it is referenced.
function encode(message, shared = false) {
  if (!fastPath() || busy) return v8Encode(message);
  busy = true;
  beginFrame();
  ensure(4 + HEADER.length + 16);
  pos += 4;
  for (let i = 0; i < HEADER.length; i++) slab[pos++] = HEADER[i];
  let ok = false;
  try {
    writeValue(message);
    ok = true;
  } catch (err) {
    if (err !== UNSUPPORTED) throw err;
  } finally {
    busy = false;
    resetSeen();
    if (!ok) pos = frameStart;
  }
  if (!ok) return v8Encode(message);
  const length = pos - frameStart - 4;
  slab[frameStart] = length >>> 24;
  slab[frameStart + 1] = length >>> 16;
  slab[frameStart + 2] = length >>> 8;
  slab[frameStart + 3] = length;
  outstanding++;
  if (shared) pinned = true;
  if (length > SLAB_SIZE / 2) large();
  return slab.subarray(frameStart, pos);
}

// One Buffer of a tick's frames for one native write, which must take it at once: a view when they lie one after
// another in one slab. The frames are done with once the write returns.
function join(parts) {
  const first = parts[0];
  const ab = first.buffer;
  const current = slab.buffer;
  let end = first.byteOffset + first.length;
  let contiguous = true;
  if (ab === current) outstanding--;
  for (let i = 1; i < parts.length; i++) {
    const part = parts[i];
    if (part.buffer === current) outstanding--;
    if (part.buffer !== ab || part.byteOffset !== end) contiguous = false;
    end += part.length;
  }
  if (parts.length === 1) return first;
  if (!contiguous) return Buffer.concat(parts);
  return Buffer.from(ab, first.byteOffset, end - first.byteOffset);
}

// ---------------------------------------------------------------------------------------------------------------
// Decoder: the same shapes back, as V8's deserializer and Node's host object reader make them (a Buffer is a view
// into the bytes read, an unaligned typed array a copy). Anything else, or anything it finds wrong (it checks what
// V8 checks: bounds, counts, references), it leaves to V8's deserializer, which reads it or throws its own error.

let rbuf;
let rpos = 0;
let rend = 0;
let robjs = [];
// Recently read short one-byte strings, by a hash of their bytes: messages repeat their keys, and a hit costs
// neither a new string nor its internalization when it becomes a key.
const STRING_CACHE_BITS = 10;
const STRING_CACHE_MAX = 24;
const stringCache = new Array(1 << STRING_CACHE_BITS).fill('');

function readVarint() {
  if (rpos < rend && rbuf[rpos] < 0x80) return rbuf[rpos++];
  let v = 0;
  for (let shift = 0; shift < 35; shift += 7) {
    if (rpos >= rend) throw UNSUPPORTED;
    const b = rbuf[rpos++];
    if (shift === 28 && b > 0x0f) throw UNSUPPORTED;
    v += (b & 0x7f) * 2 ** shift;
    if (b < 0x80) return v;
  }
  throw UNSUPPORTED;
}

function readDouble() {
  if (rpos + 8 > rend) throw UNSUPPORTED;
  for (let i = 0; i < 8; i++) f64Bytes[i] = rbuf[rpos++];
  return f64[0];
}

// The next tag, padding skipped, without taking it.
function peekTag() {
  while (rpos < rend && rbuf[rpos] === T_PADDING) rpos++;
  if (rpos >= rend) throw UNSUPPORTED;
  return rbuf[rpos];
}

function readOneByteString() {
  const len = readVarint();
  const start = rpos;
  if (len > rend - start) throw UNSUPPORTED;
  rpos += len;
  if (len > STRING_CACHE_MAX) return BufferPrototypeLatin1Slice(rbuf, start, rpos);
  let h = len;
  for (let i = start; i < rpos; i++) h = (Math.imul(h, 31) + rbuf[i]) | 0;
  const slot = (h ^ (h >>> 15)) & ((1 << STRING_CACHE_BITS) - 1);
  const cached = stringCache[slot];
  if (cached.length === len) {
    let same = true;
    for (let i = 0; i < len; i++) {
      if (cached.charCodeAt(i) !== rbuf[start + i]) {
        same = false;
        break;
      }
    }
    if (same) return cached;
  }
  const s = BufferPrototypeLatin1Slice(rbuf, start, rpos);
  stringCache[slot] = s;
  return s;
}

function readTwoByteString() {
  const bytes = readVarint();
  if (bytes > rend - rpos || bytes & 1) throw UNSUPPORTED;
  const start = rpos;
  rpos += bytes;
  return BufferPrototypeUcs2Slice(rbuf, start, rpos);
}

function readValue() {
  const tag = peekTag();
  rpos++;
  switch (tag) {
    case T_INT32: {
      const u = readVarint();
      return (u >>> 1) ^ -(u & 1);
    }
    case T_UINT32:
      return readVarint();
    case T_DOUBLE:
      return readDouble();
    case T_ONE_BYTE_STRING:
      return readOneByteString();
    case T_TWO_BYTE_STRING:
      return readTwoByteString();
    case T_UNDEFINED:
      return undefined;
    case T_NULL:
      return null;
    case T_TRUE:
      return true;
    case T_FALSE:
      return false;
    case T_BEGIN_OBJECT: {
      const o = {};
      robjs.push(o);
      readProperties(o, T_END_OBJECT);
      return o;
    }
    case T_BEGIN_DENSE_ARRAY:
      return readDenseArray();
    case T_BEGIN_SPARSE_ARRAY:
      return readSparseArray();
    case T_DATE: {
      const d = new Date(readDouble());
      robjs.push(d);
      return d;
    }
    case T_BEGIN_MAP:
      return readMap();
    case T_BEGIN_SET:
      return readSet();
    case T_HOST_OBJECT:
      return readHostObject();
    case T_OBJECT_REFERENCE: {
      const id = readVarint();
      if (id >= robjs.length || robjs[id] === undefined) throw UNSUPPORTED;
      return robjs[id];
    }
    default:
      throw UNSUPPORTED;
  }
}

// Properties up to the end tag, defined as V8 defines them (own data properties: an accessor or a read-only
// property up the prototype chain changes nothing); checks their count. Keys are strings or numbers.
function readProperties(o, endTag) {
  const proto = getPrototypeOf(o);
  let n = 0;
  while (peekTag() !== endTag) {
    const key = readValue();
    const type = typeof key;
    if (type !== 'string' && type !== 'number') throw UNSUPPORTED;
    const value = readValue();
    if (type === 'string' && key in proto) {
      defineProperty(o, key, { value, writable: true, enumerable: true, configurable: true });
    } else {
      o[key] = value;
    }
    n++;
  }
  rpos++;
  if (readVarint() !== n) throw UNSUPPORTED;
}

function readDenseArray() {
  const len = readVarint();
  if (len > rend - rpos) throw UNSUPPORTED;
  const a = [];
  robjs.push(a);
  for (let i = 0; i < len; i++) a.push(readValue());
  // Named properties after the elements: V8's writer puts them there; rare enough for V8's reader.
  if (peekTag() !== T_END_DENSE_ARRAY) throw UNSUPPORTED;
  rpos++;
  if (readVarint() !== 0 || readVarint() !== len) throw UNSUPPORTED;
  return a;
}

function readSparseArray() {
  const len = readVarint();
  if (len > 0xfffffffe) throw UNSUPPORTED;
  const a = [];
  a.length = len;
  robjs.push(a);
  let n = 0;
  while (peekTag() !== T_END_SPARSE_ARRAY) {
    const key = readValue();
    if (typeof key !== 'number' || key !== key >>> 0 || key >= len) throw UNSUPPORTED;
    a[key] = readValue();
    n++;
  }
  rpos++;
  if (readVarint() !== n || readVarint() !== len) throw UNSUPPORTED;
  return a;
}

function readMap() {
  const m = new Map();
  robjs.push(m);
  let n = 0;
  while (peekTag() !== T_END_MAP) {
    const key = readValue();
    MapPrototypeSet(m, key, readValue());
    n += 2;
  }
  rpos++;
  if (readVarint() !== n) throw UNSUPPORTED;
  return m;
}

function readSet() {
  const s = new Set();
  robjs.push(s);
  let n = 0;
  while (peekTag() !== T_END_SET) {
    SetPrototypeAdd(s, readValue());
    n++;
  }
  rpos++;
  if (readVarint() !== n) throw UNSUPPORTED;
  return s;
}

function readHostObject() {
  const id = robjs.length;
  robjs.push(undefined);
  if (readVarint() !== kArrayBufferViewTag) throw UNSUPPORTED;
  const index = readVarint();
  const length = readVarint();
  if (length > rend - rpos) throw UNSUPPORTED;
  const offset = rbuf.byteOffset + rpos;
  rpos += length;
  let view;
  if (index === kBufferIndex) {
    view = Buffer.from(rbuf.buffer, offset, length);
  } else {
    const Type = index < VIEW_TYPES.length ? VIEW_TYPES[index] : null;
    if (Type === null) throw UNSUPPORTED;
    const size = Type.BYTES_PER_ELEMENT;
    if (length % size !== 0) throw UNSUPPORTED;
    if (offset % size === 0) {
      view = new Type(rbuf.buffer, offset, length / size);
    } else {
      const copy = new Uint8Array(length);
      copy.set(new Uint8Array(rbuf.buffer, offset, length));
      view = new Type(copy.buffer, 0, length / size);
    }
  }
  robjs[id] = view;
  return view;
}

// Reads the message of a frame whose V8 bytes (header and value, after the length prefix) are buf[start, end).
function decode(buf, start, end) {
  if (fastPath() && end - start > HEADER.length) {
    let ok = true;
    for (let i = 0; i < HEADER.length; i++) if (buf[start + i] !== HEADER[i]) ok = false;
    if (ok) {
      rbuf = buf;
      rpos = start + HEADER.length;
      rend = end;
      try {
        return readValue();
      } catch {
        // Not a shape read here, or not valid: V8 decides.
      } finally {
        rbuf = undefined;
        robjs.length = 0;
      }
    }
  }
  return v8Decode(buf, start, end);
}

// ---------------------------------------------------------------------------------------------------------------
// The self-check: at first use, each kind of value is written here and by V8, and read back here; a difference
// turns the JS codec off for the life of the process and every message goes through V8.

let fast;
function fastPath() {
  if (fast === undefined) fast = selfCheck();
  return fast;
}

function samples() {
  const shared = { x: 1 };
  const circular = { name: 'c' };
  circular.self = circular;
  return [
    0,
    -1,
    SMI_MAX,
    SMI_MIN,
    SMI_MAX + 1,
    -0,
    0.5,
    NaN,
    -Infinity,
    true,
    false,
    null,
    undefined,
    '',
    'hello',
    'é',
    'x'.repeat(40),
    'ü'.repeat(40),
    'a\u0100',
    '\u{1F600}',
    '\u0100'.repeat(40),
    { a: 1, b: 'two', c: [3], d: { e: null } },
    { 0: 'zero', 7: 'seven', k: 'v' },
    { é: 1, 'a\u0100': 2 },
    [1, 'a', 2.5, undefined],
    [1.5, 2, 3],
    [],
    [[], {}],
    [shared, shared],
    circular,
    new Date(0),
    new Map([
      [1, 2],
      ['k', { v: [1] }],
    ]),
    new Set(['a', 1, null]),
    Buffer.from('buf'),
    Buffer.alloc(0),
    new Uint8Array([1, 2, 3]),
    new Uint16Array([1, 2]),
    new Float64Array([0.5]),
    new Int32Array(new ArrayBuffer(12), 4, 2),
    { __proto__: null, n: 1 },
    { i: 1, s: 'hello', d: new Date(0), m: new Map([[1, 2]]) },
  ];
}

function selfCheck() {
  fast = false;
  const util = require('node:util');
  try {
    for (const value of samples()) {
      fast = true;
      const mine = encode(value);
      join([mine]);
      fast = false;
      const theirs = v8Encode(value);
      if (!theirs.equals(mine)) return false;
      fast = true;
      const back = decode(mine, 4, mine.length);
      fast = false;
      if (!util.isDeepStrictEqual(back, v8Decode(theirs, 4, theirs.length))) return false;
    }
    return true;
  } catch {
    return false;
  } finally {
    fast = undefined;
  }
}

module.exports = { encode, join, decode, v8Encode, v8Decode, fastPath };

"""A hostile channel peer for the hostile-peer chaos scenario, run by forkline's fork() with execPath python3: it
speaks the wire protocol by hand on fd 3 (as __test__/fixtures/handle-raw.py does) and follows a plan the parent
drew from its seed, read as JSON from stdin: good messages between garbage (bad JSON, bad UTF-8, oversized lines,
bad or oversized V8 frames), fds sent with SCM_RIGHTS (many per message, with a plain message, with a NODE_HANDLE
envelope, with an envelope of a bogus type), envelopes that come without their fd, messages split across writes.

argv: <json|advanced>. Every fd sent is a duplicate of one listening TCP socket on 127.0.0.1. When the plan is
done it shuts down its writing side, reads the parent's answers until EOF and prints one JSON line on stdout:
{"acks": n, "nacks": n, "fds": n} (NODE_HANDLE_ACK and _NACK received, fds sent).
"""
import array
import json
import os
import socket
import struct
import sys
import time

mode = sys.argv[1]
advanced = mode == "advanced"
plan = json.load(sys.stdin)
chan = socket.socket(fileno=3)
chan.setblocking(True)
listener = socket.socket()
listener.bind(("127.0.0.1", 0))
listener.listen(1)


def varint(n):
    out = bytearray()
    while True:
        byte = n & 0x7F
        n >>= 7
        if n:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def v8_value(value):
    """V8's serializer format for the few shapes we send: one-byte strings, small ints, plain objects."""
    if isinstance(value, str):
        raw = value.encode("latin1")
        return b'"' + varint(len(raw)) + raw
    if isinstance(value, int):
        return b"I" + varint((value << 1) ^ (value >> 63))
    if isinstance(value, dict):
        body = b"".join(v8_value(k) + v8_value(v) for k, v in value.items())
        return b"o" + body + b"{" + varint(len(value))
    raise TypeError(value)


def encode(obj):
    if advanced:
        body = b"\xff\x0f" + v8_value(obj)
        return struct.pack(">I", len(body)) + body
    return (json.dumps(obj, separators=(",", ":")) + "\n").encode()


def junk(kind, size):
    if kind == "notjson":
        return b"{not json " + b"x" * size + b"\n"
    if kind == "utf8":
        return b'{"bad":"' + b"\xff\xfe" * max(1, size // 2) + b'"}\n'
    if kind == "binary":
        # No newline inside, no quote-free JSON either: a NUL first never parses.
        body = bytes((i * 131 + 7) % 256 for i in range(size)).replace(b"\n", b" ")
        return b"\x00" + body + b"\n"
    if kind == "big":
        return encode({"s": "big", "pad": "b" * size})
    if kind == "frame-junk":
        # A V8 header and the start of an object that never ends: the deserializer fails on it.
        body = b"\xff\x0fo" + b'"\x01k' * (size % 7)
        return struct.pack(">I", len(body)) + body
    if kind == "frame-big":
        body = b"\xff\x0f" + v8_value("z" * size)
        return struct.pack(">I", len(body)) + body
    raise ValueError(kind)


fds_sent = 0


def send_with_fds(data, n):
    global fds_sent
    fds = [os.dup(listener.fileno()) for _ in range(n)]
    try:
        sent = chan.sendmsg([data], [(socket.SOL_SOCKET, socket.SCM_RIGHTS, array.array("i", fds))])
        fds_sent += n
        if sent < len(data):
            chan.sendall(data[sent:])
    finally:
        for fd in fds:
            os.close(fd)


for op in plan:
    kind = op[0]
    if kind == "good":
        chan.sendall(encode({"s": "h", "seq": op[1]}))
    elif kind == "split":
        data = encode({"s": "h", "seq": op[1]})
        for i in range(0, len(data), op[2]):
            chan.sendall(data[i : i + op[2]])
            time.sleep(0.001)
    elif kind == "junk":
        chan.sendall(junk(op[1], op[2]))
    elif kind == "fds":
        n, carrier, seq = op[1], op[2], op[3]
        if carrier == "good":
            data = encode({"s": "h", "seq": seq})
        elif carrier == "envelope":
            data = encode({"cmd": "NODE_HANDLE", "type": "net.Server", "msg": {"s": "hm", "seq": seq}})
        else:
            data = encode({"cmd": "NODE_HANDLE", "type": "bogus.Type", "msg": {"s": "hb", "seq": seq}})
        send_with_fds(data, n)
    elif kind == "envelope-nofd":
        chan.sendall(encode({"cmd": "NODE_HANDLE", "type": "net.Server", "msg": {"s": "hm", "seq": op[1]}}))
    elif kind == "pause":
        time.sleep(op[1] / 1000)

chan.shutdown(socket.SHUT_WR)
answers = b""
while True:
    chunk = chan.recv(65536)
    if not chunk:
        break
    answers += chunk
print(json.dumps({"acks": answers.count(b"NODE_HANDLE_ACK"), "nacks": answers.count(b"NODE_HANDLE_NACK"), "fds": fds_sent}))
sys.stdout.flush()

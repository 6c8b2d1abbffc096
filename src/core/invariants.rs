//! The invariants that the fuzz targets (fuzz/fuzz_targets/) and the stable property tests (proptests.rs) check, in
//! one copy compiled into both: `cargo test` builds it as a test-only module, fuzz/src/lib.rs from source. Each
//! `check_*` panics with the invariant it found broken; `json_lines`, `advanced_frames`, `internal` and `fd_pairing`
//! at the bottom turn a fuzzer's raw bytes into their arguments (one function per fuzz target).

use std::cell::Cell;
use std::rc::Rc;

use serde_json::{json, Value};

use crate::core::error::Code;
use crate::core::frame::{Decoder, Frame, FrameSink, LengthDecoder, LineDecoder};
use crate::core::internal::{self, Handshake, NewconnReply};
use crate::core::pairing::Pairing;

/// A small seeded generator (xorshift64*): the property tests' streams and the fuzz targets' cut points.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }

    pub fn u64(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// A number in `0..n` (0 when `n` is 0).
    pub fn below(&mut self, n: usize) -> usize {
        if n == 0 {
            0
        } else {
            (self.u64() % n as u64) as usize
        }
    }

    pub fn one_in(&mut self, n: usize) -> bool {
        self.below(n) == 0
    }

    pub fn pick<'a, T>(&mut self, from: &'a [T]) -> &'a T {
        &from[self.below(from.len())]
    }
}

/// Bytes from a hex string (the V8 serializer's output, as the tests write it down).
pub fn hex(s: &str) -> Vec<u8> {
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
        .collect()
}

/// Where to cut `len` bytes into reads: at every byte (one seed in four), else at up to eight points drawn from
/// `seed`. Points may repeat, which makes empty reads.
pub fn cuts(len: usize, seed: u64) -> Vec<usize> {
    if seed.is_multiple_of(4) {
        return (0..=len).collect();
    }
    let mut rng = Rng::new(seed ^ ((len as u64) << 8));
    let mut at: Vec<usize> = (0..=rng.below(8)).map(|_| rng.below(len + 1)).collect();
    at.sort_unstable();
    at
}

/// `data` in pieces, cut at `cuts` (sorted, each at most `data.len()`).
fn pieces<'a>(data: &'a [u8], cuts: &[usize]) -> Vec<&'a [u8]> {
    let mut out = Vec::with_capacity(cuts.len() + 1);
    let mut from = 0;
    for &at in cuts {
        out.push(&data[from..at]);
        from = at;
    }
    out.push(&data[from..]);
    out
}

/// One decoded message, normalised to what must not depend on where the reads were cut: a line (with its `\n`), a
/// frame's body, or an error's code (its message may count bytes up to the cut).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Item {
    Line(String),
    Frame(Vec<u8>),
    Error(Code),
}

/// Splits what a decoder handed on into items, checking the shape of each frame on the way: `Lines` hold whole
/// lines of at most `max` bytes before their `\n`, `Frames` runs hold whole frames of at most `max` bytes each.
fn normalise(frames: Vec<Frame>, max: usize) -> Vec<Item> {
    let mut items = Vec::new();
    for frame in frames {
        match frame {
            Frame::Lines(text) => {
                assert!(
                    text.ends_with('\n'),
                    "a Lines frame ends mid-line: {text:?}"
                );
                for line in text.split_inclusive('\n') {
                    assert!(
                        line.len() - 1 <= max,
                        "a line of {} bytes passed max {max}",
                        line.len() - 1
                    );
                    items.push(Item::Line(line.to_owned()));
                }
            }
            Frame::Frames(run) => {
                assert!(!run.is_empty(), "an empty Frames run");
                let mut at = 0;
                while at < run.len() {
                    assert!(run.len() - at >= 4, "a Frames run ends in a partial prefix");
                    let len = u32::from_be_bytes([run[at], run[at + 1], run[at + 2], run[at + 3]])
                        as usize;
                    assert!(len <= max, "a frame of {len} bytes passed max {max}");
                    assert!(
                        run.len() - at - 4 >= len,
                        "a Frames run ends in a partial frame"
                    );
                    items.push(Item::Frame(run[at + 4..at + 4 + len].to_vec()));
                    at += 4 + len;
                }
            }
            Frame::Error { code, message } => {
                assert!(!message.is_empty(), "an error without a message");
                items.push(Item::Error(code));
            }
        }
    }
    items
}

/// The two decoders, as the checks below drive them.
trait Stream {
    fn new(max: usize) -> Self;
    fn feed(&mut self, data: &[u8], out: &mut Vec<Frame>);
    fn finish(&mut self, out: &mut Vec<Frame>);
    /// Bytes held of an unfinished message, and their allocation (frame.rs `buffered`, built for tests and fuzzing).
    fn held(&self) -> (usize, usize);
    /// The most bytes of one unfinished message it may hold.
    fn bound(max: usize) -> usize;
}

impl Stream for LineDecoder {
    fn new(max: usize) -> Self {
        LineDecoder::new(max)
    }
    fn feed(&mut self, data: &[u8], out: &mut Vec<Frame>) {
        LineDecoder::feed(self, data, out)
    }
    fn finish(&mut self, out: &mut Vec<Frame>) {
        LineDecoder::finish(self, out)
    }
    fn held(&self) -> (usize, usize) {
        LineDecoder::buffered(self)
    }
    fn bound(max: usize) -> usize {
        max
    }
}

impl Stream for LengthDecoder {
    fn new(max: usize) -> Self {
        LengthDecoder::new(max)
    }
    fn feed(&mut self, data: &[u8], out: &mut Vec<Frame>) {
        LengthDecoder::feed(self, data, out)
    }
    fn finish(&mut self, out: &mut Vec<Frame>) {
        LengthDecoder::finish(self, out)
    }
    fn held(&self) -> (usize, usize) {
        LengthDecoder::buffered(self)
    }
    fn bound(max: usize) -> usize {
        max.saturating_add(4)
    }
}

/// Decodes `data` read in pieces cut at `cuts`, checking the memory bound after every read: the bytes held of an
/// unfinished message never pass `max` (plus its 4-byte prefix in advanced mode), whatever one read brings, and
/// neither does the allocation holding them (the decoders grow by doubling, but never past what the message may
/// hold). Only `finish` reports a truncated message, at most once, and it frees the buffer.
fn decode<D: Stream>(data: &[u8], max: usize, cuts: &[usize]) -> Vec<Frame> {
    let mut d = D::new(max);
    let mut out = Vec::new();
    let bound = D::bound(max);
    for piece in pieces(data, cuts) {
        d.feed(piece, &mut out);
        let (held, allocated) = d.held();
        assert!(
            held <= bound,
            "holds {held} bytes of one message, max {max}"
        );
        assert!(
            allocated <= bound,
            "allocated {allocated} bytes for one message, max {max}"
        );
    }
    let before = out.len();
    let truncated = |f: &Frame| {
        matches!(
            f,
            Frame::Error {
                code: Code::TruncatedMessage,
                ..
            }
        )
    };
    assert!(
        !out.iter().any(truncated),
        "a truncated message reported before the end"
    );
    d.finish(&mut out);
    assert!(
        out.len() - before <= 1 && out[before..].iter().all(truncated),
        "finish reported {:?}",
        &out[before..]
    );
    assert_eq!(d.held(), (0, 0), "finish kept a buffer");
    out
}

/// What a json stream holds, read in one go by the simplest means: each line, or why it was dropped; then an
/// unfinished last line is too large or truncated.
fn json_model(data: &[u8], max: usize) -> Vec<Item> {
    let mut items = Vec::new();
    let mut rest = data;
    while let Some(nl) = rest.iter().position(|&b| b == b'\n') {
        items.push(if nl > max {
            Item::Error(Code::MessageTooLarge)
        } else {
            match std::str::from_utf8(&rest[..=nl]) {
                Ok(line) => Item::Line(line.to_owned()),
                Err(_) => Item::Error(Code::MalformedMessage),
            }
        });
        rest = &rest[nl + 1..];
    }
    if rest.len() > max {
        items.push(Item::Error(Code::MessageTooLarge));
    } else if !rest.is_empty() {
        items.push(Item::Error(Code::TruncatedMessage));
    }
    items
}

/// The same for advanced frames: a frame over `max` is skipped by its declared length (past the end of the stream
/// is no error); a frame or prefix cut short by the end is truncated.
fn frames_model(data: &[u8], max: usize) -> Vec<Item> {
    let mut items = Vec::new();
    let mut at = 0;
    while at < data.len() {
        let rest = &data[at..];
        if rest.len() < 4 {
            items.push(Item::Error(Code::TruncatedMessage));
            break;
        }
        let len = u32::from_be_bytes([rest[0], rest[1], rest[2], rest[3]]) as usize;
        if len > max {
            items.push(Item::Error(Code::MessageTooLarge));
        } else if rest.len() - 4 < len {
            items.push(Item::Error(Code::TruncatedMessage));
            break;
        } else {
            items.push(Item::Frame(rest[4..4 + len].to_vec()));
        }
        at += 4 + len;
    }
    items
}

/// json lines: read at `cuts`, the stream gives what it gives in one read, and that is what the model says.
pub fn check_json_lines(data: &[u8], max: usize, cuts: &[usize]) {
    let whole = normalise(decode::<LineDecoder>(data, max, &[]), max);
    assert_eq!(
        whole,
        json_model(data, max),
        "one read: not what the stream holds"
    );
    let split = normalise(decode::<LineDecoder>(data, max, cuts), max);
    assert_eq!(split, whole, "cut at {cuts:?}: not what one read gives");
}

/// The same for advanced frames.
pub fn check_advanced_frames(data: &[u8], max: usize, cuts: &[usize]) {
    let whole = normalise(decode::<LengthDecoder>(data, max, &[]), max);
    assert_eq!(
        whole,
        frames_model(data, max),
        "one read: not what the stream holds"
    );
    let split = normalise(decode::<LengthDecoder>(data, max, cuts), max);
    assert_eq!(split, whole, "cut at {cuts:?}: not what one read gives");
}

fn cmd(kind: Handshake) -> &'static str {
    match kind {
        Handshake::Handle => "NODE_HANDLE",
        Handshake::Ack => "NODE_HANDLE_ACK",
        Handshake::Nack => "NODE_HANDLE_NACK",
        Handshake::Pipeline => "NODE_HANDLE_PIPELINE",
        Handshake::Resend => "NODE_HANDLE_RESEND",
        Handshake::Dropped => "NODE_HANDLE_DROPPED",
    }
}

fn prefixed(body: &[u8]) -> Vec<u8> {
    let mut frame = (body.len() as u32).to_be_bytes().to_vec();
    frame.extend_from_slice(body);
    frame
}

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len()).any(|w| w == needle)
}

/// Any bytes, as one json line or one frame body: no recogniser panics, and what they say holds. The pre-checks
/// agree with a plain search; a single frame holds a handshake exactly when its body is one; a json handshake is a
/// JSON object whose `cmd` names its kind; a newconn reply says what its JSON says.
pub fn check_recognisers(bytes: &[u8]) {
    assert_eq!(
        internal::may_be_handshake(bytes),
        contains(bytes, b"NODE_HANDLE")
    );
    assert_eq!(
        internal::may_be_newconn_reply(bytes),
        contains(bytes, b"accepted")
    );

    let kind = internal::v8_handshake(bytes);
    if let Some(kind) = kind {
        assert!(
            contains(bytes, cmd(kind).as_bytes()),
            "{kind:?} without its cmd in the bytes"
        );
    }
    assert_eq!(
        internal::frames_may_hold_handshake(&prefixed(bytes)),
        kind.is_some(),
        "one frame: the run check and the body check disagree"
    );
    let _ = internal::frames_may_hold_handshake(bytes);
    if internal::v8_newconn_reply(bytes).is_some() {
        assert!(kind.is_none(), "a newconn reply and a handshake at once");
        assert!(contains(bytes, b"NODE_CLUSTER") && contains(bytes, b"accepted"));
    }

    let text = String::from_utf8_lossy(bytes);
    let handshake = internal::json_handshake(&text);
    if let Some(kind) = handshake {
        assert!(text.contains("NODE_HANDLE"));
        let value: Value = serde_json::from_str(&text).expect("a json handshake is JSON");
        assert!(value.is_object(), "a json handshake is an object");
        assert_eq!(value["cmd"].as_str(), Some(cmd(kind)));
    }
    if let Some(reply) = internal::json_newconn_reply(&text) {
        assert!(
            handshake.is_none(),
            "a newconn reply and a handshake at once"
        );
        let value: Value = serde_json::from_str(&text).expect("a json newconn reply is JSON");
        assert_eq!(value["cmd"], "NODE_CLUSTER");
        assert_eq!(value["ack"].as_u64(), Some(reply.ack));
        assert_eq!(value["accepted"].as_bool(), Some(reply.accepted));
    }
}

/// A run of frames holds a handshake exactly when one of its frames does.
pub fn check_run(bodies: &[&[u8]]) {
    let run: Vec<u8> = bodies.iter().flat_map(|b| prefixed(b)).collect();
    assert_eq!(
        internal::frames_may_hold_handshake(&run),
        bodies.iter().any(|b| internal::v8_handshake(b).is_some())
    );
}

/// Reads the part of V8's serializer format that internal messages use (objects, strings, Smis, doubles,
/// booleans) into JSON, to check what internal.rs writes; None on anything else, or on bytes left over.
fn v8_value(body: &[u8]) -> Option<Value> {
    struct R<'a>(&'a [u8], usize);
    impl R<'_> {
        fn byte(&mut self) -> Option<u8> {
            let b = *self.0.get(self.1)?;
            self.1 += 1;
            Some(b)
        }
        fn varint(&mut self) -> Option<u64> {
            let mut v = 0u64;
            for shift in (0..64).step_by(7) {
                let b = self.byte()?;
                v |= u64::from(b & 0x7f) << shift;
                if b & 0x80 == 0 {
                    return Some(v);
                }
            }
            None
        }
        fn bytes(&mut self, n: u64) -> Option<&[u8]> {
            let end = self.1.checked_add(usize::try_from(n).ok()?)?;
            let b = self.0.get(self.1..end)?;
            self.1 = end;
            Some(b)
        }
        fn value(&mut self) -> Option<Value> {
            loop {
                return Some(match self.byte()? {
                    0 => continue, // padding before a two-byte string
                    b'"' => {
                        let n = self.varint()?;
                        Value::from(
                            self.bytes(n)?
                                .iter()
                                .map(|&b| char::from(b))
                                .collect::<String>(),
                        )
                    }
                    b'c' => {
                        let n = self.varint()?;
                        if n % 2 == 1 {
                            return None;
                        }
                        let units: Vec<u16> = self
                            .bytes(n)?
                            .chunks(2)
                            .map(|u| u16::from_le_bytes([u[0], u[1]]))
                            .collect();
                        Value::from(String::from_utf16(&units).ok()?)
                    }
                    b'I' => {
                        let z = self.varint()?;
                        Value::from((z >> 1) as i64 ^ -((z & 1) as i64))
                    }
                    b'N' => Value::from(f64::from_le_bytes(self.bytes(8)?.try_into().ok()?)),
                    b'T' => Value::Bool(true),
                    b'F' => Value::Bool(false),
                    b'o' => {
                        let mut map = serde_json::Map::new();
                        loop {
                            if self.0.get(self.1) == Some(&b'{') {
                                self.1 += 1;
                                if self.varint()? != map.len() as u64 {
                                    return None;
                                }
                                break;
                            }
                            let Value::String(key) = self.value()? else {
                                return None;
                            };
                            let value = self.value()?;
                            map.insert(key, value);
                        }
                        Value::Object(map)
                    }
                    _ => return None,
                });
            }
        }
    }
    let mut r = R(body, 0);
    if r.byte()? != 0xff || r.varint()? != 15 {
        return None;
    }
    let value = r.value()?;
    (r.1 == body.len()).then_some(value)
}

/// One message through its decoder: exactly one item, `item`.
fn decodes_to(wire: &[u8], advanced: bool, item: Item) {
    let max = wire.len();
    let frames = if advanced {
        decode::<LengthDecoder>(wire, max, &[])
    } else {
        decode::<LineDecoder>(wire, max, &[])
    };
    assert_eq!(normalise(frames, max), [item]);
}

/// What internal.rs writes reads back: each handshake in both formats; the newconn envelope for any key and seq
/// (a NODE_HANDLE to the recognisers, the object Node's primary sends to a full reader); and a worker's reply to it
/// (built here as Node writes it, with `ack`, `accepted` and `seq` in the order `order` picks) to the reply's.
pub fn check_encoders(key: &str, seq: u64, ack: u64, accepted: bool, order: usize) {
    for kind in [
        Handshake::Handle,
        Handshake::Ack,
        Handshake::Nack,
        Handshake::Pipeline,
        Handshake::Resend,
        Handshake::Dropped,
    ] {
        let line = internal::encode(kind, false);
        let text = std::str::from_utf8(&line).expect("UTF-8");
        assert_eq!(
            internal::json_handshake(text.strip_suffix('\n').expect("a line")),
            Some(kind)
        );
        decodes_to(&line, false, Item::Line(text.to_owned()));
        let frame = internal::encode(kind, true);
        let body = &frame[4..];
        assert_eq!(internal::v8_handshake(body), Some(kind));
        assert!(internal::frames_may_hold_handshake(&frame));
        assert_eq!(v8_value(body), Some(json!({ "cmd": cmd(kind) })));
        decodes_to(&frame, true, Item::Frame(body.to_vec()));
    }

    let envelope = |seq: Value| {
        json!({"cmd": "NODE_HANDLE", "type": "net.Native",
               "msg": {"cmd": "NODE_CLUSTER", "act": "newconn", "key": key, "seq": seq}})
    };
    let line = internal::encode_newconn(key, seq, false);
    let text = String::from_utf8(line.clone()).expect("a newconn line is UTF-8");
    let body = text
        .strip_suffix('\n')
        .expect("a newconn line ends in a newline");
    assert!(!body.contains('\n'), "a newline inside a newconn line");
    assert_eq!(internal::json_handshake(body), Some(Handshake::Handle));
    assert_eq!(internal::json_newconn_reply(body), None);
    assert_eq!(
        serde_json::from_str::<Value>(body).ok(),
        Some(envelope(Value::from(seq)))
    );
    decodes_to(&line, false, Item::Line(text.clone()));
    let frame = internal::encode_newconn(key, seq, true);
    let body = &frame[4..];
    assert_eq!(internal::v8_handshake(body), Some(Handshake::Handle));
    assert_eq!(internal::v8_newconn_reply(body), None);
    assert!(internal::frames_may_hold_handshake(&frame));
    // seq reads back as itself, whether written as an int32 or a double (exact up to 2^53).
    let mut value =
        v8_value(body).unwrap_or_else(|| panic!("newconn frame for key {key:?} is not V8 data"));
    let read = value["msg"]["seq"].take();
    assert!(
        read.as_u64() == Some(seq) || (read.is_f64() && read.as_f64() == Some(seq as f64)),
        "newconn seq {seq} read back as {read}"
    );
    assert_eq!(
        value,
        envelope(Value::Null),
        "newconn frame for key {key:?}"
    );
    decodes_to(&frame, true, Item::Frame(body.to_vec()));

    let expected = Some(NewconnReply { ack, accepted });
    let line = format!(r#"{{"cmd":"NODE_CLUSTER","ack":{ack},"accepted":{accepted},"seq":{seq}}}"#);
    assert_eq!(internal::json_newconn_reply(&line), expected);
    assert_eq!(internal::json_handshake(&line), None);
    let mut body = vec![0xff, 15, b'o'];
    let string = |out: &mut Vec<u8>, s: &str| {
        out.extend_from_slice(&[b'"', s.len() as u8]);
        out.extend_from_slice(s.as_bytes());
    };
    // As Node 20 on x64 writes numbers: an int32 up to 2^31 - 1 (v8.serialize(2 ** 30) is ff0f498080808008), else a
    // double.
    let number = |out: &mut Vec<u8>, v: u64| {
        if v < 1 << 31 {
            out.push(b'I');
            let mut z = v << 1;
            while z >= 0x80 {
                out.push(z as u8 | 0x80);
                z >>= 7;
            }
            out.push(z as u8);
        } else {
            out.push(b'N');
            out.extend_from_slice(&(v as f64).to_le_bytes());
        }
    };
    string(&mut body, "cmd");
    string(&mut body, "NODE_CLUSTER");
    const ORDERS: [[usize; 3]; 6] = [
        [0, 1, 2],
        [0, 2, 1],
        [1, 0, 2],
        [1, 2, 0],
        [2, 0, 1],
        [2, 1, 0],
    ];
    for field in ORDERS[order % 6] {
        match field {
            0 => {
                string(&mut body, "ack");
                number(&mut body, ack);
            }
            1 => {
                string(&mut body, "accepted");
                body.push(if accepted { b'T' } else { b'F' });
            }
            _ => {
                string(&mut body, "seq");
                number(&mut body, seq);
            }
        }
    }
    body.extend_from_slice(&[b'{', 4]);
    // The recogniser takes integers below 9e15 as exact and leaves a reply with a larger one to JS (a `seq` only if
    // it reads it, i.e. before `ack` and `accepted`). Node's counters never get there.
    const EXACT: u64 = 9_000_000_000_000_000;
    let got = internal::v8_newconn_reply(&body);
    if ack < EXACT && seq < EXACT {
        assert_eq!(got, expected, "reply {body:02x?}");
    } else if ack >= EXACT || got.is_some() {
        assert_eq!(got, expected.filter(|_| ack < EXACT), "reply {body:02x?}");
    }
    assert_eq!(internal::v8_handshake(&body), None);
}

/// A stand-in for a received fd: counts the live ones, as an open descriptor would be.
struct Token {
    id: usize,
    live: Rc<Cell<usize>>,
}

impl Drop for Token {
    fn drop(&mut self) {
        self.live.set(self.live.get() - 1);
    }
}

/// What the reader does with decoded frames (inbound.rs): an envelope claims the waiting fd from the Pairing. Beside
/// it, the model: the id the slot should hold.
struct Reader {
    pairing: Pairing<Token>,
    waiting: Option<usize>,
    /// Fds handed out with their envelope: what JS gets (`Event::Handle`) and keeps open.
    claimed: Vec<Token>,
    /// Fds closed as strays (read.rs closes them at once).
    closed: Vec<usize>,
    envelopes: usize,
    live: Rc<Cell<usize>>,
}

impl Reader {
    /// Fds held by the pairing: live, and not handed out.
    fn held(&self) -> usize {
        self.live.get() - self.claimed.len()
    }

    fn envelope(&mut self) {
        self.envelopes += 1;
        let expected = self.waiting.take();
        match self.pairing.envelope() {
            Some(fd) => {
                assert_eq!(Some(fd.id), expected, "an envelope claimed the wrong fd");
                self.claimed.push(fd);
            }
            None => {
                assert_eq!(
                    expected, None,
                    "an envelope went without the fd that was waiting"
                );
                assert_eq!(
                    self.held(),
                    0,
                    "an envelope went without its fd while one was held"
                );
            }
        }
    }
}

impl FrameSink for Reader {
    fn frame(&mut self, frame: Frame) {
        match frame {
            Frame::Lines(text) => {
                let pre = internal::may_be_handshake(text.as_bytes());
                for line in text.split_inclusive('\n') {
                    let kind = internal::json_handshake(&line[..line.len() - 1]);
                    assert!(pre || kind.is_none(), "the pre-check missed a handshake");
                    if kind == Some(Handshake::Handle) {
                        self.envelope();
                    }
                }
            }
            Frame::Frames(run) => {
                let pre = internal::frames_may_hold_handshake(&run);
                let mut at = 0;
                while at < run.len() {
                    let len = u32::from_be_bytes([run[at], run[at + 1], run[at + 2], run[at + 3]])
                        as usize;
                    let kind = internal::v8_handshake(&run[at + 4..at + 4 + len]);
                    assert!(pre || kind.is_none(), "the pre-check missed a handshake");
                    if kind == Some(Handshake::Handle) {
                        self.envelope();
                    }
                    at += 4 + len;
                }
            }
            Frame::Error { .. } => {}
        }
    }
}

/// Reads as recvmsg gives them (some bytes, and the fds that came with them) through the real decoder, recogniser
/// and Pairing, as read.rs and inbound.rs do. Every fd leaves exactly once (claimed by an envelope, closed as a
/// stray, or closed at the end) and none is left open once JS drops what it got; at most one is held at a time; an
/// envelope goes without an fd only when none was waiting; and the envelopes are those of the stream read whole.
pub fn check_fd_pairing(advanced: bool, max: usize, reads: &[(&[u8], usize)]) {
    let live = Rc::new(Cell::new(0));
    let mut decoder = Decoder::new(advanced, max);
    let mut r = Reader {
        pairing: Pairing::default(),
        waiting: None,
        claimed: Vec::new(),
        closed: Vec::new(),
        envelopes: 0,
        live: live.clone(),
    };
    let mut ids = 0;
    for &(bytes, fds) in reads {
        let mut strays = Vec::new();
        let mut expected = Vec::new();
        let tokens: Vec<Token> = (ids..ids + fds)
            .map(|id| {
                expected.extend(r.waiting.replace(id));
                live.set(live.get() + 1);
                Token {
                    id,
                    live: live.clone(),
                }
            })
            .collect();
        ids += fds;
        r.pairing.arrived(tokens, |fd| strays.push(fd.id));
        assert_eq!(strays, expected, "the wrong fds were strays");
        r.closed.extend(strays);
        assert_eq!(r.held(), usize::from(r.waiting.is_some()), "fds held");
        decoder.feed(bytes, &mut r);
        assert!(r.held() <= 1, "{} fds held", r.held());
    }
    decoder.finish(&mut r);
    let last = r.pairing.finish().map(|fd| fd.id);
    assert_eq!(last, r.waiting.take(), "finish returned the wrong fd");
    r.closed.extend(last);

    let mut out: Vec<usize> = r
        .claimed
        .iter()
        .map(|fd| fd.id)
        .chain(r.closed.iter().copied())
        .collect();
    out.sort_unstable();
    assert_eq!(
        out,
        (0..ids).collect::<Vec<_>>(),
        "not every fd left exactly once"
    );
    assert_eq!(
        live.get(),
        r.claimed.len(),
        "fds left open besides those handed out"
    );
    r.claimed.clear();
    assert_eq!(live.get(), 0, "fds left open");

    let data: Vec<u8> = reads
        .iter()
        .flat_map(|(bytes, _)| bytes.iter().copied())
        .collect();
    let items = if advanced {
        normalise(decode::<LengthDecoder>(&data, max, &[]), max)
    } else {
        normalise(decode::<LineDecoder>(&data, max, &[]), max)
    };
    let envelopes = items
        .iter()
        .filter(|item| match item {
            Item::Line(line) => {
                internal::json_handshake(&line[..line.len() - 1]) == Some(Handshake::Handle)
            }
            Item::Frame(body) => internal::v8_handshake(body) == Some(Handshake::Handle),
            Item::Error(_) => false,
        })
        .count();
    assert_eq!(
        r.envelopes, envelopes,
        "envelopes seen in reads vs in the whole stream"
    );
}

/// The decoders' input: max (u16 little-endian, up to 4096), the seed of the cut points, then the stream.
fn stream_input(data: &[u8]) -> Option<(usize, u64, &[u8])> {
    let (head, stream) = data.split_first_chunk::<3>()?;
    let max = usize::from(u16::from_le_bytes([head[0], head[1]])) % 4097;
    Some((max, u64::from(head[2]), stream))
}

/// The `json_lines` fuzz target: see `stream_input`.
pub fn json_lines(data: &[u8]) {
    if let Some((max, seed, stream)) = stream_input(data) {
        check_json_lines(stream, max, &cuts(stream.len(), seed));
    }
}

/// The `advanced_frames` fuzz target: see `stream_input`.
pub fn advanced_frames(data: &[u8]) {
    if let Some((max, seed, stream)) = stream_input(data) {
        check_advanced_frames(stream, max, &cuts(stream.len(), seed));
    }
}

/// The `internal` fuzz target: the input is one json line or frame body; cut at points its first byte picks, it
/// is a run of frames; its first bytes also give the encoders their numbers and the rest their key.
pub fn internal(data: &[u8]) {
    check_recognisers(data);
    let first = data.first().copied().unwrap_or(0);
    check_run(&pieces(data, &cuts(data.len(), u64::from(first) | 1)));
    let mut head = [0u8; 8];
    let n = data.len().min(8);
    head[..n].copy_from_slice(&data[..n]);
    let number = u64::from_le_bytes(head);
    let seq = number >> (first % 64);
    let ack = number.rotate_left(u32::from(first)) >> (first / 4 % 64);
    let key: String = String::from_utf8_lossy(&data[n..])
        .chars()
        .take(64)
        .collect();
    check_encoders(&key, seq, ack, first & 1 == 1, usize::from(first / 2));
}

/// The `fd_pairing` fuzz target: a first byte for the mode (bit 0: advanced) and max (16 << bits 1..3, up to 2048),
/// then reads, each a byte (fds: bits 0..1; length: bits 2..7) and that many bytes.
pub fn fd_pairing(data: &[u8]) {
    let Some((&first, mut rest)) = data.split_first() else {
        return;
    };
    let max = 16 << ((first >> 1) & 7);
    let mut reads = Vec::new();
    while let Some((&head, tail)) = rest.split_first() {
        let len = usize::from(head >> 2).min(tail.len());
        reads.push((&tail[..len], usize::from(head & 3)));
        rest = &tail[len..];
    }
    check_fd_pairing(first & 1 == 1, max, &reads);
}

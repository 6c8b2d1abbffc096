//! Recognising and building the internal messages the channel core answers itself: NODE_HANDLE (an fd's
//! envelope), NODE_HANDLE_ACK and NODE_HANDLE_NACK, and the cluster's round-robin hand-off (a `newconn` envelope
//! and the worker's `accepted` reply), in both wire formats. Everything else, internal or not, is handed on
//! untouched for JS to emit.

/// The internal messages of the handle handshake (lib/internal/child_process.js).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Handshake {
    /// `{cmd: 'NODE_HANDLE', type, msg}`: the envelope an fd travels with.
    Handle,
    /// The receiver got the envelope and its fd.
    Ack,
    /// The receiver got the envelope without its fd: send it again.
    Nack,
    /// forkline's own, `{cmd: 'NODE_HANDLE_PIPELINE'}`: this end takes handles pipelined (several envelopes and
    /// their fds in flight, paired in order, see pairing.rs) and will send them so once the peer says the same.
    /// Only ever sent to a forkline peer (core/channel/handles.rs): a plain Node end never sees it.
    Pipeline,
    /// forkline's own, pipelined only, `{cmd: 'NODE_HANDLE_RESEND'}`: the next envelope with an fd is one sent
    /// again after a NACK, which the receiver delivers in its first place (core/nack_hold.rs).
    Resend,
    /// forkline's own, pipelined only, `{cmd: 'NODE_HANDLE_DROPPED'}`: the sender gave up on the handle NACKed
    /// first; the receiver delivers what it held behind it.
    Dropped,
}

/// Handles a pipelining sender keeps in flight (sent, not yet acknowledged) before it holds the next one; each
/// holds a duplicate of its fd until its ACK. Node's protocol is one.
pub const HANDLES_IN_FLIGHT: usize = 32;

impl Handshake {
    fn from_cmd(cmd: &[u8]) -> Option<Self> {
        match cmd {
            b"NODE_HANDLE" => Some(Handshake::Handle),
            b"NODE_HANDLE_ACK" => Some(Handshake::Ack),
            b"NODE_HANDLE_NACK" => Some(Handshake::Nack),
            b"NODE_HANDLE_PIPELINE" => Some(Handshake::Pipeline),
            b"NODE_HANDLE_RESEND" => Some(Handshake::Resend),
            b"NODE_HANDLE_DROPPED" => Some(Handshake::Dropped),
            _ => None,
        }
    }

    fn cmd(self) -> &'static str {
        match self {
            Handshake::Handle => "NODE_HANDLE",
            Handshake::Ack => "NODE_HANDLE_ACK",
            Handshake::Nack => "NODE_HANDLE_NACK",
            Handshake::Pipeline => "NODE_HANDLE_PIPELINE",
            Handshake::Resend => "NODE_HANDLE_RESEND",
            Handshake::Dropped => "NODE_HANDLE_DROPPED",
        }
    }
}

/// Cheap pre-check: only lines or frames containing this are parsed. It runs over every byte read, so it is the
/// memchr crate's vectorized search (a sliding window compare cost 11% of a child's CPU on 1 MB messages; a
/// word-at-a-time one, a tenth of its reactor thread's).
pub fn may_be_handshake(bytes: &[u8]) -> bool {
    memchr::memmem::find(bytes, b"NODE_HANDLE").is_some()
}

/// Whether a run of complete advanced frames (each with its 4-byte length) holds a handshake. A look at each
/// frame's first bytes, never a scan of the bodies: a 1 MB Buffer costs nothing here.
pub fn frames_may_hold_handshake(run: &[u8]) -> bool {
    let mut at = 0;
    while at + 4 <= run.len() {
        let len = u32::from_be_bytes([run[at], run[at + 1], run[at + 2], run[at + 3]]) as usize;
        let end = (at + 4).saturating_add(len).min(run.len());
        if v8_handshake(&run[at + 4..end]).is_some() {
            return true;
        }
        at = end;
    }
    false
}

/// The handshake kind of one json line (without its newline), if it is one.
pub fn json_handshake(line: &str) -> Option<Handshake> {
    if !may_be_handshake(line.as_bytes()) {
        return None;
    }
    let value: serde_json::Value = serde_json::from_str(line).ok()?;
    Handshake::from_cmd(value.get("cmd")?.as_str()?.as_bytes())
}

/// The handshake kind of one V8-serialized frame body, if it is one. Node writes these objects with `cmd` as their
/// first property and an ASCII value, so reading the header, the object tag and one key/value pair is enough.
pub fn v8_handshake(body: &[u8]) -> Option<Handshake> {
    let mut r = V8Reader { bytes: body, at: 0 };
    r.header()?;
    if r.byte()? != V8_BEGIN_OBJECT {
        return None;
    }
    if r.one_byte_string()? != b"cmd" {
        return None;
    }
    Handshake::from_cmd(r.one_byte_string()?)
}

/// A whole wire message `{cmd: <kind>}`, as Node's serializers write it.
pub fn encode(kind: Handshake, advanced: bool) -> Vec<u8> {
    let cmd = kind.cmd();
    if !advanced {
        return format!("{{\"cmd\":\"{cmd}\"}}\n").into_bytes();
    }
    let mut body = vec![V8_VERSION_TAG, V8_VERSION, V8_BEGIN_OBJECT];
    for s in ["cmd", cmd] {
        body.push(V8_ONE_BYTE_STRING);
        body.push(s.len() as u8); // < 128: one varint byte
        body.extend_from_slice(s.as_bytes());
    }
    body.extend_from_slice(&[V8_END_OBJECT, 1]);
    let mut frame = (body.len() as u32).to_be_bytes().to_vec();
    frame.extend_from_slice(&body);
    frame
}

/// A cluster worker's answer to a `newconn` hand-off (lib/internal/cluster/child.js `onconnection`):
/// `{cmd: 'NODE_CLUSTER', ack: <the newconn's seq>, accepted, seq}`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NewconnReply {
    pub ack: u64,
    pub accepted: bool,
}

/// Cheap pre-check for `newconn` replies: only lines or frames containing this are parsed.
pub fn may_be_newconn_reply(bytes: &[u8]) -> bool {
    bytes.windows(8).any(|w| w == b"accepted")
}

/// The `newconn` reply in one json line (without its newline), if it is one.
pub fn json_newconn_reply(line: &str) -> Option<NewconnReply> {
    if !may_be_newconn_reply(line.as_bytes()) {
        return None;
    }
    let value: serde_json::Value = serde_json::from_str(line).ok()?;
    if value.get("cmd")?.as_str()? != "NODE_CLUSTER" {
        return None;
    }
    Some(NewconnReply {
        ack: value.get("ack")?.as_u64()?,
        accepted: value.get("accepted")?.as_bool()?,
    })
}

/// The `newconn` reply in one V8-serialized frame body. Node writes `cmd` first, then `ack` and `accepted` (and
/// `seq`), with small integers as Smis; anything else is left for JS.
pub fn v8_newconn_reply(body: &[u8]) -> Option<NewconnReply> {
    let mut r = V8Reader { bytes: body, at: 0 };
    r.header()?;
    if r.byte()? != V8_BEGIN_OBJECT
        || r.one_byte_string()? != b"cmd"
        || r.one_byte_string()? != b"NODE_CLUSTER"
    {
        return None;
    }
    let (mut ack, mut accepted) = (None, None);
    while ack.is_none() || accepted.is_none() {
        match r.one_byte_string()? {
            b"ack" => ack = Some(r.integer()?),
            b"accepted" => {
                accepted = Some(match r.byte()? {
                    V8_TRUE => true,
                    V8_FALSE => false,
                    _ => return None,
                })
            }
            b"seq" => {
                r.integer()?;
            }
            _ => return None,
        }
    }
    Some(NewconnReply {
        ack: ack?,
        accepted: accepted?,
    })
}

/// The envelope Node's primary sends a connection in (round_robin_handle.js `handoff`, through child_process.js
/// `_send`): `{cmd: 'NODE_HANDLE', type: 'net.Native', msg: {cmd: 'NODE_CLUSTER', act: 'newconn', key, seq}}`.
pub fn encode_newconn(key: &str, seq: u64, advanced: bool) -> Vec<u8> {
    if !advanced {
        let key = serde_json::Value::from(key);
        return format!(
            "{{\"cmd\":\"NODE_HANDLE\",\"type\":\"net.Native\",\"msg\":{{\"cmd\":\"NODE_CLUSTER\",\"act\":\"newconn\",\"key\":{key},\"seq\":{seq}}}}}\n"
        )
        .into_bytes();
    }
    let mut body = vec![V8_VERSION_TAG, V8_VERSION, V8_BEGIN_OBJECT];
    for s in ["cmd", "NODE_HANDLE", "type", "net.Native", "msg"] {
        put_string(&mut body, s);
    }
    body.push(V8_BEGIN_OBJECT);
    for s in ["cmd", "NODE_CLUSTER", "act", "newconn", "key", key, "seq"] {
        put_string(&mut body, s);
    }
    put_integer(&mut body, seq);
    body.extend_from_slice(&[V8_END_OBJECT, 4, V8_END_OBJECT, 3]);
    let mut frame = (body.len() as u32).to_be_bytes().to_vec();
    frame.extend_from_slice(&body);
    frame
}

fn put_varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

/// A string as V8 writes it: Latin-1 when every char fits a byte, else UTF-16LE.
fn put_string(out: &mut Vec<u8>, s: &str) {
    if s.chars().all(|c| (c as u32) < 0x100) {
        out.push(V8_ONE_BYTE_STRING);
        put_varint(out, s.chars().count() as u64);
        out.extend(s.chars().map(|c| c as u8));
    } else {
        let units: Vec<u16> = s.encode_utf16().collect();
        // V8 pads so that the UTF-16 data starts at an even offset.
        let mut len = Vec::new();
        put_varint(&mut len, 2 * units.len() as u64);
        if (out.len() + 1 + len.len()) % 2 == 1 {
            out.push(V8_PADDING);
        }
        out.push(V8_TWO_BYTE_STRING);
        out.extend_from_slice(&len);
        out.extend(units.iter().flat_map(|u| u.to_le_bytes()));
    }
}

/// A non-negative integer: a Smi (zigzag varint) while it fits 31 bits, else a double, as V8 writes numbers.
fn put_integer(out: &mut Vec<u8>, v: u64) {
    if v < (1 << 30) {
        out.push(V8_INT32);
        put_varint(out, v << 1);
    } else {
        out.push(V8_DOUBLE);
        out.extend_from_slice(&(v as f64).to_le_bytes());
    }
}

// V8's ValueSerializer tags (v8/src/objects/value-serializer.cc) and the format version Node 20/22 write.
const V8_VERSION_TAG: u8 = 0xFF;
const V8_VERSION: u8 = 15;
const V8_BEGIN_OBJECT: u8 = b'o';
const V8_END_OBJECT: u8 = b'{';
const V8_ONE_BYTE_STRING: u8 = b'"';
const V8_TWO_BYTE_STRING: u8 = b'c';
const V8_PADDING: u8 = 0;
const V8_INT32: u8 = b'I';
const V8_DOUBLE: u8 = b'N';
const V8_TRUE: u8 = b'T';
const V8_FALSE: u8 = b'F';

struct V8Reader<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl<'a> V8Reader<'a> {
    fn byte(&mut self) -> Option<u8> {
        let b = *self.bytes.get(self.at)?;
        self.at += 1;
        Some(b)
    }

    fn varint(&mut self) -> Option<usize> {
        let mut value = 0usize;
        for shift in (0..35).step_by(7) {
            let b = self.byte()?;
            value |= ((b & 0x7f) as usize) << shift;
            if b & 0x80 == 0 {
                return Some(value);
            }
        }
        None
    }

    fn header(&mut self) -> Option<()> {
        if self.byte()? != V8_VERSION_TAG {
            return None;
        }
        self.varint().map(|_| ())
    }

    /// A non-negative integer written as a Smi or a double.
    fn integer(&mut self) -> Option<u64> {
        match self.byte()? {
            V8_INT32 => {
                let z = self.varint()? as u64;
                let v = (z >> 1) as i64 ^ -((z & 1) as i64);
                u64::try_from(v).ok()
            }
            V8_DOUBLE => {
                let b = self.bytes.get(self.at..self.at + 8)?;
                self.at += 8;
                let v = f64::from_le_bytes(b.try_into().ok()?);
                (v >= 0.0 && v.fract() == 0.0 && v < 9.0e15).then_some(v as u64)
            }
            _ => None,
        }
    }

    fn one_byte_string(&mut self) -> Option<&'a [u8]> {
        if self.byte()? != V8_ONE_BYTE_STRING {
            return None;
        }
        let len = self.varint()?;
        let s = self.bytes.get(self.at..self.at.checked_add(len)?)?;
        self.at += len;
        Some(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::invariants::hex;

    // Bytes from Node 20's v8.serialize().
    const ACK: &str = "ff0f6f2203636d64220f4e4f44455f48414e444c455f41434b7b01";
    const NACK: &str = "ff0f6f2203636d6422104e4f44455f48414e444c455f4e41434b7b01";
    const HANDLE: &str = "ff0f6f2203636d64220b4e4f44455f48414e444c45220474797065220a6e65742e536f636b657422036d73676f22016149027b017b03";

    #[test]
    fn encodes_acks_as_node_does() {
        for (kind, bytes) in [(Handshake::Ack, ACK), (Handshake::Nack, NACK)] {
            let frame = encode(kind, true);
            assert_eq!(&frame[4..], &hex(bytes)[..]);
            assert_eq!(
                u32::from_be_bytes(frame[..4].try_into().unwrap()) as usize,
                frame.len() - 4
            );
        }
        assert_eq!(
            encode(Handshake::Ack, false),
            b"{\"cmd\":\"NODE_HANDLE_ACK\"}\n"
        );
    }

    #[test]
    fn the_pipeline_announce_reads_back_in_both_formats() {
        let line = encode(Handshake::Pipeline, false);
        assert_eq!(line, b"{\"cmd\":\"NODE_HANDLE_PIPELINE\"}\n");
        assert!(may_be_handshake(&line));
        let text = std::str::from_utf8(&line[..line.len() - 1]).unwrap();
        assert_eq!(json_handshake(text), Some(Handshake::Pipeline));
        let frame = encode(Handshake::Pipeline, true);
        assert!(frames_may_hold_handshake(&frame));
        assert_eq!(v8_handshake(&frame[4..]), Some(Handshake::Pipeline));
    }

    #[test]
    fn recognises_node_frames() {
        assert_eq!(v8_handshake(&hex(HANDLE)), Some(Handshake::Handle));
        assert_eq!(v8_handshake(&hex(ACK)), Some(Handshake::Ack));
        assert_eq!(v8_handshake(&hex(NACK)), Some(Handshake::Nack));
        // {cmd: 'Ü'}, {cmd: 'NODE_X'}-like and truncated frames are not handshakes.
        assert_eq!(v8_handshake(&hex("ff0f6f2203636d642201dc7b01")), None);
        assert_eq!(v8_handshake(&hex(HANDLE)[..12]), None);
        assert_eq!(v8_handshake(&[]), None);
    }

    #[test]
    fn frame_runs_are_checked_frame_by_frame() {
        let frame = |body: Vec<u8>| {
            let mut f = (body.len() as u32).to_be_bytes().to_vec();
            f.extend(body);
            f
        };
        let mut run = frame(hex(ACK));
        assert!(frames_may_hold_handshake(&run));
        // A plain value with NODE_HANDLE inside is not a handshake, and a handshake after it is still found.
        let mut plain = frame(b"\xff\x0f\x22\x0bNODE_HANDLE".to_vec());
        assert!(!frames_may_hold_handshake(&plain));
        plain.append(&mut run);
        assert!(frames_may_hold_handshake(&plain));
        assert!(!frames_may_hold_handshake(&[]));
        assert!(!frames_may_hold_handshake(&[0, 0, 0]));
    }

    #[test]
    fn pre_check_finds_the_marker_anywhere() {
        assert!(may_be_handshake(b"NODE_HANDLE"));
        assert!(may_be_handshake(b"NNNNODE_HANDLE_ACK"));
        assert!(may_be_handshake(b"{\"x\":\"N\",\"cmd\":\"NODE_HANDLE\"}"));
        assert!(!may_be_handshake(b"NODE_HANDL"));
        assert!(!may_be_handshake(b"NODE_HANDxE NODE_ N"));
        assert!(!may_be_handshake(b""));
    }

    #[test]
    fn recognises_json_lines() {
        assert_eq!(
            json_handshake(r#"{"cmd":"NODE_HANDLE","type":"net.Socket","msg":1}"#),
            Some(Handshake::Handle)
        );
        assert_eq!(
            json_handshake(r#"{"cmd":"NODE_HANDLE_ACK"}"#),
            Some(Handshake::Ack)
        );
        assert_eq!(
            json_handshake(r#"{"msg":{"cmd":"NODE_HANDLE"}}"#),
            None,
            "only the top level counts"
        );
        assert_eq!(json_handshake(r#""NODE_HANDLE""#), None);
        assert_eq!(json_handshake("{not json NODE_HANDLE"), None);
    }

    // Node 20's v8.serialize() of the newconn envelope (key 'null:0:4:-1:0', seq 5) and of worker replies.
    const NEWCONN: &str = "ff0f6f2203636d64220b4e4f44455f48414e444c45220474797065220a6e65742e4e617469766522036d73676f2203636d64220c4e4f44455f434c5553544552220361637422076e6577636f6e6e22036b6579220d6e756c6c3a303a343a2d313a302203736571490a7b047b03";
    const REPLY: &str = "ff0f6f2203636d64220c4e4f44455f434c5553544552220361636b490e2208616363657074656454220373657149047b04";
    const REPLY_BIG_ACK: &str = "ff0f6f2203636d64220c4e4f44455f434c5553544552220361636b4e00000000000070422208616363657074656446220373657149047b04";

    #[test]
    fn encodes_newconn_as_node_does() {
        let frame = encode_newconn("null:0:4:-1:0", 5, true);
        assert_eq!(&frame[4..], &hex(NEWCONN)[..]);
        assert_eq!(
            encode_newconn("/tmp/a\"b:-1:-1:-1:0", 7, false),
            br#"{"cmd":"NODE_HANDLE","type":"net.Native","msg":{"cmd":"NODE_CLUSTER","act":"newconn","key":"/tmp/a\"b:-1:-1:-1:0","seq":7}}
"#
        );
        // v8.serialize({k: '/tmp/ü€.sock'}): a two-byte string, no padding needed at that offset.
        let mut body = vec![V8_VERSION_TAG, V8_VERSION, V8_BEGIN_OBJECT];
        put_string(&mut body, "k");
        put_string(&mut body, "/tmp/ü€.sock");
        assert_eq!(
            body,
            hex("ff0f6f22016b63182f0074006d0070002f00fc00ac202e0073006f0063006b00")
        );
        let mut padded = vec![0u8; 1];
        put_string(&mut padded, "€");
        assert_eq!(padded, [0, 0, V8_TWO_BYTE_STRING, 2, 0xac, 0x20]);
    }

    #[test]
    fn recognises_newconn_replies() {
        let reply = |ack, accepted| Some(NewconnReply { ack, accepted });
        assert_eq!(v8_newconn_reply(&hex(REPLY)), reply(7, true));
        assert_eq!(v8_newconn_reply(&hex(REPLY_BIG_ACK)), reply(1 << 40, false));
        assert_eq!(v8_newconn_reply(&hex(ACK)), None);
        assert_eq!(
            json_newconn_reply(r#"{"cmd":"NODE_CLUSTER","ack":3,"accepted":false,"seq":1}"#),
            reply(3, false)
        );
        assert_eq!(
            json_newconn_reply(r#"{"cmd":"NODE_CLUSTER","act":"online","accepted":1,"seq":1}"#),
            None
        );
        assert_eq!(json_newconn_reply(r#"{"accepted":true,"ack":1}"#), None);
    }
}

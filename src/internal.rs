//! Recognising and building the internal messages the channel core answers itself: NODE_HANDLE (an fd's
//! envelope), NODE_HANDLE_ACK and NODE_HANDLE_NACK, in both wire formats. Everything else, internal or not, is
//! handed on untouched for JS to emit.

/// The internal messages of the handle handshake (lib/internal/child_process.js).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Handshake {
    /// `{cmd: 'NODE_HANDLE', type, msg}`: the envelope an fd travels with.
    Handle,
    /// The receiver got the envelope and its fd.
    Ack,
    /// The receiver got the envelope without its fd: send it again.
    Nack,
}

impl Handshake {
    fn from_cmd(cmd: &[u8]) -> Option<Self> {
        match cmd {
            b"NODE_HANDLE" => Some(Handshake::Handle),
            b"NODE_HANDLE_ACK" => Some(Handshake::Ack),
            b"NODE_HANDLE_NACK" => Some(Handshake::Nack),
            _ => None,
        }
    }

    fn cmd(self) -> &'static str {
        match self {
            Handshake::Handle => "NODE_HANDLE",
            Handshake::Ack => "NODE_HANDLE_ACK",
            Handshake::Nack => "NODE_HANDLE_NACK",
        }
    }
}

/// Cheap pre-check: only lines or frames containing this are parsed.
/// It runs over every byte read, so it skips from one 'N' to the next eight bytes at a time (a sliding window
/// compare cost 11% of a child's CPU on 1 MB messages).
pub fn may_be_handshake(bytes: &[u8]) -> bool {
    const NEEDLE: &[u8] = b"NODE_HANDLE";
    let mut at = 0;
    while let Some(i) = crate::frame::memchr(b'N', &bytes[at..]) {
        if bytes[at + i..].starts_with(NEEDLE) {
            return true;
        }
        at += i + 1;
    }
    false
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

// V8's ValueSerializer tags (v8/src/objects/value-serializer.cc) and the format version Node 20/22 write.
const V8_VERSION_TAG: u8 = 0xFF;
const V8_VERSION: u8 = 15;
const V8_BEGIN_OBJECT: u8 = b'o';
const V8_END_OBJECT: u8 = b'{';
const V8_ONE_BYTE_STRING: u8 = b'"';

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

    fn hex(s: &str) -> Vec<u8> {
        (0..s.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
            .collect()
    }

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
}

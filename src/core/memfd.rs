//! Large advanced messages between two forkline ends: a frame whose V8 body is at least [`THRESHOLD`] bytes
//! travels as a sealed memfd, with a small marker frame in its place in the stream. Pure protocol, no I/O: the
//! announce and marker frames, splitting an outgoing run of frames, and the checks a received memfd must pass.
//!
//! Negotiated, never assumed: each forkline end in advanced mode sends [`encode_announce`] once, first thing on the
//! channel, and an end sends memfds only once the peer's announce has arrived. A plain Node end never announces
//! (so it never gets a memfd), and takes the announce for what its `cmd` says: an internal message ('NODE_'
//! prefix, lib/internal/child_process.js), emitted as 'internalMessage', which nothing of Node's listens for.
//!
//! The marker rides the handle handshake: it leaves with its fd in one sendmsg, later writes wait for the
//! receiver's NODE_HANDLE_ACK, and a NODE_HANDLE_NACK (the fd did not arrive) sends marker and fd again.

/// Frames whose V8 body is at least this long go as a memfd. Below it the socket alone does as well.
pub const THRESHOLD: usize = 256 * 1024;

/// The largest file a channel keeps for reuse. A larger message goes on the socket: a fresh file costs more in page
/// allocation than the socket's copies (~400 µs per MB here).
pub const POOL_MAX: usize = 64 * 1024 * 1024;

/// `{cmd: 'NODE_FORKLINE_MEMFD', version: 1}`: this end takes large messages as memfds.
const ANNOUNCE_CMD: &[u8] = b"NODE_FORKLINE_MEMFD";
/// `{cmd: 'NODE_FORKLINE_MEMFD_FRAME', size}`: the message's V8 body is in the memfd that came with this frame.
const MARKER_CMD: &[u8] = b"NODE_FORKLINE_MEMFD_FRAME";

// V8's ValueSerializer tags (v8/src/objects/value-serializer.cc), format version 15 as Node 20/22 write it.
const HEADER: [u8; 2] = [0xFF, 0x0F];
const BEGIN_OBJECT: u8 = b'o';
const END_OBJECT: u8 = b'{';
const ONE_BYTE_STRING: u8 = b'"';
const INT32: u8 = b'I';
const DOUBLE: u8 = b'N';

/// One of our own frames, read from a frame body.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Message {
    Announce,
    /// `size` as the marker claims it (u64::MAX for a value that is no size at all).
    Marker {
        size: u64,
    },
}

fn put_str(out: &mut Vec<u8>, s: &[u8]) {
    // Every string here is under 128 bytes: a one-byte varint length.
    out.push(ONE_BYTE_STRING);
    out.push(s.len() as u8);
    out.extend_from_slice(s);
}

/// The body's start up to the value of its second key: header, object, `cmd`, the command, the second key.
fn prefix(cmd: &[u8], key: &[u8]) -> Vec<u8> {
    let mut body = HEADER.to_vec();
    body.push(BEGIN_OBJECT);
    put_str(&mut body, b"cmd");
    put_str(&mut body, cmd);
    put_str(&mut body, key);
    body
}

fn framed(body: Vec<u8>) -> Vec<u8> {
    let mut frame = (body.len() as u32).to_be_bytes().to_vec();
    frame.extend_from_slice(&body);
    frame
}

fn announce_body() -> Vec<u8> {
    let mut body = prefix(ANNOUNCE_CMD, b"version");
    body.extend_from_slice(&[INT32, 2, END_OBJECT, 2]); // 1, zigzag-encoded
    body
}

/// The announce, a whole wire frame.
pub fn encode_announce() -> Vec<u8> {
    framed(announce_body())
}

/// The marker for a body of `size` bytes, a whole wire frame. The size is a double, as V8 writes a number past
/// 31 bits, so that every size has one encoding.
pub fn encode_marker(size: usize) -> Vec<u8> {
    let mut body = prefix(MARKER_CMD, b"size");
    body.push(DOUBLE);
    body.extend_from_slice(&(size as f64).to_le_bytes());
    body.extend_from_slice(&[END_OBJECT, 2]);
    framed(body)
}

/// Our frame in `body`, if it is one (exactly as `encode_*` writes it; anything else is the user's business).
pub fn parse(body: &[u8]) -> Option<Message> {
    if body == announce_body().as_slice() {
        return Some(Message::Announce);
    }
    let head = prefix(MARKER_CMD, b"size");
    let rest = body
        .strip_prefix(head.as_slice())?
        .strip_prefix(&[DOUBLE])?;
    if rest.len() != 10 || rest[8..] != [END_OBJECT, 2] {
        return None;
    }
    let v = f64::from_le_bytes(rest[..8].try_into().ok()?);
    let size = if v >= 0.0 && v.fract() == 0.0 && v < 9.0e15 {
        v as u64
    } else {
        u64::MAX
    };
    Some(Message::Marker { size })
}

/// Whether a run of whole frames may hold one of ours: a look at each frame's first bytes, never at a body.
pub fn frames_may_hold(run: &[u8]) -> bool {
    let mut needle = HEADER.to_vec();
    needle.push(BEGIN_OBJECT);
    put_str(&mut needle, b"cmd");
    needle.push(ONE_BYTE_STRING);
    frames(run).any(|(_, body)| {
        body.starts_with(&needle)
            && body
                .get(needle.len() + 1..)
                .is_some_and(|s| s.starts_with(ANNOUNCE_CMD))
    })
}

/// The frames of a run: (whole frame, body). A run cut short ends the walk (the decoder only hands whole frames).
pub fn frames(run: &[u8]) -> impl Iterator<Item = (&[u8], &[u8])> {
    let mut at = 0;
    std::iter::from_fn(move || {
        let head = run.get(at..at + 4)?;
        let len = u32::from_be_bytes(head.try_into().ok()?) as usize;
        let frame = run.get(at..at + 4 + len)?;
        at += 4 + len;
        Some((frame, &frame[4..]))
    })
}

/// A piece of an outgoing run: frames that go as they are, or one frame whose body goes in a memfd.
#[derive(Debug, PartialEq, Eq)]
pub enum Piece<'a> {
    Inline(&'a [u8]),
    /// The whole frame (for a fallback to the socket) and its body.
    Large {
        frame: &'a [u8],
        body: &'a [u8],
    },
}

/// Whether any frame of `run` is large enough for a memfd.
pub fn has_large(run: &[u8], threshold: usize) -> bool {
    frames(run).any(|(_, body)| body.len() >= threshold)
}

/// Splits `run` into pieces, in order; neighbouring small frames stay together. Bytes after the last whole frame
/// (none, from our own serializer) go inline.
pub fn split(run: &[u8], threshold: usize) -> Vec<Piece<'_>> {
    let mut pieces = Vec::new();
    let (mut start, mut at) = (0, 0);
    for (frame, body) in frames(run) {
        if body.len() >= threshold {
            if start < at {
                pieces.push(Piece::Inline(&run[start..at]));
            }
            pieces.push(Piece::Large { frame, body });
            start = at + frame.len();
        }
        at += frame.len();
    }
    if start < run.len() {
        pieces.push(Piece::Inline(&run[start..]));
    }
    pieces
}

/// Why a received memfd is refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refused {
    /// Over maxMessageSize (FORKLINE_MESSAGE_TOO_LARGE, as for a message on the socket).
    TooLarge(String),
    /// Anything else about it (FORKLINE_BAD_MEMFD).
    Bad(String),
}

/// Checks a received memfd against its marker before a byte of it is read: the size claimed fits `max` (and a
/// frame's 4-byte length), the file holds at least that many bytes, and it carries every seal of `required` (so
/// its size cannot change under the reader) and one of `any_of` (no new writer can appear).
pub fn check(
    claimed: u64,
    seals: i32,
    actual: u64,
    (required, any_of): (i32, i32),
    max: usize,
) -> Result<usize, Refused> {
    if claimed > max as u64 || claimed > u32::MAX as u64 {
        return Err(Refused::TooLarge(format!(
            "IPC message of {claimed} bytes (sent as a memfd) exceeds maxMessageSize ({max} bytes); it was dropped"
        )));
    }
    if seals & required != required || seals & any_of == 0 {
        return Err(Refused::Bad(format!(
            "the memfd of a large message is not sealed against writes and resizing (seals {seals:#x}); the \
             message was dropped"
        )));
    }
    // The sender reuses one file for messages up to its size: the message is its first `claimed` bytes.
    if actual < claimed {
        return Err(Refused::Bad(format!(
            "the memfd of a large message holds {actual} bytes where its marker says {claimed}; the message was \
             dropped"
        )));
    }
    Ok(claimed as usize)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::invariants::hex;

    #[test]
    fn encodes_as_v8_does() {
        // node -p "v8.serialize({cmd:'NODE_FORKLINE_MEMFD',version:1}).toString('hex')"
        let announce = "ff0f6f2203636d6422134e4f44455f464f524b4c494e455f4d454d46442207766572736\
                        96f6e49027b02";
        assert_eq!(encode_announce()[4..], hex(announce));
        // node -p "v8.serialize({cmd:'NODE_FORKLINE_MEMFD_FRAME',size:2**31}).toString('hex')"
        let marker = "ff0f6f2203636d6422194e4f44455f464f524b4c494e455f4d454d46445f4652414d452204\
                      73697a654e000000000000e0417b02";
        assert_eq!(encode_marker(1 << 31)[4..], hex(marker));
    }

    #[test]
    fn parses_only_its_own_frames() {
        let a = encode_announce();
        assert_eq!(parse(&a[4..]), Some(Message::Announce));
        let m = encode_marker(3 << 20);
        assert_eq!(parse(&m[4..]), Some(Message::Marker { size: 3 << 20 }));
        assert!(frames_may_hold(&a) && frames_may_hold(&m));
        // A NaN or negative size is no size.
        let mut bad = m.clone();
        bad[4 + 42..4 + 50].copy_from_slice(&(-1.0f64).to_le_bytes());
        assert_eq!(parse(&bad[4..]), Some(Message::Marker { size: u64::MAX }));
        // Cut short, or with more after it: not ours.
        assert_eq!(parse(&m[4..m.len() - 1]), None);
        let handshake = crate::core::internal::encode(crate::core::internal::Handshake::Ack, true);
        assert_eq!(parse(&handshake[4..]), None);
        assert!(!frames_may_hold(&handshake));
    }

    fn frame(body_len: usize, fill: u8) -> Vec<u8> {
        let mut f = (body_len as u32).to_be_bytes().to_vec();
        f.extend(std::iter::repeat_n(fill, body_len));
        f
    }

    #[test]
    fn splits_around_large_frames() {
        let (a, big, b, c) = (frame(3, 1), frame(10, 2), frame(2, 3), frame(4, 4));
        let run = [a.clone(), big.clone(), b.clone(), c.clone()].concat();
        assert!(has_large(&run, 10) && !has_large(&run, 11));
        assert_eq!(
            split(&run, 10),
            vec![
                Piece::Inline(&a),
                Piece::Large {
                    frame: &big,
                    body: &big[4..]
                },
                Piece::Inline(&run[a.len() + big.len()..]),
            ]
        );
        let only = split(&big, 10);
        assert_eq!(only.len(), 1);
        assert_eq!(split(&run, 100), vec![Piece::Inline(&run)]);
    }

    #[test]
    fn checks_size_and_seals() {
        // SHRINK | GROW, and WRITE or FUTURE_WRITE, as in os/sys.rs.
        const SEALS: (i32, i32) = (0b0110, 0b1_1000);
        const OURS: i32 = 0b1_0110;
        const WRITE: i32 = 0b0_1110;
        assert_eq!(check(100, OURS, 100, SEALS, 1000), Ok(100));
        assert_eq!(check(100, WRITE | 1, 100, SEALS, 1000), Ok(100));
        assert!(matches!(
            check(1001, OURS, 1001, SEALS, 1000),
            Err(Refused::TooLarge(_))
        ));
        assert!(matches!(
            check(u64::MAX, OURS, 5, SEALS, usize::MAX),
            Err(Refused::TooLarge(_))
        ));
        assert!(
            matches!(check(100, 0b0110, 100, SEALS, 1000), Err(Refused::Bad(_))),
            "no write seal"
        );
        assert!(
            matches!(check(100, 0b1_0100, 100, SEALS, 1000), Err(Refused::Bad(_))),
            "can shrink"
        );
        assert!(matches!(
            check(100, OURS, 99, SEALS, 1000),
            Err(Refused::Bad(_))
        ));
        assert_eq!(
            check(100, OURS, 4096, SEALS, 1000),
            Ok(100),
            "a reused, larger file"
        );
    }
}

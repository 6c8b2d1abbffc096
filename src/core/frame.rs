//! Pure, resumable decoders for Node's two IPC wire formats: no I/O, no napi.
//!
//! json mode: each message is one UTF-8 line ending in `\n` (lib/internal/child_process/serialization.js).
//! advanced mode: each message is a 4-byte big-endian length followed by that many bytes of V8 serializer output.
//!
//! Decoders never buffer more than `max` bytes of one message: an oversized message is skipped (json: to the next
//! newline; advanced: by its declared length) and reported once, so the messages around it still arrive.

use crate::core::buffers;
use crate::core::error::Code;

/// What a decoder hands on, in wire order.
#[derive(Debug, PartialEq, Eq)]
pub enum Frame {
    /// One or more complete json lines, each ending in `\n`, valid UTF-8.
    Lines(String),
    /// One or more complete advanced-mode frames, each a 4-byte big-endian length and its body.
    Frames(Vec<u8>),
    /// A message that could not be decoded; the stream goes on after it.
    Error { code: Code, message: String },
}

impl Frame {
    /// The wire bytes it holds (none for an error).
    pub fn wire_len(&self) -> usize {
        match self {
            Frame::Lines(text) => text.len(),
            Frame::Frames(run) => run.len(),
            Frame::Error { .. } => 0,
        }
    }
}

/// Where decoded frames go; a closure or a `Vec<Frame>` in tests.
pub trait FrameSink {
    fn frame(&mut self, frame: Frame);
}

impl FrameSink for Vec<Frame> {
    fn frame(&mut self, frame: Frame) {
        self.push(frame);
    }
}

/// The two decoders behind one interface, chosen by `NODE_CHANNEL_SERIALIZATION_MODE`.
#[derive(Debug)]
pub enum Decoder {
    Json(LineDecoder),
    Advanced(LengthDecoder),
}

impl Decoder {
    pub fn new(advanced: bool, max: usize) -> Self {
        if advanced {
            Decoder::Advanced(LengthDecoder::new(max))
        } else {
            Decoder::Json(LineDecoder::new(max))
        }
    }

    pub fn feed(&mut self, data: &[u8], sink: &mut impl FrameSink) {
        match self {
            Decoder::Json(d) => d.feed(data, sink),
            Decoder::Advanced(d) => d.feed(data, sink),
        }
    }

    /// The largest message it takes (maxMessageSize).
    pub fn max(&self) -> usize {
        match self {
            Decoder::Json(d) => d.max,
            Decoder::Advanced(d) => d.max,
        }
    }

    /// Whether a large message (`LARGE_MESSAGE` or more) has begun and not ended, or an oversized one is still
    /// being skipped.
    pub fn in_large_message(&self) -> bool {
        match self {
            Decoder::Json(d) => d.skipping || d.partial.len() >= LARGE_MESSAGE,
            Decoder::Advanced(d) => {
                d.skip > 0 || (!d.partial.is_empty() && d.want >= LARGE_MESSAGE)
            }
        }
    }

    /// The unfinished large advanced frame, with room reserved for all of it, and how many bytes it still takes: the
    /// next read can go straight into it (then `direct_filled`) rather than through the read buffer and a copy.
    pub fn direct(&mut self) -> Option<(&mut Vec<u8>, usize)> {
        match self {
            Decoder::Advanced(d)
                if d.skip == 0
                    && d.partial.len() >= 4
                    && d.want >= LARGE_MESSAGE
                    && d.partial.capacity() >= d.want =>
            {
                let rest = d.want - d.partial.len();
                Some((&mut d.partial, rest))
            }
            _ => None,
        }
    }

    /// After a read straight into the frame `direct` gave: hands it on once it is whole.
    pub fn direct_filled(&mut self, sink: &mut impl FrameSink) {
        if let Decoder::Advanced(d) = self {
            if d.partial.len() == d.want {
                sink.frame(Frame::Frames(std::mem::take(&mut d.partial)));
            }
        }
    }

    /// End of stream: reports a message cut short, if any.
    pub fn finish(&mut self, sink: &mut impl FrameSink) {
        match self {
            Decoder::Json(d) => d.finish(sink),
            Decoder::Advanced(d) => d.finish(sink),
        }
    }
}

fn too_large(len: usize, max: usize) -> Frame {
    Frame::Error {
        code: Code::MessageTooLarge,
        message: format!("IPC message of {len} bytes or more exceeds maxMessageSize ({max} bytes); it was dropped"),
    }
}

/// The size from which an unfinished line's first piece counts as the start of a big message (`last_long`).
const LONG_LINE_START: usize = 64 * 1024;
/// What `in_large_message` calls large.
pub const LARGE_MESSAGE: usize = 64 * 1024;

/// Splits a byte stream into newline-terminated UTF-8 lines.
#[derive(Debug)]
pub struct LineDecoder {
    max: usize,
    /// The start of a line whose end has not arrived yet.
    partial: Vec<u8>,
    /// Dropping the rest of an oversized line until its newline.
    skipping: bool,
    /// The length (newline included) of the last line that took more than one read: the next such line gets that
    /// much room at once, instead of growing by doubling (copying, and faulting in memory it then drops).
    last_long: usize,
}

impl LineDecoder {
    pub fn new(max: usize) -> Self {
        LineDecoder {
            max,
            partial: Vec::new(),
            skipping: false,
            last_long: 0,
        }
    }

    pub fn feed(&mut self, mut data: &[u8], sink: &mut impl FrameSink) {
        // Finish the line carried over from earlier reads first.
        if self.skipping || !self.partial.is_empty() {
            let Some(nl) = memchr::memchr(b'\n', data) else {
                self.carry(data, sink);
                return;
            };
            let (head, rest) = (&data[..nl], &data[nl + 1..]);
            data = rest;
            if self.skipping {
                self.skipping = false;
            } else if self.partial.len() + head.len() > self.max {
                let len = self.partial.len() + head.len();
                self.partial = Vec::new();
                sink.frame(too_large(len, self.max));
            } else {
                let mut line = std::mem::take(&mut self.partial);
                line.reserve_exact(head.len() + 1);
                line.extend_from_slice(head);
                line.push(b'\n');
                self.last_long = line.len();
                emit_lines(line, self.max, sink);
            }
        }
        // Then every complete line in this read, as one batch.
        match memchr::memrchr(b'\n', data) {
            Some(last) => {
                emit_lines(data[..=last].to_vec(), self.max, sink);
                self.carry(&data[last + 1..], sink);
            }
            None => self.carry(data, sink),
        }
    }

    /// Keeps the unfinished tail of a line, unless that would pass `max`.
    fn carry(&mut self, tail: &[u8], sink: &mut impl FrameSink) {
        if self.skipping || tail.is_empty() {
            return;
        }
        if self.partial.len() + tail.len() > self.max {
            let len = self.partial.len() + tail.len();
            self.partial = Vec::new();
            self.skipping = true;
            sink.frame(too_large(len, self.max));
        } else {
            // Only for a start that is big itself: a small message cut by a read keeps a small buffer.
            if self.partial.is_empty() && tail.len() >= LONG_LINE_START {
                self.partial
                    .reserve_exact(self.last_long.min(self.max).max(tail.len()));
            }
            grow_within(&mut self.partial, tail.len(), self.max);
            self.partial.extend_from_slice(tail);
        }
    }

    /// The bytes of an unfinished line held, and the allocation holding them: the memory bound the fuzz targets and
    /// property tests check (core/invariants.rs).
    #[cfg(any(test, fuzzing))]
    pub fn buffered(&self) -> (usize, usize) {
        (self.partial.len(), self.partial.capacity())
    }

    pub fn finish(&mut self, sink: &mut impl FrameSink) {
        let cut = self.partial.len();
        self.partial = Vec::new();
        if cut > 0 && !self.skipping {
            sink.frame(Frame::Error {
                code: Code::TruncatedMessage,
                message: format!("the channel closed {cut} bytes into a message that never ended"),
            });
        }
        self.skipping = false;
    }
}

/// Emits a run of complete lines as one `Lines` frame. Only when the run as a whole is bad (invalid UTF-8, or longer
/// than `max`) is it split per line, so the good lines around a bad one still go through, in order.
fn emit_lines(run: Vec<u8>, max: usize, sink: &mut impl FrameSink) {
    if run.len() <= max {
        match String::from_utf8(run) {
            Ok(text) => return sink.frame(Frame::Lines(text)),
            Err(e) => return split_bad_run(&e.into_bytes(), max, sink),
        }
    }
    split_bad_run(&run, max, sink)
}

fn split_bad_run(run: &[u8], max: usize, sink: &mut impl FrameSink) {
    let mut good = String::new();
    for line in run.split_inclusive(|&b| b == b'\n') {
        let body = line.len() - 1;
        let problem = if body > max {
            Some(too_large(body, max))
        } else {
            match std::str::from_utf8(line) {
                Ok(text) => {
                    good.push_str(text);
                    None
                }
                Err(e) => Some(Frame::Error {
                    code: Code::MalformedMessage,
                    message: format!(
                        "IPC message is not valid UTF-8 (bad byte at offset {})",
                        e.valid_up_to()
                    ),
                }),
            }
        };
        if let Some(err) = problem {
            if !good.is_empty() {
                sink.frame(Frame::Lines(std::mem::take(&mut good)));
            }
            sink.frame(err);
        }
    }
    if !good.is_empty() {
        sink.frame(Frame::Lines(good));
    }
}

/// Makes room for `more` bytes in `buf` the way Vec does (at least doubling, so many small reads stay cheap), but
/// never past `limit`, the most the message may hold: an unfinished message costs no more than it may be.
fn grow_within(buf: &mut Vec<u8>, more: usize, limit: usize) {
    let need = buf.len() + more;
    if need > buf.capacity() {
        let target = need
            .max(buf.capacity().saturating_mul(2))
            .min(limit.max(need));
        buf.reserve_exact(target - buf.len());
    }
}

/// Splits a byte stream into frames of a 4-byte big-endian length and a body. Complete frames that sit together
/// in one read leave as one `Frames` run (prefixes kept), so JS walks many small messages per crossing.
#[derive(Debug)]
pub struct LengthDecoder {
    max: usize,
    /// A frame not yet complete, from its first prefix byte on.
    partial: Vec<u8>,
    /// Its whole length, prefix included, once the prefix is known.
    want: usize,
    /// Bytes still to drop of an oversized frame.
    skip: usize,
}

fn frame_len(prefix: &[u8]) -> usize {
    u32::from_be_bytes([prefix[0], prefix[1], prefix[2], prefix[3]]) as usize
}

impl LengthDecoder {
    pub fn new(max: usize) -> Self {
        LengthDecoder {
            max,
            partial: Vec::new(),
            want: 0,
            skip: 0,
        }
    }

    pub fn feed(&mut self, mut data: &[u8], sink: &mut impl FrameSink) {
        loop {
            if self.skip > 0 {
                let n = self.skip.min(data.len());
                self.skip -= n;
                data = &data[n..];
            }
            if !self.partial.is_empty() {
                if self.partial.len() < 4 {
                    let n = (4 - self.partial.len()).min(data.len());
                    grow_within(&mut self.partial, n, 4);
                    self.partial.extend_from_slice(&data[..n]);
                    data = &data[n..];
                    if self.partial.len() < 4 {
                        return;
                    }
                    let len = frame_len(&self.partial);
                    if len > self.max {
                        self.partial = Vec::new();
                        self.skip = len;
                        sink.frame(too_large(len, self.max));
                        continue;
                    }
                    self.want = len + 4;
                }
                let n = (self.want - self.partial.len()).min(data.len());
                grow_within(
                    &mut self.partial,
                    n,
                    buffers::room(self.want, self.max.saturating_add(4)),
                );
                self.partial.extend_from_slice(&data[..n]);
                data = &data[n..];
                if self.partial.len() < self.want {
                    return;
                }
                sink.frame(Frame::Frames(std::mem::take(&mut self.partial)));
            }
            if data.is_empty() {
                return;
            }
            // Aligned on a frame: take every complete frame in this read as one run.
            let mut end = 0;
            while data.len() - end >= 4 {
                let len = frame_len(&data[end..]);
                if len > self.max || data.len() - end - 4 < len {
                    break;
                }
                end += 4 + len;
            }
            if end > 0 {
                sink.frame(Frame::Frames(data[..end].to_vec()));
                data = &data[end..];
                continue;
            }
            // The frame's whole length, once its prefix is here (0 until then: never the last frame's).
            self.want = 0;
            if data.len() >= 4 {
                let len = frame_len(data);
                if len > self.max {
                    self.skip = len;
                    data = &data[4..];
                    sink.frame(too_large(len, self.max));
                    continue;
                }
                self.want = len + 4;
            }
            // A large frame goes into a kept buffer (buffers.rs) when one fits. Otherwise reserve what has arrived,
            // not what the prefix claims: a bogus prefix must not reserve `max` bytes.
            let limit = self.max.saturating_add(4);
            self.partial = buffers::take(self.want, limit).unwrap_or_else(|| {
                Vec::with_capacity(buffers::room(data.len().max(self.want.min(1 << 20)), limit))
            });
            self.partial.extend_from_slice(data);
            return;
        }
    }

    /// The bytes of an unfinished frame held (its prefix included), and the allocation holding them: the memory
    /// bound the fuzz targets and property tests check (core/invariants.rs).
    #[cfg(any(test, fuzzing))]
    pub fn buffered(&self) -> (usize, usize) {
        (self.partial.len(), self.partial.capacity())
    }

    pub fn finish(&mut self, sink: &mut impl FrameSink) {
        let cut = std::mem::take(&mut self.partial).len();
        self.skip = 0;
        if cut > 0 {
            sink.frame(Frame::Error {
                code: Code::TruncatedMessage,
                message: format!("the channel closed {cut} bytes into a message that never ended"),
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lines_of(frames: &[Frame]) -> Vec<String> {
        let mut out = Vec::new();
        for f in frames {
            if let Frame::Lines(s) = f {
                out.extend(s.split_inclusive('\n').map(str::to_owned));
            }
        }
        out
    }

    fn codes(frames: &[Frame]) -> Vec<Code> {
        frames
            .iter()
            .filter_map(|f| match f {
                Frame::Error { code, .. } => Some(*code),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn whole_lines_come_as_one_batch() {
        let mut d = LineDecoder::new(1024);
        let mut out = Vec::new();
        d.feed(b"{\"a\":1}\n\"x\"\n", &mut out);
        assert_eq!(out, vec![Frame::Lines("{\"a\":1}\n\"x\"\n".into())]);
    }

    #[test]
    fn a_message_split_at_every_byte_reassembles() {
        let wire = "{\"s\":\"h\u{e9}llo \u{1F600} \u{2028}\"}\n[1,2]\n\"\u{4e2d}\"\n".as_bytes();
        for cut in 0..=wire.len() {
            let mut d = LineDecoder::new(1024);
            let mut out = Vec::new();
            d.feed(&wire[..cut], &mut out);
            d.feed(&wire[cut..], &mut out);
            d.finish(&mut out);
            assert_eq!(lines_of(&out).concat().as_bytes(), wire, "cut at {cut}");
            assert!(codes(&out).is_empty(), "cut at {cut}");
        }
    }

    #[test]
    fn byte_by_byte_multibyte_utf8() {
        let wire = "\"\u{1F600}\u{1F600}\"\n".as_bytes();
        let mut d = LineDecoder::new(64);
        let mut out = Vec::new();
        for b in wire {
            d.feed(std::slice::from_ref(b), &mut out);
        }
        assert_eq!(lines_of(&out), vec!["\"\u{1F600}\u{1F600}\"\n".to_string()]);
    }

    #[test]
    fn invalid_utf8_line_is_reported_and_neighbours_survive() {
        let mut d = LineDecoder::new(1024);
        let mut out = Vec::new();
        d.feed(b"1\n\"\xff\xfe\"\n2\n", &mut out);
        assert_eq!(lines_of(&out), vec!["1\n", "2\n"]);
        assert_eq!(codes(&out), vec![Code::MalformedMessage]);
        assert!(
            matches!(out[1], Frame::Error { .. }),
            "error sits between the two lines"
        );
    }

    #[test]
    fn oversized_line_in_one_read_is_dropped_alone() {
        let mut d = LineDecoder::new(8);
        let mut out = Vec::new();
        d.feed(b"1\n\"0123456789\"\n2\n", &mut out);
        assert_eq!(lines_of(&out), vec!["1\n", "2\n"]);
        assert_eq!(codes(&out), vec![Code::MessageTooLarge]);
    }

    #[test]
    fn oversized_line_across_reads_is_skipped_to_its_newline() {
        let mut d = LineDecoder::new(8);
        let mut out = Vec::new();
        d.feed(b"1\n\"01234", &mut out);
        d.feed(b"56789", &mut out);
        d.feed(b"abcdef", &mut out);
        d.feed(b"\"\n2\n", &mut out);
        d.finish(&mut out);
        assert_eq!(lines_of(&out), vec!["1\n", "2\n"]);
        assert_eq!(codes(&out), vec![Code::MessageTooLarge]);
        assert!(d.partial.capacity() <= 16, "no oversized buffer is kept");
    }

    #[test]
    fn eof_inside_a_line_is_truncation() {
        let mut d = LineDecoder::new(64);
        let mut out = Vec::new();
        d.feed(b"1\n{\"a\":", &mut out);
        d.finish(&mut out);
        assert_eq!(lines_of(&out), vec!["1\n"]);
        assert_eq!(codes(&out), vec![Code::TruncatedMessage]);
    }

    fn frame(body: &[u8]) -> Vec<u8> {
        let mut v = (body.len() as u32).to_be_bytes().to_vec();
        v.extend_from_slice(body);
        v
    }

    /// Splits runs back into frame bodies.
    fn bodies(frames: &[Frame]) -> Vec<Vec<u8>> {
        let mut out = Vec::new();
        for f in frames {
            if let Frame::Frames(run) = f {
                let mut at = 0;
                while at < run.len() {
                    let len = frame_len(&run[at..]);
                    out.push(run[at + 4..at + 4 + len].to_vec());
                    at += 4 + len;
                }
                assert_eq!(at, run.len(), "a run holds whole frames only");
            }
        }
        out
    }

    #[test]
    fn length_frames_split_at_every_byte() {
        let mut wire = frame(b"hello");
        wire.extend(frame(b""));
        wire.extend(frame(&[0xff; 300]));
        for cut in 0..=wire.len() {
            let mut d = LengthDecoder::new(1024);
            let mut out = Vec::new();
            d.feed(&wire[..cut], &mut out);
            d.feed(&wire[cut..], &mut out);
            d.finish(&mut out);
            assert!(codes(&out).is_empty(), "cut at {cut}");
            assert_eq!(
                bodies(&out),
                vec![b"hello".to_vec(), vec![], vec![0xff; 300]],
                "cut at {cut}"
            );
        }
    }

    #[test]
    fn whole_frames_in_one_read_come_as_one_run() {
        let mut wire = frame(b"a");
        wire.extend(frame(b"bc"));
        let mut d = LengthDecoder::new(64);
        let mut out = Vec::new();
        d.feed(&wire, &mut out);
        assert_eq!(out, vec![Frame::Frames(wire)]);
    }

    #[test]
    fn oversized_length_prefix_is_skipped_without_reserving() {
        let mut wire = frame(b"a");
        wire.extend(frame(&[7; 40]));
        wire.extend(frame(b"b"));
        for cut in 0..=wire.len() {
            let mut d = LengthDecoder::new(16);
            let mut out = Vec::new();
            d.feed(&wire[..cut], &mut out);
            d.feed(&wire[cut..], &mut out);
            assert_eq!(codes(&out), vec![Code::MessageTooLarge], "cut at {cut}");
            assert_eq!(
                bodies(&out),
                vec![b"a".to_vec(), b"b".to_vec()],
                "cut at {cut}"
            );
        }
    }

    #[test]
    fn a_large_frame_read_straight_into_its_buffer_is_the_same_frame() {
        let body: Vec<u8> = (0..3 * LARGE_MESSAGE).map(|i| i as u8).collect();
        let mut wire = frame(&body);
        wire.extend(frame(b"next"));
        let mut d = Decoder::new(true, usize::MAX);
        let mut out = Vec::new();
        let mut at = 0;
        let mut direct_reads = 0;
        while at < wire.len() {
            match d.direct() {
                Some((buf, rest)) => {
                    // As a read of at most 1000 bytes at a time would bring it.
                    let n = rest.min(1000);
                    buf.extend_from_slice(&wire[at..at + n]);
                    at += n;
                    direct_reads += 1;
                    d.direct_filled(&mut out);
                }
                None => {
                    let n = (wire.len() - at).min(70_000);
                    d.feed(&wire[at..at + n], &mut out);
                    at += n;
                }
            }
        }
        assert!(direct_reads > 100);
        assert_eq!(bodies(&out), vec![body, b"next".to_vec()]);
    }

    #[test]
    fn bogus_huge_prefix_reserves_little() {
        let mut d = LengthDecoder::new(usize::MAX);
        let mut out = Vec::new();
        d.feed(&[0xff, 0xff, 0xff, 0xf0, 1, 2, 3], &mut out);
        assert!(
            d.partial.capacity() <= 1 << 20,
            "reserved {}",
            d.partial.capacity()
        );
        d.finish(&mut out);
        assert_eq!(codes(&out), vec![Code::TruncatedMessage]);
    }

    #[test]
    fn truncated_length_frame_at_eof() {
        let mut d = LengthDecoder::new(64);
        let mut out = Vec::new();
        d.feed(&[0, 0], &mut out);
        d.finish(&mut out);
        assert_eq!(codes(&out), vec![Code::TruncatedMessage]);
    }
}

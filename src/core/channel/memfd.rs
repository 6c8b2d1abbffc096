//! Large advanced messages as sealed memfds, on a [`Channel`] (the protocol is core/memfd.rs): the announce this
//! end sends when it opens, the write that puts large frames into memfds once the peer has announced, and what
//! the reader does with the announce and with a marker and its fd.

use std::borrow::Cow;
use std::io::IoSlice;
use std::os::fd::{AsFd, OwnedFd};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use super::inbound::Inbound;
use super::{Channel, Event, Written};
use crate::core::buffers;
use crate::core::error::{Code, SysError};
use crate::core::frame::Frame;
use crate::core::internal::{self, Handshake};
use crate::core::memfd::{self, Message, Piece, Refused};
use crate::os::{reactor, sys};

/// Who has said what: memfds go out only when both ends announced.
#[derive(Debug, Default)]
pub(super) struct MemfdState {
    /// We announced (and so take memfds).
    ours: AtomicBool,
    /// We announce in answer to the peer's announce (the parent's end: a plain Node child never announces, and
    /// then the bytes on the wire stay exactly Node's).
    answer: AtomicBool,
    /// The peer announced.
    peer: AtomicBool,
    /// The file large messages go in, reused from one to the next (sys::MemfdBuf).
    pool: Mutex<Option<sys::MemfdBuf>>,
    /// The peer's file, mapped while it keeps sending the same one.
    peer_map: Mutex<Option<sys::PeerMap>>,
    /// Counts the uses of either file, so the idle sweep can tell whether they were used since it was set.
    uses: AtomicU64,
    /// An idle sweep is set.
    sweep_set: AtomicBool,
}

/// How long both files are kept once large messages stop: a file holds up to `memfd::POOL_MAX` of shared memory,
/// per channel and on each side.
const KEEP_IDLE_FILES: Duration = Duration::from_secs(2);

impl Channel {
    /// Announces, before anything else is written, that this end takes large messages as memfds (the child
    /// runtime's end, whose parent is always forkline). Advanced mode only (json lines are text for JSON.parse, not
    /// Buffers). A failed send announces nothing: the peer then never sends a memfd.
    pub fn announce_memfd(&self) {
        if !self.advanced || self.memfd.ours.swap(true, Ordering::AcqRel) {
            return;
        }
        let frame = memfd::encode_announce();
        if !matches!(sys::send(self.sock.as_fd(), &[IoSlice::new(&frame)], None, false), Ok(n) if n == frame.len())
        {
            self.memfd.ours.store(false, Ordering::Release);
        }
    }

    /// Announces in answer, once the peer has announced (the parent's end).
    pub fn answer_memfd(&self) {
        self.memfd.answer.store(self.advanced, Ordering::Release);
    }

    /// The peer announced: note it, and answer if we are to.
    fn peer_announced(self: &Arc<Self>) {
        self.memfd.peer.store(true, Ordering::Release);
        if self.memfd.answer.load(Ordering::Acquire)
            && !self.memfd.ours.swap(true, Ordering::AcqRel)
        {
            let frame = memfd::encode_announce();
            let len = frame.len();
            // Through the queue: other writes may be under way, and a frame must not land inside one.
            self.send_control(frame, None);
            self.stats.memfd_sent(len, 0);
        }
    }

    /// Whether both ends announced: large frames then go as memfds.
    pub fn memfd_agreed(&self) -> bool {
        self.memfd.ours.load(Ordering::Acquire) && self.memfd.peer.load(Ordering::Acquire)
    }

    /// `write` for a run of whole frames from the owner: once memfds are agreed, each frame of at least
    /// `memfd::THRESHOLD` body bytes goes as a sealed memfd behind a marker, the rest as it is, in order. One
    /// sequence number for the whole run (the owner's count), taken by the last piece.
    pub fn write_frames(self: &Arc<Self>, data: &[u8]) -> Result<Written, SysError> {
        if !self.memfd_agreed() || !memfd::has_large(data, memfd::THRESHOLD) {
            return self.write(data);
        }
        let pieces = memfd::split(data, memfd::THRESHOLD);
        let last = pieces.len() - 1;
        let mut written = None;
        // The one file is free only while no marker waits for its ACK (the peer copies the bytes out first): a
        // second large frame in the same run goes on the socket.
        let mut free = !self.awaiting_ack();
        for (i, piece) in pieces.into_iter().enumerate() {
            let owners = i == last;
            let (bytes, fd, stands_for) = match piece {
                Piece::Inline(bytes) => (Cow::Borrowed(bytes), None, 0),
                Piece::Large { frame, body } => match self
                    .fill_pool(body, &mut free)
                    .inspect(|_| self.files_used())
                {
                    Some(fd) => (
                        Cow::Owned(memfd::encode_marker(body.len())),
                        Some(fd),
                        frame.len(),
                    ),
                    None => (Cow::Borrowed(frame), None, 0),
                },
            };
            let marker_len = bytes.len();
            written = Some(self.submit(bytes, fd.clone(), owners)?.0);
            if fd.is_some() {
                self.stats.memfd_sent(marker_len, stands_for);
            }
        }
        Ok(written.expect("split gives at least one piece"))
    }

    /// Notes a use of the files, and sets the sweep that lets them go once they stay unused for KEEP_IDLE_FILES.
    fn files_used(self: &Arc<Self>) {
        let uses = self.memfd.uses.fetch_add(1, Ordering::AcqRel) + 1;
        if !self.memfd.sweep_set.swap(true, Ordering::AcqRel) {
            Self::sweep_after(Arc::downgrade(self), uses);
        }
    }

    fn sweep_after(channel: Weak<Channel>, seen: u64) {
        let sweep = move || {
            let Some(channel) = channel.upgrade() else {
                return;
            };
            let uses = channel.memfd.uses.load(Ordering::Acquire);
            if uses != seen {
                return Self::sweep_after(Arc::downgrade(&channel), uses);
            }
            *channel.memfd.pool.lock().unwrap_or_else(|p| p.into_inner()) = None;
            *channel
                .memfd
                .peer_map
                .lock()
                .unwrap_or_else(|p| p.into_inner()) = None;
            channel.memfd.sweep_set.store(false, Ordering::Release);
            // A use that came in meanwhile sets its own sweep.
            if channel.memfd.uses.load(Ordering::Acquire) != uses {
                channel.files_used();
            }
        };
        // No reactor, no timer: the files then stay until the channel closes.
        let _ = reactor::after(KEEP_IDLE_FILES, sweep);
    }

    /// Copies `body` into the channel's file (made, or remade larger, as needed) and returns its fd to send; None
    /// when the file is busy or cannot be had (too large, EMFILE, ENOMEM): the frame then goes on the socket.
    fn fill_pool(&self, body: &[u8], free: &mut bool) -> Option<Arc<OwnedFd>> {
        if !std::mem::take(free) || body.len() > memfd::POOL_MAX {
            return None;
        }
        let mut pool = self.memfd.pool.lock().unwrap_or_else(|p| p.into_inner());
        if pool.as_ref().is_none_or(|buf| buf.len() < body.len()) {
            *pool = None;
            *pool = sys::MemfdBuf::new(body.len().next_power_of_two()).ok();
        }
        let buf = pool.as_mut()?;
        buf.fill(body);
        Some(buf.fd())
    }

    /// A marker's memfd: checked (a sealed memfd of exactly the size claimed, within maxMessageSize) and read into
    /// a whole frame. The fd is closed here either way.
    fn read_memfd(&self, fd: OwnedFd, claimed: u64, max: usize) -> Result<Vec<u8>, Frame> {
        let refused = |code: Code, message: String| Frame::Error { code, message };
        let info = sys::memfd_info(fd.as_fd()).map_err(|e| {
            refused(
                Code::BadMemfd,
                format!(
                    "the fd sent with a large message is not a sealable memfd ({e}); the message was dropped"
                ),
            )
        })?;
        let size = memfd::check(
            claimed,
            info.seals,
            info.size,
            sys::MEMFD_SEALS_REQUIRED,
            max,
        )
        .map_err(|r| match r {
            Refused::TooLarge(m) => refused(Code::MessageTooLarge, m),
            Refused::Bad(m) => refused(Code::BadMemfd, m),
        })?;
        let mut frame = buffers::take(4 + size, 4 + max)
            .unwrap_or_else(|| Vec::with_capacity(buffers::room(4 + size, 4 + max)));
        frame.extend_from_slice(&(size as u32).to_be_bytes());
        // A forkline peer sends the same file every time: map it once, copy out of it from then on.
        let mut map = self
            .memfd
            .peer_map
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        if !map.as_ref().is_some_and(|m| m.maps(&info, size)) {
            *map = None;
            *map = sys::PeerMap::new(fd.as_fd(), &info).ok();
        }
        match map.as_ref() {
            Some(m) => m.copy_into(size, &mut frame),
            None => sys::read_memfd_into(fd.as_fd(), size, &mut frame).map_err(|e| {
                refused(
                    Code::BadMemfd,
                    format!("the memfd of a large message cannot be read ({e}); the message was dropped"),
                )
            })?,
        }
        Ok(frame)
    }
}

impl Inbound<'_> {
    /// A run holding our own frames: the announce is taken note of, each marker is replaced by its memfd's frame
    /// (or an error), and the frames around them pass on as before, in order.
    pub(super) fn memfd_frames(&mut self, run: Vec<u8>) {
        let mut pass = Vec::new();
        for (frame, body) in memfd::frames(&run) {
            let Some(ours) = memfd::parse(body) else {
                pass.extend_from_slice(frame);
                continue;
            };
            let stands_for = match ours {
                Message::Announce => 0,
                Message::Marker { size } => {
                    usize::try_from(size).map_or(0, |s| s.saturating_add(4))
                }
            };
            self.channel.stats.memfd_received(frame.len(), stands_for);
            if !pass.is_empty() {
                self.pass_on(Frame::Frames(std::mem::take(&mut pass)));
            }
            match ours {
                Message::Announce => self.channel.peer_announced(),
                Message::Marker { size } => self.memfd_marker(size),
            }
        }
        if !pass.is_empty() {
            self.pass_on(Frame::Frames(pass));
        }
    }

    fn memfd_marker(&mut self, size: u64) {
        let Some(fd) = self.pending_fd.envelope() else {
            // As for a handle's envelope without its fd: NACK, and the sender tries again (at most three times).
            self.nack(true);
            return self.pass_on(Frame::Error {
                code: Code::BadMemfd,
                message: "a large message's marker arrived without its memfd; it was not delivered (the sender \
                          is asked to send it again)"
                    .into(),
            });
        };
        let read = self.channel.read_memfd(fd, size, self.channel.max_message);
        self.channel.files_used();
        // The fd came and its bytes are ours (or refused): the sender may go on, and reuse the file.
        self.channel
            .send_control(internal::encode(Handshake::Ack, true), None);
        match read {
            Ok(frame) => {
                let frame = Frame::Frames(frame);
                self.channel.stats.received(&frame, true);
                if let Frame::Frames(frame) = frame {
                    self.deliver_with_fd(Event::LargeFrame(frame));
                }
            }
            Err(error) => {
                // Refused: if it was one sent again, nothing will fill its place.
                self.resent_lost();
                self.pass_on(error)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::io::Read;
    use std::os::unix::net::UnixStream;

    use super::*;
    use crate::core::channel::EventSink;
    use crate::core::frame::Decoder;

    #[derive(Default)]
    struct Events(Mutex<Vec<Event>>);
    impl EventSink for Events {
        fn push(&self, event: Event) {
            self.0.lock().unwrap().push(event);
        }
    }

    fn frame(body: &[u8]) -> Vec<u8> {
        let mut f = (body.len() as u32).to_be_bytes().to_vec();
        f.extend_from_slice(body);
        f
    }

    /// An advanced channel with nobody reading it, and the socket of its peer.
    fn advanced_pair() -> (Arc<Channel>, UnixStream) {
        let (ours, theirs) = sys::socketpair().unwrap();
        let ch = Channel::new(
            ours,
            Decoder::new(true, usize::MAX),
            Arc::new(Events::default()),
        );
        (ch, UnixStream::from(theirs))
    }

    /// The frames read from `peer` until `n` have come.
    fn frames_from(peer: &mut UnixStream, n: usize) -> Vec<Vec<u8>> {
        let mut decoder = Decoder::new(true, usize::MAX);
        let mut frames: Vec<Frame> = Vec::new();
        let mut buf = vec![0u8; 1 << 16];
        let mut got = Vec::new();
        peer.set_read_timeout(Some(std::time::Duration::from_secs(10)))
            .unwrap();
        while got.len() < n {
            let k = peer
                .read(&mut buf)
                .unwrap_or_else(|e| panic!("{e} after {} frames", got.len()));
            assert!(k > 0, "EOF after {} frames", got.len());
            decoder.feed(&buf[..k], &mut frames);
            for f in frames.drain(..) {
                let Frame::Frames(run) = f else {
                    panic!("{f:?}")
                };
                got.extend(memfd::frames(&run).map(|(f, _)| f.to_vec()));
            }
        }
        got
    }

    #[test]
    fn an_answer_never_lands_inside_a_write_under_way() {
        let (ch, mut peer) = advanced_pair();
        let big = frame(&vec![7u8; 4 << 20]);
        // More than the socket holds: the rest waits in the queue, begun.
        ch.write(&big).unwrap();
        ch.send_control(memfd::encode_announce(), None);
        let got = frames_from(&mut peer, 2);
        assert_eq!(got, vec![big, memfd::encode_announce()]);
    }

    #[test]
    fn a_large_frame_goes_as_a_memfd_once_both_announced() {
        let (ch, mut peer) = advanced_pair();
        let small = frame(b"\xff\x0f\x22\x01a");
        let large = frame(&vec![3u8; memfd::THRESHOLD]);
        let run = [small.clone(), large.clone(), small.clone()].concat();
        // Not announced: as it is.
        ch.write_frames(&run).unwrap();
        assert_eq!(
            frames_from(&mut peer, 3),
            vec![small.clone(), large.clone(), small.clone()]
        );
        // Both announced: the large one as a marker with its fd, in its place.
        ch.announce_memfd();
        ch.memfd.peer.store(true, Ordering::Release);
        assert!(ch.memfd_agreed());
        ch.write_frames(&run).unwrap();
        let marker = memfd::encode_marker(memfd::THRESHOLD);
        assert_eq!(
            frames_from(&mut peer, 3),
            vec![memfd::encode_announce(), small.clone(), marker]
        );
        // The last small frame waits for the peer's ACK of the marker.
        assert!(ch.awaiting_ack());
        ch.on_ack();
        assert_eq!(frames_from(&mut peer, 1), vec![small]);
    }
}

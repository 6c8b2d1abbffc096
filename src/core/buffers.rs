//! Large message buffers kept for the next large message. A large advanced frame (read from the socket, or copied
//! out of a peer's memfd) goes to JS in its own Vec, as an external Buffer; when V8 collects that Buffer its
//! finalizer gives the Vec back here, and the next large frame is read into memory already faulted in. A fresh
//! megabyte costs ~250 page faults (more than copying it), and freed large blocks go back to the kernel, so without
//! this every large message paid for its memory twice. What is kept is bounded, and let go once large messages stop.

use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Buffers smaller than this are not kept (such frames go to JS as a copy).
pub const MIN: usize = 256 * 1024;
/// At most this much is kept at once.
const MAX_KEPT: usize = 64 * 1024 * 1024;
/// Kept buffers are let go after this long without a large message taken or given back.
pub const IDLE: Duration = Duration::from_secs(2);
/// Large buffers are made a multiple of this, so that messages of nearly the same size share them.
const GRAIN: usize = 64 * 1024;

/// The room to make for a large message of `len` bytes that may hold no more than `limit`.
pub fn room(len: usize, limit: usize) -> usize {
    if len < MIN {
        return len;
    }
    len.div_ceil(GRAIN)
        .saturating_mul(GRAIN)
        .min(limit)
        .max(len)
}

/// A set of kept buffers.
#[derive(Default)]
pub struct Kept {
    free: Vec<Vec<u8>>,
    bytes: usize,
    last: Option<Instant>,
}

impl Kept {
    pub const fn new() -> Self {
        Kept {
            free: Vec::new(),
            bytes: 0,
            last: None,
        }
    }

    /// An empty buffer with room for `len` bytes and at most `limit` (and not more than twice `len`), if one is kept.
    pub fn take(&mut self, len: usize, limit: usize) -> Option<Vec<u8>> {
        if len < MIN {
            return None;
        }
        let most = limit.min(len.saturating_mul(2));
        let best = self
            .free
            .iter()
            .enumerate()
            .filter(|(_, b)| b.capacity() >= len && b.capacity() <= most)
            .min_by_key(|(_, b)| b.capacity())
            .map(|(i, _)| i)?;
        let buf = self.free.swap_remove(best);
        self.bytes -= buf.capacity();
        self.last = Some(Instant::now());
        Some(buf)
    }

    /// Keeps `buf` for a later `take` if it is large, letting the oldest kept ones go to make room; true if it was
    /// kept.
    pub fn give(&mut self, mut buf: Vec<u8>) -> bool {
        let size = buf.capacity();
        if !(MIN..=MAX_KEPT).contains(&size) {
            return false;
        }
        while self.bytes + size > MAX_KEPT {
            let oldest = self.free.remove(0);
            self.bytes -= oldest.capacity();
        }
        buf.clear();
        self.bytes += size;
        self.free.push(buf);
        self.last = Some(Instant::now());
        true
    }

    /// Lets everything go if nothing was taken or given back for `IDLE`; returns whether anything is still kept.
    pub fn trim(&mut self, now: Instant) -> bool {
        if self
            .last
            .is_some_and(|last| now.duration_since(last) >= IDLE)
        {
            self.free = Vec::new();
            self.bytes = 0;
        }
        !self.free.is_empty()
    }

    pub fn bytes(&self) -> usize {
        self.bytes
    }
}

/// The process's kept buffers, shared by every channel (the reactor thread reads for many of them).
static KEPT: Mutex<Kept> = Mutex::new(Kept::new());

fn kept() -> std::sync::MutexGuard<'static, Kept> {
    KEPT.lock().unwrap_or_else(|p| p.into_inner())
}

/// An empty buffer with room for `len` bytes (and at most `limit`), if one is kept.
pub fn take(len: usize, limit: usize) -> Option<Vec<u8>> {
    kept().take(len, limit)
}

/// Gives a large message's buffer back for the next one. Returns true if this made the set non-empty, so that the
/// caller arranges a `trim` after `IDLE`.
pub fn give(buf: Vec<u8>) -> bool {
    let mut kept = kept();
    let was_empty = kept.bytes() == 0;
    kept.give(buf) && was_empty
}

/// See `Kept::trim`; true while buffers remain kept (the caller checks again after `IDLE`).
pub fn trim() -> bool {
    kept().trim(Instant::now())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn room_is_a_multiple_of_the_grain_within_the_limit() {
        assert_eq!(room(1000, usize::MAX), 1000, "small: as asked");
        assert_eq!(room(MIN + 1, usize::MAX), MIN + GRAIN);
        assert_eq!(room(MIN + 1, MIN + 10), MIN + 10);
        assert_eq!(room(2 * MIN, usize::MAX), 2 * MIN);
    }

    #[test]
    fn takes_the_best_fit_and_never_more_than_the_limit() {
        let mut k = Kept::new();
        assert!(k.give(Vec::with_capacity(4 * MIN)));
        assert!(k.give(Vec::with_capacity(2 * MIN)));
        assert!(
            !k.give(Vec::with_capacity(MIN - 1)),
            "small ones are not kept"
        );
        assert_eq!(k.take(MIN - 1, usize::MAX), None, "nor handed out");
        assert_eq!(k.take(MIN, MIN * 3 / 2), None, "over the limit");
        let b = k.take(MIN + 1, usize::MAX).unwrap();
        assert_eq!(b.capacity(), 2 * MIN);
        assert_eq!(
            k.take(MIN + 1, usize::MAX),
            None,
            "4 MIN is more than twice what is asked"
        );
        assert_eq!(k.take(3 * MIN, usize::MAX).unwrap().capacity(), 4 * MIN);
        assert_eq!(k.bytes(), 0);
    }

    #[test]
    fn keeps_a_bounded_amount_the_newest_and_lets_it_go_when_idle() {
        let mut k = Kept::new();
        for _ in 0..MAX_KEPT / (8 << 20) {
            assert!(k.give(Vec::with_capacity(8 << 20)));
        }
        assert_eq!(k.bytes(), MAX_KEPT);
        // A new size pushes the oldest out, so that the set follows the sizes of the messages that come.
        assert!(k.give(Vec::with_capacity(MIN)));
        assert!(k.bytes() <= MAX_KEPT);
        assert_eq!(k.take(MIN, usize::MAX).unwrap().capacity(), MIN);
        assert!(
            !k.give(Vec::with_capacity(MAX_KEPT + 1)),
            "larger than the whole set"
        );
        let now = Instant::now();
        assert!(k.trim(now), "still fresh");
        assert!(!k.trim(now + IDLE), "idle: let go");
        assert_eq!(k.bytes(), 0);
    }
}

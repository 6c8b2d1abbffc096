//! Pairing received fds with their NODE_HANDLE envelopes, as a pure state machine (generic over the fd type, so
//! tests and fuzz targets can count what it hands out and what it drops).
//!
//! An fd rides with the first byte of its sender's message, so it arrives in the same read as, or before, the
//! envelope it belongs to; Node sends one per message. The slot holds the latest fd until an envelope claims it.
//! Every fd that comes in leaves exactly once: claimed by an envelope, returned as stray (a second fd before the
//! first one's envelope), or returned by `finish` at the end of the stream. At most one is ever held.

/// The fd waiting for its envelope.
#[derive(Debug)]
pub struct Pairing<T> {
    pending: Option<T>,
}

impl<T> Default for Pairing<T> {
    fn default() -> Self {
        Pairing { pending: None }
    }
}

impl<T> Pairing<T> {
    /// The fds that came with one read, in order. Each replaces the one waiting, which `stray` gets: an fd that
    /// nobody's envelope claimed before the next one came.
    pub fn arrived(&mut self, fds: impl IntoIterator<Item = T>, mut stray: impl FnMut(T)) {
        for fd in fds {
            if let Some(earlier) = self.pending.replace(fd) {
                stray(earlier);
            }
        }
    }

    /// An envelope was decoded: the fd that belongs to it, or None when it never came (answered with a NACK).
    pub fn envelope(&mut self) -> Option<T> {
        self.pending.take()
    }

    /// The stream ended: the fd no envelope claimed, if any.
    pub fn finish(&mut self) -> Option<T> {
        self.pending.take()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_last_fd_waits_earlier_ones_are_strays() {
        let mut p = Pairing::default();
        let mut strays = Vec::new();
        p.arrived([1, 2, 3], |fd| strays.push(fd));
        assert_eq!(strays, [1, 2]);
        assert_eq!(p.envelope(), Some(3));
        assert_eq!(p.envelope(), None, "an envelope without its fd");
        p.arrived([4], |fd| strays.push(fd));
        assert_eq!(p.finish(), Some(4));
        assert_eq!(p.finish(), None);
    }
}

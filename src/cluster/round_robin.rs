//! Round-robin distribution (lib/internal/cluster/round_robin_handle.js), off the JS thread: the reactor
//! (os/reactor.rs) accepts on the listening sockets and hands each connection to a free worker as a `newconn` NODE_HANDLE; the
//! worker's `accepted` reply is taken by its channel's reader (see `Channel::set_newconn_replies`) and comes back
//! here. As in Node, a worker holds one unanswered connection at a time, a refused connection goes to another
//! worker, and the primary closes its copy once a worker has accepted.
//!
//! Unlike Node, nothing a departing worker never touched is lost. A Node worker that is told to disconnect closes
//! its servers, and from Node 26 on (nodejs/node#63470) `server.close()` also destroys the connections that have
//! not sent a request yet; one handed to it just before (its request not read yet, or not sent yet) is then
//! reset, under node:cluster too. So our copy outlives the worker's answer when the worker is leaving: once it is
//! removed (its answers still decide: refused goes to another worker), and, while a reload replaces it, from the
//! moment its replacement is forked (`hold`). Copies of connections it has read from or written to are closed as
//! we see it happen; once it has exited (`reclaim`), the connections it left untouched (nothing read, nothing
//! written: `listen::untouched`) go to the other workers, the rest are closed.

use std::cell::Cell;
use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::os::fd::{AsFd, OwnedFd};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock, Weak};
use std::time::Duration;

use nix::errno::Errno;

use super::listen;
use crate::core::channel::{Channel, NewconnReplies};
use crate::core::error::SysError;
use crate::core::internal::{self, NewconnReply};
use crate::os::reactor::{self, Ready, Registration, Source};
use crate::os::sys;

/// The `seq` of every `newconn` this process sends, so that one table can route every reply.
static NEXT_SEQ: AtomicU64 = AtomicU64::new(1);
/// Which distributor each unanswered `newconn` came from.
static HANDED: Mutex<BTreeMap<u64, Weak<Inner>>> = Mutex::new(BTreeMap::new());

/// `FORKLINE_SCHED_BATCH=0` keeps the reactor thread's scheduling as it is (for a primary whose channels must not
/// wait behind busy workers).
fn batch_scheduling_wanted() -> bool {
    static WANTED: OnceLock<bool> = OnceLock::new();
    *WANTED.get_or_init(|| std::env::var_os("FORKLINE_SCHED_BATCH").is_none_or(|v| v != "0"))
}

thread_local! {
    /// This (reactor) thread asked for SCHED_BATCH: once per thread, as a reactor that idled out starts anew.
    static BATCH_SCHEDULING: Cell<bool> = const { Cell::new(false) };
}
/// How long a listener rests before trying again when it cannot accept (EMFILE and the like).
const ACCEPT_RETRY: Duration = Duration::from_millis(50);
/// Connections accepted per listener per reactor turn, so that a flood on one port cannot hold the reactor.
const ACCEPTS_PER_TURN: usize = 64;
/// How often held copies are looked at, to close those the worker has started on (a copy of ours would keep the
/// connection open after the worker closes it).
const HELD_SWEEP: Duration = Duration::from_millis(25);

/// Routes replies to the distributor that handed the connection out; installed on every worker's channel.
pub struct Replies;

impl NewconnReplies for Replies {
    fn reply(&self, reply: NewconnReply) -> bool {
        let owner = lock(&HANDED).remove(&reply.ack);
        match owner.and_then(|w| w.upgrade()) {
            Some(inner) => {
                inner.on_reply(reply);
                true
            }
            None => false,
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // Plain data: a panic elsewhere leaves nothing half-done that matters here.
    m.lock().unwrap_or_else(|p| p.into_inner())
}

#[derive(Default)]
struct State {
    listeners: Vec<Arc<Listener>>,
    workers: HashMap<u32, Arc<Channel>>,
    /// Workers with no connection in hand, longest idle first. (Letting a worker hold two was measured no better
    /// with `npm run bench`'s cluster-close rows: 1.07x vs 1.06x node:cluster RR, within noise.)
    free: VecDeque<u32>,
    /// Accepted connections no worker has taken yet.
    queue: VecDeque<OwnedFd>,
    /// Connections handed out and not yet answered, by `newconn` seq (a removed worker's too: its answer still
    /// decides).
    handed: HashMap<u64, (u32, OwnedFd)>,
    /// Workers a reload is replacing: we keep a copy of each connection they accept.
    holding: HashSet<u32>,
    /// Our copies of connections accepted by a leaving worker, until it has touched them or exited.
    held: Vec<(u32, OwnedFd)>,
    /// A sweep of `held` is due on the reactor.
    sweeping: bool,
    closed: bool,
    /// What each worker was handed and refused, for `cluster.stats()`.
    tally: HashMap<u32, Tally>,
}

/// Connections handed to one worker, and how many of them it refused (they went on to another).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Tally {
    pub handed: u64,
    pub refused: u64,
}

struct Inner {
    key: String,
    state: Mutex<State>,
}

/// One listening socket, accepted on by the reactor for its distributor.
struct Listener {
    fd: Arc<OwnedFd>,
    owner: Weak<Inner>,
    registration: OnceLock<Registration>,
}

/// A round-robin distributor for one cluster server key.
pub struct RoundRobin {
    inner: Arc<Inner>,
}

impl RoundRobin {
    /// A distributor with nothing to accept on until `add_listener`.
    pub fn new(key: String) -> Result<RoundRobin, SysError> {
        let inner = Arc::new(Inner {
            key,
            state: Mutex::new(State::default()),
        });
        Ok(RoundRobin { inner })
    }

    /// Accepts on `listener` too (it must be listening and non-blocking).
    pub fn add_listener(&self, listener: Arc<OwnedFd>) -> Result<(), SysError> {
        let listener = Arc::new(Listener {
            fd: listener,
            owner: Arc::downgrade(&self.inner),
            registration: OnceLock::new(),
        });
        let me: Arc<dyn Source> = listener.clone();
        let reg = Registration::new(listener.fd.clone(), Arc::downgrade(&me))
            .map_err(|e| SysError::new(e, "epoll_ctl"))?;
        reg.want_read(true)
            .map_err(|e| SysError::new(e, "epoll_ctl"))?;
        let _ = listener.registration.set(reg);
        lock(&self.inner.state).listeners.push(listener);
        Ok(())
    }

    /// Stops accepting on one listener and returns it (for a new worker to listen on itself).
    pub fn take_listener(&self) -> Option<Arc<OwnedFd>> {
        let taken = lock(&self.inner.state).listeners.pop()?;
        // Out of the reactor before the socket changes hands.
        if let Some(reg) = taken.registration.get() {
            let _ = reg.want_read(false);
        }
        Some(taken.fd.clone())
    }

    pub fn add_worker(&self, id: u32, channel: Arc<Channel>) {
        channel.set_newconn_replies(Arc::new(Replies));
        let mut st = lock(&self.inner.state);
        st.workers.insert(id, channel);
        st.free.push_back(id);
        self.inner.dispatch(&mut st);
    }

    /// What worker `id` was handed and refused so far.
    pub fn tally(&self, id: u32) -> Tally {
        lock(&self.inner.state)
            .tally
            .get(&id)
            .copied()
            .unwrap_or_default()
    }

    /// Forgets a worker: it gets nothing more. What it holds unanswered stays its own until it answers (refused:
    /// to another worker; accepted: held) or exits (`reclaim`): it may be accepting it right now. True when no
    /// worker is left.
    pub fn remove_worker(&self, id: u32) -> bool {
        let mut st = lock(&self.inner.state);
        st.workers.remove(&id);
        st.tally.remove(&id);
        st.free.retain(|w| *w != id);
        st.holding.remove(&id);
        st.workers.is_empty()
    }

    /// While a reload replaces worker `id` (`on`), keeps a copy of each connection it accepts; off again (the
    /// reload gave up), lets those copies go.
    pub fn hold(&self, id: u32, on: bool) {
        let mut st = lock(&self.inner.state);
        if !st.workers.contains_key(&id) {
            return;
        }
        if on {
            st.holding.insert(id);
        } else {
            st.holding.remove(&id);
            st.held.retain(|(w, _)| *w != id);
        }
    }

    /// Worker `id` has exited, so it holds nothing any more: what it was handed and never touched goes to the
    /// others (oldest first), the rest is closed.
    pub fn reclaim(&self, id: u32) {
        let mut st = lock(&self.inner.state);
        st.workers.remove(&id);
        st.free.retain(|w| *w != id);
        st.holding.remove(&id);
        let mut seqs: Vec<u64> = st
            .handed
            .iter()
            .filter(|(_, (w, _))| *w == id)
            .map(|(seq, _)| *seq)
            .collect();
        seqs.sort_unstable();
        let mut left = Vec::new();
        for seq in seqs {
            lock(&HANDED).remove(&seq);
            if let Some((_, conn)) = st.handed.remove(&seq) {
                // Never answered: a Unix-domain one (no byte counts) is taken as untouched too, since a Node
                // worker answers before it reads.
                if listen::untouched(conn.as_fd()) != Some(false) {
                    left.push(conn);
                }
            }
        }
        let held = std::mem::take(&mut st.held);
        let (theirs, others): (Vec<_>, Vec<_>) = held.into_iter().partition(|(w, _)| *w == id);
        st.held = others;
        for (_, conn) in theirs {
            if listen::untouched(conn.as_fd()) == Some(true) {
                left.push(conn);
            }
        }
        for conn in left.into_iter().rev() {
            st.queue.push_front(conn);
        }
        self.inner.dispatch(&mut st);
    }
}

impl Drop for RoundRobin {
    /// Closes the listeners and every connection not yet accepted by a worker, as Node's RoundRobinHandle.remove
    /// does.
    fn drop(&mut self) {
        let mut st = lock(&self.inner.state);
        st.closed = true;
        let listeners = std::mem::take(&mut st.listeners);
        for listener in &listeners {
            if let Some(reg) = listener.registration.get() {
                let _ = reg.want_read(false);
            }
        }
        st.queue.clear();
        st.held.clear();
        let handed: Vec<u64> = st.handed.drain().map(|(seq, _)| seq).collect();
        drop(st);
        let mut table = lock(&HANDED);
        for seq in handed {
            table.remove(&seq);
        }
        drop(table);
        drop(listeners);
    }
}

impl Source for Listener {
    fn ready(self: Arc<Self>, ready: Ready) {
        let Some(owner) = self.owner.upgrade() else {
            return;
        };
        if !ready.readable || lock(&owner.state).closed {
            return;
        }
        // This runs on the reactor thread: from the first connection on, its wake-ups wait for the CPU instead of
        // preempting a worker (README's Cluster has the measurement).
        if !BATCH_SCHEDULING.replace(true) && batch_scheduling_wanted() {
            sys::prefer_batch_scheduling();
        }
        let mut accepted = Vec::new();
        let mut stalled = false;
        for _ in 0..ACCEPTS_PER_TURN {
            match listen::accept(self.fd.as_fd()) {
                Ok(Some(conn)) => accepted.push(conn),
                Ok(None) => break,
                // Out of fds and the like: the connection waits in the backlog; try again shortly.
                Err(e) if e.errno != Errno::EINVAL => {
                    stalled = true;
                    break;
                }
                // Not listening (yet): nothing to take.
                Err(_) => break,
            }
        }
        if !accepted.is_empty() {
            let mut st = lock(&owner.state);
            st.queue.extend(accepted);
            owner.dispatch(&mut st);
        }
        if stalled {
            self.rest();
        }
    }
}

impl Listener {
    /// Stops accepting for `ACCEPT_RETRY`, then starts again if the listener is still ours.
    fn rest(self: &Arc<Self>) {
        let Some(reg) = self.registration.get() else {
            return;
        };
        let _ = reg.want_read(false);
        let me = self.clone();
        let _ = reactor::after(ACCEPT_RETRY, move || {
            let Some(owner) = me.owner.upgrade() else {
                return;
            };
            let ours = {
                let st = lock(&owner.state);
                !st.closed && st.listeners.iter().any(|l| Arc::ptr_eq(l, &me))
            };
            if let (true, Some(reg)) = (ours, me.registration.get()) {
                let _ = reg.want_read(true);
            }
        });
    }
}

impl Inner {
    /// Hands queued connections to free workers.
    fn dispatch(self: &Arc<Self>, st: &mut State) {
        while !st.queue.is_empty() {
            let Some(id) = st.free.pop_front() else {
                return;
            };
            let Some(channel) = st.workers.get(&id).cloned() else {
                continue;
            };
            let Some(conn) = st.queue.pop_front() else {
                return;
            };
            let seq = NEXT_SEQ.fetch_add(1, Ordering::Relaxed);
            lock(&HANDED).insert(seq, Arc::downgrade(self));
            let envelope = internal::encode_newconn(&self.key, seq, channel.is_advanced());
            match channel.write_own_handle(&envelope, conn.as_fd()) {
                Ok(()) => {
                    st.tally.entry(id).or_default().handed += 1;
                    st.handed.insert(seq, (id, conn));
                }
                // The worker's channel is gone: it stays out of the free list until JS removes it.
                Err(_) => {
                    lock(&HANDED).remove(&seq);
                    st.queue.push_front(conn);
                }
            }
        }
    }

    fn on_reply(self: &Arc<Self>, reply: NewconnReply) {
        let mut st = lock(&self.state);
        let Some((id, conn)) = st.handed.remove(&reply.ack) else {
            return;
        };
        let member = st.workers.contains_key(&id);
        if reply.accepted {
            // A leaving worker may close it before it reads a byte (see the module's doc): keep a copy. TCP only:
            // of a Unix-domain socket we could not tell later whether the worker has started on it.
            if (!member || st.holding.contains(&id)) && listen::untouched(conn.as_fd()).is_some() {
                st.held.push((id, conn));
                self.sweep_later(&mut st);
            }
        } else {
            // The worker is closing its server: give the connection to another one.
            if member {
                st.tally.entry(id).or_default().refused += 1;
            }
            st.queue.push_back(conn);
        }
        if member {
            st.free.push_back(id);
        }
        self.dispatch(&mut st);
    }

    /// Closes, on the reactor shortly, the held copies whose worker has started on them, and so on while some
    /// are held.
    fn sweep_later(self: &Arc<Self>, st: &mut State) {
        if st.sweeping {
            return;
        }
        let me = Arc::downgrade(self);
        st.sweeping = reactor::after(HELD_SWEEP, move || {
            let Some(inner) = me.upgrade() else {
                return;
            };
            let mut st = lock(&inner.state);
            st.sweeping = false;
            st.held
                .retain(|(_, conn)| listen::untouched(conn.as_fd()) == Some(true));
            if !st.held.is_empty() {
                inner.sweep_later(&mut st);
            }
        })
        .is_ok();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::channel::{Event, EventSink};
    use crate::core::frame::Decoder;
    use crate::os::sys;
    use std::io::{BufRead, BufReader, Read, Write};
    use std::net::TcpStream;
    use std::os::unix::net::UnixStream;
    use std::time::Duration;

    struct Ignore;
    impl EventSink for Ignore {
        fn push(&self, _: Event) {}
    }

    /// A fake worker: our channel to it, and its end, read line by line.
    fn worker() -> (Arc<Channel>, BufReader<UnixStream>) {
        let (ours, theirs) = sys::socketpair().unwrap();
        let ch = Channel::open(ours, Decoder::new(false, 1 << 20), Arc::new(Ignore)).unwrap();
        let theirs = UnixStream::from(theirs);
        theirs
            .set_read_timeout(Some(Duration::from_secs(5)))
            .unwrap();
        (ch, BufReader::new(theirs))
    }

    /// Reads one `newconn` envelope (and its fd) and returns its seq.
    fn next_newconn(peer: &mut BufReader<UnixStream>) -> u64 {
        let mut line = String::new();
        peer.read_line(&mut line).unwrap();
        let v: serde_json::Value = serde_json::from_str(&line).unwrap();
        assert_eq!(v["type"], "net.Native");
        assert_eq!(v["msg"]["act"], "newconn");
        assert_eq!(v["msg"]["key"], "k");
        v["msg"]["seq"].as_u64().unwrap()
    }

    /// Reads the next `newconn`, acknowledges its handle as Node's worker does at once, and returns its seq.
    fn take(peer: &mut BufReader<UnixStream>) -> u64 {
        let seq = next_newconn(peer);
        writeln!(peer.get_mut(), r#"{{"cmd":"NODE_HANDLE_ACK"}}"#).unwrap();
        seq
    }

    fn answer(peer: &mut BufReader<UnixStream>, seq: u64, accepted: bool) {
        writeln!(
            peer.get_mut(),
            r#"{{"cmd":"NODE_CLUSTER","ack":{seq},"accepted":{accepted},"seq":0}}"#
        )
        .unwrap();
    }

    /// Nothing more arrives for this worker (for a moment).
    fn nothing_for(peer: &mut BufReader<UnixStream>) {
        peer.get_ref()
            .set_read_timeout(Some(Duration::from_millis(200)))
            .unwrap();
        let mut line = String::new();
        assert!(peer.read_line(&mut line).is_err(), "unexpected {line}");
        peer.get_ref()
            .set_read_timeout(Some(Duration::from_secs(5)))
            .unwrap();
    }

    fn listener() -> (Arc<OwnedFd>, u16) {
        let spec = listen::Spec {
            kind: listen::Kind::Tcp,
            address: Some("127.0.0.1".into()),
            port: 0,
            fd: None,
            flags: 0,
            backlog: 16,
            readable_all: false,
            writable_all: false,
        };
        let sock = listen::bind(&spec, false).unwrap();
        listen::listen(sock.as_fd(), 16).unwrap();
        let port = listen::sockname(sock.as_fd()).unwrap().port;
        (Arc::new(sock), port)
    }

    /// The replies are read on the workers' channels' reader threads: wait for them to be counted.
    fn waits_for(done: impl Fn() -> bool) {
        for _ in 0..500 {
            if done() {
                return;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        assert!(done());
    }

    #[test]
    fn hands_connections_out_in_turn_and_passes_refused_ones_on() {
        let rr = RoundRobin::new("k".into()).unwrap();
        let (sock, port) = listener();
        rr.add_listener(sock).unwrap();
        let (ch1, mut w1) = worker();
        let (ch2, mut w2) = worker();
        rr.add_worker(1, ch1);
        rr.add_worker(2, ch2);
        let connect = || TcpStream::connect(("127.0.0.1", port)).unwrap();

        let _c1 = connect();
        let s1 = take(&mut w1);
        let _c2 = connect();
        let s2 = take(&mut w2);
        // Both hold one unanswered: the third waits.
        let _c3 = connect();
        nothing_for(&mut w1);
        nothing_for(&mut w2);
        // Worker 1 refuses its connection: it has room again and gets the third; the refused one queues behind
        // it and goes to worker 2 once that one answers.
        answer(&mut w1, s1, false);
        let s3 = take(&mut w1);
        answer(&mut w2, s2, true);
        let s4 = take(&mut w2);
        assert!(s3 > s2 && s4 > s3);
        answer(&mut w1, s3, true);
        answer(&mut w2, s4, true);
        // Worker 1 was handed the first and the third and refused one; worker 2 the second and the refused one.
        let tally = |handed, refused| Tally { handed, refused };
        waits_for(|| rr.tally(1) == tally(2, 1) && rr.tally(2) == tally(2, 0));
        assert!(!rr.remove_worker(1));
        assert!(rr.remove_worker(2));
    }

    #[test]
    fn a_departing_worker_answers_for_what_it_was_handed_or_gives_it_back_when_it_exits() {
        let rr = RoundRobin::new("k".into()).unwrap();
        let (sock, port) = listener();
        rr.add_listener(sock).unwrap();
        let (ch1, mut w1) = worker();
        rr.add_worker(1, ch1);
        let _c1 = TcpStream::connect(("127.0.0.1", port)).unwrap();
        let s1 = take(&mut w1);
        let _c2 = TcpStream::connect(("127.0.0.1", port)).unwrap();
        let (ch2, mut w2) = worker();
        rr.add_worker(2, ch2);
        take(&mut w2);
        let (ch3, mut w3) = worker();
        rr.add_worker(3, ch3);
        // Removed, they may be accepting what they hold right now: it stays theirs.
        assert!(!rr.remove_worker(1));
        assert!(!rr.remove_worker(2));
        nothing_for(&mut w3);
        // Worker 1 refuses its own: it goes on.
        answer(&mut w1, s1, false);
        let s3 = take(&mut w3);
        answer(&mut w3, s3, true);
        // Worker 2 exits without answering: its connection goes on.
        rr.reclaim(2);
        let s4 = take(&mut w3);
        answer(&mut w3, s4, true);
        assert!(rr.remove_worker(3), "no worker left");
    }

    /// A worker end that takes the connections' fds (the others' fds are dropped as their lines are read).
    struct Taker(UnixStream);

    impl Taker {
        fn new() -> (Arc<Channel>, Taker) {
            let (ch, peer) = worker();
            (ch, Taker(peer.into_inner()))
        }

        /// The next `newconn`: acknowledges its handle and returns its seq and the connection.
        fn take(&mut self) -> (u64, OwnedFd) {
            assert!(sys::wait_readable(self.0.as_fd(), 5000));
            let mut buf = [0u8; 4096];
            let got = sys::recv(self.0.as_fd(), &mut buf).unwrap();
            let v: serde_json::Value = serde_json::from_slice(buf[..got.n].trim_ascii()).unwrap();
            assert_eq!(v["msg"]["act"], "newconn");
            writeln!(self.0, r#"{{"cmd":"NODE_HANDLE_ACK"}}"#).unwrap();
            (
                v["msg"]["seq"].as_u64().unwrap(),
                got.fds.into_iter().next().unwrap(),
            )
        }

        fn answer(&mut self, seq: u64, accepted: bool) {
            writeln!(
                self.0,
                r#"{{"cmd":"NODE_CLUSTER","ack":{seq},"accepted":{accepted},"seq":0}}"#
            )
            .unwrap();
        }
    }

    /// What the client reads next: its bytes, `Some(empty)` at EOF, `None` if nothing comes for a moment.
    fn client_reads(client: &mut TcpStream) -> Option<Vec<u8>> {
        client
            .set_read_timeout(Some(Duration::from_millis(300)))
            .unwrap();
        let mut buf = [0u8; 64];
        match client.read(&mut buf) {
            Ok(n) => Some(buf[..n].to_vec()),
            Err(_) => None,
        }
    }

    #[test]
    fn connections_a_held_worker_closed_untouched_go_on_once_it_has_exited() {
        let rr = RoundRobin::new("k".into()).unwrap();
        let (sock, port) = listener();
        rr.add_listener(sock).unwrap();
        let (ch1, mut w1) = Taker::new();
        rr.add_worker(1, ch1);
        rr.hold(1, true);

        // Accepted and closed unread (as a disconnecting Node 26 worker does): our copy keeps it open.
        let mut c1 = TcpStream::connect(("127.0.0.1", port)).unwrap();
        c1.write_all(b"request 1").unwrap();
        let (s1, conn1) = w1.take();
        w1.answer(s1, true);
        waits_for(|| rr.tally(1).handed == 1 && lock(&rr.inner.state).handed.is_empty());
        drop(conn1);
        assert_eq!(client_reads(&mut c1), None, "still open");

        // Accepted and read: our copy goes (at the next sweep), so the worker's close is the client's EOF.
        let mut c2 = TcpStream::connect(("127.0.0.1", port)).unwrap();
        c2.write_all(b"request 2").unwrap();
        let (s2, conn2) = w1.take();
        let mut file = std::fs::File::from(conn2);
        let mut buf = [0u8; 9];
        file.read_exact(&mut buf).unwrap();
        w1.answer(s2, true);
        drop(file);
        waits_for(|| lock(&rr.inner.state).held.len() == 1);
        assert_eq!(client_reads(&mut c2), Some(vec![]), "EOF");

        // The worker leaves and exits: the untouched one goes to worker 2, request and all.
        let (ch2, mut w2) = Taker::new();
        rr.add_worker(2, ch2);
        assert!(!rr.remove_worker(1));
        rr.reclaim(1);
        let (s3, conn3) = w2.take();
        w2.answer(s3, true);
        let mut file = std::fs::File::from(conn3);
        let mut buf = [0u8; 9];
        file.read_exact(&mut buf).unwrap();
        assert_eq!(&buf, b"request 1");
        file.write_all(b"answer").unwrap();
        assert_eq!(client_reads(&mut c1), Some(b"answer".to_vec()));
        assert!(rr.remove_worker(2), "no worker left");
    }

    #[test]
    fn a_hold_lifted_lets_the_copies_go() {
        let rr = RoundRobin::new("k".into()).unwrap();
        let (sock, port) = listener();
        rr.add_listener(sock).unwrap();
        let (ch1, mut w1) = Taker::new();
        rr.add_worker(1, ch1);
        rr.hold(1, true);
        let mut c1 = TcpStream::connect(("127.0.0.1", port)).unwrap();
        let (s1, conn1) = w1.take();
        w1.answer(s1, true);
        waits_for(|| lock(&rr.inner.state).held.len() == 1);
        drop(conn1);
        assert_eq!(client_reads(&mut c1), None, "held");
        rr.hold(1, false);
        assert_eq!(client_reads(&mut c1), Some(vec![]), "EOF");
        assert!(rr.remove_worker(1));
    }

    #[test]
    fn replies_that_are_not_ours_pass_through() {
        assert!(!Replies.reply(NewconnReply {
            ack: u64::MAX,
            accepted: true
        }));
    }
}

//! The channel's tests: a `Channel` on one end of a socketpair, a plain socket on the other.

use std::io::{IoSlice, Read, Write};
use std::os::fd::AsFd;
use std::os::unix::net::UnixStream;
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::Duration;

use crossbeam_channel::{unbounded, Receiver, Sender};
use nix::errno::Errno;

use super::read::{READ_BUFFER_MAX, READ_BUFFER_MIN};
use super::write::MAX_HANDLE_RETRANSMISSIONS;
use super::{Channel, Event, EventSink, ReadOutcome};
use crate::core::error::Code;
use crate::core::frame::{Decoder, Frame};
use crate::core::internal::{self, Handshake};
use crate::os::sys;

struct TestSink(Sender<Event>, Sender<()>);
impl EventSink for TestSink {
    fn push(&self, event: Event) {
        if matches!(event, Event::Progress(_)) {
            let _ = self.1.send(());
        }
        let _ = self.0.send(event);
    }
}

fn open(max: usize) -> (Arc<Channel>, UnixStream, Receiver<Event>, Receiver<()>) {
    let (ours, theirs) = sys::socketpair().unwrap();
    let (tx, rx) = unbounded();
    let (ptx, prx) = unbounded();
    let ch = Channel::open(ours, Decoder::new(false, max), Arc::new(TestSink(tx, ptx))).unwrap();
    (ch, UnixStream::from(theirs), rx, prx)
}

/// A channel its owner reads (as on the JS thread, `read_ready`, `read_burst`), not the reactor until EOF.
fn open_owned() -> (Arc<Channel>, UnixStream, Receiver<Event>) {
    let (ours, theirs) = sys::socketpair().unwrap();
    let (tx, rx) = unbounded();
    let (ptx, _prx) = unbounded();
    let ch = Channel::new(ours, Decoder::new(false, 1024), Arc::new(TestSink(tx, ptx)));
    (ch, UnixStream::from(theirs), rx)
}

/// The next event other than write progress.
fn next(rx: &Receiver<Event>) -> Event {
    loop {
        match rx.recv_timeout(Duration::from_secs(5)).expect("event") {
            Event::Progress(_) => continue,
            other => return other,
        }
    }
}

#[test]
fn reads_lines_then_eof() {
    let (_ch, mut peer, rx, _) = open(1024);
    peer.write_all(b"{\"a\":1}\n").unwrap();
    assert!(matches!(next(&rx), Event::Frame(Frame::Lines(s)) if s == "{\"a\":1}\n"));
    drop(peer);
    assert!(matches!(next(&rx), Event::Eof));
}

#[test]
fn peer_dying_mid_message_is_truncation_then_eof() {
    let (_ch, mut peer, rx, _) = open(1024);
    peer.write_all(b"1\n{\"half\":").unwrap();
    drop(peer);
    assert!(matches!(next(&rx), Event::Frame(Frame::Lines(_))));
    assert!(matches!(
        next(&rx),
        Event::Frame(Frame::Error {
            code: Code::TruncatedMessage,
            ..
        })
    ));
    assert!(matches!(next(&rx), Event::Eof));
}

#[test]
fn writes_keep_order_when_the_socket_is_full() {
    let (ch, mut peer, rx, _) = open(1024);
    let big = vec![b'x'; 300_000];
    let mut last = None;
    // Borrowed and owned writes alternate: an owned one's unsent tail is queued in place, not copied.
    for i in 0..20u8 {
        let mut msg = big.clone();
        msg[0] = i;
        msg[big.len() - 1] = i;
        last = Some(if i % 2 == 0 {
            ch.write(&msg).unwrap()
        } else {
            ch.write(msg).unwrap()
        });
    }
    assert!(
        last.unwrap().queued_bytes > 0,
        "a full socket queues instead of blocking"
    );
    let mut got = vec![0u8; big.len() * 20];
    peer.read_exact(&mut got).unwrap();
    for i in 0..20 {
        assert_eq!(got[i * big.len()], i as u8);
        assert_eq!(got[(i + 1) * big.len() - 1], i as u8);
    }
    let p = loop {
        match rx.recv_timeout(Duration::from_secs(5)).expect("progress") {
            Event::Progress(p) if p.done == 20 => break p,
            _ => {}
        }
    };
    assert_eq!(p.queued_bytes, 0);
}

#[test]
fn write_from_gives_back_a_buffer_that_went_at_once() {
    let (ch, mut peer, _rx, _) = open(1024);
    let mut buf = Vec::with_capacity(64);
    buf.extend_from_slice(b"\"small\"\n");
    ch.write_from(&mut buf).unwrap();
    assert!(
        buf.is_empty() && buf.capacity() >= 64,
        "kept for the next line"
    );
    let mut got = [0; 8];
    peer.read_exact(&mut got).unwrap();
    assert_eq!(&got, b"\"small\"\n");

    // More than the socket holds: the buffer stays with the queue, and arrives whole.
    let mut big = vec![b'z'; 8 << 20];
    big[0] = b'a';
    ch.write_from(&mut big).unwrap();
    assert_eq!(big.capacity(), 0, "queued, not copied");
    let mut got = vec![0; 8 << 20];
    peer.read_exact(&mut got).unwrap();
    assert_eq!(got[0], b'a');
    assert!(got[1..].iter().all(|&b| b == b'z'));
}

#[test]
fn close_flushes_queued_writes_before_eof() {
    let (ch, mut peer, rx, _) = open(1024);
    let big = vec![b'y'; 1 << 20];
    ch.write(&big).unwrap();
    ch.close();
    let mut got = Vec::new();
    peer.read_to_end(&mut got).unwrap();
    assert_eq!(got.len(), big.len());
    assert!(ch.write(b"late\n").is_err(), "no writes after close");
    drop(peer);
    assert!(matches!(next(&rx), Event::Eof));
}

#[test]
fn write_to_a_dead_peer_is_epipe() {
    let (ch, peer, _rx, _) = open(1024);
    drop(peer);
    let err = loop {
        match ch.write(b"x\n") {
            Ok(_) => thread::sleep(Duration::from_millis(1)),
            Err(e) => break e,
        }
    };
    assert_eq!(err.errno, Errno::EPIPE);
}

#[test]
fn stray_fd_is_reported_and_closed_at_eof() {
    let (_ch, peer, rx, _) = open(1024);
    let (x, _y) = sys::socketpair().unwrap();
    sys::send(peer.as_fd(), &[IoSlice::new(b"1\n")], Some(x.as_fd()), true).unwrap();
    assert!(matches!(next(&rx), Event::Frame(Frame::Lines(s)) if s == "1\n"));
    drop(peer);
    assert!(matches!(
        next(&rx),
        Event::Frame(Frame::Error {
            code: Code::StrayFd,
            ..
        })
    ));
    assert!(matches!(next(&rx), Event::Eof));
}

fn read_line(peer: &mut UnixStream) -> String {
    let mut line = Vec::new();
    let mut b = [0u8; 1];
    while peer.read(&mut b).unwrap() == 1 && b[0] != b'\n' {
        line.push(b[0]);
    }
    String::from_utf8(line).unwrap()
}

const ENVELOPE: &str = "{\"cmd\":\"NODE_HANDLE\",\"type\":\"net.Socket\",\"msg\":1}\n";

#[test]
fn an_envelope_with_its_fd_becomes_one_handle_event_and_is_acked() {
    let (_ch, mut peer, rx, _) = open(1024);
    let (x, _y) = sys::socketpair().unwrap();
    let wire = format!("\"before\"\n{ENVELOPE}\"after\"\n");
    sys::send(
        peer.as_fd(),
        &[IoSlice::new(wire.as_bytes())],
        Some(x.as_fd()),
        true,
    )
    .unwrap();
    assert!(matches!(next(&rx), Event::Frame(Frame::Lines(s)) if s == "\"before\"\n"));
    assert!(matches!(next(&rx), Event::Handle { envelope: Frame::Lines(s), .. } if s == ENVELOPE));
    assert!(matches!(next(&rx), Event::Frame(Frame::Lines(s)) if s == "\"after\"\n"));
    assert_eq!(read_line(&mut peer), "{\"cmd\":\"NODE_HANDLE_ACK\"}");
}

/// A channel the owner reads itself (as on the JS thread), with a handle from the peer read during its turn.
fn handle_read_in_turn() -> (Arc<Channel>, UnixStream, Receiver<Event>) {
    let (ch, peer, rx) = open_owned();
    let (x, _y) = sys::socketpair().unwrap();
    sys::send(
        peer.as_fd(),
        &[IoSlice::new(ENVELOPE.as_bytes())],
        Some(x.as_fd()),
        true,
    )
    .unwrap();
    ch.defer_control(true);
    assert!(sys::wait_readable(ch.sock.as_fd(), 5000));
    ch.read_ready(1);
    assert!(matches!(next(&rx), Event::Handle { .. }));
    (ch, peer, rx)
}

#[test]
fn an_ack_made_in_the_owners_turn_leaves_with_its_next_write_in_one_sendmsg() {
    let (ch, peer, _rx) = handle_read_in_turn();
    assert!(
        !sys::wait_readable(peer.as_fd(), 100),
        "the ACK waits for the turn"
    );
    ch.write(b"\"reply\"\n").unwrap();
    let ack_then_reply = "{\"cmd\":\"NODE_HANDLE_ACK\"}\n\"reply\"\n".to_string();
    assert_eq!(recv_with_fds(&peer), (ack_then_reply, 0));
    ch.defer_control(false);
    assert!(
        !sys::wait_readable(peer.as_fd(), 100),
        "nothing is sent twice"
    );
}

#[test]
fn an_ack_made_in_the_owners_turn_leaves_at_its_end_at_an_exit_or_before_a_close() {
    let (ch, mut peer, _rx) = handle_read_in_turn();
    ch.defer_control(false);
    assert_eq!(read_line(&mut peer), "{\"cmd\":\"NODE_HANDLE_ACK\"}");
    let (ch, mut peer, _rx) = handle_read_in_turn();
    assert!(ch.wait_written(Duration::from_secs(5)));
    assert_eq!(read_line(&mut peer), "{\"cmd\":\"NODE_HANDLE_ACK\"}");
    let (ch, mut peer, _rx) = handle_read_in_turn();
    ch.close();
    assert_eq!(read_line(&mut peer), "{\"cmd\":\"NODE_HANDLE_ACK\"}");
    let mut rest = Vec::new();
    peer.read_to_end(&mut rest).unwrap();
    assert!(rest.is_empty(), "then EOF");
}

#[test]
fn an_envelope_without_its_fd_is_nacked_and_not_delivered() {
    let (_ch, mut peer, rx, _) = open(1024);
    peer.write_all(format!("{ENVELOPE}2\n").as_bytes()).unwrap();
    assert_eq!(read_line(&mut peer), "{\"cmd\":\"NODE_HANDLE_NACK\"}");
    assert!(matches!(next(&rx), Event::Frame(Frame::Lines(s)) if s == "2\n"));
}

/// Reads one chunk and the fds that came with it.
fn recv_with_fds(peer: &UnixStream) -> (String, usize) {
    let mut buf = [0u8; 4096];
    assert!(sys::wait_readable(peer.as_fd(), 5000));
    let got = sys::recv(peer.as_fd(), &mut buf).unwrap();
    (
        String::from_utf8_lossy(&buf[..got.n]).into_owned(),
        got.fds.len(),
    )
}

#[test]
fn writes_after_a_handle_wait_for_its_ack_and_a_nack_resends_it() {
    let (ch, mut peer, rx, _) = open(1024);
    let (x, _y) = sys::socketpair().unwrap();
    ch.write_handle(ENVELOPE.as_bytes(), x.as_fd()).unwrap();
    ch.write(b"\"queued\"\n").unwrap();
    assert_eq!(recv_with_fds(&peer), (ENVELOPE.to_string(), 1));
    // NACK: the envelope and its fd come again, and nothing else yet.
    peer.write_all(b"{\"cmd\":\"NODE_HANDLE_NACK\"}\n").unwrap();
    assert_eq!(recv_with_fds(&peer), (ENVELOPE.to_string(), 1));
    peer.write_all(b"{\"cmd\":\"NODE_HANDLE_ACK\"}\n").unwrap();
    assert_eq!(read_line(&mut peer), "\"queued\"");
    // Both handshake answers are also handed on (Node emits them as 'internalMessage').
    assert!(matches!(next(&rx), Event::Frame(Frame::Lines(s)) if s.contains("NACK")));
    assert!(matches!(next(&rx), Event::Frame(Frame::Lines(s)) if s.contains("ACK")));
}

#[test]
fn held_writes_count_what_waits_behind_the_handle_in_flight_as_nodes_handle_queue() {
    let (ch, mut peer, _rx, _) = open(1024);
    let (x, _y) = sys::socketpair().unwrap();
    assert_eq!(ch.held_writes(), None);
    ch.write_handle(ENVELOPE.as_bytes(), x.as_fd()).unwrap();
    assert_eq!(
        ch.held_writes(),
        Some(0),
        "a write now would be the first queued"
    );
    ch.write(b"\"a\"\n").unwrap();
    ch.write_handle(ENVELOPE.as_bytes(), x.as_fd()).unwrap();
    ch.write(b"\"b\"\n").unwrap();
    assert_eq!(ch.held_writes(), Some(3));
    assert_eq!(recv_with_fds(&peer), (ENVELOPE.to_string(), 1));
    // The ACK sends "a" and the second handle; "b" is the new queue behind that one.
    peer.write_all(b"{\"cmd\":\"NODE_HANDLE_ACK\"}\n").unwrap();
    assert_eq!(read_line(&mut peer), "\"a\"");
    assert_eq!(recv_with_fds(&peer), (ENVELOPE.to_string(), 1));
    assert_eq!(ch.held_writes(), Some(1));
    peer.write_all(b"{\"cmd\":\"NODE_HANDLE_ACK\"}\n").unwrap();
    assert_eq!(read_line(&mut peer), "\"b\"");
    assert_eq!(ch.held_writes(), None);
}

#[test]
fn a_burst_reads_on_while_writes_wait_for_an_ack_and_the_ack_sends_them_without_the_owner() {
    let (ch, mut peer, rx) = open_owned();
    let (x, _y) = sys::socketpair().unwrap();
    assert!(
        !ch.write_handle(ENVELOPE.as_bytes(), x.as_fd())
            .unwrap()
            .held
    );
    assert!(
        ch.write_handle(ENVELOPE.as_bytes(), x.as_fd())
            .unwrap()
            .held,
        "a second handle waits for the first one's ACK"
    );
    assert_eq!(recv_with_fds(&peer), (ENVELOPE.to_string(), 1));
    ch.read_burst().unwrap();
    // Something read, then a quiet far longer than a burst's: the reader stays while the handle waits.
    peer.write_all(b"1\n").unwrap();
    assert!(matches!(next(&rx), Event::Frame(Frame::Lines(s)) if s == "1\n"));
    thread::sleep(Duration::from_millis(50));
    assert!(rx.try_iter().all(|e| !matches!(e, Event::ReaderIdle)));
    // Nobody reads as the owner: the reactor reads the ACK, which sends the second handle.
    peer.write_all(b"{\"cmd\":\"NODE_HANDLE_ACK\"}\n").unwrap();
    assert_eq!(recv_with_fds(&peer), (ENVELOPE.to_string(), 1));
    // Nothing waits any more: the next quiet ends the burst.
    peer.write_all(b"{\"cmd\":\"NODE_HANDLE_ACK\"}\n").unwrap();
    loop {
        if matches!(next(&rx), Event::ReaderIdle) {
            break;
        }
    }
}

#[test]
fn the_cores_own_handles_keep_their_place_but_take_no_sequence_number() {
    let (ch, mut peer, rx, _) = open(1024);
    let (x, _y) = sys::socketpair().unwrap();
    assert_eq!(ch.write(b"1\n").unwrap().seq, 1);
    ch.write_handle(ENVELOPE.as_bytes(), x.as_fd()).unwrap();
    ch.write_own_handle(ENVELOPE.as_bytes(), x.as_fd()).unwrap();
    let third = ch.write(b"3\n").unwrap();
    assert_eq!(third.seq, 3, "the core's own handle took no seq");
    assert_eq!(
        third.queued_bytes, 2,
        "nor does it count in the owner's queued bytes"
    );
    assert_eq!(read_line(&mut peer), "1");
    assert_eq!(recv_with_fds(&peer), (ENVELOPE.to_string(), 1));
    // Each ACK releases the next write, sent at once by the reader that saw the ACK.
    peer.write_all(b"{\"cmd\":\"NODE_HANDLE_ACK\"}\n").unwrap();
    assert_eq!(recv_with_fds(&peer), (ENVELOPE.to_string(), 1));
    peer.write_all(b"{\"cmd\":\"NODE_HANDLE_ACK\"}\n").unwrap();
    assert_eq!(read_line(&mut peer), "3");
    let done = loop {
        match rx.recv_timeout(Duration::from_secs(5)).expect("progress") {
            Event::Progress(p) if p.done == 3 => break p,
            _ => {}
        }
    };
    assert_eq!(done.queued_bytes, 0);
}

#[test]
fn a_handle_nacked_too_often_is_dropped_with_an_error_and_the_queue_moves_on() {
    let (ch, mut peer, rx, _) = open(1024);
    let (x, _y) = sys::socketpair().unwrap();
    ch.write_handle(ENVELOPE.as_bytes(), x.as_fd()).unwrap();
    ch.write(b"\"queued\"\n").unwrap();
    assert_eq!(recv_with_fds(&peer).1, 1);
    for _ in 0..MAX_HANDLE_RETRANSMISSIONS {
        peer.write_all(b"{\"cmd\":\"NODE_HANDLE_NACK\"}\n").unwrap();
        assert_eq!(recv_with_fds(&peer), (ENVELOPE.to_string(), 1));
    }
    peer.write_all(b"{\"cmd\":\"NODE_HANDLE_NACK\"}\n").unwrap();
    assert_eq!(read_line(&mut peer), "\"queued\"");
    let mut saw_error = false;
    while let Ok(ev) = rx.recv_timeout(Duration::from_millis(500)) {
        saw_error |= matches!(
            ev,
            Event::Frame(Frame::Error {
                code: Code::HandleNotReceived,
                ..
            })
        );
    }
    assert!(saw_error);
}

#[test]
fn advanced_envelope_with_fd_is_acked_in_v8_format() {
    let (ours, theirs) = sys::socketpair().unwrap();
    let (tx, rx) = unbounded();
    let (ptx, _prx) = unbounded();
    let _ch = Channel::open(ours, Decoder::new(true, 1024), Arc::new(TestSink(tx, ptx))).unwrap();
    let peer = UnixStream::from(theirs);
    let body: Vec<u8> = [0xff, 0x0f, b'o', b'"', 3]
        .iter()
        .copied()
        .chain(*b"cmd")
        .chain([b'"', 11])
        .chain(*b"NODE_HANDLE")
        .chain([b'{', 1])
        .collect();
    let mut frame = (body.len() as u32).to_be_bytes().to_vec();
    frame.extend_from_slice(&body);
    let (x, _y) = sys::socketpair().unwrap();
    sys::send(peer.as_fd(), &[IoSlice::new(&frame)], Some(x.as_fd()), true).unwrap();
    assert!(matches!(next(&rx), Event::Handle { envelope: Frame::Frames(f), .. } if f == frame));
    let mut buf = [0u8; 64];
    assert!(sys::wait_readable(peer.as_fd(), 5000));
    let got = sys::recv(peer.as_fd(), &mut buf).unwrap();
    assert_eq!(&buf[..got.n], &internal::encode(Handshake::Ack, true)[..]);
}

#[test]
fn a_burst_reader_hands_reading_back_when_idle() {
    let (ch, mut peer, rx) = open_owned();
    assert_eq!(ch.read_ready(1), ReadOutcome::Idle, "nothing to read yet");
    // More than the socket holds, so the writer blocks until the reactor drains it.
    let burst = "1\n".repeat(400_000);
    let mut writer = peer.try_clone().unwrap();
    let writing = thread::spawn(move || writer.write_all(burst.as_bytes()).unwrap());
    assert!(sys::wait_readable(ch.sock.as_fd(), 5000));
    ch.read_burst().unwrap();
    let mut lines = 0;
    loop {
        match next(&rx) {
            Event::Frame(Frame::Lines(s)) => lines += s.len() / 2,
            Event::ReaderIdle if lines == 400_000 => break,
            // The writer stalled for longer than a burst's quiet (a busy machine): the burst ended early, and the
            // owner hands reading back, as the napi layer does when its next read fills the buffer.
            Event::ReaderIdle => ch.read_burst().unwrap(),
            other => panic!("{other:?}"),
        }
    }
    writing.join().unwrap();
    assert_eq!(lines, 400_000, "every line read once, then idle");
    peer.write_all(b"2\n").unwrap();
    assert!(sys::wait_readable(ch.sock.as_fd(), 5000));
    assert_eq!(ch.read_ready(1), ReadOutcome::Idle);
    assert!(matches!(next(&rx), Event::Frame(Frame::Lines(s)) if s == "2\n"));
    drop(peer);
    assert!(sys::wait_readable(ch.sock.as_fd(), 5000));
    assert_eq!(ch.read_ready(1), ReadOutcome::Ended);
    assert!(matches!(next(&rx), Event::Eof));
}

#[test]
fn an_owner_that_ends_a_burst_reads_what_comes_next_itself() {
    let (ch, mut peer, rx) = open_owned();
    assert!(!ch.end_burst(), "no burst to end");
    ch.read_burst().unwrap();
    peer.write_all(b"1\n").unwrap();
    assert!(
        matches!(next(&rx), Event::Frame(Frame::Lines(s)) if s == "1\n"),
        "the reactor reads"
    );
    assert!(ch.end_burst());
    assert!(!ch.end_burst(), "ended once");
    peer.write_all(b"2\n").unwrap();
    assert!(sys::wait_readable(ch.sock.as_fd(), 5000));
    nothing_delivered(&rx);
    assert!(sys::wait_readable(ch.sock.as_fd(), 0), "left for the owner");
    assert_eq!(ch.read_ready(1), ReadOutcome::Idle);
    assert!(matches!(next(&rx), Event::Frame(Frame::Lines(s)) if s == "2\n"));
    // No quiet timer of the ended burst hands reading back later.
    thread::sleep(Duration::from_millis(20));
    assert!(
        rx.try_recv().is_err(),
        "no ReaderIdle after the owner took reading back"
    );
}

/// Writes `1\n` lines without blocking until the socket is full; returns the bytes written.
fn fill(peer: &mut UnixStream) -> usize {
    let chunk = "1\n".repeat(32 * 1024);
    let mut total = 0;
    loop {
        match peer.write(chunk.as_bytes()) {
            Ok(n) => total += n,
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => return total,
            Err(e) => panic!("{e}"),
        }
    }
}

#[test]
fn a_flood_grows_the_read_buffer_to_full_size_and_a_quiet_channel_shrinks_it() {
    let (ours, theirs) = sys::socketpair().unwrap();
    // Room for more than one full-size read in the socket.
    sys::set_send_buffer(theirs.as_fd(), 1 << 20);
    let (tx, rx) = unbounded();
    let (ptx, _prx) = unbounded();
    let ch = Channel::new(ours, Decoder::new(false, 1024), Arc::new(TestSink(tx, ptx)));
    let read_size = || ch.reader.lock().unwrap().read_size().0;
    let mapped = || ch.reader.lock().unwrap().read_size().1;
    let mut peer = UnixStream::from(theirs);
    peer.set_nonblocking(true).unwrap();
    assert_eq!(
        (read_size(), mapped()),
        (READ_BUFFER_MIN, false),
        "a new channel reads little, and maps nothing before its first read"
    );
    let lines_read = |rx: &Receiver<Event>| -> Vec<usize> {
        rx.try_iter()
            .map(|e| match e {
                Event::Frame(Frame::Lines(s)) => s.len(),
                other => panic!("{other:?}"),
            })
            .collect()
    };

    // A flood: each read that fills the buffer makes the next one larger, in the same call.
    let sent = fill(&mut peer);
    assert!(sent > READ_BUFFER_MAX, "the socket held {sent} bytes");
    while ch.read_ready(1) != ReadOutcome::Idle {}
    assert_eq!(lines_read(&rx).iter().sum::<usize>(), sent);
    assert_eq!(read_size(), READ_BUFFER_MAX, "grown to full size");

    // At full size a read takes as much as the largest buffer holds.
    let sent = fill(&mut peer);
    assert_eq!(ch.read_ready(1), ReadOutcome::Busy, "a full-size read");
    while ch.read_ready(1) != ReadOutcome::Idle {}
    let reads = lines_read(&rx);
    assert_eq!(reads[0], READ_BUFFER_MAX);
    assert_eq!(reads.iter().sum::<usize>(), sent);
    assert!(
        reads.len() <= sent.div_ceil(READ_BUFFER_MAX) + 1,
        "{reads:?}"
    );

    // Small reads keep nothing big: once quiet, the buffer goes back to the smallest size.
    for _ in 0..100 {
        if read_size() == READ_BUFFER_MIN {
            break;
        }
        thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(
        (read_size(), mapped()),
        (READ_BUFFER_MIN, false),
        "let go after a quiet spell"
    );
    peer.write_all(b"2\n").unwrap();
    assert!(sys::wait_readable(ch.sock.as_fd(), 5000));
    assert_eq!(ch.read_ready(1), ReadOutcome::Idle);
    assert_eq!(lines_read(&rx), vec![2]);
    assert!(
        !mapped(),
        "a small read goes through the thread's shared buffer: the channel maps nothing of its own"
    );
}

/// A sink that holds at most `cap` events until the test drains it.
struct BoundedSink {
    events: Mutex<Vec<Event>>,
    resume: Mutex<Option<Box<dyn FnOnce() + Send>>>,
    cap: usize,
}

impl EventSink for BoundedSink {
    fn push(&self, event: Event) {
        self.events.lock().unwrap().push(event);
    }
    fn has_room(&self) -> bool {
        self.events.lock().unwrap().len() < self.cap
    }
    fn on_room(&self, resume: Box<dyn FnOnce() + Send>) {
        *self.resume.lock().unwrap() = Some(resume);
        if self.has_room() {
            self.room();
        }
    }
}

impl BoundedSink {
    fn room(&self) {
        let resume = self.resume.lock().unwrap().take();
        if let Some(resume) = resume {
            resume();
        }
    }
}

#[test]
fn a_burst_reader_stops_reading_while_its_owner_is_behind() {
    let (ours, theirs) = sys::socketpair().unwrap();
    let sink = Arc::new(BoundedSink {
        events: Mutex::new(Vec::new()),
        resume: Mutex::new(None),
        cap: 4,
    });
    let ch = Channel::new(ours, Decoder::new(false, 1024), sink.clone());
    let mut writer = UnixStream::from(theirs);
    let flood = "1\n".repeat(8 << 20);
    let writing = thread::spawn(move || writer.write_all(flood.as_bytes()).unwrap());
    ch.read_burst().unwrap();
    thread::sleep(Duration::from_millis(300));
    assert!(
        !writing.is_finished(),
        "the peer must be held back while nobody drains"
    );
    assert!(
        sink.events.lock().unwrap().len() <= 4 + 2,
        "at most a read past the cap"
    );
    // Drain until the whole flood is through. A burst that went quiet (the writer stalled for a moment on a busy
    // machine) reports ReaderIdle; the owner then hands reading back to it, as the napi layer's poll does.
    let deadline = std::time::Instant::now() + Duration::from_secs(120);
    let mut lines = 0;
    while lines < 8 << 20 {
        assert!(
            std::time::Instant::now() < deadline,
            "flood stuck at {lines} lines"
        );
        let mut events = sink.events.lock().unwrap();
        let mut idle = false;
        for ev in events.drain(..) {
            match ev {
                Event::Frame(Frame::Lines(s)) => lines += s.len() / 2,
                Event::ReaderIdle => idle = true,
                _ => {}
            }
        }
        drop(events);
        sink.room();
        if idle {
            ch.read_burst().unwrap();
        }
        thread::sleep(Duration::from_millis(1));
    }
    writing.join().unwrap();
}

#[test]
fn wait_written_returns_once_a_large_write_is_on_the_wire() {
    let (ch, mut peer, _rx, _prx) = open(1024);
    let big = vec![b'x'; 8 << 20];
    let w = ch.write(&big).unwrap();
    assert!(w.queued_bytes > 0, "8 MiB cannot fit the socket buffer");
    assert!(
        !ch.wait_written(Duration::from_millis(50)),
        "nobody reads yet: still queued"
    );
    let reading = thread::spawn(move || {
        let mut got = vec![0u8; 8 << 20];
        peer.read_exact(&mut got).unwrap();
        got.len()
    });
    assert!(ch.wait_written(Duration::from_secs(10)));
    assert_eq!(reading.join().unwrap(), 8 << 20);
}

#[test]
fn stats_count_what_crossed_each_way() {
    let (ch, mut peer, rx, _) = open(1024);
    let (x, _y) = sys::socketpair().unwrap();
    // In: two messages, then an envelope with its fd (answered ACK), then a stray fd closed at EOF.
    let wire = format!("1\n2\n{ENVELOPE}");
    sys::send(
        peer.as_fd(),
        &[IoSlice::new(wire.as_bytes())],
        Some(x.as_fd()),
        true,
    )
    .unwrap();
    assert!(matches!(next(&rx), Event::Frame(Frame::Lines(_))));
    assert!(matches!(next(&rx), Event::Handle { .. }));
    assert_eq!(read_line(&mut peer), "{\"cmd\":\"NODE_HANDLE_ACK\"}");
    // Out: three messages in one write, and a handle (its ACK comes back).
    ch.write(b"\"a\"\n\"b\"\n\"c\"\n").unwrap();
    ch.write_handle(ENVELOPE.as_bytes(), x.as_fd()).unwrap();
    for _ in 0..4 {
        read_line(&mut peer);
    }
    peer.write_all(b"{\"cmd\":\"NODE_HANDLE_ACK\"}\n").unwrap();
    assert!(matches!(next(&rx), Event::Frame(Frame::Lines(_))));
    sys::send(peer.as_fd(), &[IoSlice::new(b"3\n")], Some(x.as_fd()), true).unwrap();
    assert!(matches!(next(&rx), Event::Frame(Frame::Lines(_))));
    drop(peer);
    assert!(matches!(
        next(&rx),
        Event::Frame(Frame::Error {
            code: Code::StrayFd,
            ..
        })
    ));
    assert!(matches!(next(&rx), Event::Eof));
    let ack = "{\"cmd\":\"NODE_HANDLE_ACK\"}\n";
    let s = ch.stats_snapshot();
    assert_eq!(
        (s.messages_sent, s.handles_sent, s.bytes_sent as usize),
        (5, 1, 12 + ENVELOPE.len() + ack.len()),
        "three messages, the envelope and our ACK"
    );
    assert_eq!(
        (
            s.messages_received,
            s.handles_received,
            s.bytes_received as usize
        ),
        (5, 1, wire.len() + ack.len() + 2),
    );
    assert_eq!(s.bytes_queued, 0);
    assert_eq!(s.errors, vec![("FORKLINE_STRAY_FD".to_string(), 1)]);
}

#[test]
fn stats_count_advanced_frames_and_a_failed_write_once() {
    assert_eq!(
        super::stats::count_messages(b"\0\0\0\x01x\0\0\0\0", true),
        2
    );
    assert_eq!(
        super::stats::count_messages(&b"ab\n".repeat(1000), false),
        1000
    );
    let (ch, peer, _rx, _) = open(1024);
    drop(peer);
    while ch.write(b"x\n").is_ok() {
        thread::sleep(Duration::from_millis(1));
    }
    let _ = ch.write(b"x\n");
    assert_eq!(ch.stats_snapshot().errors, vec![("EPIPE".to_string(), 1)]);
}

#[test]
fn the_owner_reads_a_large_message_whole_and_hands_a_flood_to_the_reactor() {
    for advanced in [false, true] {
        let (ours, theirs) = sys::socketpair().unwrap();
        sys::set_send_buffer(theirs.as_fd(), 4 << 20);
        let (tx, rx) = unbounded();
        let (ptx, _prx) = unbounded();
        let ch = Channel::new(
            ours,
            Decoder::new(advanced, 64 << 20),
            Arc::new(TestSink(tx, ptx)),
        );
        let mut peer = UnixStream::from(theirs);
        // One message of 1 MiB, all in the socket: one owner's read takes it whole.
        let body = vec![b'7'; 1 << 20];
        let mut message = Vec::new();
        if advanced {
            message.extend_from_slice(&(body.len() as u32).to_be_bytes());
            message.extend_from_slice(&body);
        } else {
            message.extend_from_slice(&body);
            message.push(b'\n');
        }
        let mut writer = peer.try_clone().unwrap();
        let sent = message.clone();
        let writing = thread::spawn(move || writer.write_all(&sent).unwrap());
        let mut got = Vec::new();
        while got.len() < message.len() {
            assert!(sys::wait_readable(ch.sock.as_fd(), 5000));
            assert_eq!(
                ch.read_ready(1),
                ReadOutcome::Idle,
                "never handed to the reactor"
            );
            while let Ok(event) = rx.try_recv() {
                match event {
                    Event::Frame(Frame::Lines(s)) => got.extend_from_slice(s.as_bytes()),
                    Event::Frame(Frame::Frames(f)) => got.extend_from_slice(&f),
                    other => panic!("{other:?}"),
                }
            }
        }
        writing.join().unwrap();
        assert_eq!(got, message);
        // Many small messages filling read after read: the owner stops after its one read.
        let flood: Vec<u8> = if advanced {
            [0, 0, 0, 1, b'x'].repeat(300_000)
        } else {
            b"1\n".repeat(600_000)
        };
        peer.write_all(&flood[..1 << 20]).unwrap();
        assert!(sys::wait_readable(ch.sock.as_fd(), 5000));
        assert_eq!(ch.read_ready(1), ReadOutcome::Busy, "advanced: {advanced}");
    }
}

const PIPELINE: &str = "{\"cmd\":\"NODE_HANDLE_PIPELINE\"}";

/// Reads until `expected.len()` bytes came; what came and how many fds with it.
fn recv_text(peer: &UnixStream, expected: &str) -> (String, usize) {
    let (mut got, mut fds) = (String::new(), 0);
    while got.len() < expected.len() {
        let (text, n) = recv_with_fds(peer);
        got.push_str(&text);
        fds += n;
    }
    (got, fds)
}

fn envelope(i: usize) -> String {
    format!("{{\"cmd\":\"NODE_HANDLE\",\"type\":\"net.Socket\",\"msg\":{i}}}\n")
}

/// A sender that pipelines (it answers the peer's announce, as a runtime child's parent does) and its raw peer.
fn pipelining_sender() -> (Arc<Channel>, UnixStream) {
    let (ch, mut peer, _rx, _) = open(1024);
    ch.answer_pipeline();
    peer.write_all(format!("{PIPELINE}\n").as_bytes()).unwrap();
    assert_eq!(read_line(&mut peer), PIPELINE, "answered");
    (ch, peer)
}

#[test]
fn pipelined_a_window_of_handles_goes_at_once_and_answers_match_them_in_order() {
    use crate::core::internal::HANDLES_IN_FLIGHT;
    let (ch, mut peer) = pipelining_sender();
    assert!(ch.pipelines_handles());
    let pairs: Vec<_> = (0..HANDLES_IN_FLIGHT + 2)
        .map(|_| sys::socketpair().unwrap())
        .collect();
    for (i, (x, _)) in pairs.iter().enumerate() {
        ch.write_handle(envelope(i).as_bytes(), x.as_fd()).unwrap();
        ch.write(format!("{i}\n").as_bytes()).unwrap();
    }
    // A whole window, each envelope with its fd, and the writes between them that wait for no ACK.
    let window: String = (0..HANDLES_IN_FLIGHT)
        .map(|i| format!("{}{i}\n", envelope(i)))
        .collect();
    assert_eq!(recv_text(&peer, &window), (window, HANDLES_IN_FLIGHT));
    assert!(
        ch.held_writes().is_some(),
        "the handle past the window waits"
    );
    assert!(
        !sys::wait_readable(peer.as_fd(), 100),
        "and what follows it"
    );
    // An ACK makes room for one more; a NACK (the oldest in flight) sends that one again after the others.
    peer.write_all(b"{\"cmd\":\"NODE_HANDLE_ACK\"}\n").unwrap();
    let next_one = format!("{}{}\n", envelope(HANDLES_IN_FLIGHT), HANDLES_IN_FLIGHT);
    assert_eq!(recv_text(&peer, &next_one), (next_one, 1));
    peer.write_all(b"{\"cmd\":\"NODE_HANDLE_NACK\"}\n").unwrap();
    let again = format!("{RESEND}{}", envelope(1));
    assert_eq!(
        recv_text(&peer, &again),
        (again, 1),
        "handle 1 again, behind the marker"
    );
    // The resent handle holds its place in the window: the last one still waits for an ACK.
    assert!(!sys::wait_readable(peer.as_fd(), 100));
    peer.write_all(b"{\"cmd\":\"NODE_HANDLE_ACK\"}\n").unwrap();
    let last = HANDLES_IN_FLIGHT + 1;
    let last = format!("{}{last}\n", envelope(last));
    assert_eq!(recv_text(&peer, &last), (last, 1));
}

#[test]
fn between_two_pipelining_channels_every_handle_arrives_in_order_with_its_own_fd() {
    let (a, b) = sys::socketpair().unwrap();
    let (atx, arx) = unbounded();
    let (btx, _brx) = unbounded();
    let (ptx, _prx) = unbounded();
    let (ptx2, _prx2) = unbounded();
    // `receiver` is the child runtime's end (it announces first), `sender` the parent's (it answers).
    let receiver = Channel::new(
        a,
        Decoder::new(false, 1 << 16),
        Arc::new(TestSink(atx, ptx)),
    );
    receiver.announce_pipeline();
    receiver.read_all().unwrap();
    let sender = Channel::new(
        b,
        Decoder::new(false, 1 << 16),
        Arc::new(TestSink(btx, ptx2)),
    );
    sender.answer_pipeline();
    sender.read_all().unwrap();
    let n = 300;
    let mut partners = Vec::new();
    for i in 0..n {
        let (x, y) = sys::socketpair().unwrap();
        sender
            .write_handle(envelope(i).as_bytes(), x.as_fd())
            .unwrap();
        partners.push(UnixStream::from(y));
    }
    for (i, partner) in partners.iter_mut().enumerate() {
        let Event::Handle {
            envelope: Frame::Lines(text),
            fd,
        } = next(&arx)
        else {
            panic!("not a handle");
        };
        assert_eq!(text, envelope(i));
        // The fd is handle i's: what goes in at its end comes out at partner i.
        UnixStream::from(fd).write_all(&[i as u8]).unwrap();
        let mut b = [0u8; 1];
        partner.read_exact(&mut b).unwrap();
        assert_eq!(b[0], i as u8);
    }
    assert!(sender.pipelines_handles() && receiver.pipelines_handles());
    let acked = (0..500).any(|_| {
        thread::sleep(Duration::from_millis(10));
        !sender.awaiting_ack()
    });
    assert!(acked, "every handle was acknowledged");
}

/// A receiver that pipelines (it announced, as a runtime child's end does) and the raw peer that sends to it.
fn pipelining_receiver() -> (Arc<Channel>, UnixStream, Receiver<Event>) {
    let (ch, mut peer, rx, _) = open(1024);
    ch.announce_pipeline();
    assert_eq!(read_line(&mut peer), PIPELINE);
    peer.write_all(format!("{PIPELINE}\n").as_bytes()).unwrap();
    (ch, peer, rx)
}

/// Sends `text` with a fresh socket's fd on its first byte (as forkline's sender does), or without one: the fd the
/// receiver's kernel would have dropped.
fn send_envelope(peer: &UnixStream, text: &str, with_fd: bool) {
    let (x, _y) = sys::socketpair().unwrap();
    let fd = with_fd.then(|| x.as_fd());
    sys::send(peer.as_fd(), &[IoSlice::new(text.as_bytes())], fd, true).unwrap();
}

/// What the receiver delivered, as short names: `h<msg>` for a handle, the line for a message, `eof`.
fn delivered(rx: &Receiver<Event>, n: usize) -> Vec<String> {
    (0..n)
        .map(|_| match next(rx) {
            Event::Handle {
                envelope: Frame::Lines(text),
                ..
            } => format!("h{}", &text[text.rfind(':').unwrap() + 1..text.len() - 2]),
            Event::Frame(Frame::Lines(text)) => text.trim_end().to_string(),
            Event::Eof => "eof".to_string(),
            other => format!("{other:?}"),
        })
        .collect()
}

fn nothing_delivered(rx: &Receiver<Event>) {
    match rx.recv_timeout(Duration::from_millis(100)) {
        Err(_) | Ok(Event::Progress(_)) => {}
        Ok(other) => panic!("delivered too early: {other:?}"),
    }
}

const RESEND: &str = "{\"cmd\":\"NODE_HANDLE_RESEND\"}\n";
const DROPPED: &str = "{\"cmd\":\"NODE_HANDLE_DROPPED\"}\n";

#[test]
fn pipelined_what_follows_a_nacked_handle_waits_for_it_and_keeps_nodes_order() {
    let (_ch, mut peer, rx) = pipelining_receiver();
    // Each answer is awaited before the next fd goes, so that an envelope sent without one finds none waiting (as
    // after MSG_CTRUNC, where the lost fd keeps its place: pairing.rs).
    let answer = |peer: &mut UnixStream, kind: &str| {
        assert_eq!(
            read_line(peer),
            format!("{{\"cmd\":\"NODE_HANDLE_{kind}\"}}")
        );
    };
    send_envelope(&peer, &envelope(0), true);
    answer(&mut peer, "ACK");
    send_envelope(&peer, &envelope(1), false);
    answer(&mut peer, "NACK");
    peer.write_all(b"\"a\"\n").unwrap();
    send_envelope(&peer, &envelope(2), true);
    answer(&mut peer, "ACK");
    peer.write_all(b"\"b\"\n").unwrap();
    assert_eq!(delivered(&rx, 1), ["h0"]);
    nothing_delivered(&rx);
    // Handle 1 again, behind the sender's marker: it takes its first place, and what waited follows it.
    peer.write_all(RESEND.as_bytes()).unwrap();
    send_envelope(&peer, &envelope(1), true);
    assert_eq!(read_line(&mut peer), "{\"cmd\":\"NODE_HANDLE_ACK\"}");
    assert_eq!(delivered(&rx, 4), ["h1", "\"a\"", "h2", "\"b\""]);
    peer.write_all(b"\"c\"\n").unwrap();
    assert_eq!(delivered(&rx, 1), ["\"c\""], "nothing waits any more");
}

#[test]
fn pipelined_a_dropped_handle_lets_what_waited_go_and_the_end_lets_everything_go() {
    let (_ch, mut peer, rx) = pipelining_receiver();
    send_envelope(&peer, &envelope(0), false);
    peer.write_all(b"\"a\"\n").unwrap();
    // Sent again, and lost again: it still holds its place.
    peer.write_all(RESEND.as_bytes()).unwrap();
    send_envelope(&peer, &envelope(0), false);
    peer.write_all(b"\"b\"\n").unwrap();
    assert_eq!(read_line(&mut peer), "{\"cmd\":\"NODE_HANDLE_NACK\"}");
    assert_eq!(read_line(&mut peer), "{\"cmd\":\"NODE_HANDLE_NACK\"}");
    nothing_delivered(&rx);
    // A handle with its fd still goes behind the gap.
    send_envelope(&peer, &envelope(2), true);
    assert_eq!(read_line(&mut peer), "{\"cmd\":\"NODE_HANDLE_ACK\"}");
    nothing_delivered(&rx);
    peer.write_all(DROPPED.as_bytes()).unwrap();
    assert_eq!(delivered(&rx, 3), ["\"a\"", "\"b\"", "h2"]);
    // A handle lost and never sent again: what follows it arrives all the same when the stream ends.
    send_envelope(&peer, &envelope(1), false);
    peer.write_all(b"\"c\"\n").unwrap();
    assert_eq!(read_line(&mut peer), "{\"cmd\":\"NODE_HANDLE_NACK\"}");
    nothing_delivered(&rx);
    drop(peer);
    assert_eq!(delivered(&rx, 2), ["\"c\"", "eof"]);
}

#[test]
fn without_pipelining_a_nack_holds_nothing_back_and_markers_are_never_sent() {
    // Node's protocol: the sender holds everything behind the handle, so the receiver has nothing to hold.
    let (_ch, mut peer, rx, _) = open(1024);
    send_envelope(&peer, &envelope(0), false);
    peer.write_all(b"\"a\"\n").unwrap();
    assert_eq!(read_line(&mut peer), "{\"cmd\":\"NODE_HANDLE_NACK\"}");
    assert_eq!(delivered(&rx, 1), ["\"a\""]);
}

#[test]
fn pipelined_a_nacked_handle_goes_again_behind_a_marker_and_one_given_up_is_said_dropped() {
    let (ch, mut peer) = pipelining_sender();
    let (x, _y) = sys::socketpair().unwrap();
    ch.write_handle(envelope(0).as_bytes(), x.as_fd()).unwrap();
    ch.write(b"\"after\"\n").unwrap();
    let first = format!("{}\"after\"\n", envelope(0));
    assert_eq!(recv_text(&peer, &first), (first, 1));
    for _ in 0..MAX_HANDLE_RETRANSMISSIONS {
        peer.write_all(b"{\"cmd\":\"NODE_HANDLE_NACK\"}\n").unwrap();
        let again = format!("{RESEND}{}", envelope(0));
        assert_eq!(recv_text(&peer, &again), (again, 1));
    }
    peer.write_all(b"{\"cmd\":\"NODE_HANDLE_NACK\"}\n").unwrap();
    assert_eq!(read_line(&mut peer), DROPPED.trim_end());
}

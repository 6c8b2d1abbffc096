//! The channel as either napi end holds it (`ChannelSide`, shared by `NativeChild` and `NativeChannel`), and
//! `start_reading`, which sets up who reads it: libuv's poll on the JS thread, or the reactor.

use std::cell::Cell;
use std::rc::Rc;
use std::sync::Arc;

use napi::bindgen_prelude::{Buffer, Either};
use napi::{Env, Result};

use crate::core::channel::{Channel, Event, ReadOutcome, Stats, Written};
use crate::core::error::SysError;
use crate::core::frame::Frame;
use crate::core::spin::Window;
use crate::napi::busy_poll::{BusyPoll, Spinner};
use crate::napi::delivery::{Delivery, MAX_BATCH};
use crate::napi::event::{ChannelEvent, Polled};
use crate::napi::js_call::DirectCall;
use crate::napi::loop_gauge::LoopGauge;
use crate::napi::loop_hold::{self, Hold};
use crate::napi::payload::{Line, Text};
use crate::napi::stats::ChannelStats;
use crate::napi::uv;
use crate::napi::wake::Wakeable;

/// Default cap on one message: V8's longest string is just under 512 MiB, so nothing larger could be delivered.
pub(crate) const DEFAULT_MAX_MESSAGE_SIZE: usize = 512 * 1024 * 1024;

/// Who reads a channel on the JS thread: libuv's poll (none where the reactor reads it all), and the thread's busy
/// poll unless it is off.
#[derive(Default)]
pub(crate) struct Reading {
    pub(crate) js: Option<JsPoll>,
    pub(crate) busy: Option<BusyPoll>,
}

/// libuv's poll of the channel, which watches it on the JS thread while the reactor does not read it, and how busy
/// that thread is, which decides who reads the ACKs of handles.
pub(crate) struct JsPoll {
    poller: uv::Poll,
    gauge: Rc<LoopGauge>,
}

/// Reads the channel on the JS thread while traffic is light: one wake-up per message, as Node's own channel has.
/// A read that fills the whole buffer hands the channel to the reactor, which reads off the JS thread in big
/// batches until the socket goes quiet and then hands it back. Without libuv at hand the reactor does it all.
/// With a `busy_poll` window the loop also keeps looking for the next message a while after each send and
/// receive (busy_poll.rs; None: never).
pub(crate) fn start_reading(
    env: &Env,
    channel: &Arc<Channel>,
    delivery: &Arc<Delivery>,
    call: &Rc<DirectCall>,
    busy_poll: Option<Window>,
) -> std::result::Result<Reading, SysError> {
    let Some(uv_loop) = env.get_uv_event_loop().ok().map(|l| l.cast()) else {
        channel.read_all()?;
        return Ok(Reading::default());
    };
    let busy = busy_poll
        .and_then(|window| Spinner::for_loop(uv_loop).map(|spinner| BusyPoll { spinner, window }));
    let read = JsThreadRead {
        channel: channel.clone(),
        delivery: delivery.clone(),
        call: call.clone(),
    };
    // Weak: the spinner's idle handle must close when the last end lets it go, with the poll handles, not in a poll
    // handle's close callback (a worker's loop ends right after those: a handle closed from one stays open).
    let armed = busy.as_ref().map(|b| (Rc::downgrade(&b.spinner), b.window));
    let on_readable = Box::new(move |stop: &dyn Fn()| {
        if read.read_once(stop) {
            if let Some((spinner, window)) = &armed {
                if let Some(spinner) = spinner.upgrade() {
                    spinner.received(*window);
                }
            }
        }
    });
    match uv::Poll::new(uv_loop, channel.raw_fd(), on_readable) {
        Some(poller) => {
            poller.start();
            Ok(Reading {
                js: Some(JsPoll {
                    poller,
                    gauge: LoopGauge::for_loop(uv_loop),
                }),
                busy,
            })
        }
        None => {
            channel.read_all()?;
            Ok(Reading::default())
        }
    }
}

/// One read on the JS thread, and one call into JS for what it brought.
struct JsThreadRead {
    channel: Arc<Channel>,
    delivery: Arc<Delivery>,
    call: Rc<DirectCall>,
}

impl JsThreadRead {
    /// Reads once; `stop` stops the caller's polling (at EOF, or once the reactor has the channel). True if
    /// something arrived.
    fn read_once(&self, stop: &dyn Fn()) -> bool {
        let mut outcome = ReadOutcome::Idle;
        // Until JS has seen what this read brought, our ACKs wait to leave with its replies (one write, one
        // wake-up of the peer, as a cluster worker's ACK and newconn answer); whatever is left goes at the end.
        self.channel.defer_control(true);
        let pending = self
            .delivery
            .quietly(|| outcome = self.channel.read_ready(1));
        match outcome {
            ReadOutcome::Idle => {}
            ReadOutcome::Ended => stop(),
            // Stop before JS runs below: a quick burst may already be over, and JS then starts polling again.
            // Polling goes on on the JS thread only if the reactor cannot take it.
            ReadOutcome::Busy => {
                if self.channel.read_burst().is_ok() {
                    stop();
                }
            }
        }
        if pending {
            self.call.call();
        }
        self.channel.defer_control(false);
        pending
    }
}

/// What either end's napi class holds of its channel: the channel, its event queue, who reads it on the JS thread
/// and the keep-alive of `ref()`. NativeChild (the parent's end) and NativeChannel (runtime.rs, the child's) delegate
/// their channel methods here.
pub(crate) struct ChannelSide {
    pub(crate) delivery: Arc<Delivery>,
    pub(crate) channel: Option<Arc<Channel>>,
    pub(crate) channel_ref: Option<Hold>,
    pub(crate) reading: Reading,
    /// A handle has been sent in Node's protocol: each wake-up then samples the gauge, so its judgement is recent.
    pub(crate) passes_handles: Cell<bool>,
    /// The channel's counters, kept after the channel is released.
    pub(crate) stats: Arc<Stats>,
    /// Where the thread's wake-up finds this end's JS function, until the end retires.
    pub(crate) wakeable: Option<Wakeable>,
}

impl ChannelSide {
    pub(crate) fn fd(&self) -> Option<i32> {
        self.channel.as_ref().map(|c| c.raw_fd())
    }

    /// The channel's counters (still there once it is closed, with nothing queued).
    pub(crate) fn stats(&self) -> ChannelStats {
        match &self.channel {
            Some(c) => c.stats_snapshot().into(),
            None => self.stats.snapshot(0).into(),
        }
    }

    /// -1 when a write now would not wait behind a handle, else how many writes wait already.
    pub(crate) fn held_writes(&self) -> i64 {
        match self.channel.as_ref().and_then(|c| c.held_writes()) {
            Some(n) => n as i64,
            None => -1,
        }
    }

    pub(crate) fn poll(&self) -> Vec<Polled> {
        if self.passes_handles.get() {
            if let Some(js) = &self.reading.js {
                js.gauge.busy();
            }
        }
        let mut out = Vec::with_capacity(self.delivery.pending().min(MAX_BATCH));
        self.delivery.drain(|event| {
            match event {
                // A burst is over: the JS thread reads again, in order after everything the thread read.
                Event::ReaderIdle => {
                    if let Some(js) = &self.reading.js {
                        js.poller.start();
                    }
                }
                Event::Frame(Frame::Lines(text)) => out.push(Either::A(Text(text))),
                other => out.push(Either::B(ChannelEvent::from(other))),
            }
        });
        out
    }

    /// Queues a write (with an fd for a NODE_HANDLE envelope). Returns the bytes still queued (0: all written
    /// now), or -errno.
    pub(crate) fn submit(&self, data: Either<Line, Buffer>, fd: Option<i32>) -> f64 {
        let Some(channel) = &self.channel else {
            return -(nix::libc::EPIPE as f64);
        };
        let fd = match fd {
            Some(fd) if fd < 0 => return -(nix::libc::EBADF as f64),
            // SAFETY: borrowed only for this call, during which JS keeps the handle (and fd) open.
            Some(fd) => Some(unsafe { std::os::fd::BorrowedFd::borrow_raw(fd) }),
            None => None,
        };
        let result = match (data, fd) {
            (Either::A(Line(envelope)), Some(fd)) => self.queue_handle(channel, &envelope, fd),
            (Either::B(envelope), Some(fd)) => self.queue_handle(channel, &envelope, fd),
            // A json line is ours to queue as it is, and comes back for the next one if it went at once.
            (Either::A(Line(mut line)), None) => {
                let result = channel.write_from(&mut line);
                Line::recycle(line);
                result
            }
            // Advanced frames (a Buffer stays JS's: what does not go at once is copied); big ones go as a memfd
            // once both ends agreed.
            (Either::B(frames), None) => channel.write_frames(&frames),
        };
        if let Some(busy) = &self.reading.busy {
            busy.sent();
        }
        match result {
            Ok(w) => w.queued_bytes as f64,
            Err(e) => e.uv_errno() as f64,
        }
    }

    /// A handle that has to wait behind another's ACK, in Node's protocol (one handle per round trip), means
    /// handles come faster than the peer acknowledges them. If this thread has been busy lately (loop_load.rs), the
    /// reactor reads for a while, so that each ACK sends the next handle at once rather than when this thread is
    /// next free (Node's sender answers an ACK from its event loop, behind whatever else the loop has to do); once
    /// the thread is mostly idle again, it reads the ACKs itself, waking for each as Node's sender does, without
    /// the reactor's two extra wake-ups per handle. Pipelined, a window of handles is in flight already.
    fn queue_handle(
        &self,
        channel: &Arc<Channel>,
        envelope: &[u8],
        fd: std::os::fd::BorrowedFd<'_>,
    ) -> std::result::Result<Written, SysError> {
        let written = channel.write_handle(envelope, fd)?;
        if channel.pipelines_handles() {
            return Ok(written);
        }
        self.passes_handles.set(true);
        if written.held {
            if let Some(js) = &self.reading.js {
                if js.gauge.busy() {
                    if channel.read_burst().is_ok() {
                        js.poller.stop();
                    }
                } else if channel.end_burst() {
                    js.poller.start();
                }
            }
        }
        Ok(written)
    }

    pub(crate) fn close(&self) {
        if let Some(c) = &self.channel {
            c.close();
        }
    }

    pub(crate) fn release(&mut self) {
        self.reading = Reading::default();
        self.channel_ref = None;
        self.channel = None;
    }

    /// Nothing more will be reported (the process exited and the channel ended): lets go of the channel and of this
    /// end's place in the thread's wake-up table. That table holds the end's JS function, whose closure holds the
    /// JS object that holds this end: until then neither could be collected.
    pub(crate) fn retire(&mut self) {
        self.release();
        self.wakeable = None;
    }

    pub(crate) fn ref_channel(&mut self, env: &Env) -> Result<()> {
        if self.channel_ref.is_none() && self.channel.is_some() {
            self.channel_ref = Some(loop_hold::hold(env)?);
        }
        Ok(())
    }

    pub(crate) fn unref_channel(&mut self) {
        self.channel_ref = None;
    }
}

/// Whether this process's channels take large advanced messages as memfds (core/memfd.rs): yes, unless
/// `FORKLINE_MEMFD=0` (inherited by children, so then neither end announces).
pub(crate) fn memfd_enabled() -> bool {
    std::env::var_os("FORKLINE_MEMFD").is_none_or(|v| v != "0")
}

/// Whether handles may be pipelined with a forkline peer (core/channel/handles.rs): yes, unless
/// `FORKLINE_HANDLE_PIPELINE=0` (inherited by children, so then neither end announces). Messages keep Node's order
/// around a NACKed handle: the receiver holds what follows it until it comes again (core/nack_hold.rs).
pub(crate) fn handle_pipeline_enabled() -> bool {
    std::env::var_os("FORKLINE_HANDLE_PIPELINE").is_none_or(|v| v != "0")
}

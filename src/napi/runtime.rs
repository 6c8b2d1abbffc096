//! The napi surface of the child runtime (#7): `NativeChannel`, the child's end of a channel its forkline parent
//! made, served by the same `Channel` and `Delivery` as the parent's `NativeChild`. lib/runtime.js installs it as the
//! child's `process.send` / `process.on('message')` before user code runs.

use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

use napi::bindgen_prelude::{Buffer, Either, Function};

use crate::napi::payload::Line;
use napi::{Env, Result};
use napi_derive::napi;

use crate::core::channel::{Channel, EventSink};
use crate::core::frame::Decoder;
use crate::napi::delivery::Delivery;
use crate::napi::error::sys_error;
use crate::napi::event::Polled;
use crate::napi::js_call::DirectCall;
use crate::napi::side::{start_reading, ChannelSide, DEFAULT_MAX_MESSAGE_SIZE};
use crate::napi::stats::ChannelStats;
use crate::napi::wake;
use crate::os::sys;

/// The child's end of its IPC channel.
#[napi]
pub struct NativeChannel {
    side: ChannelSide,
}

#[napi]
impl NativeChannel {
    /// Takes over the inherited channel socket at `fd` and starts reading it. `onWake` is called (with no
    /// arguments) whenever `poll()` has something. The channel starts unref'd, as Node's child channel does.
    /// `busyPoll`: µs to keep polling after each send and receive (0: never; absent: while it pays).
    #[napi(factory)]
    pub fn open(
        env: Env,
        fd: i32,
        serialization: String,
        on_wake: Function<(), ()>,
        busy_poll: Option<u32>,
    ) -> Result<NativeChannel> {
        let sock = sys::adopt_inherited_socket(fd).map_err(sys_error)?;
        let advanced = serialization == "advanced";
        let call = Rc::new(DirectCall::new(&env, &on_wake)?);
        let (waker, wakeable) = wake::register(&env, call.clone())?;
        let delivery = Arc::new(Delivery::new(waker));
        let sink: Arc<dyn EventSink> = delivery.clone();
        let channel = Channel::new(sock, Decoder::new(advanced, DEFAULT_MAX_MESSAGE_SIZE), sink);
        if crate::napi::side::memfd_enabled() {
            channel.announce_memfd();
        }
        if crate::napi::side::handle_pipeline_enabled() {
            channel.announce_pipeline();
        }
        let busy_poll = crate::napi::busy_poll::window_of(busy_poll);
        let reading =
            start_reading(&env, &channel, &delivery, &call, busy_poll).map_err(sys_error)?;
        Ok(NativeChannel {
            side: ChannelSide {
                delivery,
                stats: channel.stats(),
                channel: Some(channel),
                channel_ref: None,
                reading,
                passes_handles: Default::default(),
                wakeable: Some(wakeable),
            },
        })
    }

    #[napi(getter)]
    pub fn channel_fd(&self) -> Option<i32> {
        self.side.fd()
    }

    /// Everything that happened since the last call, in order: json lines as strings, the rest as events.
    #[napi(ts_return_type = "Array<string | ChannelEvent>")]
    pub fn poll(&self) -> Vec<Polled> {
        self.side.poll()
    }

    /// Queues json text (one or more messages, newline-separated; the last newline is added here) or advanced frames
    /// for the parent. Returns the bytes still queued (0: all written now), or -errno.
    #[napi(ts_args_type = "data: string | Buffer")]
    pub fn write(&self, data: Either<Line, Buffer>) -> f64 {
        self.side.submit(data, None)
    }

    /// `write` for json text alone: one fewer conversion than `string | Buffer`, whose dispatch makes (and drops)
    /// an error object on every call.
    #[napi(ts_args_type = "data: string")]
    pub fn write_line(&self, data: Line) -> f64 {
        self.side.submit(Either::A(data), None)
    }

    /// Sends a NODE_HANDLE envelope with `fd` (duplicated: the caller keeps its own). Returns like `write`.
    #[napi(ts_args_type = "envelope: string | Buffer, fd: number")]
    pub fn write_handle(&self, envelope: Either<Line, Buffer>, fd: i32) -> f64 {
        self.side.submit(envelope, Some(fd))
    }

    /// Blocks until every queued write is on the wire, for at most `timeoutMs`; true if nothing is left. Only for
    /// a process that is exiting, whose writer thread would otherwise die with writes still queued
    /// (nodejs/node#36268 loses those).
    #[napi]
    pub fn wait_written(&self, timeout_ms: u32) -> bool {
        self.side
            .channel
            .as_ref()
            .is_none_or(|c| c.wait_written(Duration::from_millis(timeout_ms.into())))
    }

    /// The channel's counters (still there once it is closed).
    #[napi]
    pub fn stats(&self) -> ChannelStats {
        self.side.stats()
    }

    /// How many writes wait behind a handle sent to the parent that waits for its ACK, or -1 if a write now would
    /// not wait (pipelined with a runtime peer: only behind a handle past the window). send()'s return value then
    /// follows Node's `_handleQueue.length === 1`.
    #[napi]
    pub fn held_writes(&self) -> i64 {
        self.side.held_writes()
    }

    /// Closes the channel once queued writes are out (Node's disconnect()); the reader then reports 'eof'.
    #[napi]
    pub fn close_channel(&self) {
        self.side.close();
    }

    /// Drops our hold on the channel after its EOF, so its socket closes now rather than at garbage collection.
    #[napi]
    pub fn release_channel(&mut self) {
        self.side.release();
    }

    /// While the channel is ref'd and open, the event loop stays alive (Node's process.channel.ref()).
    #[napi]
    pub fn ref_channel(&mut self, env: Env) -> Result<()> {
        self.side.ref_channel(&env)
    }

    #[napi]
    pub fn unref_channel(&mut self) {
        self.side.unref_channel();
    }
}

//! What `poll()` hands JS: json lines as bare strings, everything else as a `ChannelEvent` built from the core's
//! `Event`; and `socketKind`, which JS asks of the fd a 'handle' event brought.

use std::os::fd::IntoRawFd;

use napi::bindgen_prelude::Either;
use napi_derive::napi;

use crate::core::channel::{Event, WriteProgress};
use crate::core::error::SysError;
use crate::core::frame::Frame;
use crate::napi::payload::{Bytes, LargeBytes, Text};
use crate::os::sys;

/// One event for the JS layer (lib/channel.js). `kind` says which fields are set:
/// 'lines' text · 'frames' bytes (length-prefixed advanced frames) · 'error' code, message · 'readError' code, errno, syscall · 'eof' ·
/// 'handle' text or bytes (one NODE_HANDLE envelope) and fd, which JS now owns · 'exit' exitCode, signal · 'written' seq, failed, queued (+ code, errno, syscall when writes failed).
#[napi(object, object_from_js = false)]
pub struct ChannelEvent {
    pub kind: String,
    pub text: Option<Text>,
    pub bytes: Option<Either<Bytes, LargeBytes>>,
    pub code: Option<String>,
    pub message: Option<String>,
    pub errno: Option<i32>,
    pub syscall: Option<String>,
    pub exit_code: Option<i32>,
    pub signal: Option<i32>,
    pub seq: Option<f64>,
    pub failed: Option<f64>,
    pub queued: Option<f64>,
    /// A received fd, now owned by JS (kind 'handle').
    pub fd: Option<i32>,
}

impl ChannelEvent {
    fn new(kind: &str) -> Self {
        ChannelEvent {
            kind: kind.into(),
            text: None,
            bytes: None,
            code: None,
            message: None,
            errno: None,
            syscall: None,
            exit_code: None,
            signal: None,
            seq: None,
            failed: None,
            queued: None,
            fd: None,
        }
    }

    fn sys(kind: &str, err: SysError) -> Self {
        ChannelEvent {
            code: Some(err.code()),
            errno: Some(err.uv_errno()),
            syscall: Some(err.syscall.into()),
            ..ChannelEvent::new(kind)
        }
    }

    fn progress(p: WriteProgress) -> Self {
        let base = match p.error {
            Some(err) => ChannelEvent::sys("written", err),
            None => ChannelEvent::new("written"),
        };
        ChannelEvent {
            seq: Some(p.done as f64),
            failed: Some(p.failed as f64),
            queued: Some(p.queued_bytes as f64),
            ..base
        }
    }
}

impl From<Event> for ChannelEvent {
    fn from(event: Event) -> Self {
        match event {
            Event::Frame(Frame::Lines(text)) => ChannelEvent {
                text: Some(Text(text)),
                ..ChannelEvent::new("lines")
            },
            Event::Frame(Frame::Frames(bytes)) => ChannelEvent {
                bytes: Some(Either::A(Bytes(bytes))),
                ..ChannelEvent::new("frames")
            },
            Event::LargeFrame(bytes) => ChannelEvent {
                bytes: Some(Either::B(LargeBytes(bytes))),
                ..ChannelEvent::new("frames")
            },
            Event::Frame(Frame::Error { code, message }) => ChannelEvent {
                code: Some(code.as_str().into()),
                message: Some(message),
                ..ChannelEvent::new("error")
            },
            Event::Handle { envelope, fd } => {
                let base = ChannelEvent {
                    fd: Some(fd.into_raw_fd()),
                    ..ChannelEvent::new("handle")
                };
                match envelope {
                    Frame::Lines(text) => ChannelEvent {
                        text: Some(Text(text)),
                        ..base
                    },
                    Frame::Frames(bytes) => ChannelEvent {
                        bytes: Some(Either::A(Bytes(bytes))),
                        ..base
                    },
                    Frame::Error { .. } => base,
                }
            }
            Event::ReadError(err) => ChannelEvent::sys("readError", err),
            Event::Eof => ChannelEvent::new("eof"),
            Event::Exit { code, signal } => ChannelEvent {
                exit_code: code,
                signal,
                ..ChannelEvent::new("exit")
            },
            Event::Progress(p) => ChannelEvent::progress(p),
            // Handled in `poll`; never reaches JS.
            Event::ReaderIdle => ChannelEvent::new("idle"),
        }
    }
}

/// Everything that happened since the last call, in order, for either end's `poll`.
/// Json lines, the hot path, arrive as bare strings: no event object to build for them.
pub(crate) type Polled = Either<Text, ChannelEvent>;

/// What kind of socket a received fd is ('tcp' | 'pipe' | 'udp' | 'other'), to rebuild Node's Native handles.
#[napi]
// Only napi's registration calls it, and napi-derive leaves that out of test builds.
#[cfg_attr(test, allow(dead_code))]
pub fn socket_kind(fd: i32) -> &'static str {
    if fd < 0 {
        return "other";
    }
    // SAFETY: borrowed for one getsockopt/getsockname; JS owns the fd and keeps it open across this call.
    sys::socket_kind(unsafe { std::os::fd::BorrowedFd::borrow_raw(fd) })
}

//! Error codes shared by the core and the napi boundary. Node's own `ERR_*` codes are raised by the JS layer
//! (lib/errors.js), where Node raises them; these are the codes only forkline's channel can produce.

use nix::errno::Errno;

/// forkline's own error codes, as `err.code` shows them in JS.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Code {
    /// A message that is not valid UTF-8 (json) or not valid JSON / V8 data (checked in JS).
    MalformedMessage,
    /// A message longer than `maxMessageSize`.
    MessageTooLarge,
    /// The channel closed in the middle of a message.
    TruncatedMessage,
    /// A file descriptor arrived with no NODE_HANDLE message to carry it.
    StrayFd,
    /// The kernel dropped an fd sent to us (MSG_CTRUNC, e.g. at RLIMIT_NOFILE).
    FdLost,
    /// A handle we sent was refused (NACK) more often than Node's MAX_HANDLE_RETRANSMISSIONS.
    HandleNotReceived,
    /// A large message's memfd failed its checks (not a sealed memfd, a size that lies) or never came.
    BadMemfd,
    /// A bug in forkline, reported instead of crashing the parent.
    Internal,
}

impl Code {
    pub fn as_str(self) -> &'static str {
        match self {
            Code::MalformedMessage => "FORKLINE_MALFORMED_MESSAGE",
            Code::MessageTooLarge => "FORKLINE_MESSAGE_TOO_LARGE",
            Code::TruncatedMessage => "FORKLINE_TRUNCATED_MESSAGE",
            Code::StrayFd => "FORKLINE_STRAY_FD",
            Code::FdLost => "FORKLINE_FD_LOST",
            Code::HandleNotReceived => "FORKLINE_HANDLE_NOT_RECEIVED",
            Code::BadMemfd => "FORKLINE_BAD_MEMFD",
            Code::Internal => "FORKLINE_INTERNAL",
        }
    }
}

/// A failed system call, kept as Node reports it: `{ code: 'EPIPE', errno: -32, syscall: 'write' }`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SysError {
    pub errno: Errno,
    pub syscall: &'static str,
}

impl SysError {
    pub fn new(errno: Errno, syscall: &'static str) -> Self {
        SysError { errno, syscall }
    }

    /// Node's `err.code`, e.g. `EPIPE`.
    pub fn code(&self) -> String {
        format!("{:?}", self.errno)
    }

    /// Node's `err.errno`: the negated errno, as libuv reports it.
    pub fn uv_errno(&self) -> i32 {
        -(self.errno as i32)
    }
}

impl std::fmt::Display for SysError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}", self.syscall, self.code())
    }
}

impl std::error::Error for SysError {}

//! The core's `SysError` as a napi `Error`, for the calls that throw it.

use napi::{Error, Status};

use crate::core::error::SysError;

/// A system error for JS to rebuild as Node's ErrnoException: the message is just its code (e.g. `E2BIG`).
pub(crate) fn sys_error(err: SysError) -> Error {
    Error::new(Status::GenericFailure, err.code())
}

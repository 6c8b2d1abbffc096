//! What the cluster's control socket (lib/cluster/control.js) needs from the OS that Node does not offer: the user
//! id of the process at the other end of a connection (SO_PEERCRED), so that only our own user is served.

use napi::Result;
use napi_derive::napi;

use crate::napi::error::sys_error;
use crate::os::sys;

/// The peer's user id on the connected unix socket `fd` (a `net.Socket`'s `_handle.fd`); throws with the errno
/// code as its message (e.g. `ENOTSOCK`).
#[napi]
// Only napi's registration calls it, and napi-derive leaves that out of test builds.
#[cfg_attr(test, allow(dead_code))]
pub fn peer_uid(fd: i32) -> Result<u32> {
    if fd < 0 {
        return Err(sys_error(crate::core::error::SysError::new(
            nix::errno::Errno::EBADF,
            "getsockopt",
        )));
    }
    // SAFETY: borrowed for one getsockopt; JS owns the fd and keeps it open across this synchronous call.
    let fd = unsafe { std::os::fd::BorrowedFd::borrow_raw(fd) };
    sys::peer_uid(fd).map_err(sys_error)
}

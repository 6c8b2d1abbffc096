//! Socket syscalls: every fd enters and leaves this module as an `OwnedFd`, and every fd we create or receive is
//! close-on-exec, so a child Node spawns later never holds a stray copy of our channel (which would hide EOF).

use std::io::{IoSlice, IoSliceMut};
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};

use nix::errno::Errno;
use nix::sys::socket::{
    self, AddressFamily, ControlMessage, ControlMessageOwned, MsgFlags, SockFlag, SockType,
    SockaddrLike,
};

use nix::poll::{poll, PollFd, PollFlags, PollTimeout};

use crate::core::error::SysError;

/// Most fds one recvmsg accepts; Node sends one per message, so more than one is already a protocol fault.
const MAX_FDS_PER_READ: usize = 8;

/// A connected AF_UNIX stream pair, both ends close-on-exec.
pub fn socketpair() -> Result<(OwnedFd, OwnedFd), SysError> {
    socket::socketpair(
        AddressFamily::Unix,
        SockType::Stream,
        None,
        SockFlag::SOCK_CLOEXEC,
    )
    .map_err(|e| SysError::new(e, "socketpair"))
}

/// What one read brought: `n` bytes (0 = EOF) and the fds that rode along.
#[derive(Debug)]
pub struct Received {
    pub n: usize,
    pub fds: Vec<OwnedFd>,
    /// The kernel dropped fds for lack of room (MSG_CTRUNC): a fault to report, never to ignore.
    pub fds_truncated: bool,
}

/// One recvmsg that never blocks (the socket may be O_NONBLOCK for libuv's poll, or not): EAGAIN means nothing is
/// ready; use `wait_readable` to block. fds arrive close-on-exec and owned.
pub fn recv(fd: BorrowedFd<'_>, buf: &mut [u8]) -> Result<Received, SysError> {
    let mut cmsg = nix::cmsg_space!([RawFd; MAX_FDS_PER_READ]);
    let mut iov = [IoSliceMut::new(buf)];
    loop {
        match socket::recvmsg::<()>(
            fd.as_raw_fd(),
            &mut iov,
            Some(&mut cmsg),
            MsgFlags::MSG_CMSG_CLOEXEC | MsgFlags::MSG_DONTWAIT,
        ) {
            Ok(msg) => {
                let mut fds = Vec::new();
                let fds_truncated = msg.flags.contains(MsgFlags::MSG_CTRUNC);
                // nix refuses to iterate a truncated control buffer; what did arrive is then lost to us either way.
                if let Ok(cmsgs) = msg.cmsgs() {
                    for c in cmsgs {
                        if let ControlMessageOwned::ScmRights(raw) = c {
                            for r in raw {
                                // SAFETY: SCM_RIGHTS just installed `r` in our table; nothing else owns it.
                                fds.push(unsafe { OwnedFd::from_raw_fd(r) });
                            }
                        }
                    }
                }
                return Ok(Received {
                    n: msg.bytes,
                    fds,
                    fds_truncated,
                });
            }
            Err(Errno::EINTR) => continue,
            Err(e) => return Err(SysError::new(e, "read")),
        }
    }
}

/// One sendmsg of `bufs` (with `fd` as SCM_RIGHTS if given). `wait: false` never blocks (MSG_DONTWAIT): EAGAIN
/// comes back as `Ok(0)` so the caller can queue the rest. MSG_NOSIGNAL: a dead peer is EPIPE, never SIGPIPE.
pub fn send(
    sock: BorrowedFd<'_>,
    bufs: &[IoSlice<'_>],
    fd: Option<BorrowedFd<'_>>,
    wait: bool,
) -> Result<usize, SysError> {
    let mut flags = MsgFlags::MSG_NOSIGNAL;
    if !wait {
        flags |= MsgFlags::MSG_DONTWAIT;
    }
    let raw = fd.map(|f| [f.as_raw_fd()]);
    let cmsgs: Vec<ControlMessage<'_>> = raw
        .as_ref()
        .map(|r| ControlMessage::ScmRights(r))
        .into_iter()
        .collect();
    loop {
        match socket::sendmsg::<()>(sock.as_raw_fd(), bufs, &cmsgs, flags, None) {
            Ok(n) => return Ok(n),
            Err(Errno::EINTR) => continue,
            Err(Errno::EAGAIN) if !wait => return Ok(0),
            // The socket is O_NONBLOCK once libuv polls it: wait for room ourselves.
            Err(Errno::EAGAIN) => {
                wait_for(sock, PollFlags::POLLOUT, -1);
            }
            Err(e) => return Err(SysError::new(e, "write")),
        }
    }
}

/// Blocks until `sock` has something to read (or is closed), for at most `timeout_ms` (-1: no limit). False on
/// timeout.
pub fn wait_readable(sock: BorrowedFd<'_>, timeout_ms: i32) -> bool {
    wait_for(sock, PollFlags::POLLIN, timeout_ms)
}

fn wait_for(sock: BorrowedFd<'_>, events: PollFlags, timeout_ms: i32) -> bool {
    let timeout = if timeout_ms < 0 {
        PollTimeout::NONE
    } else {
        PollTimeout::try_from(timeout_ms).unwrap_or(PollTimeout::MAX)
    };
    loop {
        let mut fds = [PollFd::new(sock, events)];
        match poll(&mut fds, timeout) {
            Ok(0) => return false,
            // Readable, writable, hung up or failed: in every case the next syscall has something to say.
            Ok(_) => return true,
            Err(Errno::EINTR) => continue,
            Err(_) => return true,
        }
    }
}

/// Wakes a reader blocked in recv (it then sees EOF) and a writer blocked in send (EPIPE), from any thread.
/// Closing the fd instead would race with the reader: the number could be reused mid-read.
pub fn shutdown(sock: BorrowedFd<'_>) {
    // ENOTCONN after the peer is gone is fine: the point is only to wake our own threads.
    let _ = socket::shutdown(sock.as_raw_fd(), socket::Shutdown::Both);
}

/// What kind of socket `fd` is, as Node's handle types see it: 'tcp', 'pipe' (unix stream), 'udp', or 'other'.
pub fn socket_kind(fd: BorrowedFd<'_>) -> &'static str {
    let ty = socket::getsockopt(&fd, socket::sockopt::SockType);
    let family = socket::getsockname::<socket::SockaddrStorage>(fd.as_raw_fd())
        .ok()
        .and_then(|a| a.family());
    match (ty, family) {
        (Ok(SockType::Stream), Some(AddressFamily::Inet | AddressFamily::Inet6)) => "tcp",
        (Ok(SockType::Stream), Some(AddressFamily::Unix)) => "pipe",
        (Ok(SockType::Datagram), Some(AddressFamily::Inet | AddressFamily::Inet6)) => "udp",
        _ => "other",
    }
}

/// Takes over the channel fd a parent left us (the child runtime's FORKLINE_CHANNEL_FD): it must be an open unix
/// stream socket. It was inherited, so it is not close-on-exec: make it so, or a grandchild would hold a copy of the
/// channel and the parent would never see EOF when we exit.
pub fn adopt_inherited_socket(fd: RawFd) -> Result<OwnedFd, SysError> {
    if fd < 0 {
        return Err(SysError::new(Errno::EBADF, "open"));
    }
    // SAFETY: borrowed for two checks only, and nothing closes it meanwhile; were the number not open, both calls
    // would just fail with EBADF.
    let borrowed = unsafe { BorrowedFd::borrow_raw(fd) };
    nix::fcntl::fcntl(borrowed, nix::fcntl::FcntlArg::F_GETFD)
        .map_err(|e| SysError::new(e, "open"))?;
    if socket_kind(borrowed) != "pipe" {
        return Err(SysError::new(Errno::ENOTSOCK, "open"));
    }
    // SAFETY: the parent passed this fd to us for the channel alone, and its number was removed from the
    // environment by the caller: from here on this OwnedFd is its only owner.
    let owned = unsafe { OwnedFd::from_raw_fd(fd) };
    nix::fcntl::fcntl(
        &owned,
        nix::fcntl::FcntlArg::F_SETFD(nix::fcntl::FdFlag::FD_CLOEXEC),
    )
    .map_err(|e| SysError::new(e, "fcntl"))?;
    Ok(owned)
}

/// Asks for a larger send buffer; the kernel caps it at net.core.wmem_max, which is fine.
pub fn set_send_buffer(sock: BorrowedFd<'_>, bytes: usize) {
    let _ = socket::setsockopt(&sock, socket::sockopt::SndBuf, &bytes);
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::fd::AsFd;

    #[test]
    fn pair_is_cloexec_and_carries_bytes_and_fds() {
        let (a, b) = socketpair().unwrap();
        let flags = nix::fcntl::fcntl(&a, nix::fcntl::FcntlArg::F_GETFD).unwrap();
        assert_ne!(flags & nix::libc::FD_CLOEXEC, 0);
        let (x, _y) = socketpair().unwrap();
        assert_eq!(
            send(a.as_fd(), &[IoSlice::new(b"hi\n")], Some(x.as_fd()), true).unwrap(),
            3
        );
        let mut buf = [0u8; 16];
        let got = recv(b.as_fd(), &mut buf).unwrap();
        assert_eq!(&buf[..got.n], b"hi\n");
        assert_eq!(got.fds.len(), 1);
        let flags = nix::fcntl::fcntl(&got.fds[0], nix::fcntl::FcntlArg::F_GETFD).unwrap();
        assert_ne!(
            flags & nix::libc::FD_CLOEXEC,
            0,
            "received fds are close-on-exec"
        );
    }

    #[test]
    fn nonblocking_send_reports_a_full_buffer_as_zero() {
        let (a, _b) = socketpair().unwrap();
        let chunk = vec![b'x'; 1 << 16];
        let mut total = 0;
        loop {
            let n = send(a.as_fd(), &[IoSlice::new(&chunk)], None, false).unwrap();
            if n == 0 {
                break;
            }
            total += n;
            assert!(total < 64 << 20, "socket never filled");
        }
    }

    #[test]
    fn adopting_an_inherited_socket_makes_it_cloexec_and_refuses_non_sockets() {
        let (a, _b) = socketpair().unwrap();
        let raw = a.as_fd().try_clone_to_owned().unwrap();
        nix::fcntl::fcntl(
            &raw,
            nix::fcntl::FcntlArg::F_SETFD(nix::fcntl::FdFlag::empty()),
        )
        .unwrap();
        let adopted = adopt_inherited_socket(std::os::fd::IntoRawFd::into_raw_fd(raw)).unwrap();
        let flags = nix::fcntl::fcntl(&adopted, nix::fcntl::FcntlArg::F_GETFD).unwrap();
        assert_ne!(flags & nix::libc::FD_CLOEXEC, 0);
        let file = std::fs::File::open("/dev/null").unwrap();
        let err = adopt_inherited_socket(file.as_raw_fd()).unwrap_err();
        assert_eq!(err.errno, Errno::ENOTSOCK);
        assert_eq!(adopt_inherited_socket(-1).unwrap_err().errno, Errno::EBADF);
    }

    #[test]
    fn socket_kinds() {
        let (a, _b) = socketpair().unwrap();
        assert_eq!(socket_kind(a.as_fd()), "pipe");
        let tcp = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        assert_eq!(socket_kind(tcp.as_fd()), "tcp");
        let udp = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        assert_eq!(socket_kind(udp.as_fd()), "udp");
        let file = std::fs::File::open("/dev/null").unwrap();
        assert_eq!(socket_kind(file.as_fd()), "other");
    }

    #[test]
    fn shutdown_wakes_a_blocked_reader() {
        let (a, _b) = socketpair().unwrap();
        let a = std::sync::Arc::new(a);
        let reader = {
            let a = a.clone();
            std::thread::spawn(move || {
                let mut buf = [0u8; 8];
                wait_readable(a.as_fd(), -1);
                recv(a.as_fd(), &mut buf).unwrap().n
            })
        };
        std::thread::sleep(std::time::Duration::from_millis(20));
        shutdown(a.as_fd());
        assert_eq!(reader.join().unwrap(), 0);
        let (c, _d) = socketpair().unwrap();
        assert!(!wait_readable(c.as_fd(), 10), "nothing to read: times out");
        let mut buf = [0u8; 8];
        assert_eq!(
            recv(c.as_fd(), &mut buf).unwrap_err().errno,
            Errno::EAGAIN,
            "recv never blocks"
        );
    }
}

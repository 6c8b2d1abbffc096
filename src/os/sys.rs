//! Socket syscalls: every fd enters and leaves this module as an `OwnedFd`, and every fd we create or receive is
//! close-on-exec, so a child Node spawns later never holds a stray copy of our channel (which would hide EOF).

use std::io::IoSlice;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};

use nix::errno::Errno;
use nix::libc;
use nix::sys::socket::{
    self, AddressFamily, ControlMessage, MsgFlags, SockFlag, SockType, SockaddrLike,
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
/// ready; use `wait_readable` to block. fds arrive close-on-exec and owned, every one of them: when the control data
/// was truncated (MSG_CTRUNC) the fds that did fit are still ours to close, so the walk is done here rather than by
/// nix, which refuses to iterate a truncated buffer (those fds then leaked).
#[cfg(test)]
pub fn recv(fd: BorrowedFd<'_>, buf: &mut [u8]) -> Result<Received, SysError> {
    // SAFETY: `buf` is valid for writes of its whole length for the call.
    unsafe { recv_raw(fd, buf.as_mut_ptr(), buf.len()) }
}

/// A channel's read buffer: private anonymous memory of its own, which the kernel faults in (zero-filled) only as
/// far as reads reach, and which goes back to the kernel whole when dropped. From the heap instead, a large buffer
/// freed in the middle of it would stay resident, and glibc's calloc zeroes (touches) a recycled one in full.
#[derive(Debug)]
pub struct ReadBuf {
    map: Mapping,
}

impl ReadBuf {
    pub fn new(len: usize) -> Result<ReadBuf, SysError> {
        Mapping::anonymous(len).map(|map| ReadBuf { map })
    }

    /// One `recv` into the buffer; `filled(n)` then has what came.
    pub fn recv(&mut self, fd: BorrowedFd<'_>) -> Result<Received, SysError> {
        // SAFETY: the mapping is ours, writable and `len` bytes long, and `&mut self` keeps it from other use.
        unsafe { recv_raw(fd, self.map.ptr.as_ptr(), self.map.len) }
    }

    /// The first `n` bytes (at most `len`).
    pub fn filled(&self, n: usize) -> &[u8] {
        assert!(n <= self.map.len);
        // SAFETY: `n` bytes of a live mapping that nothing writes while `&self` is borrowed (reading pages that
        // were never written yields zeros).
        unsafe { std::slice::from_raw_parts(self.map.ptr.as_ptr(), n) }
    }
}

/// Like `recv`, into the spare room of `buf` (at most `max` bytes), which grows by what was read: a large message
/// goes straight into its own buffer rather than through the read buffer.
pub fn recv_spare(fd: BorrowedFd<'_>, buf: &mut Vec<u8>, max: usize) -> Result<Received, SysError> {
    let room = max.min(buf.capacity() - buf.len());
    let start = buf.len();
    // SAFETY: the `room` bytes after `len` lie in `buf`'s allocation and are ours to write while it is borrowed.
    let got = unsafe { recv_raw(fd, buf.as_mut_ptr().add(start), room) }?;
    // SAFETY: the kernel initialized the first `got.n` (≤ `room`) bytes after `len`.
    unsafe { buf.set_len(start + got.n) };
    Ok(got)
}

/// # Safety
/// `ptr` must be valid for writes of `len` bytes for the duration of the call.
unsafe fn recv_raw(fd: BorrowedFd<'_>, ptr: *mut u8, len: usize) -> Result<Received, SysError> {
    // u64 words keep the control buffer aligned for `cmsghdr`.
    let mut control = [0u64; CONTROL_WORDS];
    loop {
        let mut iov = libc::iovec {
            iov_base: ptr.cast(),
            iov_len: len,
        };
        // SAFETY: an all-zero msghdr is valid (no name, no iov, no control); the fields are set just below.
        let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
        msg.msg_iov = &mut iov;
        msg.msg_iovlen = 1;
        msg.msg_control = control.as_mut_ptr().cast();
        msg.msg_controllen = std::mem::size_of_val(&control) as _;
        // SAFETY: `msg` points at `iov` (over `ptr`, writable per the caller) and `control`, live for the call.
        let n = unsafe {
            libc::recvmsg(
                fd.as_raw_fd(),
                &mut msg,
                libc::MSG_CMSG_CLOEXEC | libc::MSG_DONTWAIT,
            )
        };
        // Wrap the fds first, whatever else happened: an error return carries none, a short one may.
        let fds = if n >= 0 {
            take_rights(&msg)
        } else {
            Vec::new()
        };
        if n < 0 {
            match Errno::last() {
                Errno::EINTR => continue,
                e => return Err(SysError::new(e, "read")),
            }
        }
        return Ok(Received {
            n: n as usize,
            fds,
            fds_truncated: msg.msg_flags & libc::MSG_CTRUNC != 0,
        });
    }
}

/// Control buffer size in u64 words: room for one SCM_RIGHTS message of MAX_FDS_PER_READ fds.
const CONTROL_WORDS: usize = cmsg_space_for_fds(MAX_FDS_PER_READ).div_ceil(8);

const fn cmsg_space_for_fds(n: usize) -> usize {
    // CMSG_SPACE: the aligned header plus the aligned payload (the libc function is not const).
    let align = std::mem::size_of::<usize>();
    let header = std::mem::size_of::<libc::cmsghdr>().div_ceil(align) * align;
    header + (n * std::mem::size_of::<RawFd>()).div_ceil(align) * align
}

/// Takes ownership of every fd SCM_RIGHTS put in `msg`'s control data (a truncated one included).
fn take_rights(msg: &libc::msghdr) -> Vec<OwnedFd> {
    let mut fds = Vec::new();
    // SAFETY: `msg` came back from recvmsg: msg_control/msg_controllen describe the part of our buffer the kernel
    // filled, and CMSG_FIRSTHDR/CMSG_NXTHDR never step past msg_controllen.
    let mut cmsg = unsafe { libc::CMSG_FIRSTHDR(msg) };
    while !cmsg.is_null() {
        // SAFETY: a non-null header from CMSG_FIRSTHDR/NXTHDR lies whole inside the control data.
        let hdr = unsafe { &*cmsg };
        if hdr.cmsg_level == libc::SOL_SOCKET && hdr.cmsg_type == libc::SCM_RIGHTS {
            // SAFETY: CMSG_LEN(0) is plain arithmetic on its argument.
            let header = unsafe { libc::CMSG_LEN(0) } as usize;
            let count =
                (hdr.cmsg_len as usize).saturating_sub(header) / std::mem::size_of::<RawFd>();
            // SAFETY: the payload of a header inside the control data; cmsg_len (set by the kernel to what it
            // wrote, also when truncating) bounds the `count` ints read from it, unaligned as CMSG_DATA may be.
            let data = unsafe { libc::CMSG_DATA(cmsg) }.cast::<RawFd>();
            for i in 0..count {
                // SAFETY: see above: `i < count` stays inside this header's payload.
                let raw = unsafe { data.add(i).read_unaligned() };
                // SAFETY: SCM_RIGHTS just installed `raw` in our table; nothing else owns it.
                fds.push(unsafe { OwnedFd::from_raw_fd(raw) });
            }
        }
        // SAFETY: as for CMSG_FIRSTHDR; NXTHDR returns null past the end of the control data.
        cmsg = unsafe { libc::CMSG_NXTHDR(msg, cmsg) };
    }
    fds
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

/// Whether every copy of the peer's end of `sock` is closed (or shut down both ways), even if its last bytes are
/// still unread: the EOF is then certain to come once they are read.
pub fn peer_hung_up(sock: BorrowedFd<'_>) -> bool {
    // POLLHUP is reported whatever was asked for; asking for nothing keeps revents free of flags nix cannot name.
    let mut fds = [PollFd::new(sock, PollFlags::empty())];
    matches!(poll(&mut fds, PollTimeout::ZERO), Ok(1))
        && fds[0]
            .revents()
            .is_some_and(|r| r.contains(PollFlags::POLLHUP))
}

/// Blocks until `sock` has something to read (or is closed), for at most `timeout_ms` (-1: no limit). False on
/// timeout. (The channel itself never blocks: the reactor waits for it.)
#[cfg(test)]
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

/// The user id of the process at the other end of a connected unix socket, as the kernel recorded it when the
/// peer connected (SO_PEERCRED): it cannot be forged by the peer, unlike anything it could send.
pub fn peer_uid(sock: BorrowedFd<'_>) -> Result<u32, SysError> {
    socket::getsockopt(&sock, socket::sockopt::PeerCredentials)
        .map(|cred| cred.uid())
        .map_err(|e| SysError::new(e, "getsockopt"))
}

/// Asks for a larger send buffer; the kernel caps it at net.core.wmem_max, which is fine.
pub fn set_send_buffer(sock: BorrowedFd<'_>, bytes: usize) {
    let _ = socket::setsockopt(&sock, socket::sockopt::SndBuf, &bytes);
}

/// Makes the calling thread SCHED_BATCH (Linux): its wake-ups no longer preempt the task running on that CPU. For
/// the cluster primary's reactor thread, woken once per accepted connection: on a box where the workers and the
/// load share the CPUs, each such preemption cost a worker a context switch in the middle of its turn. Best effort.
pub fn prefer_batch_scheduling() {
    #[cfg(target_os = "linux")]
    {
        // SAFETY: sched_param holds only integers (musl's has more fields than glibc's); all zeros is priority 0, the
        // one SCHED_BATCH takes.
        let param: libc::sched_param = unsafe { std::mem::zeroed() };
        // The system call, not libc's wrapper: musl's sched_setscheduler() always fails with ENOSYS.
        // SAFETY: tid 0 is the calling thread; `param` is a valid sched_param that lives across the call.
        let _ = unsafe {
            libc::syscall(
                libc::SYS_sched_setscheduler,
                0,
                libc::SCHED_BATCH,
                &raw const param,
            )
        };
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn peer_uid_is_our_own_uid_on_a_socketpair() {
        let (a, _b) = super::socketpair().unwrap();
        use std::os::fd::AsFd;
        assert_eq!(
            super::peer_uid(a.as_fd()),
            Ok(nix::unistd::getuid().as_raw())
        );
    }

    use super::*;
    use std::os::fd::AsFd;

    #[test]
    fn control_buffer_holds_max_fds() {
        // SAFETY: CMSG_SPACE is plain arithmetic on its argument.
        let space = unsafe { libc::CMSG_SPACE((MAX_FDS_PER_READ * 4) as u32) } as usize;
        assert!(CONTROL_WORDS * 8 >= space);
    }

    #[test]
    fn fds_of_a_truncated_control_message_are_ours() {
        let (a, b) = socketpair().unwrap();
        let (x, _y) = socketpair().unwrap();
        let many: Vec<OwnedFd> = (0..3 * MAX_FDS_PER_READ)
            .map(|_| x.try_clone().unwrap())
            .collect();
        let raw: Vec<RawFd> = many.iter().map(|f| f.as_raw_fd()).collect();
        socket::sendmsg::<()>(
            a.as_raw_fd(),
            &[IoSlice::new(b"flood\n")],
            &[ControlMessage::ScmRights(&raw)],
            MsgFlags::empty(),
            None,
        )
        .unwrap();
        drop(many);
        let mut buf = [0u8; 64];
        let got = recv(b.as_fd(), &mut buf).unwrap();
        assert_eq!(got.n, 6);
        assert!(got.fds_truncated, "more fds than the control buffer holds");
        assert_eq!(
            got.fds.len(),
            MAX_FDS_PER_READ,
            "the fds that fit are handed over, not leaked"
        );
        let want = nix::sys::stat::fstat(&x).unwrap().st_ino;
        for fd in &got.fds {
            assert_eq!(nix::sys::stat::fstat(fd).unwrap().st_ino, want);
            let flags = nix::fcntl::fcntl(fd, nix::fcntl::FcntlArg::F_GETFD).unwrap();
            assert_ne!(flags & nix::libc::FD_CLOEXEC, 0);
        }
    }

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
    fn a_closed_peer_is_a_hang_up_even_with_bytes_unread() {
        let (a, b) = socketpair().unwrap();
        assert!(!peer_hung_up(a.as_fd()));
        nix::unistd::write(&b, b"unread").unwrap();
        assert!(!peer_hung_up(a.as_fd()), "bytes alone are no hang-up");
        drop(b);
        assert!(peer_hung_up(a.as_fd()));
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

// ---- memfd: large advanced messages between two forkline ends (core/memfd.rs) ----

/// The seals a received memfd must carry before a byte of it is read: its size can no longer change (so the size
/// checked is the size read, and no mapping of it could SIGBUS), and no new writer can appear (F_SEAL_FUTURE_WRITE:
/// no write(), no new writable mapping). Not F_SEAL_WRITE: that would forbid the sender the writable mapping it
/// keeps to reuse the file for its next message (a fresh memfd per message costs ~400 µs per MB in page
/// allocation here, five times a copy into one already filled). The receiver copies the bytes out before it
/// answers NODE_HANDLE_ACK, and the sender writes again only after that ACK.
pub const MEMFD_SEALS: i32 = libc::F_SEAL_SHRINK | libc::F_SEAL_GROW | libc::F_SEAL_FUTURE_WRITE;

/// What a received memfd must carry: every seal of the first, and one of the second (F_SEAL_WRITE, the stronger
/// form of F_SEAL_FUTURE_WRITE, will do).
pub const MEMFD_SEALS_REQUIRED: (i32, i32) = (
    libc::F_SEAL_SHRINK | libc::F_SEAL_GROW,
    libc::F_SEAL_WRITE | libc::F_SEAL_FUTURE_WRITE,
);

/// A sealed memfd of fixed size with the sender's writable shared mapping of it, reused message after message.
#[derive(Debug)]
pub struct MemfdBuf {
    fd: std::sync::Arc<OwnedFd>,
    map: Mapping,
}

/// A mapping, unmapped on drop: the start of a file, shared (our own memfd, writable, or the peer's, read-only), or
/// private anonymous memory (a read buffer).
#[derive(Debug)]
struct Mapping {
    ptr: std::ptr::NonNull<u8>,
    len: usize,
}

// SAFETY: the mapping is plain memory owned by this value alone; writes go through `&mut` (MemfdBuf::fill).
unsafe impl Send for Mapping {}

impl Mapping {
    /// Maps the first `len` bytes of `fd`, which the caller knows the file holds and cannot lose (a memfd sealed
    /// against shrinking, or our own before it is sealed), so no page of it can be beyond the end (SIGBUS).
    fn shared(fd: BorrowedFd<'_>, len: usize, prot: libc::c_int) -> Result<Mapping, SysError> {
        // SAFETY: a new mapping of `len` bytes of a file that holds them; the result is checked below.
        let map = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                prot,
                libc::MAP_SHARED,
                fd.as_raw_fd(),
                0,
            )
        };
        if map == libc::MAP_FAILED {
            return Err(SysError::new(Errno::last(), "mmap"));
        }
        let ptr = std::ptr::NonNull::new(map.cast()).ok_or(SysError::new(Errno::ENOMEM, "mmap"))?;
        Ok(Mapping { ptr, len })
    }
}

impl Mapping {
    /// `len` bytes (> 0) of private, zero-filled memory.
    fn anonymous(len: usize) -> Result<Mapping, SysError> {
        // SAFETY: a new private anonymous mapping; the result is checked below.
        let map = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
                -1,
                0,
            )
        };
        if map == libc::MAP_FAILED {
            return Err(SysError::new(Errno::last(), "mmap"));
        }
        let ptr = std::ptr::NonNull::new(map.cast()).ok_or(SysError::new(Errno::ENOMEM, "mmap"))?;
        Ok(Mapping { ptr, len })
    }
}

impl Drop for Mapping {
    fn drop(&mut self) {
        // SAFETY: unmaps exactly the mapping `shared` or `anonymous` made, which nothing borrows past `self`.
        unsafe { libc::munmap(self.ptr.as_ptr().cast(), self.len) };
    }
}

impl MemfdBuf {
    /// A fresh close-on-exec memfd of `len` bytes (> 0), mapped for writing, then sealed with `MEMFD_SEALS`.
    pub fn new(len: usize) -> Result<MemfdBuf, SysError> {
        // The system call, not glibc's wrapper (2.27): the prebuilt binaries load on glibc 2.17.
        // SAFETY: the name is a NUL-terminated literal; the return value is checked before it is wrapped.
        let raw = unsafe {
            libc::syscall(
                libc::SYS_memfd_create,
                c"forkline-message".as_ptr(),
                libc::MFD_CLOEXEC | libc::MFD_ALLOW_SEALING,
            )
        } as libc::c_int;
        if raw < 0 {
            return Err(SysError::new(Errno::last(), "memfd_create"));
        }
        // SAFETY: `raw` is a new fd that nothing else owns.
        let fd = unsafe { OwnedFd::from_raw_fd(raw) };
        // SAFETY: a plain ftruncate on our own fd.
        if unsafe { libc::ftruncate(fd.as_raw_fd(), len as libc::off_t) } < 0 {
            return Err(SysError::new(Errno::last(), "ftruncate"));
        }
        let map = Mapping::shared(fd.as_fd(), len, libc::PROT_READ | libc::PROT_WRITE)?;
        let buf = MemfdBuf {
            fd: std::sync::Arc::new(fd),
            map,
        };
        // SAFETY: fcntl on our own fd with an int argument.
        let sealed = unsafe {
            libc::fcntl(
                buf.fd.as_raw_fd(),
                libc::F_ADD_SEALS,
                MEMFD_SEALS | libc::F_SEAL_SEAL,
            )
        };
        if sealed < 0 {
            return Err(SysError::new(Errno::last(), "fcntl"));
        }
        Ok(buf)
    }

    pub fn len(&self) -> usize {
        self.map.len
    }

    /// Copies `data` (at most `len` bytes) to the start of the file.
    pub fn fill(&mut self, data: &[u8]) {
        let n = data.len().min(self.map.len);
        // SAFETY: the mapping is `len` bytes, writable, and lives as long as `self`; the file cannot shrink (sealed).
        unsafe { std::ptr::copy_nonoverlapping(data.as_ptr(), self.map.ptr.as_ptr(), n) };
    }

    /// The fd, to send.
    pub fn fd(&self) -> std::sync::Arc<OwnedFd> {
        self.fd.clone()
    }
}

/// What a received fd is: its seals (F_GET_SEALS; EINVAL for anything that is not a memfd or shmem file), its size,
/// and which file it is (device, inode), from fstat.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MemfdInfo {
    pub seals: i32,
    pub size: u64,
    pub file: (u64, u64),
}

pub fn memfd_info(fd: BorrowedFd<'_>) -> Result<MemfdInfo, SysError> {
    // SAFETY: fcntl with no argument on an fd the caller keeps open for the call.
    let seals = unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_GET_SEALS) };
    if seals < 0 {
        return Err(SysError::new(Errno::last(), "fcntl"));
    }
    let stat = nix::sys::stat::fstat(fd).map_err(|e| SysError::new(e, "fstat"))?;
    Ok(MemfdInfo {
        seals,
        size: stat.st_size.max(0) as u64,
        file: (stat.st_dev, stat.st_ino),
    })
}

/// A read-only shared mapping of the peer's memfd, kept while the peer reuses the same file: copying out of a mapping
/// already in place costs less than a `pread` per message (half, on 16 MB).
#[derive(Debug)]
pub struct PeerMap {
    map: Mapping,
    file: (u64, u64),
}

impl PeerMap {
    /// Maps all of `fd`, whose `info` says it cannot shrink (checked by the caller: F_SEAL_SHRINK), so no page of the
    /// mapping can ever be beyond the file's end (which would SIGBUS).
    pub fn new(fd: BorrowedFd<'_>, info: &MemfdInfo) -> Result<PeerMap, SysError> {
        let len = usize::try_from(info.size).map_err(|_| SysError::new(Errno::EFBIG, "mmap"))?;
        if len == 0 || info.seals & libc::F_SEAL_SHRINK == 0 {
            return Err(SysError::new(Errno::EINVAL, "mmap"));
        }
        Ok(PeerMap {
            map: Mapping::shared(fd, len, libc::PROT_READ)?,
            file: info.file,
        })
    }

    /// Whether this maps the file `info` describes, with room for `n` bytes.
    pub fn maps(&self, info: &MemfdInfo, n: usize) -> bool {
        self.file == info.file && n <= self.map.len
    }

    /// Appends the first `n` bytes (at most the mapping's length) to `out`.
    pub fn copy_into(&self, n: usize, out: &mut Vec<u8>) {
        let n = n.min(self.map.len);
        out.reserve_exact(n);
        let start = out.len();
        // SAFETY: the source is `n` readable bytes of our mapping (which outlives the call; the file cannot shrink);
        // the destination is spare capacity of `out` reserved above. The peer may write the file meanwhile: then the
        // bytes copied are torn, which only spoils its own message (they are never interpreted here).
        unsafe {
            std::ptr::copy_nonoverlapping(self.map.ptr.as_ptr(), out.as_mut_ptr().add(start), n);
            out.set_len(start + n);
        }
    }
}

/// Appends the first `n` bytes of `fd` to `out`, read straight into its spare room (no zeroing first). A copy,
/// never a mapping: a read that comes up short is an error here, not a SIGBUS, and the bytes are ours before the
/// sender may write the file again.
pub fn read_memfd_into(fd: BorrowedFd<'_>, n: usize, out: &mut Vec<u8>) -> Result<(), SysError> {
    out.reserve_exact(n);
    let start = out.len();
    let mut at = 0;
    while at < n {
        let rest = &mut out.spare_capacity_mut()[at..n];
        // SAFETY: the pointer and length describe `rest`, spare capacity of `out`, writable and live for the call;
        // the kernel only writes into it.
        let got = unsafe {
            libc::pread(
                fd.as_raw_fd(),
                rest.as_mut_ptr().cast(),
                rest.len(),
                at as libc::off_t,
            )
        };
        if got < 0 {
            let errno = Errno::last();
            if errno == Errno::EINTR {
                continue;
            }
            return Err(SysError::new(errno, "pread"));
        }
        if got == 0 {
            return Err(SysError::new(Errno::EIO, "pread"));
        }
        at += got as usize;
    }
    // SAFETY: pread filled the `n` bytes after `start`, all within the capacity reserved above.
    unsafe { out.set_len(start + n) };
    Ok(())
}

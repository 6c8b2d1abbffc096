//! The sockets a cluster primary listens on or hands out, made as Node's primary makes them (lib/net.js
//! `createServerHandle`, lib/internal/dgram.js `_createSocketHandle`, libuv's `uv_tcp_bind`/`uv_pipe_bind`):
//! close-on-exec, SO_REUSEADDR for TCP, IPV6_V6ONLY only when asked, and a Unix-domain path made readable or
//! writable by all on request.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::fs::PermissionsExt;

use nix::errno::Errno;
use nix::libc;
use nix::sys::socket::{
    self, sockopt, AddressFamily, Backlog, SockFlag, SockType, SockaddrIn, SockaddrIn6,
    SockaddrStorage, UnixAddr,
};

use crate::core::error::SysError;

/// libuv's flag bits, as Node's workers pass them in `queryServer`.
const UV_TCP_IPV6ONLY: u32 = 1;
const UV_UDP_IPV6ONLY: u32 = 1;
const UV_UDP_REUSEADDR: u32 = 4;

/// Node's default backlog (lib/net.js `backlogFromArgs`).
pub const DEFAULT_BACKLOG: i32 = 511;

/// What kind of socket a worker asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// TCP, `addressType` 4 or 6 (the address decides the family; none means `::` with a fallback to 0.0.0.0).
    Tcp,
    /// A Unix-domain stream socket at a path.
    Pipe,
    Udp4,
    Udp6,
}

/// A worker's `queryServer`, reduced to what making the socket needs.
#[derive(Debug, Clone)]
pub struct Spec {
    pub kind: Kind,
    /// An IP literal (workers resolve names before asking) or a path; `None`: any address.
    pub address: Option<String>,
    pub port: u16,
    /// An fd of the primary's own to listen on instead of making a socket (Node's `listen({fd})`).
    pub fd: Option<RawFd>,
    /// libuv flags (IPv6-only, UDP reuseAddr).
    pub flags: u32,
    pub backlog: i32,
    pub readable_all: bool,
    pub writable_all: bool,
}

/// A listening TCP socket's address, as Node's `getsockname()` reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SockName {
    pub address: String,
    pub family: &'static str,
    pub port: u16,
}

fn err(syscall: &'static str) -> impl Fn(Errno) -> SysError {
    move |e| SysError::new(e, syscall)
}

/// Makes and binds the socket `spec` asks for (not yet listening: Node's workers listen on shared handles
/// themselves). With `reuse_port`, SO_REUSEPORT is set before binding, so that more sockets can bind the port.
pub fn bind(spec: &Spec, reuse_port: bool) -> Result<OwnedFd, SysError> {
    if let Some(fd) = spec.fd {
        // SAFETY: borrowed for one dup; the fd is the primary's own and stays open (Node opens it the same way).
        let fd = unsafe { BorrowedFd::borrow_raw(fd) };
        return fd
            .try_clone_to_owned()
            .map_err(|e| SysError::new(Errno::from_raw(e.raw_os_error().unwrap_or(0)), "dup"));
    }
    match spec.kind {
        Kind::Pipe => bind_pipe(spec),
        Kind::Udp4 | Kind::Udp6 => bind_udp(spec, reuse_port),
        Kind::Tcp => match parse_ip(spec.address.as_deref())? {
            Some(ip) => bind_tcp(SocketAddr::new(ip, spec.port), spec.flags, reuse_port),
            // Node: `::` first, 0.0.0.0 where IPv6 is unavailable.
            None => bind_tcp(any6(spec.port), spec.flags, reuse_port)
                .or_else(|_| bind_tcp(any4(spec.port), spec.flags, reuse_port)),
        },
    }
}

fn any6(port: u16) -> SocketAddr {
    SocketAddr::new(IpAddr::V6(Ipv6Addr::UNSPECIFIED), port)
}

fn any4(port: u16) -> SocketAddr {
    SocketAddr::new(IpAddr::V4(Ipv4Addr::UNSPECIFIED), port)
}

fn parse_ip(address: Option<&str>) -> Result<Option<IpAddr>, SysError> {
    match address {
        None | Some("") => Ok(None),
        Some(a) => a
            .parse()
            .map(Some)
            .map_err(|_| SysError::new(Errno::EINVAL, "bind")),
    }
}

/// Non-blocking, as libuv makes every socket: the flag is shared by every copy of the socket, the workers'
/// included, and libuv in a worker does not set it again on a socket it receives.
fn new_socket(family: AddressFamily, ty: SockType) -> Result<OwnedFd, SysError> {
    let flags = SockFlag::SOCK_CLOEXEC | SockFlag::SOCK_NONBLOCK;
    socket::socket(family, ty, flags, None).map_err(err("socket"))
}

fn bind_ip(sock: &OwnedFd, addr: SocketAddr) -> Result<(), SysError> {
    let raw = sock.as_raw_fd();
    match addr {
        SocketAddr::V4(a) => socket::bind(raw, &SockaddrIn::from(a)),
        SocketAddr::V6(a) => socket::bind(raw, &SockaddrIn6::from(a)),
    }
    .map_err(err("bind"))
}

fn family(addr: &SocketAddr) -> AddressFamily {
    match addr {
        SocketAddr::V4(_) => AddressFamily::Inet,
        SocketAddr::V6(_) => AddressFamily::Inet6,
    }
}

fn bind_tcp(addr: SocketAddr, flags: u32, reuse_port: bool) -> Result<OwnedFd, SysError> {
    let sock = new_socket(family(&addr), SockType::Stream)?;
    // libuv's uv_tcp_bind sets SO_REUSEADDR on every TCP socket it binds.
    socket::setsockopt(&sock, sockopt::ReuseAddr, &true).map_err(err("setsockopt"))?;
    if reuse_port {
        socket::setsockopt(&sock, sockopt::ReusePort, &true).map_err(err("setsockopt"))?;
    }
    if addr.is_ipv6() {
        let only = flags & UV_TCP_IPV6ONLY != 0;
        socket::setsockopt(&sock, sockopt::Ipv6V6Only, &only).map_err(err("setsockopt"))?;
    }
    bind_ip(&sock, addr)?;
    Ok(sock)
}

fn bind_udp(spec: &Spec, reuse_port: bool) -> Result<OwnedFd, SysError> {
    let v6 = spec.kind == Kind::Udp6;
    let ip = parse_ip(spec.address.as_deref())?.unwrap_or(if v6 {
        IpAddr::V6(Ipv6Addr::UNSPECIFIED)
    } else {
        IpAddr::V4(Ipv4Addr::UNSPECIFIED)
    });
    let addr = SocketAddr::new(ip, spec.port);
    let sock = new_socket(family(&addr), SockType::Datagram)?;
    if spec.flags & UV_UDP_REUSEADDR != 0 {
        socket::setsockopt(&sock, sockopt::ReuseAddr, &true).map_err(err("setsockopt"))?;
    }
    if reuse_port {
        socket::setsockopt(&sock, sockopt::ReusePort, &true).map_err(err("setsockopt"))?;
    }
    if addr.is_ipv6() && spec.flags & UV_UDP_IPV6ONLY != 0 {
        socket::setsockopt(&sock, sockopt::Ipv6V6Only, &true).map_err(err("setsockopt"))?;
    }
    bind_ip(&sock, addr)?;
    Ok(sock)
}

fn bind_pipe(spec: &Spec) -> Result<OwnedFd, SysError> {
    let path = spec.address.as_deref().unwrap_or("");
    let addr = UnixAddr::new(path).map_err(err("bind"))?;
    let sock = new_socket(AddressFamily::Unix, SockType::Stream)?;
    socket::bind(sock.as_raw_fd(), &addr).map_err(err("bind"))?;
    // libuv's uv_pipe_chmod: add the requested bits for user, group and others.
    let mut wanted = 0;
    if spec.readable_all {
        wanted |= 0o444;
    }
    if spec.writable_all {
        wanted |= 0o222;
    }
    if wanted != 0 {
        let to_errno = |e: std::io::Error| {
            SysError::new(Errno::from_raw(e.raw_os_error().unwrap_or(0)), "chmod")
        };
        let mode = std::fs::metadata(path)
            .map_err(to_errno)?
            .permissions()
            .mode();
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode | wanted))
            .map_err(to_errno)?;
    }
    Ok(sock)
}

/// Starts listening (the socket is non-blocking: the acceptor polls, and a worker may be draining it too).
pub fn listen(sock: BorrowedFd<'_>, backlog: i32) -> Result<(), SysError> {
    let backlog = Backlog::new(backlog.max(0)).unwrap_or(Backlog::MAXCONN);
    socket::listen(&sock, backlog).map_err(err("listen"))
}

/// Whether the socket is listening (a socket handed to a worker that died first may never have been).
pub fn is_listening(sock: BorrowedFd<'_>) -> bool {
    socket::getsockopt(&sock, sockopt::AcceptConn).unwrap_or(false)
}

/// Takes one pending connection, close-on-exec and non-blocking (as libuv's accept makes it: the worker that
/// gets it relies on that); `Ok(None)` when none is waiting.
pub fn accept(listener: BorrowedFd<'_>) -> Result<Option<OwnedFd>, SysError> {
    let flags = SockFlag::SOCK_CLOEXEC | SockFlag::SOCK_NONBLOCK;
    loop {
        match socket::accept4(listener.as_raw_fd(), flags) {
            // SAFETY: accept4 just created `fd`; nothing else owns it.
            Ok(fd) => return Ok(Some(unsafe { OwnedFd::from_raw_fd(fd) })),
            Err(Errno::EINTR) => continue,
            Err(Errno::EAGAIN) => return Ok(None),
            Err(e) => return Err(SysError::new(e, "accept")),
        }
    }
}

/// Linux's TCP states (include/net/tcp_states.h), as `tcp_info` reports them.
const TCP_ESTABLISHED: u8 = 1;
const TCP_CLOSE_WAIT: u8 = 8;

/// Whether an accepted TCP connection is as the kernel handed it over: nobody has read a byte of what the peer
/// sent nor written one to it, and the peer has not reset it (it may have half-closed after its request). Such a
/// connection can go to another worker with nothing lost or doubled. `None` when the kernel cannot tell: not TCP
/// (a Unix-domain socket keeps no byte counts), or a kernel before 4.19 (no `tcpi_bytes_sent`).
pub fn untouched(conn: BorrowedFd<'_>) -> Option<bool> {
    // SAFETY: tcp_info is plain integers, for which all-zero is a valid value.
    let mut info: libc::tcp_info = unsafe { std::mem::zeroed() };
    let mut len = std::mem::size_of::<libc::tcp_info>() as libc::socklen_t;
    // SAFETY: `info` is writable for `len` bytes and outlives the call; the kernel writes at most `len` bytes and
    // stores in `len` how many it wrote.
    let rc = unsafe {
        libc::getsockopt(
            conn.as_raw_fd(),
            libc::IPPROTO_TCP,
            libc::TCP_INFO,
            (&raw mut info).cast(),
            &mut len,
        )
    };
    let needed = std::mem::offset_of!(libc::tcp_info, tcpi_bytes_sent) + std::mem::size_of::<u64>();
    if rc != 0 || (len as usize) < needed {
        return None;
    }
    let mut unread: libc::c_int = 0;
    // SAFETY: FIONREAD (SIOCINQ on a TCP socket) stores one int, into `unread`, which outlives the call.
    if unsafe { libc::ioctl(conn.as_raw_fd(), libc::FIONREAD, &raw mut unread) } != 0 {
        return None;
    }
    let open = matches!(info.tcpi_state, TCP_ESTABLISHED | TCP_CLOSE_WAIT);
    // The byte count includes the peer's FIN (CLOSE_WAIT), which FIONREAD leaves out until it is read.
    let fin = u64::from(info.tcpi_state == TCP_CLOSE_WAIT);
    let unread = u64::try_from(unread).unwrap_or(u64::MAX);
    let nothing_read = info.tcpi_bytes_received == unread.saturating_add(fin);
    let nothing_written = info.tcpi_bytes_sent == 0 && info.tcpi_notsent_bytes == 0;
    Some(open && nothing_read && nothing_written)
}

/// The local address of a bound IP socket.
pub fn sockname(sock: BorrowedFd<'_>) -> Option<SockName> {
    let addr: SockaddrStorage = socket::getsockname(sock.as_fd().as_raw_fd()).ok()?;
    if let Some(v4) = addr.as_sockaddr_in() {
        return Some(SockName {
            address: v4.ip().to_string(),
            family: "IPv4",
            port: v4.port(),
        });
    }
    let v6 = addr.as_sockaddr_in6()?;
    Some(SockName {
        address: v6.ip().to_string(),
        family: "IPv6",
        port: v6.port(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::TcpStream;

    fn tcp(address: &str, port: u16) -> Spec {
        Spec {
            kind: Kind::Tcp,
            address: Some(address.into()),
            port,
            fd: None,
            flags: 0,
            backlog: DEFAULT_BACKLOG,
            readable_all: false,
            writable_all: false,
        }
    }

    #[test]
    fn listens_and_accepts_on_loopback() {
        let sock = bind(&tcp("127.0.0.1", 0), false).unwrap();
        assert!(!is_listening(sock.as_fd()));
        listen(sock.as_fd(), DEFAULT_BACKLOG).unwrap();
        assert!(is_listening(sock.as_fd()));
        let name = sockname(sock.as_fd()).unwrap();
        assert_eq!((name.address.as_str(), name.family), ("127.0.0.1", "IPv4"));
        assert!(
            accept(sock.as_fd()).unwrap().is_none(),
            "nothing pending yet"
        );
        let _client = TcpStream::connect(("127.0.0.1", name.port)).unwrap();
        let conn = loop {
            if let Some(c) = accept(sock.as_fd()).unwrap() {
                break c;
            }
        };
        assert!(sockname(conn.as_fd()).is_some());
    }

    #[test]
    fn untouched_until_the_connection_is_read_or_written() {
        use std::io::{Read, Write};
        let sock = bind(&tcp("127.0.0.1", 0), false).unwrap();
        listen(sock.as_fd(), 8).unwrap();
        let port = sockname(sock.as_fd()).unwrap().port;
        let accept_one = || loop {
            if let Some(c) = accept(sock.as_fd()).unwrap() {
                break c;
            }
        };
        // Waits until the kernel has the client's bytes in the accepted socket's queue.
        let arrived = |conn: &OwnedFd| {
            crate::os::sys::wait_readable(conn.as_fd(), 5000);
        };

        // Data waiting, unread: untouched; the peer half-closing after its request changes nothing.
        let mut client = TcpStream::connect(("127.0.0.1", port)).unwrap();
        let conn = accept_one();
        assert_eq!(untouched(conn.as_fd()), Some(true));
        client.write_all(b"GET / HTTP/1.1\r\n\r\n").unwrap();
        client.shutdown(std::net::Shutdown::Write).unwrap();
        arrived(&conn);
        assert_eq!(untouched(conn.as_fd()), Some(true));
        // One byte read: touched.
        let mut byte = [0u8; 1];
        assert_eq!(
            std::fs::File::from(conn.try_clone().unwrap())
                .read(&mut byte)
                .unwrap(),
            1
        );
        assert_eq!(untouched(conn.as_fd()), Some(false));

        // Written to: touched.
        let _client = TcpStream::connect(("127.0.0.1", port)).unwrap();
        let conn = accept_one();
        std::fs::File::from(conn.try_clone().unwrap())
            .write_all(b"hi")
            .unwrap();
        assert_eq!(untouched(conn.as_fd()), Some(false));

        // Reset by the peer: nobody to answer.
        let client = TcpStream::connect(("127.0.0.1", port)).unwrap();
        let conn = accept_one();
        let abort = libc::linger {
            l_onoff: 1,
            l_linger: 0,
        };
        socket::setsockopt(&client, sockopt::Linger, &abort).unwrap();
        drop(client);
        arrived(&conn);
        assert_eq!(untouched(conn.as_fd()), Some(false));

        // A Unix-domain socket keeps no byte counts.
        let (a, _b) = crate::os::sys::socketpair().unwrap();
        assert_eq!(untouched(a.as_fd()), None);
    }

    #[test]
    fn reuse_port_lets_sockets_share_a_port_and_plain_ones_collide() {
        let first = bind(&tcp("127.0.0.1", 0), true).unwrap();
        let port = sockname(first.as_fd()).unwrap().port;
        let second = bind(&tcp("127.0.0.1", port), true).unwrap();
        listen(second.as_fd(), 8).unwrap();
        let taken = bind(&tcp("127.0.0.1", port), false).unwrap_err();
        assert_eq!((taken.errno, taken.syscall), (Errno::EADDRINUSE, "bind"));
    }

    #[test]
    fn pipes_bind_with_the_requested_mode() {
        let path =
            std::env::temp_dir().join(format!("forkline-listen-{}.sock", std::process::id()));
        let _ = std::fs::remove_file(&path);
        let spec = Spec {
            kind: Kind::Pipe,
            address: Some(path.to_string_lossy().into_owned()),
            readable_all: true,
            writable_all: true,
            ..tcp("", 0)
        };
        let sock = bind(&spec, false).unwrap();
        listen(sock.as_fd(), 8).unwrap();
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o666, 0o666);
        std::os::unix::net::UnixStream::connect(&path).unwrap();
        std::fs::remove_file(&path).unwrap();
    }
}

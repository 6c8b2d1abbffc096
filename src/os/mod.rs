//! The operating system: socket syscalls (`sys.rs`), starting a child (`spawn.rs`), reaping and signalling it
//! (`process.rs`), the process's one epoll thread that serves every channel, child and acceptor (`reactor.rs`), and
//! the machine's CPU pressure (`pressure.rs`). The syscalls' `unsafe` lives here, each block with its `// SAFETY:`
//! line; the one exception is cluster/listen.rs, the cluster's own sockets (fd ownership, and TCP_INFO/FIONREAD for
//! `untouched`). It may import `crate::core`'s vocabulary (`SysError`); never `crate::napi`.

pub(crate) mod pressure;
pub(crate) mod process;
pub(crate) mod reactor;
pub(crate) mod spawn;
pub(crate) mod sys;

//! The primary's side of one cluster server (one `queryServer` key, lib/internal/cluster/primary.js): the socket
//! it listens on or hands out, by scheduling policy, and the workers that share it.
//!
//! - Round-robin (SCHED_RR): the primary listens; its acceptor hands each connection to a worker.
//! - Shared (SCHED_NONE, and UDP under any policy): one bound socket, sent to every worker, who listen on it.
//! - Reuse-port: every worker gets a socket of its own, bound with SO_REUSEPORT, and the kernel balances. The
//!   primary keeps a copy of each: when a worker goes, the connections already queued on its socket are not
//!   lost: the acceptor takes them (round-robin to the workers left) until a new worker takes the socket over.
//!   A bound socket that nobody listens on keeps the port while workers come and go.
//!
//! The layer: napi-free, over `crate::core` (the worker channels a connection goes on, the `newconn` messages) and
//! `crate::os` (socket syscalls); never `crate::napi`, whose server.rs wraps `Server` for JS. listen.rs makes the
//! cluster's own sockets, so its two fd-ownership `unsafe` blocks (with their `// SAFETY:` lines) sit there.

pub(crate) mod listen;
pub(crate) mod round_robin;

use std::collections::HashMap;
use std::os::fd::{AsFd, AsRawFd, OwnedFd, RawFd};
use std::sync::{Arc, Mutex, MutexGuard};

use nix::errno::Errno;

use crate::core::channel::Channel;
use crate::core::error::SysError;
use listen::{Kind, SockName, Spec};
use round_robin::RoundRobin;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Policy {
    RoundRobin,
    Shared,
    ReusePort,
}

/// One server key's sockets and workers.
pub struct Server {
    spec: Spec,
    policy: Policy,
    state: Mutex<State>,
}

struct State {
    /// The distributor (round-robin; reuse-port: for the sockets of workers that left).
    rr: Option<RoundRobin>,
    /// Round-robin: the listening socket; shared: the socket every worker gets; reuse-port: the port's anchor.
    socket: Option<Arc<OwnedFd>>,
    /// Reuse-port: our copy of each worker's own socket.
    own: HashMap<u32, Arc<OwnedFd>>,
    /// Reuse-port: sockets of departed workers that never listened, for the next worker.
    spare: Vec<Arc<OwnedFd>>,
    /// The workers on this key, in the order they came.
    members: Vec<u32>,
}

impl Server {
    /// Makes the socket for the first worker's `queryServer` (Node's RoundRobinHandle / SharedHandle
    /// constructors). An error is what the worker's `listen()` will report.
    pub fn open(key: &str, spec: Spec, policy: Policy) -> Result<Server, SysError> {
        // UDP is connectionless: nothing to distribute, so always shared (as Node); a path has no port to reuse.
        let policy = match (spec.kind, policy) {
            (Kind::Udp4 | Kind::Udp6, _) => Policy::Shared,
            (Kind::Pipe, Policy::ReusePort) => Policy::RoundRobin,
            (_, p) if spec.fd.is_some() && p == Policy::ReusePort => Policy::RoundRobin,
            (_, p) => p,
        };
        let socket = Arc::new(listen::bind(&spec, policy == Policy::ReusePort)?);
        let rr = match policy {
            Policy::Shared => None,
            Policy::RoundRobin => {
                listen::listen(socket.as_fd(), spec.backlog)?;
                let rr = RoundRobin::new(key.to_owned())?;
                rr.add_listener(socket.clone())?;
                Some(rr)
            }
            Policy::ReusePort => Some(RoundRobin::new(key.to_owned())?),
        };
        Ok(Server {
            spec,
            policy,
            state: Mutex::new(State {
                rr,
                socket: Some(socket),
                own: HashMap::new(),
                spare: Vec::new(),
                members: Vec::new(),
            }),
        })
    }

    fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn policy(&self) -> Policy {
        self.policy
    }

    /// Adds a worker. Returns the fd to send it (shared and reuse-port; still ours, the channel sends a copy),
    /// or `None` under round-robin, where connections come to it through `channel`.
    pub fn add(&self, id: u32, channel: Option<Arc<Channel>>) -> Result<Option<RawFd>, SysError> {
        let mut st = self.state();
        let need_channel = || SysError::new(Errno::EPIPE, "write");
        let fd = match self.policy {
            Policy::Shared => st.socket.as_ref().map(|s| s.as_raw_fd()),
            Policy::RoundRobin => {
                let rr = st.rr.as_ref().ok_or_else(need_channel)?;
                rr.add_worker(id, channel.ok_or_else(need_channel)?);
                None
            }
            Policy::ReusePort => {
                let channel = channel.ok_or_else(need_channel)?;
                let socket = match st.spare.pop() {
                    Some(s) => s,
                    None => match st.rr.as_ref().and_then(|rr| rr.take_listener()) {
                        Some(s) => s,
                        None => Arc::new(listen::bind(&self.reuse_spec(&st), true)?),
                    },
                };
                let fd = socket.as_raw_fd();
                st.own.insert(id, socket);
                if let Some(rr) = &st.rr {
                    rr.add_worker(id, channel);
                }
                Some(fd)
            }
        };
        st.members.push(id);
        Ok(fd)
    }

    /// Whether worker `id` holds this server (Node 22's `handle.has(worker)`).
    pub fn has(&self, id: u32) -> bool {
        self.state().members.contains(&id)
    }

    /// Reuse-port sockets all bind the port the first one got (port 0 included).
    fn reuse_spec(&self, st: &State) -> Spec {
        let port = st
            .socket
            .as_ref()
            .and_then(|s| listen::sockname(s.as_fd()))
            .map_or(self.spec.port, |n| n.port);
        Spec {
            port,
            ..self.spec.clone()
        }
    }

    /// Removes a worker (Node's `handle.remove(worker)`); true when it was the last one and everything is
    /// closed. False too for a worker that was never added.
    pub fn remove(&self, id: u32) -> bool {
        let mut st = self.state();
        let Some(at) = st.members.iter().position(|m| *m == id) else {
            return false;
        };
        st.members.remove(at);
        if let Some(rr) = &st.rr {
            rr.remove_worker(id);
        }
        if let Some(socket) = st.own.remove(&id) {
            if listen::is_listening(socket.as_fd()) {
                if let Some(rr) = &st.rr {
                    // Only fails when the reactor cannot run (out of fds or threads): the socket then closes
                    // and what waits on it is reset, as when a Node worker dies.
                    let _ = rr.add_listener(socket);
                }
            } else {
                st.spare.push(socket);
            }
        }
        if !st.members.is_empty() {
            return false;
        }
        self.close(&mut st);
        true
    }

    /// While a reload replaces worker `id`, the distributor keeps a copy of each connection it hands it
    /// (round_robin.rs: the worker may close one before reading it); `on` false ends that.
    pub fn hold(&self, id: u32, on: bool) {
        if let Some(rr) = &self.state().rr {
            rr.hold(id, on);
        }
    }

    /// Worker `id` has exited: the connections it was handed and never touched go to the others.
    pub fn reclaim(&self, id: u32) {
        if let Some(rr) = &self.state().rr {
            rr.reclaim(id);
        }
    }

    fn close(&self, st: &mut State) {
        st.rr = None;
        st.own.clear();
        st.spare.clear();
        let bound_a_path = self.spec.kind == Kind::Pipe && self.spec.fd.is_none();
        if st.socket.take().is_some() && bound_a_path {
            // libuv unlinks the path of a pipe it bound when the handle closes; so does the primary's handle.
            if let Some(path) = &self.spec.address {
                let _ = std::fs::remove_file(path);
            }
        }
    }

    /// What worker `id` was handed and refused on this key (round-robin and reuse-port's leftovers; zero when shared).
    pub fn tally(&self, id: u32) -> round_robin::Tally {
        self.state()
            .rr
            .as_ref()
            .map(|rr| rr.tally(id))
            .unwrap_or_default()
    }

    /// The listening socket's address, for round-robin TCP replies (Node sends `sockname`; pipes get none).
    pub fn sockname(&self) -> Option<SockName> {
        if self.policy != Policy::RoundRobin || self.spec.kind != Kind::Tcp {
            return None;
        }
        let st = self.state();
        listen::sockname(st.socket.as_ref()?.as_fd())
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let mut st = self.state.lock().unwrap_or_else(|p| p.into_inner());
        self.close(&mut st);
    }
}

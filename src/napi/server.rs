//! `NativeServer`, the cluster primary's side of one server key, over cluster/'s `Server`: the spec from JS in,
//! the policy, the fds for workers and the socket's name out.

use napi::{Error, Result, Status};
use napi_derive::napi;

use crate::cluster;
use crate::core::error::SysError;
use crate::napi::child::NativeChild;
use crate::napi::error::sys_error;

/// A worker's `queryServer`, as lib/cluster/primary.js normalises it.
#[napi(object)]
pub struct ServerSpec {
    /// Node's handle key: `${address}:${port}:${addressType}:${fd}:${index}`.
    pub key: String,
    /// 'rr' | 'none' | 'reuseport'
    pub policy: String,
    /// 'tcp' | 'pipe' | 'udp4' | 'udp6'
    pub kind: String,
    pub address: Option<String>,
    pub port: Option<i32>,
    pub fd: Option<i32>,
    pub flags: Option<u32>,
    pub backlog: Option<i32>,
    pub readable_all: Option<bool>,
    pub writable_all: Option<bool>,
}

/// `getsockname()` of a round-robin TCP server, as Node's `sockname` reply carries it.
#[napi(object)]
pub struct SockName {
    pub address: String,
    pub family: String,
    pub port: u32,
}

/// Connections handed to one worker and refused by it (cluster/round_robin.rs's `Tally`).
#[napi(object, object_from_js = false)]
pub struct Tally {
    pub handed: f64,
    pub refused: f64,
}

/// The primary's side of one cluster server key: its sockets and, under round-robin, accepting and handing out
/// connections off the JS thread (src/cluster).
#[napi]
pub struct NativeServer {
    server: cluster::Server,
}

#[napi]
impl NativeServer {
    /// Makes the server's socket; throws an Error whose message is the errno code (e.g. `EADDRINUSE`).
    #[napi(factory)]
    pub fn open(spec: ServerSpec) -> Result<NativeServer> {
        use cluster::listen::{Kind, Spec, DEFAULT_BACKLOG};
        let kind = match spec.kind.as_str() {
            "tcp" => Kind::Tcp,
            "pipe" => Kind::Pipe,
            "udp4" => Kind::Udp4,
            "udp6" => Kind::Udp6,
            other => {
                return Err(Error::new(
                    Status::InvalidArg,
                    format!("bad kind {other:?}"),
                ))
            }
        };
        let policy = match spec.policy.as_str() {
            "rr" => cluster::Policy::RoundRobin,
            "none" => cluster::Policy::Shared,
            "reuseport" => cluster::Policy::ReusePort,
            other => {
                return Err(Error::new(
                    Status::InvalidArg,
                    format!("bad policy {other:?}"),
                ))
            }
        };
        let port = spec.port.unwrap_or(0);
        let listen_spec = Spec {
            kind,
            address: spec.address,
            port: u16::try_from(port.max(0))
                .map_err(|_| sys_error(SysError::new(nix::errno::Errno::EINVAL, "bind")))?,
            fd: spec.fd.filter(|fd| *fd >= 0),
            flags: spec.flags.unwrap_or(0),
            backlog: spec.backlog.unwrap_or(DEFAULT_BACKLOG),
            readable_all: spec.readable_all.unwrap_or(false),
            writable_all: spec.writable_all.unwrap_or(false),
        };
        let server = cluster::Server::open(&spec.key, listen_spec, policy).map_err(sys_error)?;
        Ok(NativeServer { server })
    }

    /// The policy in effect ('rr' | 'none' | 'reuseport'): UDP is always shared, a path never reuse-port.
    #[napi(getter)]
    pub fn policy(&self) -> &'static str {
        match self.server.policy() {
            cluster::Policy::RoundRobin => "rr",
            cluster::Policy::Shared => "none",
            cluster::Policy::ReusePort => "reuseport",
        }
    }

    /// Adds a worker; returns the fd to send it with the reply (ours: `writeHandle` sends a copy), or null under
    /// round-robin. Throws like `open`.
    #[napi]
    pub fn add(&self, worker_id: u32, worker: &NativeChild) -> Result<Option<i32>> {
        self.server
            .add(worker_id, worker.side.channel.clone())
            .map_err(sys_error)
    }

    /// Whether worker `workerId` holds this server.
    #[napi]
    pub fn has(&self, worker_id: u32) -> bool {
        self.server.has(worker_id)
    }

    /// Removes a worker; true when it was the last and the server is closed.
    #[napi]
    pub fn remove(&self, worker_id: u32) -> bool {
        self.server.remove(worker_id)
    }

    /// While a reload replaces worker `workerId` (`on`), keeps a copy of each connection handed to it, so that
    /// one it closes unread can go to another worker once it has exited (`reclaim`).
    #[napi]
    pub fn hold(&self, worker_id: u32, on: bool) {
        self.server.hold(worker_id, on);
    }

    /// Worker `workerId` has exited: the connections it was handed and never touched go to the other workers.
    #[napi]
    pub fn reclaim(&self, worker_id: u32) {
        self.server.reclaim(worker_id);
    }

    /// Connections handed to worker `workerId` on this key, and how many it refused, for `cluster.stats()`.
    #[napi]
    pub fn tally(&self, worker_id: u32) -> Tally {
        let t = self.server.tally(worker_id);
        Tally {
            handed: t.handed as f64,
            refused: t.refused as f64,
        }
    }

    #[napi]
    pub fn sockname(&self) -> Option<SockName> {
        self.server.sockname().map(|n| SockName {
            address: n.address,
            family: n.family.into(),
            port: n.port.into(),
        })
    }
}

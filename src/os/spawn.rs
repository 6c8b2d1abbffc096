//! Starting a child: fork options → posix_spawn, with the channel's child end at the fd of the 'ipc' slot.
//!
//! posix_spawn (glibc: clone(CLONE_VM | CLONE_VFORK)) neither copies the parent's memory nor its page tables, which
//! matters for a Node parent with a large heap. Only uid/gid, which posix_spawn cannot set, take std's fork+exec; so
//! does a cwd where the C library cannot set it either (posix_spawn_file_actions_addchdir_np: glibc 2.29, musl
//! 1.1.24). The prebuilt binaries load on glibc 2.17 (scripts/elf.js checks it), so that function is looked up at
//! run time, not linked.

use std::ffi::CString;
use std::os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::process::CommandExt;
use std::ptr;
use std::sync::OnceLock;

use nix::errno::Errno;
use nix::fcntl::{fcntl, FcntlArg, OFlag};
use nix::libc;
use nix::sys::stat::Mode;

use crate::core::error::SysError;
use crate::os::sys;

/// SO_SNDBUF asked for on the child's end of the channel.
const CHILD_SEND_BUFFER: usize = 1 << 20;

/// What the child gets at one fd number, as Node's stdio array says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stdio {
    /// A new socketpair, our end handed back ('pipe'; libuv uses socketpairs for stdio pipes too).
    Pipe,
    /// The IPC channel's child end.
    Ipc,
    /// /dev/null for 0-2, nothing above (libuv's UV_IGNORE).
    Ignore,
    /// Share one of our fds ('inherit' or a number).
    Fd(RawFd),
}

#[derive(Debug, Clone, Default)]
pub struct SpawnOptions {
    pub file: String,
    /// The full argv, argv[0] included.
    pub args: Vec<String>,
    /// `KEY=value` pairs: the child's whole environment.
    pub env: Vec<String>,
    pub cwd: Option<String>,
    pub stdio: Vec<Stdio>,
    pub detached: bool,
    pub uid: Option<u32>,
    pub gid: Option<u32>,
}

/// A started child (or, for the errors Node reports asynchronously, one that never ran: `pid` is None).
#[derive(Debug)]
pub struct Spawned {
    pub pid: Option<i32>,
    /// Set when exec failed in a way Node reports as an 'error' event rather than a throw.
    pub error: Option<SysError>,
    /// Our end of each 'pipe' slot, by index.
    pub pipes: Vec<Option<OwnedFd>>,
    /// Our end of the IPC channel.
    pub ipc: Option<OwnedFd>,
}

/// exec errors that Node turns into an 'error' event (lib/internal/child_process.js ChildProcess.prototype.spawn).
fn is_async_error(e: Errno) -> bool {
    matches!(
        e,
        Errno::EACCES | Errno::EAGAIN | Errno::EMFILE | Errno::ENFILE | Errno::ENOENT
    )
}

fn cstring(s: &str, what: &'static str) -> Result<CString, SysError> {
    CString::new(s).map_err(|_| SysError::new(Errno::EINVAL, what))
}

pub fn spawn(opts: &SpawnOptions) -> Result<Spawned, SysError> {
    let file = cstring(&opts.file, "spawn")?;
    let args = opts
        .args
        .iter()
        .map(|a| cstring(a, "spawn"))
        .collect::<Result<Vec<_>, _>>()?;
    let env = opts
        .env
        .iter()
        .map(|a| cstring(a, "spawn"))
        .collect::<Result<Vec<_>, _>>()?;
    let cwd = opts
        .cwd
        .as_deref()
        .map(|c| cstring(c, "spawn"))
        .transpose()?;

    // Every source fd sits at or above this, so no dup2 onto a slot can clobber a source still to be placed.
    let lowest = opts.stdio.len().max(3) as RawFd;
    let mut pipes: Vec<Option<OwnedFd>> = Vec::with_capacity(opts.stdio.len());
    let mut ipc = None;
    let mut sources: Vec<(OwnedFd, RawFd)> = Vec::new();
    for (i, slot) in opts.stdio.iter().enumerate() {
        let source = match *slot {
            Stdio::Pipe => {
                let (ours, theirs) = sys::socketpair()?;
                pipes.push(Some(ours));
                Some(theirs)
            }
            Stdio::Ipc => {
                let (ours, theirs) = sys::socketpair()?;
                // A node child writes one syscall per message, ~770 bytes of buffer each: the default buffer holds
                // ~280 messages before node starts queueing in JS (shared/perf-limits.md). The kernel caps this at
                // net.core.wmem_max.
                sys::set_send_buffer(theirs.as_fd(), CHILD_SEND_BUFFER);
                // Ours too: a large message then leaves in one non-blocking write instead of being copied for the
                // writer thread.
                sys::set_send_buffer(ours.as_fd(), CHILD_SEND_BUFFER);
                ipc = Some(ours);
                pipes.push(None);
                Some(theirs)
            }
            Stdio::Ignore if i < 3 => {
                pipes.push(None);
                let null =
                    nix::fcntl::open("/dev/null", OFlag::O_RDWR | OFlag::O_CLOEXEC, Mode::empty())
                        .map_err(|e| SysError::new(e, "open"))?;
                Some(null)
            }
            Stdio::Ignore => {
                pipes.push(None);
                None
            }
            Stdio::Fd(fd) => {
                pipes.push(None);
                Some(dup_above(fd, lowest)?)
            }
        };
        if let Some(source) = source {
            let source = if source.as_raw_fd() < lowest {
                dup_above(source.as_raw_fd(), lowest)?
            } else {
                source
            };
            sources.push((source, i as RawFd));
        }
    }

    let result = if opts.uid.is_some() || opts.gid.is_some() {
        fork_exec(opts, &sources)
    } else {
        match (cwd, addchdir()) {
            (Some(_), None) => fork_exec(opts, &sources),
            (cwd, addchdir) => posix_spawn(
                &file,
                &args,
                &env,
                cwd.zip(addchdir),
                &sources,
                opts.detached,
            ),
        }
    };
    // `sources` (the child's copies) drop here: from now on only the child holds them.
    drop(sources);
    match result {
        Ok(pid) => Ok(Spawned {
            pid: Some(pid),
            error: None,
            pipes,
            ipc,
        }),
        Err(e) if is_async_error(e.errno) => Ok(Spawned {
            pid: None,
            error: Some(e),
            pipes,
            ipc,
        }),
        Err(e) => Err(e),
    }
}

/// A close-on-exec duplicate of `fd` numbered `lowest` or above.
fn dup_above(fd: RawFd, lowest: RawFd) -> Result<OwnedFd, SysError> {
    // SAFETY: `fd` is only borrowed for the fcntl; F_DUPFD_CLOEXEC returns a new fd that we own.
    let borrowed = unsafe { std::os::fd::BorrowedFd::borrow_raw(fd) };
    let new =
        fcntl(borrowed, FcntlArg::F_DUPFD_CLOEXEC(lowest)).map_err(|e| SysError::new(e, "dup"))?;
    // SAFETY: F_DUPFD_CLOEXEC just created `new`; nothing else owns it.
    Ok(unsafe { OwnedFd::from_raw_fd(new) })
}

fn ptrs(v: &[CString]) -> Vec<*mut libc::c_char> {
    v.iter()
        .map(|s| s.as_ptr().cast_mut())
        .chain(std::iter::once(ptr::null_mut()))
        .collect()
}

fn check(ret: libc::c_int, syscall: &'static str) -> Result<(), SysError> {
    if ret == 0 {
        Ok(())
    } else {
        Err(SysError::new(Errno::from_raw(ret), syscall))
    }
}

type AddChdir =
    unsafe extern "C" fn(*mut libc::posix_spawn_file_actions_t, *const libc::c_char) -> libc::c_int;

/// The C library's posix_spawn_file_actions_addchdir_np, if it has one.
fn addchdir() -> Option<AddChdir> {
    static ADDCHDIR: OnceLock<Option<AddChdir>> = OnceLock::new();
    *ADDCHDIR.get_or_init(|| {
        let name = c"posix_spawn_file_actions_addchdir_np";
        // SAFETY: dlsym with RTLD_DEFAULT only reads the process's symbol tables; `name` is NUL-terminated.
        let ptr = unsafe { libc::dlsym(libc::RTLD_DEFAULT, name.as_ptr()) };
        // SAFETY: a non-null result is that function, whose C signature AddChdir spells out.
        (!ptr.is_null()).then(|| unsafe { std::mem::transmute::<*mut libc::c_void, AddChdir>(ptr) })
    })
}

/// posix_spawn's attribute and file-action objects, destroyed on every path out.
struct SpawnSetup {
    attr: libc::posix_spawnattr_t,
    actions: libc::posix_spawn_file_actions_t,
}

impl SpawnSetup {
    fn new() -> Result<Box<Self>, SysError> {
        // SAFETY: both are plain C structs that their init functions fill in before any other use.
        let mut s: Box<SpawnSetup> = Box::new(unsafe { std::mem::zeroed() });
        // SAFETY: initialising the zeroed structs in place; on failure nothing was allocated.
        check(unsafe { libc::posix_spawnattr_init(&mut s.attr) }, "spawn")?;
        // SAFETY: as above; if this fails the attr is destroyed below.
        let ret = unsafe { libc::posix_spawn_file_actions_init(&mut s.actions) };
        if let Err(e) = check(ret, "spawn") {
            // SAFETY: attr was initialised just above.
            unsafe { libc::posix_spawnattr_destroy(&mut s.attr) };
            return Err(e);
        }
        Ok(s)
    }
}

impl Drop for SpawnSetup {
    fn drop(&mut self) {
        // SAFETY: both were initialised in `new`, and are destroyed exactly once, here.
        unsafe {
            libc::posix_spawn_file_actions_destroy(&mut self.actions);
            libc::posix_spawnattr_destroy(&mut self.attr);
        }
    }
}

fn posix_spawn(
    file: &CString,
    args: &[CString],
    env: &[CString],
    cwd: Option<(CString, AddChdir)>,
    sources: &[(OwnedFd, RawFd)],
    detached: bool,
) -> Result<i32, SysError> {
    let mut s = SpawnSetup::new()?;
    for (source, target) in sources {
        let fd = source.as_raw_fd();
        // SAFETY: `actions` is initialised; the fds are plain integers recorded for the child.
        let ret = unsafe { libc::posix_spawn_file_actions_adddup2(&mut s.actions, fd, *target) };
        check(ret, "spawn")?;
    }
    if let Some((dir, addchdir)) = cwd {
        // SAFETY: `actions` is initialised; the C library copies the path.
        let ret = unsafe { addchdir(&mut s.actions, dir.as_ptr()) };
        check(ret, "spawn")?;
    }
    // The child starts as libuv's do: no blocked signals, every disposition at its default (Node ignores SIGPIPE,
    // and an inherited SIG_IGN would outlive exec).
    let mut flags = libc::POSIX_SPAWN_SETSIGMASK | libc::POSIX_SPAWN_SETSIGDEF;
    if detached {
        flags |= libc::c_int::from(libc::POSIX_SPAWN_SETSID);
    }
    // SAFETY: sigset_t is a plain C struct, filled in by sigemptyset/sigfillset before use.
    let (mut empty, mut all): (libc::sigset_t, libc::sigset_t) =
        unsafe { (std::mem::zeroed(), std::mem::zeroed()) };
    // SAFETY: the attr is initialised and the sets are valid, writable sigset_t values.
    unsafe {
        libc::sigemptyset(&mut empty);
        libc::sigfillset(&mut all);
        check(
            libc::posix_spawnattr_setsigmask(&mut s.attr, &empty),
            "spawn",
        )?;
        check(
            libc::posix_spawnattr_setsigdefault(&mut s.attr, &all),
            "spawn",
        )?;
        check(
            libc::posix_spawnattr_setflags(&mut s.attr, flags as libc::c_short),
            "spawn",
        )?;
    }
    let (argv, envp) = (ptrs(args), ptrs(env));
    let mut pid: libc::pid_t = 0;
    let spawn_fn = if file.as_bytes().contains(&b'/') {
        libc::posix_spawn
    } else {
        libc::posix_spawnp
    };
    // SAFETY: every pointer is valid and NUL-terminated for the duration of the call; argv/envp end in NULL.
    let ret = unsafe {
        spawn_fn(
            &mut pid,
            file.as_ptr(),
            &s.actions,
            &s.attr,
            argv.as_ptr(),
            envp.as_ptr(),
        )
    };
    check(ret, "spawn")?;
    Ok(pid)
}

/// uid/gid need set*id between fork and exec, which posix_spawn cannot do; std's Command does it.
fn fork_exec(opts: &SpawnOptions, sources: &[(OwnedFd, RawFd)]) -> Result<i32, SysError> {
    let mut cmd = std::process::Command::new(&opts.file);
    if let Some((argv0, rest)) = opts.args.split_first() {
        cmd.arg0(argv0).args(rest);
    }
    cmd.env_clear();
    for pair in &opts.env {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        cmd.env(k, v);
    }
    if let Some(dir) = &opts.cwd {
        cmd.current_dir(dir);
    }
    if let Some(uid) = opts.uid {
        cmd.uid(uid);
    }
    if let Some(gid) = opts.gid {
        cmd.gid(gid);
    }
    let moves: Vec<(RawFd, RawFd)> = sources.iter().map(|(s, t)| (s.as_raw_fd(), *t)).collect();
    let detached = opts.detached;
    // SAFETY: the closure runs between fork and exec and calls only dup2 and setsid, both async-signal-safe;
    // it allocates nothing (`moves` was built before the fork).
    unsafe {
        cmd.pre_exec(move || {
            for &(source, target) in &moves {
                if libc::dup2(source, target) < 0 {
                    return Err(std::io::Error::last_os_error());
                }
            }
            if detached && libc::setsid() < 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let child = cmd
        .spawn()
        .map_err(|e| SysError::new(Errno::from_raw(e.raw_os_error().unwrap_or(0)), "spawn"))?;
    // The reaper waits by pid; std's Child handle is not needed (dropping it neither kills nor waits).
    Ok(child.id() as i32)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::os::process::wait_blocking;

    fn sh(script: &str, stdio: Vec<Stdio>) -> SpawnOptions {
        SpawnOptions {
            file: "/bin/sh".into(),
            args: vec!["sh".into(), "-c".into(), script.into()],
            env: vec!["FOO=bar".into()],
            stdio,
            ..Default::default()
        }
    }

    fn read_all(fd: OwnedFd) -> String {
        use std::io::Read;
        let mut s = String::new();
        std::fs::File::from(fd).read_to_string(&mut s).unwrap();
        s
    }

    #[test]
    fn pipes_env_and_exit_code() {
        let mut out = spawn(&sh(
            "echo $FOO; exit 7",
            vec![Stdio::Ignore, Stdio::Pipe, Stdio::Ignore],
        ))
        .unwrap();
        let pid = out.pid.unwrap();
        assert_eq!(read_all(out.pipes[1].take().unwrap()), "bar\n");
        assert_eq!(wait_blocking(pid), (Some(7), None));
    }

    #[test]
    fn ipc_slot_lands_at_its_index() {
        let mut out = spawn(&sh(
            "echo hi >&3",
            vec![Stdio::Ignore, Stdio::Ignore, Stdio::Ignore, Stdio::Ipc],
        ))
        .unwrap();
        assert_eq!(read_all(out.ipc.take().unwrap()), "hi\n");
        assert_eq!(wait_blocking(out.pid.unwrap()), (Some(0), None));
    }

    #[test]
    fn missing_executable_is_an_async_error() {
        let mut opts = sh(
            "",
            vec![Stdio::Ignore, Stdio::Ignore, Stdio::Ignore, Stdio::Ipc],
        );
        opts.file = "/no/such/file".into();
        let out = spawn(&opts).unwrap();
        assert_eq!(out.pid, None);
        assert_eq!(out.error.unwrap().errno, Errno::ENOENT);
        assert!(out.ipc.is_some(), "Node still sets up the channel");
    }

    #[test]
    fn cwd_and_uid_path() {
        let mut opts = sh("pwd", vec![Stdio::Ignore, Stdio::Pipe, Stdio::Ignore]);
        opts.cwd = Some("/tmp".into());
        let mut out = spawn(&opts).unwrap();
        assert_eq!(read_all(out.pipes[1].take().unwrap()), "/tmp\n");
        wait_blocking(out.pid.unwrap());
        opts.uid = Some(nix::unistd::getuid().as_raw());
        let mut out = spawn(&opts).unwrap();
        assert_eq!(read_all(out.pipes[1].take().unwrap()), "/tmp\n");
        assert_eq!(wait_blocking(out.pid.unwrap()), (Some(0), None));
    }
}

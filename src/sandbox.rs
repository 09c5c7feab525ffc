//! The data path's sandbox: every `dp-*` thread confines itself with a seccomp allow-list
//! (built with seccompiler) after setting no_new_privs, before it touches a frame.
//!
//! The list is what a data path thread needs and nothing more: frame I/O on its TAP fds,
//! the NAT's host sockets (create, bind, connect, accept, options, send/receive, shutdown),
//! epoll and eventfd, memory management for the allocator, futexes, clocks and thread exit.
//! `ioctl` is allowed only as FIONBIO (std's `set_nonblocking` on the NAT's sockets).
//! Absent on purpose: anything that starts programs or threads (execve, clone, fork),
//! changes namespaces or mounts (setns, unshare, mount), opens files by path (open, openat),
//! changes credentials, traces (ptrace, process_vm_*), loads code into the kernel (bpf,
//! init_module, kexec_*), perf_event_open, keyctl, userfaultfd, any other ioctl.
//!
//! How the list was built, and how to refresh it when the data path changes: in a debug build,
//! `VSWITCHD_SECCOMP_LOG=1` makes calls outside the list succeed and be logged by the kernel
//! instead of failing (`dmesg | grep 'type=1326.*comm="dp-'` names each by number; x86_64
//! numbers are in `asm/unistd_64.h`). Run the whole test suite with it and add what shows up.
//! Release builds ignore the variable.
//!
//! A call outside the list fails with EPERM instead of killing the process: one unexpected
//! call on a rare path costs that operation (it is reported as an ordinary I/O error), not
//! every network of the daemon. The filter applies to the calling thread only; the control
//! plane (which forks the netns helper) is not confined.

use std::collections::BTreeMap;

use seccompiler::{
    BpfProgram, SeccompAction, SeccompCmpArgLen, SeccompCmpOp, SeccompCondition, SeccompFilter,
    SeccompRule, TargetArch,
};

/// Why the sandbox could not be entered.
#[derive(Debug, thiserror::Error)]
pub enum SandboxError {
    /// prctl(PR_SET_NO_NEW_PRIVS) failed.
    #[error("cannot set no_new_privs: {0}")]
    NoNewPrivs(nix::errno::Errno),
    /// This architecture is not supported by seccompiler.
    #[error("seccomp filter for {arch}: {source}")]
    Arch {
        /// `std::env::consts::ARCH`.
        arch: &'static str,
        /// What seccompiler said.
        source: seccompiler::BackendError,
    },
    /// The filter could not be installed.
    #[error("seccomp filter: {0}")]
    Filter(#[from] seccompiler::Error),
    /// The filter did not compile to BPF.
    #[error("seccomp filter: {0}")]
    Backend(#[from] seccompiler::BackendError),
}

macro_rules! syscalls {
    ($($name:ident),* $(,)?) => {
        &[$((stringify!($name), libc::$name)),*]
    };
}

/// System calls a data path thread may make, on every architecture.
pub const ALLOWED: &[(&str, libc::c_long)] = syscalls![
    // Frames and host sockets.
    SYS_read,
    SYS_write,
    SYS_readv,
    SYS_writev,
    SYS_recvfrom,
    SYS_sendto,
    SYS_recvmsg,
    SYS_sendmsg,
    SYS_recvmmsg,
    SYS_sendmmsg,
    SYS_socket,
    SYS_bind,
    SYS_connect,
    SYS_listen,
    SYS_accept4,
    SYS_getsockname,
    SYS_getpeername,
    SYS_setsockopt,
    SYS_getsockopt,
    SYS_shutdown,
    SYS_close,
    SYS_fcntl,
    // Readiness.
    SYS_epoll_ctl,
    SYS_epoll_pwait,
    SYS_eventfd2,
    SYS_ppoll,
    // Memory.
    SYS_mmap,
    SYS_munmap,
    SYS_mremap,
    SYS_mprotect,
    SYS_madvise,
    SYS_brk,
    // Threads, time, signals, exit.
    SYS_futex,
    SYS_sched_yield,
    SYS_clock_gettime,
    SYS_clock_nanosleep,
    SYS_nanosleep,
    SYS_getrandom,
    SYS_gettid,
    SYS_getpid,
    SYS_rt_sigreturn,
    SYS_rt_sigprocmask,
    SYS_sigaltstack,
    SYS_restart_syscall,
    SYS_exit,
    SYS_exit_group,
];

/// The x86_64 spellings of calls other architectures only have in their newer form.
#[cfg(target_arch = "x86_64")]
pub const ALLOWED_ARCH: &[(&str, libc::c_long)] = syscalls![SYS_epoll_wait, SYS_accept, SYS_poll];
/// The x86_64 spellings of calls other architectures only have in their newer form.
#[cfg(not(target_arch = "x86_64"))]
pub const ALLOWED_ARCH: &[(&str, libc::c_long)] = &[];

/// What a call outside the list gets: EPERM (or, in debug builds with
/// `VSWITCHD_SECCOMP_LOG=1`, success and a kernel log line: see the module docs).
fn mismatch_action() -> SeccompAction {
    #[cfg(debug_assertions)]
    if std::env::var_os("VSWITCHD_SECCOMP_LOG").is_some_and(|v| v == "1") {
        return SeccompAction::Log;
    }
    SeccompAction::Errno(libc::EPERM as u32)
}

/// `ioctl(fd, FIONBIO, ...)` only.
fn ioctl_rules() -> Result<Vec<SeccompRule>, SandboxError> {
    let fionbio =
        SeccompCondition::new(1, SeccompCmpArgLen::Dword, SeccompCmpOp::Eq, libc::FIONBIO)?;
    Ok(vec![SeccompRule::new(vec![fionbio])?])
}

/// Compiles the allow-list for this architecture.
///
/// # Errors
/// An architecture seccompiler does not know, or a filter that does not compile.
pub fn filter() -> Result<BpfProgram, SandboxError> {
    let arch = std::env::consts::ARCH;
    let target =
        TargetArch::try_from(arch).map_err(|source| SandboxError::Arch { arch, source })?;
    let mut rules: BTreeMap<i64, Vec<SeccompRule>> = ALLOWED
        .iter()
        .chain(ALLOWED_ARCH)
        .map(|&(_, nr)| (nr, Vec::new()))
        .collect();
    rules.insert(libc::SYS_ioctl, ioctl_rules()?);
    let filter = SeccompFilter::new(rules, mismatch_action(), SeccompAction::Allow, target)?;
    Ok(filter.try_into()?)
}

/// Confines the calling thread: no_new_privs, then the allow-list. Irreversible.
///
/// # Errors
/// See [`SandboxError`]; the thread is unchanged unless no_new_privs was already set.
pub fn enter() -> Result<(), SandboxError> {
    let program = filter()?;
    nix::sys::prctl::set_no_new_privs().map_err(SandboxError::NoNewPrivs)?;
    seccompiler::apply_filter(&program)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Calls no data path may make.
    const FORBIDDEN: &[(&str, libc::c_long)] = syscalls![
        SYS_execve,
        SYS_execveat,
        SYS_clone,
        SYS_clone3,
        SYS_ptrace,
        SYS_process_vm_readv,
        SYS_process_vm_writev,
        SYS_setns,
        SYS_unshare,
        SYS_mount,
        SYS_umount2,
        SYS_pivot_root,
        SYS_chroot,
        SYS_bpf,
        SYS_perf_event_open,
        SYS_kexec_load,
        SYS_kexec_file_load,
        SYS_init_module,
        SYS_finit_module,
        SYS_delete_module,
        SYS_keyctl,
        SYS_add_key,
        SYS_userfaultfd,
        SYS_setuid,
        SYS_setgid,
        SYS_setresuid,
        SYS_capset,
        SYS_openat,
        SYS_open_by_handle_at,
        SYS_ioctl, // only FIONBIO, by a rule of its own
        SYS_seccomp,
        SYS_prctl,
        SYS_kill,
        SYS_tgkill,
        SYS_reboot,
        SYS_swapon,
    ];

    #[test]
    fn the_filter_compiles_and_allows_nothing_dangerous() {
        assert!(!filter().unwrap().is_empty());
        for (name, nr) in FORBIDDEN {
            assert!(
                !ALLOWED.iter().chain(ALLOWED_ARCH).any(|(_, a)| a == nr),
                "{name} must not be allowed"
            );
        }
        let mut names: Vec<_> = ALLOWED.iter().chain(ALLOWED_ARCH).collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(
            names.len(),
            ALLOWED.len() + ALLOWED_ARCH.len(),
            "no duplicates"
        );
    }

    /// `key`'s value in `/proc/thread-self/status`, read (once, from the start) through a file
    /// opened beforehand: a confined thread can neither open nor seek.
    fn status_field(status: &mut std::fs::File, key: &str) -> String {
        use std::io::Read;
        let mut text = String::new();
        status.read_to_string(&mut text).unwrap();
        text.lines()
            .find_map(|l| l.strip_prefix(key))
            .map(|v| v.trim().to_string())
            .unwrap()
    }

    fn own_status() -> std::fs::File {
        std::fs::File::open("/proc/thread-self/status").unwrap()
    }

    #[test]
    fn a_confined_thread_cannot_exec_unshare_setns_mount_or_peek() {
        use nix::errno::Errno;
        let outcome = std::thread::spawn(|| {
            let (mut before, mut after, mut after2) = (own_status(), own_status(), own_status());
            // Before: the same calls fail for other reasons (so EPERM below is the filter's).
            let bogus_unshare = nix::sched::CloneFlags::from_bits_retain(0x1);
            assert_ne!(nix::sched::unshare(bogus_unshare), Err(Errno::EPERM));
            let exe = c"/nonexistent/vswitchd-sandbox-test";
            assert_eq!(nix::unistd::execv(exe, &[exe]).unwrap_err(), Errno::ENOENT);
            assert_eq!(status_field(&mut before, "Seccomp:"), "0");

            enter().expect("enter the sandbox");
            assert_eq!(status_field(&mut after, "Seccomp:"), "2");
            assert_eq!(status_field(&mut after2, "NoNewPrivs:"), "1");
            let null = std::fs::File::open("/dev/null");
            let results = [
                ("execve", nix::unistd::execv(exe, &[exe]).map(|_| ()).err()),
                ("unshare", nix::sched::unshare(bogus_unshare).err()),
                (
                    "setns",
                    nix::sched::setns(std::io::stdin(), nix::sched::CloneFlags::empty()).err(),
                ),
                (
                    "mount",
                    nix::mount::mount(
                        Some("none"),
                        "/nonexistent/vswitchd-sandbox-test",
                        Some("tmpfs"),
                        nix::mount::MsFlags::empty(),
                        None::<&str>,
                    )
                    .err(),
                ),
                (
                    "process_vm_readv",
                    nix::sys::uio::process_vm_readv(
                        nix::unistd::Pid::from_raw(i32::MAX),
                        &mut [std::io::IoSliceMut::new(&mut [0u8; 8])],
                        &[nix::sys::uio::RemoteIoVec { base: 4096, len: 8 }],
                    )
                    .err(),
                ),
                (
                    "openat",
                    null.err()
                        .and_then(|e| e.raw_os_error())
                        .map(Errno::from_raw),
                ),
            ];
            // What the data path needs still works: sockets, FIONBIO, allocation.
            let sock = std::net::UdpSocket::bind("127.0.0.1:0")
                .and_then(|s| s.set_nonblocking(true))
                .is_ok();
            (results, sock, vec![0u8; 1 << 20].len())
        })
        .join()
        .expect("sandboxed thread");
        let (results, socket_ok, allocated) = outcome;
        for (name, err) in results {
            assert_eq!(err, Some(Errno::EPERM), "{name} from a confined thread");
        }
        assert!(socket_ok, "sockets and set_nonblocking still work");
        assert_eq!(allocated, 1 << 20, "allocation still works");
        // Other threads are not confined.
        assert_eq!(status_field(&mut own_status(), "Seccomp:"), "0");
    }
}

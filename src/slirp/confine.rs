//! The drop-in's sandbox, our way of honouring slirp4netns's `--enable-sandbox` and
//! `--enable-seccomp` (slirp4netns pivots into an empty root in a new mount namespace,
//! which needs privileges over a user namespace that a multithreaded process cannot join).
//!
//! - `--enable-sandbox`: Landlock denies every file-system access from then on (the TAP,
//!   the API socket and the upstream resolvers are all open by then), except removing the
//!   API socket at exit. It must be entered before any thread starts, as Landlock confines
//!   the calling thread and what it starts later. A kernel without Landlock gets a warning.
//! - `--enable-seccomp` (and `--enable-sandbox`): a seccomp filter, entered before any
//!   thread starts so that every thread has it, that
//!   refuses what slirp4netns's refuses (starting programs, tracing, mounts, namespaces,
//!   kernel modules, kexec, reboot, key rings, BPF) with EPERM. The data path threads are in
//!   their own allow-list besides (see [`crate::sandbox`]).

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::Context;
use landlock::{
    ABI, Access, AccessFs, Ruleset, RulesetAttr, RulesetCreatedAttr, RulesetStatus,
    path_beneath_rules,
};
use seccompiler::{SeccompAction, SeccompFilter, TargetArch};

/// Refused by the seccomp filter.
const DENIED: &[libc::c_long] = &[
    libc::SYS_execve,
    libc::SYS_execveat,
    libc::SYS_ptrace,
    libc::SYS_process_vm_readv,
    libc::SYS_process_vm_writev,
    libc::SYS_init_module,
    libc::SYS_finit_module,
    libc::SYS_delete_module,
    libc::SYS_mount,
    libc::SYS_umount2,
    libc::SYS_pivot_root,
    libc::SYS_chroot,
    libc::SYS_open_by_handle_at,
    libc::SYS_name_to_handle_at,
    libc::SYS_setns,
    libc::SYS_unshare,
    libc::SYS_kexec_load,
    libc::SYS_kexec_file_load,
    libc::SYS_reboot,
    libc::SYS_bpf,
    libc::SYS_keyctl,
    libc::SYS_add_key,
    libc::SYS_request_key,
    libc::SYS_swapon,
    libc::SYS_swapoff,
    libc::SYS_acct,
    libc::SYS_fsopen,
    libc::SYS_fsmount,
    libc::SYS_move_mount,
    libc::SYS_open_tree,
    libc::SYS_fspick,
    libc::SYS_userfaultfd,
    libc::SYS_perf_event_open,
];

/// Denies the calling thread (and the threads it starts) any file-system access, except
/// removing entries of `api_socket`'s directory.
///
/// # Errors
/// When the ruleset cannot be built or applied.
pub fn restrict_files(api_socket: Option<&Path>) -> anyhow::Result<()> {
    let abi = ABI::V2;
    let mut ruleset = Ruleset::default()
        .handle_access(AccessFs::from_all(abi))
        .context("sandbox: Landlock ruleset")?
        .create()
        .context("sandbox: Landlock ruleset")?;
    if let Some(sock) = api_socket {
        let dir = super::parent_dir(sock);
        ruleset = ruleset
            .add_rules(path_beneath_rules([dir], AccessFs::RemoveFile))
            .context("sandbox: Landlock rule for the API socket's directory")?;
    }
    let status = ruleset
        .restrict_self()
        .context("sandbox: cannot enter Landlock")?;
    match status.ruleset {
        RulesetStatus::FullyEnforced | RulesetStatus::PartiallyEnforced => {
            tracing::debug!("sandbox: no file-system access from now on");
        }
        RulesetStatus::NotEnforced => {
            tracing::warn!(
                "sandbox: this kernel has no Landlock; file-system access is not restricted"
            );
        }
    }
    Ok(())
}

/// Installs the deny-list filter on the calling thread, and so on every thread it starts
/// later (it must run before any other thread exists: the data path threads stack their own
/// allow-list on it).
///
/// # Errors
/// When the filter cannot be built or installed.
pub fn seccomp() -> anyhow::Result<()> {
    let arch = TargetArch::try_from(std::env::consts::ARCH)
        .map_err(|e| anyhow::anyhow!("seccomp: {e}"))?;
    let rules: BTreeMap<i64, Vec<seccompiler::SeccompRule>> =
        DENIED.iter().map(|nr| (*nr, Vec::new())).collect();
    let filter = SeccompFilter::new(
        rules,
        SeccompAction::Allow,
        SeccompAction::Errno(libc::EPERM as u32),
        arch,
    )
    .context("seccomp filter")?;
    let program: seccompiler::BpfProgram = filter.try_into().context("seccomp filter")?;
    nix::sys::prctl::set_no_new_privs().context("cannot set no_new_privs")?;
    seccompiler::apply_filter(&program).context("cannot install the seccomp filter")?;
    tracing::debug!("seccomp filter installed");
    Ok(())
}

//! `linux.seccomp`: compiled to classic BPF with libseccomp in `create`
//! (before clone, where errors are cheap to report), loaded with the raw
//! seccomp(2) syscall in the init: the child then runs no libseccomp code and
//! allocates nothing, and the same compiled program serves `exec` too.
//!
//! Like runc: unknown syscall names are skipped (profiles list syscalls of
//! newer kernels), rules whose action equals the default action are skipped
//! (libseccomp refuses them), and a rule with several conditions on the same
//! argument becomes one rule per condition. Unknown or unsupported
//! architectures and flags are errors naming the field.

use std::io::Read;
use std::os::fd::OwnedFd;

use libseccomp::{
    ScmpAction, ScmpArch, ScmpArgCompare, ScmpCompareOp, ScmpFilterContext, ScmpSyscall,
};
use nix::sys::memfd::{memfd_create, MFdFlags};
use oci_spec::runtime::{
    Arch, LinuxSeccomp, LinuxSeccompAction, LinuxSeccompFilterFlag, LinuxSeccompOperator,
};

use crate::{Error, Result};

/// A compiled filter, ready for seccomp(SECCOMP_SET_MODE_FILTER).
#[derive(Clone)]
pub struct SeccompFilter {
    prog: Vec<libc::sock_filter>,
    flags: libc::c_ulong,
    /// Some rule uses SCMP_ACT_NOTIFY: loading yields a listener fd that
    /// must be sent to `linux.seccomp.listenerPath`.
    needs_listener: bool,
}

impl std::fmt::Debug for SeccompFilter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SeccompFilter")
            .field("instructions", &self.prog.len())
            .field("flags", &self.flags)
            .field("needs_listener", &self.needs_listener)
            .finish()
    }
}

impl SeccompFilter {
    /// Number of BPF instructions (for logs and tests).
    pub fn len(&self) -> usize {
        self.prog.len()
    }

    pub fn is_empty(&self) -> bool {
        self.prog.is_empty()
    }

    /// True when the profile uses SCMP_ACT_NOTIFY (load with `load_seccomp_notify`).
    pub fn needs_listener(&self) -> bool {
        self.needs_listener
    }
}

/// Validate and compile `linux.seccomp`.
pub fn compile_seccomp(s: &LinuxSeccomp) -> Result<SeccompFilter> {
    const F: &str = "linux.seccomp";
    let default = action(s.default_action(), s.default_errno_ret())
        .map_err(|r| Error::spec(format!("{F}.defaultAction"), r))?;
    let mut needs_listener = default == ScmpAction::Notify;
    let mut ctx = ScmpFilterContext::new(default)
        .map_err(|e| Error::security(format!("{F}: libseccomp init"), e))?;

    for (i, a) in s.architectures().iter().flatten().enumerate() {
        let field = format!("{F}.architectures[{i}]");
        let arch = arch(*a)
            .ok_or_else(|| Error::spec(&field, format!("{a:?} is not supported by libseccomp")))?;
        let present = ctx.is_arch_present(arch).unwrap_or(false);
        if !present {
            ctx.add_arch(arch)
                .map_err(|e| Error::spec(&field, format!("{a:?}: {e}")))?;
        }
    }

    let mut flags: libc::c_ulong = 0;
    for (i, fl) in s.flags().iter().flatten().enumerate() {
        flags |= match fl {
            LinuxSeccompFilterFlag::SeccompFilterFlagLog => libc::SECCOMP_FILTER_FLAG_LOG,
            LinuxSeccompFilterFlag::SeccompFilterFlagTsync => libc::SECCOMP_FILTER_FLAG_TSYNC,
            LinuxSeccompFilterFlag::SeccompFilterFlagSpecAllow => {
                libc::SECCOMP_FILTER_FLAG_SPEC_ALLOW
            }
            LinuxSeccompFilterFlag::SeccompFilterFlagWaitKillableRecv => {
                libc::SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV
            }
            #[allow(unreachable_patterns)]
            other => {
                return Err(Error::spec(
                    format!("{F}.flags[{i}]"),
                    format!("unsupported flag {other:?}"),
                ))
            }
        };
    }

    for (i, sc) in s.syscalls().iter().flatten().enumerate() {
        let field = format!("{F}.syscalls[{i}]");
        let act = action(sc.action(), sc.errno_ret())
            .map_err(|r| Error::spec(format!("{field}.action"), r))?;
        if act == default {
            continue;
        }
        needs_listener |= act == ScmpAction::Notify;
        let mut conds = Vec::new();
        for (j, a) in sc.args().iter().flatten().enumerate() {
            if a.index() > 5 {
                return Err(Error::spec(
                    format!("{field}.args[{j}].index"),
                    format!("{} is not a syscall argument (0..=5)", a.index()),
                ));
            }
            conds.push(ScmpArgCompare::new(
                a.index() as u32,
                op(a.op(), a.value()),
                match a.op() {
                    // For SCMP_CMP_MASKED_EQ, value is the mask and valueTwo the datum.
                    LinuxSeccompOperator::ScmpCmpMaskedEq => a.value_two().unwrap_or(0),
                    _ => a.value(),
                },
            ));
        }
        let mut indexes: Vec<usize> = sc.args().iter().flatten().map(|a| a.index()).collect();
        indexes.sort_unstable();
        let same_arg_twice = indexes.windows(2).any(|w| w[0] == w[1]);

        for (j, name) in sc.names().iter().enumerate() {
            let Ok(nr) = ScmpSyscall::from_name(name) else {
                tracing::debug!(syscall = %name, "seccomp: unknown syscall skipped");
                continue;
            };
            let add = |ctx: &mut ScmpFilterContext, c: &[ScmpArgCompare]| {
                ctx.add_rule_conditional(act, nr, c)
                    .map(drop)
                    .map_err(|e| Error::spec(format!("{field}.names[{j}]"), format!("{name}: {e}")))
            };
            if same_arg_twice {
                // libseccomp allows one comparison per argument and rule.
                for c in &conds {
                    add(&mut ctx, std::slice::from_ref(c))?;
                }
            } else {
                add(&mut ctx, &conds)?;
            }
        }
    }

    if needs_listener && s.listener_path().is_none() {
        return Err(Error::spec(
            format!("{F}.listenerPath"),
            "required when SCMP_ACT_NOTIFY is used",
        ));
    }
    Ok(SeccompFilter {
        prog: export(&ctx)?,
        flags,
        needs_listener,
    })
}

/// libseccomp 2.5 has no export to memory: export into a memfd, read back.
fn export(ctx: &ScmpFilterContext) -> Result<Vec<libc::sock_filter>> {
    let fd: OwnedFd = memfd_create("rpaas-seccomp", MFdFlags::MFD_CLOEXEC)
        .map_err(|e| Error::sys("memfd_create for the seccomp program", e))?;
    ctx.export_bpf(&fd)
        .map_err(|e| Error::security("linux.seccomp: export BPF", e))?;
    let mut file = std::fs::File::from(fd);
    let mut bytes = Vec::new();
    use std::io::Seek;
    file.seek(std::io::SeekFrom::Start(0))
        .and_then(|_| file.read_to_end(&mut bytes))
        .map_err(|e| Error::io("read back", "memfd:rpaas-seccomp", e))?;
    let size = std::mem::size_of::<libc::sock_filter>();
    if bytes.len() % size != 0 || bytes.is_empty() || bytes.len() / size > u16::MAX as usize {
        return Err(Error::security(
            "linux.seccomp: export BPF",
            format!(
                "libseccomp produced {} bytes, not a BPF program",
                bytes.len()
            ),
        ));
    }
    Ok(bytes
        .chunks_exact(size)
        .map(|c| libc::sock_filter {
            code: u16::from_ne_bytes([c[0], c[1]]),
            jt: c[2],
            jf: c[3],
            k: u32::from_ne_bytes([c[4], c[5], c[6], c[7]]),
        })
        .collect())
}

/// Install the filter on the calling thread. Without no_new_privs this
/// needs CAP_SYS_ADMIN, so then load it before dropping capabilities.
pub fn load_seccomp(f: &SeccompFilter) -> Result<()> {
    if f.needs_listener {
        return Err(Error::security(
            "linux.seccomp",
            "the profile uses SCMP_ACT_NOTIFY: load it with load_seccomp_notify",
        ));
    }
    install(f, 0).map(drop)
}

/// Install a filter that uses SCMP_ACT_NOTIFY; returns the listener fd that
/// the caller sends to `linux.seccomp.listenerPath`.
pub fn load_seccomp_notify(f: &SeccompFilter) -> Result<OwnedFd> {
    let fd = install(f, libc::SECCOMP_FILTER_FLAG_NEW_LISTENER)?;
    // SAFETY: with NEW_LISTENER a successful seccomp(2) returns a fresh fd we own.
    Ok(unsafe { std::os::fd::FromRawFd::from_raw_fd(fd as i32) })
}

fn install(f: &SeccompFilter, extra: libc::c_ulong) -> Result<libc::c_long> {
    let prog = libc::sock_fprog {
        len: f.prog.len() as u16,
        filter: f.prog.as_ptr() as *mut libc::sock_filter,
    };
    // SAFETY: `prog` points into `f.prog`, which outlives the call; the kernel copies it.
    let r = unsafe {
        libc::syscall(
            libc::SYS_seccomp,
            libc::SECCOMP_SET_MODE_FILTER,
            f.flags | extra,
            &prog as *const libc::sock_fprog,
        )
    };
    nix::errno::Errno::result(r).map_err(|e| {
        let hint = if e == nix::Error::EACCES {
            " (without noNewPrivileges loading needs CAP_SYS_ADMIN: load before dropping capabilities)"
        } else {
            ""
        };
        Error::sys(
            format!(
                "seccomp(SECCOMP_SET_MODE_FILTER, {} instructions){hint}",
                f.prog.len()
            ),
            e,
        )
    })
}

/// Spec action to libseccomp action; errnoRet defaults to EPERM like runc.
fn action(
    a: LinuxSeccompAction,
    errno_ret: Option<u32>,
) -> std::result::Result<ScmpAction, String> {
    let errno = errno_ret.unwrap_or(libc::EPERM as u32);
    Ok(match a {
        LinuxSeccompAction::ScmpActKill | LinuxSeccompAction::ScmpActKillThread => {
            ScmpAction::KillThread
        }
        LinuxSeccompAction::ScmpActKillProcess => ScmpAction::KillProcess,
        LinuxSeccompAction::ScmpActTrap => ScmpAction::Trap,
        LinuxSeccompAction::ScmpActErrno => ScmpAction::Errno(
            i32::try_from(errno)
                .ok()
                .filter(|e| *e <= 0xffff)
                .ok_or_else(|| format!("errnoRet {errno} is out of range"))?,
        ),
        LinuxSeccompAction::ScmpActNotify => ScmpAction::Notify,
        LinuxSeccompAction::ScmpActTrace => ScmpAction::Trace(
            u16::try_from(errno).map_err(|_| format!("errnoRet {errno} is out of range"))?,
        ),
        LinuxSeccompAction::ScmpActLog => ScmpAction::Log,
        LinuxSeccompAction::ScmpActAllow => ScmpAction::Allow,
        #[allow(unreachable_patterns)]
        other => return Err(format!("unsupported action {other:?}")),
    })
}

fn op(o: LinuxSeccompOperator, value: u64) -> ScmpCompareOp {
    match o {
        LinuxSeccompOperator::ScmpCmpNe => ScmpCompareOp::NotEqual,
        LinuxSeccompOperator::ScmpCmpLt => ScmpCompareOp::Less,
        LinuxSeccompOperator::ScmpCmpLe => ScmpCompareOp::LessOrEqual,
        LinuxSeccompOperator::ScmpCmpEq => ScmpCompareOp::Equal,
        LinuxSeccompOperator::ScmpCmpGe => ScmpCompareOp::GreaterEqual,
        LinuxSeccompOperator::ScmpCmpGt => ScmpCompareOp::Greater,
        LinuxSeccompOperator::ScmpCmpMaskedEq => ScmpCompareOp::MaskedEqual(value),
    }
}

/// Spec architecture to libseccomp's; None for ones libseccomp lacks.
fn arch(a: Arch) -> Option<ScmpArch> {
    Some(match a {
        Arch::ScmpArchNative => ScmpArch::Native,
        Arch::ScmpArchX86 => ScmpArch::X86,
        Arch::ScmpArchX86_64 => ScmpArch::X8664,
        Arch::ScmpArchX32 => ScmpArch::X32,
        Arch::ScmpArchArm => ScmpArch::Arm,
        Arch::ScmpArchAarch64 => ScmpArch::Aarch64,
        Arch::ScmpArchMips => ScmpArch::Mips,
        Arch::ScmpArchMips64 => ScmpArch::Mips64,
        Arch::ScmpArchMips64n32 => ScmpArch::Mips64N32,
        Arch::ScmpArchMipsel => ScmpArch::Mipsel,
        Arch::ScmpArchMipsel64 => ScmpArch::Mipsel64,
        Arch::ScmpArchMipsel64n32 => ScmpArch::Mipsel64N32,
        Arch::ScmpArchPpc => ScmpArch::Ppc,
        Arch::ScmpArchPpc64 => ScmpArch::Ppc64,
        Arch::ScmpArchPpc64le => ScmpArch::Ppc64Le,
        Arch::ScmpArchS390 => ScmpArch::S390,
        Arch::ScmpArchS390x => ScmpArch::S390X,
        Arch::ScmpArchParisc => ScmpArch::Parisc,
        Arch::ScmpArchParisc64 => ScmpArch::Parisc64,
        Arch::ScmpArchRiscv64 => ScmpArch::Riscv64,
        Arch::ScmpArchLoongarch64 => ScmpArch::Loongarch64,
        Arch::ScmpArchM68k => ScmpArch::M68k,
        Arch::ScmpArchSh => ScmpArch::Sh,
        Arch::ScmpArchSheb => ScmpArch::Sheb,
        #[allow(unreachable_patterns)]
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(json: &str) -> LinuxSeccomp {
        serde_json::from_str(json).unwrap()
    }

    #[test]
    fn compiles_a_profile_and_skips_unknown_syscalls() {
        let f = compile_seccomp(&spec(
            r#"{"defaultAction":"SCMP_ACT_ALLOW","architectures":["SCMP_ARCH_X86_64","SCMP_ARCH_X86"],
                "syscalls":[{"names":["mkdir","mkdirat","rpaas_no_such_syscall"],
                             "action":"SCMP_ACT_ERRNO","errnoRet":1},
                            {"names":["getpid"],"action":"SCMP_ACT_ALLOW"}]}"#,
        ))
        .unwrap();
        assert!(f.len() > 4, "{f:?}");
        assert!(!f.needs_listener());
    }

    #[test]
    fn more_rules_give_a_longer_program() {
        let small = compile_seccomp(&spec(r#"{"defaultAction":"SCMP_ACT_ALLOW"}"#)).unwrap();
        let big = compile_seccomp(&spec(
            r#"{"defaultAction":"SCMP_ACT_ALLOW","syscalls":[
                {"names":["mkdir"],"action":"SCMP_ACT_ERRNO"},
                {"names":["personality"],"action":"SCMP_ACT_ERRNO",
                 "args":[{"index":0,"value":0,"op":"SCMP_CMP_NE"},
                         {"index":0,"value":8,"op":"SCMP_CMP_NE"}]},
                {"names":["clone"],"action":"SCMP_ACT_ERRNO",
                 "args":[{"index":0,"value":2114060288,"valueTwo":0,"op":"SCMP_CMP_MASKED_EQ"}]}]}"#,
        ))
        .unwrap();
        assert!(big.len() > small.len(), "{small:?} vs {big:?}");
    }

    #[test]
    fn bad_argument_index_names_the_field() {
        let e = compile_seccomp(&spec(
            r#"{"defaultAction":"SCMP_ACT_ALLOW","syscalls":[{"names":["read"],
                "action":"SCMP_ACT_ERRNO","args":[{"index":6,"value":0,"op":"SCMP_CMP_EQ"}]}]}"#,
        ))
        .unwrap_err()
        .to_string();
        assert!(e.contains("linux.seccomp.syscalls[0].args[0].index"), "{e}");
    }

    #[test]
    fn notify_needs_a_listener_path() {
        let e = compile_seccomp(&spec(
            r#"{"defaultAction":"SCMP_ACT_ALLOW","syscalls":[{"names":["mkdir"],"action":"SCMP_ACT_NOTIFY"}]}"#,
        ))
        .unwrap_err()
        .to_string();
        assert!(e.contains("linux.seccomp.listenerPath"), "{e}");
    }

    #[test]
    fn architecture_libseccomp_lacks_is_an_error_naming_the_field() {
        // LoongArch came with libseccomp 2.6; Debian 12 ships 2.5.4.
        let v = libseccomp::ScmpVersion::current().unwrap();
        let r = compile_seccomp(&spec(
            r#"{"defaultAction":"SCMP_ACT_ALLOW","architectures":["SCMP_ARCH_X86_64","SCMP_ARCH_LOONGARCH64"]}"#,
        ));
        if (v.major, v.minor) < (2, 6) {
            let e = r.unwrap_err().to_string();
            assert!(e.contains("linux.seccomp.architectures[1]"), "{e}");
        } else {
            r.unwrap();
        }
    }

    #[test]
    fn rule_equal_to_default_is_skipped() {
        compile_seccomp(&spec(
            r#"{"defaultAction":"SCMP_ACT_ERRNO","syscalls":[
                {"names":["mkdir"],"action":"SCMP_ACT_ERRNO"},
                {"names":["read"],"action":"SCMP_ACT_ALLOW"}]}"#,
        ))
        .unwrap();
    }
}

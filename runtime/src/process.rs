//! The container process, shared by init and `exec`: everything validated in
//! the runtime before clone ([`Plan::from_spec`]), then applied by the child in
//! a fixed order ([`Plan::become_user`], [`Plan::enter_cwd`], [`Plan::exec`]).

use std::ffi::CString;
use std::path::{Path, PathBuf};

use nix::unistd::{Gid, Uid};
use oci_spec::runtime::Process;

use crate::security::{self, CapSets, Rlimit, SeccompFilter};
use crate::{Error, Result};

/// Everything about the process to run, checked before clone.
pub struct Plan {
    pub args: Vec<String>,
    pub env: Vec<String>,
    pub cwd: PathBuf,
    pub uid: u32,
    pub gid: u32,
    pub additional_gids: Vec<u32>,
    pub umask: Option<u32>,
    pub caps: Option<CapSets>,
    pub rlimits: Vec<Rlimit>,
    pub no_new_privileges: bool,
    pub seccomp: Option<SeccompFilter>,
    pub oom_score_adj: Option<i32>,
    pub terminal: bool,
}

impl Plan {
    /// `field` is the JSON path of the process ("process" for config.json).
    pub fn from_spec(
        p: &Process,
        seccomp: Option<&oci_spec::runtime::LinuxSeccomp>,
        field: &str,
    ) -> Result<Plan> {
        crate::spec::validate_process(p, field)?;
        let caps = p
            .capabilities()
            .as_ref()
            .map(security::parse_capabilities)
            .transpose()?;
        let rlimits = match p.rlimits() {
            Some(r) => security::parse_rlimits(r)?,
            None => Vec::new(),
        };
        let seccomp = seccomp.map(security::compile_seccomp).transpose()?;
        let user = p.user();
        check_id(user.uid(), &format!("{field}.user.uid"))?;
        check_id(user.gid(), &format!("{field}.user.gid"))?;
        let extra = user.additional_gids().as_deref().unwrap_or_default();
        if extra.len() > NGROUPS_MAX {
            return Err(Error::spec(
                format!("{field}.user.additionalGids"),
                format!(
                    "{} groups; the kernel allows at most {NGROUPS_MAX}",
                    extra.len()
                ),
            ));
        }
        for (i, g) in extra.iter().enumerate() {
            check_id(*g, &format!("{field}.user.additionalGids[{i}]"))?;
        }
        Ok(Plan {
            args: p.args().clone().unwrap_or_default(),
            env: p.env().clone().unwrap_or_default(),
            cwd: p.cwd().clone(),
            uid: user.uid(),
            gid: user.gid(),
            additional_gids: user.additional_gids().clone().unwrap_or_default(),
            umask: user.umask(),
            caps,
            rlimits,
            no_new_privileges: p.no_new_privileges().unwrap_or(false),
            seccomp,
            oom_score_adj: p.oom_score_adj(),
            terminal: p.terminal().unwrap_or(false),
        })
    }

    /// rlimits, groups, gid, uid (capabilities kept across the switch), then
    /// the five capability sets. Runs inside the container's namespaces.
    pub fn become_user(&self) -> Result<()> {
        security::apply_rlimits(&self.rlimits)?;
        if let Some(mask) = self.umask {
            nix::sys::stat::umask(nix::sys::stat::Mode::from_bits_truncate(mask));
        }
        // Without noNewPrivileges the filter must be loaded while we still
        // have CAP_SYS_ADMIN; with it, as late as possible (in `exec`).
        if !self.no_new_privileges {
            if let Some(f) = &self.seccomp {
                security::load_seccomp(f)?;
            }
        }
        security::keep_caps_across_setuid()?;
        let gids: Vec<Gid> = self
            .additional_gids
            .iter()
            .map(|g| Gid::from_raw(*g))
            .collect();
        if let Err(e) = nix::unistd::setgroups(&gids) {
            // In a user namespace with setgroups denied, an empty list is fine.
            if !(gids.is_empty() && e == nix::errno::Errno::EPERM) {
                return Err(Error::sys(
                    format!(
                        "process.user.additionalGids: setgroups {}",
                        crate::error::list_preview(&self.additional_gids, 16)
                    ),
                    e,
                ));
            }
        }
        let gid = Gid::from_raw(self.gid);
        nix::unistd::setresgid(gid, gid, gid)
            .map_err(|e| Error::sys(format!("process.user.gid: setgid {}", self.gid), e))?;
        let uid = Uid::from_raw(self.uid);
        nix::unistd::setresuid(uid, uid, uid)
            .map_err(|e| Error::sys(format!("process.user.uid: setuid {}", self.uid), e))?;
        security::clear_keep_caps()?;
        if let Some(caps) = &self.caps {
            security::apply_capabilities(caps)?;
        }
        Ok(())
    }

    /// Init only, before [`Plan::become_user`]: make a missing cwd as root
    /// (as runc does), so that a non-root user may start in a directory
    /// whose parent it cannot write. Runs after pivot_root: the path is
    /// resolved inside the container's root.
    pub fn create_cwd(&self) -> Result<()> {
        if std::fs::symlink_metadata(&self.cwd).is_err() {
            std::fs::create_dir_all(&self.cwd)
                .map_err(|e| Error::io("process.cwd: create", &self.cwd, e))?;
        }
        Ok(())
    }

    /// chdir to cwd (creating it if missing) and prove that the result lies
    /// inside the container's root: a cwd reached through a leaked host fd
    /// (/proc/self/fd/N, CVE-2024-21626) has no path from "/" and fails here.
    pub fn enter_cwd(&self) -> Result<()> {
        if std::fs::metadata(&self.cwd).is_err() {
            std::fs::create_dir_all(&self.cwd)
                .map_err(|e| Error::io("process.cwd: create", &self.cwd, e))?;
        }
        nix::unistd::chdir(&self.cwd)
            .map_err(|e| Error::sys(format!("process.cwd: chdir {}", self.cwd.display()), e))?;
        match std::env::current_dir() {
            Ok(p) if p.is_absolute() && !p.to_string_lossy().starts_with("(unreachable)") => Ok(()),
            _ => Err(Error::security(
                format!("process.cwd {}", self.cwd.display()),
                "resolves outside the container's root",
            )),
        }
    }

    /// The program to run: args[0] looked up in the process's PATH, inside the container.
    pub fn resolve_program(&self) -> Result<PathBuf> {
        let prog = Path::new(&self.args[0]);
        if prog.components().count() > 1 || prog.is_absolute() {
            return if is_executable(prog) {
                Ok(prog.to_path_buf())
            } else {
                Err(Error::spec(
                    "process.args[0]",
                    format!("{}: no such executable in the container", prog.display()),
                ))
            };
        }
        let path = self
            .env
            .iter()
            .find_map(|e| e.strip_prefix("PATH="))
            .unwrap_or("/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin");
        for dir in path.split(':').filter(|d| !d.is_empty()) {
            let candidate = Path::new(dir).join(prog);
            if is_executable(&candidate) {
                return Ok(candidate);
            }
        }
        Err(Error::spec(
            "process.args[0]",
            format!(
                "{}: not found in PATH {path} in the container",
                prog.display()
            ),
        ))
    }

    /// The environment, with HOME from the container's /etc/passwd when absent (as runc does).
    pub fn full_env(&self) -> Vec<String> {
        let mut env = self.env.clone();
        if !env.iter().any(|e| e.starts_with("HOME=")) {
            let home = home_of(self.uid).unwrap_or_else(|| "/".into());
            env.push(format!("HOME={home}"));
        }
        env
    }

    /// no_new_privs, the seccomp filter (last), execve through `dmz` (see
    /// security/dmz.rs), which reports a failed execve of the program on
    /// `report` if given. Returns only on failure.
    pub fn exec(
        &self,
        program: &Path,
        env: &[String],
        dmz: &security::Dmz,
        report: Option<i32>,
    ) -> Error {
        let prepared = (|| -> Result<(CString, Vec<CString>, Vec<CString>)> {
            let c = |s: &str, what: &str| {
                CString::new(s).map_err(|_| Error::spec(what.to_string(), "contains a NUL byte"))
            };
            let prog = c(&program.to_string_lossy(), "process.args[0]")?;
            let args = self
                .args
                .iter()
                .map(|a| c(a, "process.args"))
                .collect::<Result<Vec<_>>>()?;
            let env = env
                .iter()
                .map(|a| c(a, "process.env"))
                .collect::<Result<Vec<_>>>()?;
            Ok((prog, args, env))
        })();
        let (prog, args, env) = match prepared {
            Ok(v) => v,
            Err(e) => return e,
        };
        if self.no_new_privileges {
            if let Err(e) = security::set_no_new_privileges() {
                return e;
            }
            if let Some(f) = &self.seccomp {
                if let Err(e) = security::load_seccomp(f) {
                    return e;
                }
            }
        }
        dmz.exec(&prog, &args, &env, report)
    }
}

/// The kernel's NGROUPS_MAX: setgroups(2) takes at most this many groups.
const NGROUPS_MAX: usize = 65536;

/// A uid or gid a process can run as: not `(uid_t)-1`, which setresuid(2)
/// and setresgid(2) take as "leave this one unchanged", so the process would
/// keep the runtime's root (runc refuses it too).
fn check_id(id: u32, field: &str) -> Result<()> {
    if id == u32::MAX {
        return Err(Error::spec(
            field,
            "4294967295 is (uid_t)-1, which the kernel reads as \"unchanged\" (the process would stay root)",
        ));
    }
    Ok(())
}

fn is_executable(p: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(p)
        .map(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        .unwrap_or(false)
}

/// Home directory of `uid` from the container's /etc/passwd.
fn home_of(uid: u32) -> Option<String> {
    let text = std::fs::read_to_string("/etc/passwd").ok()?;
    text.lines().find_map(|line| {
        let f: Vec<&str> = line.split(':').collect();
        (f.len() >= 6 && f[2].parse::<u32>().ok()? == uid).then(|| f[5].to_string())
    })
}

/// Parse `uid[:gid]` for `exec --user`. Names are refused with a clear error
/// (not yet looked up in the container's /etc/passwd).
pub fn parse_user_spec(spec: &str) -> Result<(u32, Option<u32>)> {
    let (u, g) = match spec.split_once(':') {
        Some((u, g)) => (u, Some(g)),
        None => (spec, None),
    };
    let uid = u.parse::<u32>().map_err(|_| {
        Error::spec(
            "--user",
            format!("{u:?}: only numeric uid[:gid] is supported"),
        )
    })?;
    check_id(uid, "--user")?;
    let gid = g
        .map(|g| {
            g.parse::<u32>()
                .map_err(|_| Error::spec("--user", format!("{g:?}: not a numeric gid")))
        })
        .transpose()?;
    if let Some(g) = gid {
        check_id(g, "--user")?;
    }
    Ok((uid, gid))
}

//! CVE-2019-5736: a container must not be able to overwrite the runtime
//! binary through /proc/<pid>/exe of a runtime process that entered it, e.g.
//! by making the program it runs `#!/proc/self/exe`.
//!
//! Defence: no process in a container ever has the runtime binary as its
//! exe while anyone in there can reach it.
//! - While init (and `exec`'s child) joins namespaces and sets up, it is
//!   non-dumpable: /proc/<pid>/exe and ptrace are refused to the container
//!   (a container given CAP_SYS_PTRACE could ptrace that process anyway and
//!   is outside this defence, as it is for every runtime).
//! - Its last execve is not of the container's program but of **rpaas-dmz**
//!   (runtime/dmz/main.rs), a libc-free program of under 8 KB,
//!   from a **sealed memfd** made for this container: write, grow, shrink
//!   and further seals are refused (EPERM). The dmz exec's the container's
//!   program. A `#!/proc/self/exe` in the container therefore runs the
//!   sealed dmz again, never the runtime, and the dmz is harmless to run.
//! - Runtime processes that stay outside (a foreground `run` waiting, the
//!   keeper) are visible only to a container sharing the host's pid
//!   namespace, and their /proc/<pid>/exe then still needs CAP_SYS_PTRACE:
//!   the kernel refuses it to a less privileged process (commoncap's
//!   ptrace-access check), as for runc's and crun's own processes.
//!
//! Why not re-execute the runtime from a protected copy of itself (runc's
//! way): docs/DECISIONS.md. The dmz costs a memfd of 8 KB and an exec that
//! maps a few pages. PR_SET_MM_EXE_FILE would avoid even that but needs
//! CAP_SYS_RESOURCE, which this host's bounding set lacks.

use std::ffi::CString;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};

use crate::{Error, Result};

/// The dmz program, built by runtime/build.rs.
static DMZ_ELF: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/rpaas-dmz"));

const SEALS: libc::c_int =
    libc::F_SEAL_SEAL | libc::F_SEAL_SHRINK | libc::F_SEAL_GROW | libc::F_SEAL_WRITE;

/// MFD_EXEC (Linux 6.3): ask for an executable memfd even where the
/// vm.memfd_noexec sysctl would otherwise make it non-executable.
const MFD_EXEC: libc::c_uint = 0x0010;

/// A sealed, close-on-exec memfd holding rpaas-dmz: made by the runtime
/// before clone/fork, inherited by the child, exec'd by it last.
#[derive(Debug)]
pub struct Dmz(OwnedFd);

impl Dmz {
    /// Copy the embedded dmz into a fresh memfd and seal it.
    pub fn new() -> Result<Dmz> {
        // F_SEAL_WRITE fails with EBUSY while the kernel still sees extra
        // references on the pages (seen once, under load, with a larger
        // sendfile copy); a fresh copy is the retry.
        let mut attempts = 3;
        loop {
            let memfd = memfd_exec("rpaas-dmz")?;
            write_all(&memfd, DMZ_ELF)?;
            // SAFETY: plain fcntl on an fd we own.
            let r = unsafe { libc::fcntl(memfd.as_raw_fd(), libc::F_ADD_SEALS, SEALS) };
            match nix::errno::Errno::result(r) {
                Ok(_) => return Ok(Dmz(memfd)),
                Err(nix::Error::EBUSY) if attempts > 1 => attempts -= 1,
                Err(e) => return Err(Error::sys("fcntl(F_ADD_SEALS) on the rpaas-dmz memfd", e)),
            }
        }
    }

    /// The fd, which the child must keep open until its last execve.
    pub fn raw(&self) -> i32 {
        self.0.as_raw_fd()
    }

    /// Exec `program` with `args` (its argv, argv[0] included) and `env`
    /// through the dmz. Returns only on failure. A failure of the program's
    /// own execve is the dmz's to report: on stderr, exit 127/126, and as a
    /// `ChildMsg::Failed` on `report` (the sync socket of `exec`, whose
    /// runtime is still listening) when given.
    pub fn exec(
        &self,
        program: &CString,
        args: &[CString],
        env: &[CString],
        report: Option<RawFd>,
    ) -> Error {
        let report_arg = match report {
            Some(fd) => {
                // It must survive this execve; the dmz sets close-on-exec again.
                // SAFETY: plain fcntl on an fd the caller keeps open.
                if unsafe { libc::fcntl(fd, libc::F_SETFD, 0) } != 0 {
                    return Error::sys(
                        "keep the sync socket for rpaas-dmz",
                        nix::errno::Errno::last(),
                    );
                }
                CString::new(fd.to_string()).unwrap_or_default()
            }
            None => c"-".to_owned(),
        };
        let mut argv: Vec<&std::ffi::CStr> = Vec::with_capacity(args.len() + 2);
        argv.push(&report_arg);
        argv.push(program);
        argv.extend(args.iter().map(CString::as_c_str));
        let e = match nix::unistd::execveat(
            &self.0,
            c"",
            &argv,
            env,
            nix::fcntl::AtFlags::AT_EMPTY_PATH,
        ) {
            Err(e) => e,
            Ok(never) => match never {},
        };
        // A seccomp profile may allow execve but not execveat: the same file
        // through /proc (the container's, mounted by now in the usual case).
        if matches!(e, nix::Error::EPERM | nix::Error::ENOSYS) {
            if let Ok(path) = CString::new(format!("/proc/self/fd/{}", self.raw())) {
                let Err(e2) = nix::unistd::execve(&path, &argv, env);
                return Error::sys(
                    format!("execve rpaas-dmz for {program:?} (execveat: {e})"),
                    e2,
                );
            }
        }
        Error::sys(format!("execveat rpaas-dmz for {program:?}"), e)
    }

    /// Whether `fd` is a memfd with every write seal (tests and checks).
    pub fn is_sealed(fd: &impl AsRawFd) -> bool {
        // SAFETY: plain fcntl on a live fd.
        let r = unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_GET_SEALS) };
        r >= 0 && r & SEALS == SEALS
    }

    /// The dmz program's bytes (tests compare what a container process runs).
    pub fn program() -> &'static [u8] {
        DMZ_ELF
    }
}

impl AsRawFd for Dmz {
    fn as_raw_fd(&self) -> i32 {
        self.raw()
    }
}

fn memfd_exec(name: &str) -> Result<OwnedFd> {
    let cname = CString::new(name).map_err(|e| Error::security("memfd name", e))?;
    let base = libc::MFD_CLOEXEC | libc::MFD_ALLOW_SEALING;
    for flags in [base | MFD_EXEC, base] {
        // SAFETY: valid C string; returns a new fd or -1.
        let fd = unsafe { libc::memfd_create(cname.as_ptr(), flags) };
        match nix::errno::Errno::result(fd) {
            // SAFETY: fresh fd owned by nobody else.
            Ok(fd) => return Ok(unsafe { OwnedFd::from_raw_fd(fd) }),
            // Kernels before 6.3 reject MFD_EXEC: retry without it.
            Err(nix::Error::EINVAL) if flags & MFD_EXEC != 0 => continue,
            Err(e) => return Err(Error::sys(format!("memfd_create({name})"), e)),
        }
    }
    Err(Error::security(
        format!("memfd_create({name})"),
        "no flags accepted",
    ))
}

fn write_all(fd: &OwnedFd, mut bytes: &[u8]) -> Result<()> {
    while !bytes.is_empty() {
        match nix::unistd::write(fd, bytes) {
            Ok(0) => {
                return Err(Error::security(
                    "write rpaas-dmz to its memfd",
                    "short write",
                ))
            }
            Ok(n) => bytes = &bytes[n..],
            Err(nix::Error::EINTR) => {}
            Err(e) => return Err(Error::sys("write rpaas-dmz to its memfd", e)),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_copy_is_sealed_and_complete() {
        let dmz = Dmz::new().unwrap();
        assert!(Dmz::is_sealed(&dmz));
        let copy = std::fs::read(format!("/proc/self/fd/{}", dmz.raw())).unwrap();
        assert_eq!(copy, DMZ_ELF);
        assert_eq!(&DMZ_ELF[..4], b"\x7fELF");
    }

    #[test]
    fn the_copy_refuses_writes() {
        let dmz = Dmz::new().unwrap();
        let w = std::fs::OpenOptions::new()
            .write(true)
            .open(format!("/proc/self/fd/{}", dmz.raw()))
            .and_then(|mut f| std::io::Write::write_all(&mut f, b"pwned"));
        assert_eq!(w.unwrap_err().raw_os_error(), Some(libc::EPERM));
    }

    #[test]
    fn a_plain_file_is_not_sealed() {
        let f = std::fs::File::open("/proc/self/exe").unwrap();
        assert!(!Dmz::is_sealed(&f));
    }
}

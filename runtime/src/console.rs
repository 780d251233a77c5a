//! A terminal for the container process: a pty made inside the container
//! (its own devpts), the master sent to the caller's console socket with
//! SCM_RIGHTS, the slave as stdio, controlling terminal and /dev/console.

use std::io::IoSlice;
use std::os::fd::{AsRawFd, RawFd};
use std::os::unix::net::UnixStream;
use std::path::Path;

use nix::fcntl::OFlag;
use nix::mount::{mount, MsFlags};
use nix::pty::{grantpt, posix_openpt, ptsname_r, unlockpt};
use nix::sys::socket::{sendmsg, ControlMessage, MsgFlags};

use crate::{Error, Result};

/// Connect to the console socket (a host path): done before pivot_root.
pub fn connect(path: &Path) -> Result<UnixStream> {
    UnixStream::connect(path).map_err(|e| Error::io("connect console socket", path, e))
}

/// Make the pty, hand the master to `socket`, make the slave our terminal.
/// `mount_console`: also bind the slave onto /dev/console (init only).
pub fn setup(socket: &UnixStream, mount_console: bool, size: Option<(u16, u16)>) -> Result<()> {
    let master = posix_openpt(OFlag::O_RDWR | OFlag::O_NOCTTY | OFlag::O_CLOEXEC)
        .map_err(|e| Error::sys("open /dev/ptmx in the container", e))?;
    grantpt(&master).map_err(|e| Error::sys("grantpt", e))?;
    unlockpt(&master).map_err(|e| Error::sys("unlockpt", e))?;
    let slave_path = ptsname_r(&master).map_err(|e| Error::sys("ptsname", e))?;
    if let Some((rows, cols)) = size {
        let ws = libc::winsize {
            ws_row: rows,
            ws_col: cols,
            ws_xpixel: 0,
            ws_ypixel: 0,
        };
        // SAFETY: TIOCSWINSZ with a valid winsize on a pty master.
        unsafe { libc::ioctl(master.as_raw_fd(), libc::TIOCSWINSZ, &ws) };
    }
    send_fd(socket.as_raw_fd(), master.as_raw_fd(), &slave_path)?;
    drop(master);

    nix::unistd::setsid().map_err(|e| Error::sys("setsid", e))?;
    let slave = nix::fcntl::open(
        slave_path.as_str(),
        OFlag::O_RDWR | OFlag::O_CLOEXEC,
        nix::sys::stat::Mode::empty(),
    )
    .map_err(|e| Error::sys(format!("open {slave_path}"), e))?;
    // SAFETY: TIOCSCTTY on a tty we just opened; we are a session leader.
    if unsafe { libc::ioctl(slave.as_raw_fd(), libc::TIOCSCTTY, 0) } != 0 {
        return Err(Error::sys(
            "set controlling terminal",
            nix::errno::Errno::last(),
        ));
    }
    for target in 0..3 {
        // SAFETY: dup2 onto stdio slots of our own process.
        if unsafe { libc::dup2(slave.as_raw_fd(), target) } < 0 {
            return Err(Error::sys("dup2 pty onto stdio", nix::errno::Errno::last()));
        }
    }
    if mount_console {
        let console = Path::new("/dev/console");
        if std::fs::symlink_metadata(console).is_err() {
            std::fs::File::create(console).map_err(|e| Error::io("create", console, e))?;
        }
        mount(
            Some(slave_path.as_str()),
            console,
            None::<&str>,
            MsFlags::MS_BIND,
            None::<&str>,
        )
        .map_err(|e| Error::sys(format!("bind {slave_path} on /dev/console"), e))?;
    }
    drop(slave);
    Ok(())
}

fn send_fd(sock: RawFd, fd: RawFd, name: &str) -> Result<()> {
    let fds = [fd];
    let cmsg = [ControlMessage::ScmRights(&fds)];
    let iov = [IoSlice::new(name.as_bytes())];
    sendmsg::<()>(sock, &iov, &cmsg, MsgFlags::empty(), None)
        .map_err(|e| Error::sys("send pty master to the console socket", e))?;
    Ok(())
}

//! Typed messages between the runtime and the container's init (or an exec'd
//! process) over a SOCK_SEQPACKET socketpair: one message per datagram, JSON
//! encoded, so neither side can read half a message or two at once.

use std::os::fd::{AsRawFd, OwnedFd, RawFd};

use nix::sys::socket::{socketpair, AddressFamily, SockFlag, SockType};
use serde::{Deserialize, Serialize};

use crate::{Error, Result};

/// What the child tells the runtime.
#[derive(Debug, Serialize, Deserialize)]
pub enum ChildMsg {
    /// New user namespace made: write uid_map/gid_map, then send [`ParentMsg::Go`].
    NeedMappings,
    /// Mounts are done, before pivot_root: run createRuntime/prestart hooks,
    /// then send [`ParentMsg::HooksDone`].
    NeedHooks,
    /// Everything is set up; init now waits for `start` (or exec proceeds to execve).
    Ready,
    /// Setup failed; the message names what and why.
    Failed(String),
}

impl ChildMsg {
    /// A failure report cut to fit one datagram of [`Channel::recv`]'s
    /// buffer: an error quoting a 70 KB argument was unreadable
    /// ("decode sync message: EOF while parsing a string").
    pub fn failed(mut msg: String) -> ChildMsg {
        const MAX: usize = 16 * 1024;
        if msg.len() > MAX {
            let total = msg.len();
            let mut cut = MAX;
            while !msg.is_char_boundary(cut) {
                cut -= 1;
            }
            msg.truncate(cut);
            msg.push_str(&format!("… ({} more bytes)", total - cut));
        }
        ChildMsg::Failed(msg)
    }
}

/// What the runtime tells the child.
#[derive(Debug, Serialize, Deserialize)]
pub enum ParentMsg {
    /// Cgroup joined (and mappings written): go on.
    Go,
    /// createRuntime/prestart hooks have run.
    HooksDone,
    /// The state is on disk: stop watching the parent and wait for start.
    Commit,
}

/// One end of the sync channel.
#[derive(Debug)]
pub struct Channel {
    fd: OwnedFd,
}

/// A connected pair: (runtime end, child end). Both close-on-exec.
pub fn pair() -> Result<(Channel, Channel)> {
    let (a, b) = socketpair(
        AddressFamily::Unix,
        SockType::SeqPacket,
        None,
        SockFlag::SOCK_CLOEXEC,
    )
    .map_err(|e| Error::sys("socketpair for init sync", e))?;
    Ok((Channel { fd: a }, Channel { fd: b }))
}

impl Channel {
    pub fn raw(&self) -> RawFd {
        self.fd.as_raw_fd()
    }

    pub fn send<T: Serialize>(&self, msg: &T) -> Result<()> {
        let bytes = serde_json::to_vec(msg)
            .map_err(|e| Error::Other(format!("encode sync message: {e}")))?;
        loop {
            match nix::sys::socket::send(
                self.raw(),
                &bytes,
                nix::sys::socket::MsgFlags::MSG_NOSIGNAL,
            ) {
                Ok(_) => return Ok(()),
                Err(nix::errno::Errno::EINTR) => continue,
                Err(e) => return Err(Error::sys("send sync message", e)),
            }
        }
    }

    /// Receive one message; None when the other side closed without a word.
    pub fn recv<T: for<'de> Deserialize<'de>>(&self) -> Result<Option<T>> {
        let mut buf = vec![0u8; 64 * 1024];
        let n = loop {
            match nix::sys::socket::recv(self.raw(), &mut buf, nix::sys::socket::MsgFlags::empty())
            {
                Ok(n) => break n,
                Err(nix::errno::Errno::EINTR) => continue,
                Err(e) => return Err(Error::sys("receive sync message", e)),
            }
        };
        if n == 0 {
            return Ok(None);
        }
        serde_json::from_slice(&buf[..n])
            .map(Some)
            .map_err(|e| Error::Other(format!("decode sync message: {e}")))
    }
}

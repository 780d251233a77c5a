//! rpaas-dmz: the last program a runtime process runs before the container's
//! own. It is embedded in the runtime, copied into a sealed memfd for every
//! create/exec, and exec'd by init (and by `exec`'s child) in place of the
//! container's program, which it then exec's itself:
//!
//!   argv = [report fd or "-", program path, the container's argv...]
//!   envp = the container's env
//!   → execve(program, argv + 2, envp)
//!
//! When that execve fails, the dmz says so on stderr, and, given a report fd
//! (`exec`'s sync socket), sends `{"Failed":"..."}` there as the runtime's
//! sync protocol (runtime/src/create/sync.rs) encodes it, so `rpaas-run exec`
//! fails with the reason as it did before the dmz. The fd is made
//! close-on-exec first: a successful execve closes it, which the runtime
//! reads as success. Exit 127 (not found) or 126, as a shell does.
//!
//! Why (CVE-2019-5736): whatever runs `#!/proc/self/exe` inside the container
//! gets the exe of the process that did the last execve. With this step in
//! between, that is this sealed copy (writes fail with EPERM), never the
//! runtime binary on the host, so the runtime need not re-execute itself
//! from a protected copy at every start (a second exec and glibc start-up).
//!
//! It has no libc (and so no glibc start-up: no cpuid probing, no
//! relocations): under 8 KB, its messages included, that the kernel maps and runs.
//! Built by runtime/build.rs with the same rustc, no_std, x86_64 only.
#![no_std]
#![no_main]

use core::arch::{asm, global_asm};

const SYS_WRITE: usize = 1;
const SYS_CLOSE: usize = 3;
const SYS_FCNTL: usize = 72;
const SYS_EXECVE: usize = 59;
const SYS_EXIT_GROUP: usize = 231;
const F_SETFD: usize = 2;
const FD_CLOEXEC: usize = 1;
const ENOENT: usize = 2;

// The kernel starts us with the stack pointer on argc, then argv[0..argc],
// NULL, envp..., NULL. Hand that address to `start` with an aligned stack.
global_asm!(
    ".globl _start",
    "_start:",
    "xor ebp, ebp",
    "mov rdi, rsp",
    "and rsp, -16",
    "call {start}",
    "ud2",
    start = sym start,
);

/// # Safety
/// `sp` is the initial stack the kernel laid out (see `_start`).
unsafe extern "C" fn start(sp: *const usize) -> ! {
    let argc = *sp;
    let argv = sp.add(1) as *const *const u8;
    let envp = argv.add(argc + 1);
    if argc < 3 {
        put(2, b"rpaas-dmz: usage: rpaas-dmz REPORT-FD PROGRAM ARGV0 [ARGS...]\n");
        exit(126);
    }
    let mut report = parse_fd(*argv);
    if let Some(fd) = report {
        // Refused (a seccomp profile?): close it rather than leak it.
        if syscall3(SYS_FCNTL, fd, F_SETFD, FD_CLOEXEC) != 0 {
            syscall3(SYS_CLOSE, fd, 0, 0);
            report = None;
        }
    }
    let program = *argv.add(1);
    let rc = syscall3(SYS_EXECVE, program as usize, argv.add(2) as usize, envp as usize);
    let errno = rc.wrapping_neg();
    let mut msg = Msg::new();
    msg.push(b"execve ");
    msg.push_cstr(program);
    msg.push(b": ");
    msg.push(errno_text(errno));
    if let Some(fd) = report {
        let mut json = Msg::new();
        json.push(b"{\"Failed\":\"");
        json.push_json(msg.bytes());
        json.push(b"\"}");
        put(fd, json.bytes());
    }
    put(2, b"rpaas-run: ");
    put(2, msg.bytes());
    put(2, b"\n");
    exit(if errno == ENOENT { 127 } else { 126 })
}

/// A decimal fd number; "-" (or anything else) means none.
unsafe fn parse_fd(s: *const u8) -> Option<usize> {
    let mut n: usize = 0;
    let mut i = 0;
    loop {
        let c = core::ptr::read_volatile(s.add(i));
        match c {
            0 if i > 0 => return Some(n),
            b'0'..=b'9' if i < 9 => n = n * 10 + (c - b'0') as usize,
            _ => return None,
        }
        i += 1;
    }
}

/// The errors an execve of a program that exists can still meet.
fn errno_text(errno: usize) -> &'static [u8] {
    match errno {
        1 => b"EPERM (operation not permitted)",
        2 => b"ENOENT (no such file, or its interpreter or loader is missing in the container)",
        7 => b"E2BIG (argument list too long)",
        8 => b"ENOEXEC (not an executable format: no #! line or a foreign binary)",
        12 => b"ENOMEM (out of memory)",
        13 => b"EACCES (permission denied, or a noexec mount)",
        20 => b"ENOTDIR (a path component is not a directory)",
        21 => b"EISDIR (is a directory)",
        26 => b"ETXTBSY (the file is open for writing)",
        40 => b"ELOOP (too many levels of symbolic links or interpreters)",
        _ => b"failed (see errno(3))",
    }
}

/// A message built on the stack (no allocator here); longer text is cut.
struct Msg {
    buf: [u8; 1024],
    len: usize,
}

impl Msg {
    fn new() -> Msg {
        Msg {
            buf: [0; 1024],
            len: 0,
        }
    }

    fn bytes(&self) -> &[u8] {
        &self.buf[..self.len]
    }

    fn push_byte(&mut self, b: u8) {
        if self.len < self.buf.len() {
            self.buf[self.len] = b;
            self.len += 1;
        }
    }

    fn push(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.push_byte(b);
        }
    }

    /// # Safety
    /// `s` is a NUL-terminated string.
    unsafe fn push_cstr(&mut self, s: *const u8) {
        let mut i = 0;
        // Volatile: a plain loop is turned into a call to strlen, which we lack.
        loop {
            let c = core::ptr::read_volatile(s.add(i));
            if c == 0 {
                break;
            }
            self.push_byte(c);
            i += 1;
        }
    }

    /// As a JSON string body: quotes, backslashes and control bytes escaped.
    fn push_json(&mut self, bytes: &[u8]) {
        const HEX: &[u8; 16] = b"0123456789abcdef";
        for &b in bytes {
            match b {
                b'"' | b'\\' => {
                    self.push_byte(b'\\');
                    self.push_byte(b);
                }
                0..=0x1f => {
                    self.push(b"\\u00");
                    self.push_byte(HEX[(b >> 4) as usize]);
                    self.push_byte(HEX[(b & 15) as usize]);
                }
                _ => self.push_byte(b),
            }
        }
    }
}

fn exit(code: usize) -> ! {
    // SAFETY: exit_group takes a plain integer and does not return.
    unsafe { syscall3(SYS_EXIT_GROUP, code, 0, 0) };
    loop {}
}

fn put(fd: usize, bytes: &[u8]) {
    // SAFETY: write from a live slice.
    unsafe { syscall3(SYS_WRITE, fd, bytes.as_ptr() as usize, bytes.len()) };
}

unsafe fn syscall3(nr: usize, a: usize, b: usize, c: usize) -> usize {
    let ret: usize;
    asm!(
        "syscall",
        inlateout("rax") nr => ret,
        in("rdi") a,
        in("rsi") b,
        in("rdx") c,
        lateout("rcx") _,
        lateout("r11") _,
        options(nostack),
    );
    ret
}

// The compiler lowers buffer zeroing and copies to these libc functions,
// which a program without libc must provide. Volatile accesses keep the
// loops from being lowered into calls to themselves.
#[no_mangle]
unsafe extern "C" fn memset(dst: *mut u8, c: i32, n: usize) -> *mut u8 {
    for i in 0..n {
        core::ptr::write_volatile(dst.add(i), c as u8);
    }
    dst
}

#[no_mangle]
unsafe extern "C" fn memcpy(dst: *mut u8, src: *const u8, n: usize) -> *mut u8 {
    for i in 0..n {
        core::ptr::write_volatile(dst.add(i), core::ptr::read_volatile(src.add(i)));
    }
    dst
}

/// The prebuilt `core` refers to it (it was built for unwinding); with
/// panic=abort nothing ever calls it.
#[no_mangle]
extern "C" fn rust_eh_personality() {}

#[panic_handler]
fn panic(_: &core::panic::PanicInfo) -> ! {
    exit(126)
}

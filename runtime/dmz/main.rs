//! rpaas-dmz: the last program a runtime process runs before the container's
//! own. It is embedded in the runtime, copied into a sealed memfd for every
//! create/exec, and exec'd by init (and by `exec`'s child) in place of the
//! container's program, which it then exec's itself:
//!
//!   argv = [program path, the container's argv...], envp = the container's env
//!   → execve(argv[0], argv + 1, envp)
//!
//! Why (CVE-2019-5736): whatever runs `#!/proc/self/exe` inside the container
//! gets the exe of the process that did the last execve. With this step in
//! between, that is this sealed copy (writes fail with EPERM), never the
//! runtime binary on the host, so the runtime need not re-execute itself
//! from a protected copy at every start (a second exec and glibc start-up).
//!
//! It has no libc (and so no glibc start-up: no cpuid probing, no
//! relocations): a few hundred bytes of code that the kernel maps and runs.
//! Built by runtime/build.rs with the same rustc, no_std, x86_64 only.
#![no_std]
#![no_main]

use core::arch::{asm, global_asm};

const SYS_WRITE: usize = 1;
const SYS_EXECVE: usize = 59;
const SYS_EXIT_GROUP: usize = 231;
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
    if argc < 2 {
        fail(b"rpaas-dmz: no program to run\n".as_ptr(), 0);
    }
    let program = *argv;
    let rc = syscall3(SYS_EXECVE, program as usize, argv.add(1) as usize, envp as usize);
    fail(program, rc.wrapping_neg())
}

/// "rpaas-run: execve <program>: errno N", then exit 127 (not found) or 126,
/// as a shell does.
unsafe fn fail(program: *const u8, errno: usize) -> ! {
    if errno != 0 {
        put(b"rpaas-run: execve ".as_ptr(), 18);
        // Volatile: a plain loop is turned into a call to strlen, which we lack.
        let mut n = 0;
        while core::ptr::read_volatile(program.add(n)) != 0 {
            n += 1;
        }
        put(program, n);
        put(b": errno ".as_ptr(), 8);
        let mut digits = [0u8; 20];
        let mut i = digits.len();
        let mut v = errno;
        loop {
            i -= 1;
            digits[i] = b'0' + (v % 10) as u8;
            v /= 10;
            if v == 0 {
                break;
            }
        }
        put(digits.as_ptr().add(i), digits.len() - i);
        put(b"\n".as_ptr(), 1);
    } else {
        put(program, 29);
    }
    let code = if errno == ENOENT { 127 } else { 126 };
    syscall3(SYS_EXIT_GROUP, code, 0, 0);
    loop {}
}

unsafe fn put(buf: *const u8, len: usize) {
    syscall3(SYS_WRITE, 2, buf as usize, len);
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

/// The prebuilt `core` refers to it (it was built for unwinding); with
/// panic=abort nothing ever calls it.
#[no_mangle]
extern "C" fn rust_eh_personality() {}

#[panic_handler]
fn panic(_: &core::panic::PanicInfo) -> ! {
    // SAFETY: exit_group takes plain integers.
    unsafe { syscall3(SYS_EXIT_GROUP, 126, 0, 0) };
    loop {}
}

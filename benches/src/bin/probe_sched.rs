//! probe_sched (issue 15): the CPU cost of the host's one probe scheduler
//! (`rpaas::probe::Scheduler`) running 1,000 probes at a 10 s period against
//! real listening sockets, each probe inside its own "instance" netns.
//!
//! Setup: RPAAS_BENCH_NETNS network namespaces (default 100, `ip netns add`,
//! loopback up), each holding RPAAS_BENCH_PER_NETNS listeners (default 5) on
//! 127.0.0.1: ports 18000.. answer HTTP (`200 OK` after reading the request),
//! the same number of probes again are tcp probes on those ports. The
//! listeners are served by a child process (this binary with `--serve`), so
//! the servers' CPU is not the scheduler's. Half the probes are http, half
//! tcp; all have periodSeconds 10, timeoutSeconds 1, and start spread over
//! their first period (as probes found running are).
//!
//! Measured: after one warm-up period, the CPU time (user + system, all
//! threads: the scheduler and its netns socket thread) of this process over
//! RPAAS_BENCH_WINDOW seconds (default 30), from getrusage(RUSAGE_SELF), as a
//! share of one core; and the probe runs and failures in the window (all
//! must pass). Target: under 2 % of one core.
//!
//! Run as root: `cargo run --release -p rpaas-benches --bin probe_sched`.
//! Everything made (netns, the server) is removed at the end, on failure too.

use std::io::{Read, Write};
use std::net::TcpListener;
use std::os::fd::AsRawFd;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rpaas::probe::{Action, HttpAction, Probe, Scheduler, Target, TcpAction};

const BASE_PORT: u16 = 18000;

fn env(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn cpu_seconds() -> f64 {
    // SAFETY: getrusage fills the struct we pass.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: a valid pointer to a rusage.
    unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut ru) };
    let tv = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    tv(ru.ru_utime) + tv(ru.ru_stime)
}

/// The netns made for the bench, deleted on drop.
struct Namespaces(Vec<String>);

impl Drop for Namespaces {
    fn drop(&mut self) {
        for n in &self.0 {
            let _ = Command::new("ip").args(["netns", "del", n]).status();
        }
    }
}

/// The server child, killed on drop.
struct Server(std::process::Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// `--serve PER NS...`: listen in each netns, answer until killed.
fn serve(per: u16, names: &[String]) -> anyhow::Result<()> {
    let mut listeners = Vec::new();
    for n in names {
        let ns = std::fs::File::open(format!("/run/netns/{n}"))?;
        // SAFETY: a plain syscall on a fd we hold; this process is single-threaded.
        if unsafe { libc::setns(ns.as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
            return Err(std::io::Error::last_os_error().into());
        }
        for p in 0..per {
            let l = TcpListener::bind(("127.0.0.1", BASE_PORT + p))?;
            l.set_nonblocking(true)?;
            listeners.push(l);
        }
    }
    // One poll loop: accept, read the request (or EOF), answer, close.
    let mut conns: Vec<std::net::TcpStream> = Vec::new();
    println!("ready");
    std::io::stdout().flush()?;
    loop {
        let mut fds: Vec<libc::pollfd> = listeners
            .iter()
            .map(|l| l.as_raw_fd())
            .chain(conns.iter().map(|c| c.as_raw_fd()))
            .map(|fd| libc::pollfd {
                fd,
                events: libc::POLLIN,
                revents: 0,
            })
            .collect();
        // SAFETY: fds is a valid array of pollfd of its length.
        let n = unsafe { libc::poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, -1) };
        if n <= 0 {
            continue;
        }
        let nl = listeners.len();
        let mut done = Vec::new();
        for (i, f) in fds.iter().enumerate() {
            if f.revents == 0 {
                continue;
            }
            if i < nl {
                while let Ok((s, _)) = listeners[i].accept() {
                    let _ = s.set_nonblocking(true);
                    conns.push(s);
                }
            } else {
                let c = &mut conns[i - nl];
                let mut buf = [0u8; 1024];
                match c.read(&mut buf) {
                    Ok(0) => done.push(i - nl),
                    Ok(_) => {
                        let _ = c.write_all(b"HTTP/1.0 200 OK\r\nContent-Length: 0\r\n\r\n");
                        done.push(i - nl);
                    }
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
                    Err(_) => done.push(i - nl),
                }
            }
        }
        done.sort_unstable();
        for i in done.into_iter().rev() {
            conns.swap_remove(i);
        }
    }
}

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    if args.get(1).map(String::as_str) == Some("--serve") {
        let per: u16 = args[2].parse()?;
        return serve(per, &args[3..]);
    }
    // SAFETY: geteuid has no preconditions.
    anyhow::ensure!(unsafe { libc::geteuid() } == 0, "run as root (netns)");
    let n_ns = env("RPAAS_BENCH_NETNS", 100) as usize;
    let per = env("RPAAS_BENCH_PER_NETNS", 5) as u16;
    let window = Duration::from_secs(env("RPAAS_BENCH_WINDOW", 30));
    let period = 10u32;

    let mut nss = Namespaces(Vec::new());
    for k in 0..n_ns {
        let name = format!("rpaas-probe-bench-{}-{k}", std::process::id());
        let st = Command::new("ip").args(["netns", "add", &name]).status()?;
        anyhow::ensure!(st.success(), "ip netns add {name}");
        nss.0.push(name.clone());
        let st = Command::new("ip")
            .args(["-n", &name, "link", "set", "lo", "up"])
            .status()?;
        anyhow::ensure!(st.success(), "lo up in {name}");
    }
    let mut child = Command::new(std::env::current_exe()?)
        .arg("--serve")
        .arg(per.to_string())
        .args(&nss.0)
        .stdout(Stdio::piped())
        .spawn()?;
    let mut out = child.stdout.take().expect("piped");
    let server = Server(child);
    let mut ready = [0u8; 6];
    out.read_exact(&mut ready)?;
    anyhow::ensure!(&ready == b"ready\n", "the server did not start");

    let ok = Arc::new(AtomicU64::new(0));
    let failed = Arc::new(AtomicU64::new(0));
    let last_err = Arc::new(std::sync::Mutex::new(None::<String>));
    let sched = {
        let (ok, failed, last_err) = (ok.clone(), failed.clone(), last_err.clone());
        Scheduler::start(Box::new(move |r| {
            if r.ok {
                ok.fetch_add(1, Ordering::Relaxed);
            } else {
                failed.fetch_add(1, Ordering::Relaxed);
                if let Ok(mut l) = last_err.lock() {
                    *l = r.reason;
                }
            }
        }))?
    };
    let now = Instant::now();
    let mut probes = 0;
    for name in &nss.0 {
        let target = Target {
            netns: Some(format!("/run/netns/{name}").into()),
            ..Target::default()
        };
        for p in 0..per {
            let port = BASE_PORT + p;
            for action in [
                Action::Http(HttpAction {
                    path: "/healthz".into(),
                    port,
                    host: None,
                    headers: Vec::new(),
                }),
                Action::Tcp(TcpAction { port, host: None }),
            ] {
                let mut probe = Probe::new(action);
                probe.period_seconds = period;
                probe.timeout_seconds = 1;
                // Started long ago: the first run is spread over the period.
                sched.add(target.clone(), probe, now - Duration::from_secs(60), true);
                probes += 1;
            }
        }
    }
    println!(
        "probe_sched: {probes} probes (http + tcp) in {n_ns} netns, period {period}s; warm-up {period}s, window {}s",
        window.as_secs()
    );
    std::thread::sleep(Duration::from_secs(u64::from(period)));
    let (ok0, failed0) = (ok.load(Ordering::Relaxed), failed.load(Ordering::Relaxed));
    let (c0, t0) = (cpu_seconds(), Instant::now());
    std::thread::sleep(window);
    let (c1, t1) = (cpu_seconds(), Instant::now());
    let runs = ok.load(Ordering::Relaxed) - ok0;
    let fails = failed.load(Ordering::Relaxed) - failed0;
    sched.stop();
    drop(server);
    drop(nss);

    let wall = (t1 - t0).as_secs_f64();
    let cpu = c1 - c0;
    let share = 100.0 * cpu / wall;
    let expected = probes as f64 * wall / f64::from(period);
    println!(
        "window {wall:.1}s: {runs} passed, {fails} failed (expected ~{expected:.0} runs); CPU {:.1} ms = {share:.3}% of one core; {:.1} us per probe run",
        cpu * 1e3,
        cpu * 1e6 / (runs + fails).max(1) as f64
    );
    if fails > 0 {
        println!(
            "last failure: {:?}",
            last_err.lock().ok().and_then(|l| l.clone())
        );
    }
    let all_ran = (runs + fails) as f64 >= expected * 0.9;
    let met = share < 2.0 && fails == 0 && all_ran;
    println!(
        "target: 1,000 probes at a 10 s period under 2% of one core: {}",
        if met { "MET" } else { "NOT MET" }
    );
    Ok(())
}

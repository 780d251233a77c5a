//! Registries for tests: Debian's `docker-registry` on 127.0.0.1 (optionally with
//! htpasswd auth), and a tiny hand-rolled HTTP server that misbehaves on purpose.

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A running `docker-registry`; killed (and its storage removed) on drop.
pub struct Registry {
    child: Child,
    pub port: u16,
    _dir: tempfile::TempDir,
}

impl Registry {
    /// Start one; with `auth`, htpasswd basic auth for (user, password).
    pub fn start(auth: Option<(&str, &str)>) -> Registry {
        let dir = super::tempdir("registry");
        let port = free_port();
        let mut cfg = format!(
            "version: 0.1\nlog:\n  level: warn\nstorage:\n  filesystem:\n    rootdirectory: {}\n  delete:\n    enabled: true\nhttp:\n  addr: 127.0.0.1:{port}\n",
            dir.path().join("data").display()
        );
        if let Some((u, p)) = auth {
            let out = Command::new("htpasswd")
                .args(["-Bbn", u, p])
                .output()
                .expect("htpasswd (apt-get install apache2-utils)");
            assert!(out.status.success(), "htpasswd failed");
            std::fs::write(dir.path().join("htpasswd"), &out.stdout).unwrap();
            cfg.push_str(&format!(
                "auth:\n  htpasswd:\n    realm: rpaas-test\n    path: {}\n",
                dir.path().join("htpasswd").display()
            ));
        }
        let cfg_path = dir.path().join("config.yml");
        std::fs::write(&cfg_path, cfg).unwrap();
        let child = Command::new("docker-registry")
            .arg("serve")
            .arg(&cfg_path)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start docker-registry");
        let reg = Registry {
            child,
            port,
            _dir: dir,
        };
        for _ in 0..200 {
            if TcpStream::connect(("127.0.0.1", port)).is_ok() {
                return reg;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("docker-registry did not start on port {port}");
    }

    pub fn host(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// `skopeo copy` an OCI layout tag to this registry as `name:tag`.
    pub fn push(&self, layout: &Path, tag: &str, name: &str, creds: Option<(&str, &str)>) {
        let mut cmd = Command::new("skopeo");
        cmd.args(["copy", "--quiet", "--dest-tls-verify=false"]);
        if let Some((u, p)) = creds {
            cmd.arg(format!("--dest-creds={u}:{p}"));
        }
        cmd.arg(format!("oci:{}:{tag}", layout.display()));
        cmd.arg(format!("docker://{}/{name}:{tag}", self.host()));
        let out = cmd.output().expect("skopeo");
        assert!(
            out.status.success(),
            "skopeo copy failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// What the fake registry answers for one path.
#[derive(Clone)]
pub struct Reply {
    pub content_type: String,
    pub body: Vec<u8>,
    /// Cut the connection after this many body bytes, for the first `cut_times` requests.
    pub cut_at: Option<usize>,
    pub cut_times: usize,
    /// Honour `Range: bytes=N-` with a 206.
    pub ranges: bool,
}

impl Reply {
    pub fn new(content_type: &str, body: Vec<u8>) -> Reply {
        Reply {
            content_type: content_type.into(),
            body,
            cut_at: None,
            cut_times: 0,
            ranges: true,
        }
    }
}

/// A one-request-per-connection HTTP/1.1 server with canned replies.
pub struct FakeRegistry {
    pub port: u16,
    /// Every request seen: "GET /path" plus " range=…" when a Range header came.
    pub log: Arc<Mutex<Vec<String>>>,
    stop: Arc<std::sync::atomic::AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl FakeRegistry {
    pub fn start(routes: HashMap<String, Reply>) -> FakeRegistry {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        listener.set_nonblocking(true).unwrap();
        let log = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let (log2, stop2) = (log.clone(), stop.clone());
        let routes = Arc::new(Mutex::new(routes));
        let thread = std::thread::spawn(move || {
            while !stop2.load(std::sync::atomic::Ordering::SeqCst) {
                match listener.accept() {
                    Ok((s, _)) => {
                        s.set_nonblocking(false).unwrap();
                        let _ = serve(s, &routes, &log2);
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(5)),
                }
            }
        });
        FakeRegistry {
            port,
            log,
            stop,
            thread: Some(thread),
        }
    }

    pub fn host(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    pub fn requests(&self) -> Vec<String> {
        self.log.lock().unwrap().clone()
    }
}

impl Drop for FakeRegistry {
    fn drop(&mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn serve(
    mut s: TcpStream,
    routes: &Mutex<HashMap<String, Reply>>,
    log: &Mutex<Vec<String>>,
) -> std::io::Result<()> {
    s.set_read_timeout(Some(Duration::from_secs(5)))?;
    let mut r = BufReader::new(s.try_clone()?);
    let mut line = String::new();
    r.read_line(&mut line)?;
    let path = line.split_whitespace().nth(1).unwrap_or("/").to_string();
    let mut range = None;
    loop {
        let mut h = String::new();
        if r.read_line(&mut h)? == 0 || h == "\r\n" {
            break;
        }
        if let Some((k, v)) = h.split_once(':') {
            if k.eq_ignore_ascii_case("range") {
                range = v
                    .trim()
                    .strip_prefix("bytes=")
                    .and_then(|v| v.trim_end_matches('-').parse::<usize>().ok());
            }
        }
    }
    log.lock().unwrap().push(match range {
        Some(n) => format!("GET {path} range={n}"),
        None => format!("GET {path}"),
    });
    if path == "/v2/" {
        return s.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Type: application/json\r\nConnection: close\r\n\r\n{}");
    }
    let reply = {
        let mut routes = routes.lock().unwrap();
        match routes.get_mut(&path) {
            None => None,
            Some(rep) => {
                let snapshot = rep.clone();
                if rep.cut_times > 0 {
                    rep.cut_times -= 1;
                }
                Some(snapshot)
            }
        }
    };
    let Some(rep) = reply else {
        let body = br#"{"errors":[{"code":"NOT_FOUND","message":"not found"}]}"#;
        let head = format!("HTTP/1.1 404 Not Found\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n", body.len());
        s.write_all(head.as_bytes())?;
        return s.write_all(body);
    };
    let (status, start) = match range {
        Some(n) if rep.ranges && n > 0 && n < rep.body.len() => ("206 Partial Content", n),
        _ => ("200 OK", 0),
    };
    let body = &rep.body[start..];
    let mut head = format!(
        "HTTP/1.1 {status}\r\nContent-Type: {}\r\nContent-Length: {}\r\nConnection: close\r\n",
        rep.content_type,
        body.len()
    );
    if start > 0 {
        head.push_str(&format!(
            "Content-Range: bytes {start}-{}/{}\r\n",
            rep.body.len() - 1,
            rep.body.len()
        ));
    }
    head.push_str("\r\n");
    s.write_all(head.as_bytes())?;
    match rep.cut_at {
        Some(cut) if rep.cut_times > 0 && cut < body.len() => {
            s.write_all(&body[..cut])?;
            s.flush()?;
            // Die mid-blob: close without sending the rest.
            let _ = s.shutdown(std::net::Shutdown::Both);
            Ok(())
        }
        _ => s.write_all(body),
    }
}

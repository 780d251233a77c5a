//! An instance's output, as its keeper logged it (`<root>/<id>/log` and the
//! rotated `log.1` … `log.N`), in either keeper format (Docker json-file
//! lines or the CRI format; told apart line by line), read oldest first,
//! with `tail`, `since` and `follow` as `docker logs` / `kubectl logs` have
//! them. Following goes on across rotations: the file being read is held
//! open, read to its end once renamed, and the next file is found by inode,
//! so nothing written is skipped.

use std::collections::VecDeque;
use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rpaas_runtime::{Container, Status};
use serde::Serialize;

use crate::error::{Error, Result};
use crate::host::Host;

/// What [`Host::logs`] gives.
#[derive(Debug, Clone, Default)]
pub struct LogOptions {
    /// Only the last N lines already there (then what follows, if following).
    pub tail: Option<usize>,
    /// Keep reading new lines until the instance stops.
    pub follow: bool,
    /// Only lines logged at or after this time.
    pub since: Option<SystemTime>,
}

/// One line (or, for a line cut by the keeper, one piece of it: `partial`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct LogEntry {
    /// RFC 3339 UTC, as the keeper stamped it.
    pub time: String,
    /// "stdout" or "stderr".
    pub stream: String,
    /// The text, without its newline.
    pub log: String,
    /// Not the end of its line: the next entry of this stream continues it.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub partial: bool,
}

impl Host {
    /// The logged output of `instance` (any container id of the root).
    pub fn logs(&self, instance: &str, opts: LogOptions) -> Result<Logs> {
        rpaas_runtime::state::validate_id(instance)?;
        let dir = self.root().join(instance);
        if !dir.is_dir() {
            return Err(Error::NotFound {
                what: format!("instance {instance}"),
            });
        }
        Logs::open(self.root(), instance, opts)
    }
}

/// The log files of a container dir, oldest first (`log.N` … `log.1`, `log`).
fn files(dir: &Path) -> Vec<PathBuf> {
    let mut rotated: Vec<(u32, PathBuf)> = std::fs::read_dir(dir)
        .map(|rd| {
            rd.flatten()
                .filter_map(|e| {
                    let name = e.file_name().into_string().ok()?;
                    let n = name.strip_prefix("log.")?.parse::<u32>().ok()?;
                    Some((n, e.path()))
                })
                .collect()
        })
        .unwrap_or_default();
    rotated.sort_by_key(|r| std::cmp::Reverse(r.0));
    let mut out: Vec<PathBuf> = rotated.into_iter().map(|(_, p)| p).collect();
    out.push(dir.join("log"));
    out
}

/// An iterator of entries; with `follow`, it blocks for new ones and ends
/// once the instance has stopped and everything logged was given.
pub struct Logs {
    root: PathBuf,
    id: String,
    dir: PathBuf,
    opts: LogOptions,
    ready: VecDeque<LogEntry>,
    /// Following: the file being read, its inode, bytes not yet a whole line.
    cur: Option<(File, u64)>,
    partial: Vec<u8>,
    done: bool,
}

impl Logs {
    fn open(root: &Path, id: &str, opts: LogOptions) -> Result<Logs> {
        let dir = root.join(id);
        let mut l = Logs {
            root: root.to_path_buf(),
            id: id.to_string(),
            dir: dir.clone(),
            opts,
            ready: VecDeque::new(),
            cur: None,
            partial: Vec::new(),
            done: false,
        };
        // Open every file first, then read: a rotation meanwhile only renames
        // what is held open.
        let mut opened: Vec<(File, u64)> = Vec::new();
        for p in files(&dir) {
            match File::open(&p) {
                Ok(f) => {
                    let ino = f.metadata().map(|m| m.ino()).unwrap_or(0);
                    opened.push((f, ino));
                }
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(Error::io("open", p, e)),
            }
        }
        let last = opened.len().saturating_sub(1);
        for (i, (mut f, ino)) in opened.into_iter().enumerate() {
            let mut bytes = Vec::new();
            f.read_to_end(&mut bytes)
                .map_err(|e| Error::io("read", dir.join("log"), e))?;
            l.take_bytes(&bytes);
            if i == last {
                l.cur = Some((f, ino));
            }
        }
        if let Some(n) = l.opts.tail {
            while l.ready.len() > n {
                l.ready.pop_front();
            }
        }
        if !l.opts.follow {
            l.done = true;
            l.cur = None;
        }
        Ok(l)
    }

    /// Whole lines of `bytes` (after what was left from the last read).
    fn take_bytes(&mut self, bytes: &[u8]) {
        self.partial.extend_from_slice(bytes);
        let mut start = 0;
        while let Some(nl) = self.partial[start..].iter().position(|b| *b == b'\n') {
            let line = String::from_utf8_lossy(&self.partial[start..start + nl]).into_owned();
            start += nl + 1;
            for e in parse_line(&line) {
                if self.keep(&e) {
                    self.ready.push_back(e);
                }
            }
        }
        self.partial.drain(..start);
    }

    fn keep(&self, e: &LogEntry) -> bool {
        match (self.opts.since, parse_time(&e.time)) {
            (Some(since), Some(t)) => t >= since,
            _ => true,
        }
    }

    /// Following: read what is new; move on to the next file when the one
    /// held was rotated away; true when something came.
    fn poll(&mut self) -> Result<bool> {
        let Some((f, ino)) = self.cur.as_mut() else {
            // No log yet: wait for one.
            return Ok(match File::open(self.dir.join("log")) {
                Ok(f) => {
                    let ino = f.metadata().map(|m| m.ino()).unwrap_or(0);
                    self.cur = Some((f, ino));
                    true
                }
                Err(_) => false,
            });
        };
        let ino = *ino;
        let mut bytes = Vec::new();
        f.read_to_end(&mut bytes)
            .map_err(|e| Error::io("read", self.dir.join("log"), e))?;
        if !bytes.is_empty() {
            self.take_bytes(&bytes);
            return Ok(true);
        }
        let live = std::fs::metadata(self.dir.join("log"))
            .map(|m| m.ino())
            .ok();
        if live == Some(ino) || live.is_none() {
            return Ok(false);
        }
        // Rotated: ours is read to its end; the next file is the one after
        // ours (by inode) in oldest-first order, or the oldest if ours is gone.
        let list: Vec<(PathBuf, u64)> = files(&self.dir)
            .into_iter()
            .filter_map(|p| std::fs::metadata(&p).ok().map(|m| (p, m.ino())))
            .collect();
        let next = match list.iter().position(|(_, i)| *i == ino) {
            Some(k) => list.get(k + 1),
            None => list.first(),
        };
        let Some((p, _)) = next else { return Ok(false) };
        match File::open(p) {
            Ok(mut f) => {
                let ino = f.metadata().map(|m| m.ino()).unwrap_or(0);
                let _ = f.seek(SeekFrom::Start(0));
                // A line cut by a rotation does not happen (records are
                // written whole), but a half-read record is kept.
                self.cur = Some((f, ino));
                Ok(true)
            }
            Err(_) => Ok(false),
        }
    }

    fn stopped(&self) -> bool {
        match Container::load(&self.root, &self.id) {
            Ok(c) => c.status() == Status::Stopped,
            Err(_) => true,
        }
    }
}

impl Iterator for Logs {
    type Item = Result<LogEntry>;

    fn next(&mut self) -> Option<Result<LogEntry>> {
        loop {
            if let Some(e) = self.ready.pop_front() {
                return Some(Ok(e));
            }
            if self.done {
                return None;
            }
            // Seen stopped before the read: whatever it wrote is in the files.
            let stopped = self.stopped();
            match self.poll() {
                Ok(true) => continue,
                Ok(false) if stopped => {
                    self.done = true;
                }
                Ok(false) => std::thread::sleep(Duration::from_millis(100)),
                Err(e) => {
                    self.done = true;
                    return Some(Err(e));
                }
            }
        }
    }
}

/// One log file line, in either format: json-file records may hold several
/// lines (one read of the pipe) and end mid-line; CRI records are one line
/// or one piece of one.
pub fn parse_line(line: &str) -> Vec<LogEntry> {
    if line.starts_with('{') {
        let Ok(v) = serde_json::from_str::<serde_json::Value>(line) else {
            return Vec::new();
        };
        let time = v["time"].as_str().unwrap_or_default().to_string();
        let stream = v["stream"].as_str().unwrap_or("stdout").to_string();
        let text = v["log"].as_str().unwrap_or_default();
        let mut out = Vec::new();
        let mut rest = text;
        while !rest.is_empty() {
            let (piece, partial, next) = match rest.find('\n') {
                Some(i) => (&rest[..i], false, &rest[i + 1..]),
                None => (rest, true, ""),
            };
            out.push(LogEntry {
                time: time.clone(),
                stream: stream.clone(),
                log: piece.to_string(),
                partial,
            });
            rest = next;
        }
        return out;
    }
    parse_cri(line).into_iter().collect()
}

/// `<RFC3339Nano> <stream> <P|F> <content>`.
pub fn parse_cri(line: &str) -> Option<LogEntry> {
    let mut it = line.splitn(4, ' ');
    let time = it.next()?;
    let stream = it.next()?;
    let tag = it.next()?;
    let log = it.next().unwrap_or("");
    if parse_time(time).is_none() || !matches!(stream, "stdout" | "stderr") {
        return None;
    }
    let partial = match tag {
        "P" => true,
        "F" => false,
        _ => return None,
    };
    Some(LogEntry {
        time: time.to_string(),
        stream: stream.to_string(),
        log: log.to_string(),
        partial,
    })
}

/// RFC 3339 ("2026-01-02T03:04:05[.fraction](Z|±hh:mm)") to a time.
pub fn parse_time(s: &str) -> Option<SystemTime> {
    let b = s.as_bytes();
    if b.len() < 20 || b[4] != b'-' || b[7] != b'-' || !matches!(b[10], b'T' | b't' | b' ') {
        return None;
    }
    let num = |r: std::ops::Range<usize>| s.get(r)?.parse::<i64>().ok();
    let (y, mo, d) = (num(0..4)?, num(5..7)?, num(8..10)?);
    let (h, mi, se) = (num(11..13)?, num(14..16)?, num(17..19)?);
    if !(1..=12).contains(&mo) || !(1..=31).contains(&d) || h > 23 || mi > 59 || se > 60 {
        return None;
    }
    let mut rest = &s[19..];
    let mut nanos: u64 = 0;
    if let Some(frac) = rest.strip_prefix('.') {
        let digits = frac.bytes().take_while(u8::is_ascii_digit).count();
        if digits == 0 {
            return None;
        }
        for (i, c) in frac[..digits].bytes().enumerate() {
            if i < 9 {
                nanos = nanos * 10 + u64::from(c - b'0');
            }
        }
        for _ in digits..9 {
            nanos *= 10;
        }
        rest = &frac[digits..];
    }
    let offset = match rest {
        "Z" | "z" => 0,
        _ if rest.len() == 6 && (rest.starts_with('+') || rest.starts_with('-')) => {
            let oh: i64 = rest.get(1..3)?.parse().ok()?;
            let om: i64 = rest.get(4..6)?.parse().ok()?;
            let o = oh * 3600 + om * 60;
            if rest.starts_with('-') {
                -o
            } else {
                o
            }
        }
        _ => return None,
    };
    // Days from civil (Howard Hinnant's algorithm).
    let y = if mo <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (mo + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    let secs = days * 86_400 + h * 3600 + mi * 60 + se - offset;
    if secs < 0 {
        return None;
    }
    Some(UNIX_EPOCH + Duration::new(secs as u64, nanos as u32))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_round_trip_with_the_runtime_format() {
        let t = UNIX_EPOCH + Duration::new(1_790_000_000, 123_456_789);
        let s = rpaas_runtime::state::rfc3339(1_790_000_000, 123_456_789);
        assert_eq!(parse_time(&s), Some(t));
        assert_eq!(
            parse_time("2026-12-02T16:00:00+01:00"),
            parse_time("2026-12-02T15:00:00Z")
        );
        assert!(parse_time("2026-13-02T15:00:00Z").is_none());
        assert!(parse_time("yesterday").is_none());
    }

    #[test]
    fn both_formats() {
        let j = parse_line(
            r#"{"time":"2026-12-02T15:00:00.000000001Z","stream":"stderr","log":"a\nb"}"#,
        );
        assert_eq!(j.len(), 2);
        assert_eq!((j[0].log.as_str(), j[0].partial), ("a", false));
        assert_eq!((j[1].log.as_str(), j[1].partial), ("b", true));
        let c = parse_line("2026-12-02T15:00:00.000000001Z stdout P hello world");
        assert_eq!(c[0].log, "hello world");
        assert!(c[0].partial);
        assert_eq!(parse_line("2026-12-02T15:00:00Z stdout F ")[0].log, "");
        assert!(parse_line("garbage").is_empty());
    }
}

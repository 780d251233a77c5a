//! Reading and writing cgroup interface files.
//!
//! Every cgroup knob is one small file; a write is one `write(2)` whose errno is the kernel's
//! verdict on the value. These helpers do one open + one read/write per call (`write_each` keeps
//! its file open across calls) and turn failures
//! into [`Error::CgroupFile`] naming the spec field, the value and the host path, so a user sees
//! `linux.resources.memory.swappiness: write "200" to /sys/fs/cgroup/memory/x/memory.swappiness:
//! Invalid argument (os error 22)`.

use std::io::{ErrorKind, Write};
use std::path::{Path, PathBuf};

use crate::{Error, Result};

/// Writes `value` to `dir/file` in a single write (cgroup files reject partial writes).
pub(crate) fn write(dir: &Path, file: &str, value: &str, field: &str) -> Result<()> {
    write_each(dir, file, &mut None, value, field)
}

/// [`write`] for a file that takes one value per write(2), such as v1
/// `devices.allow`: opened at the first value and kept in `open`, so that
/// each further value costs its write alone.
pub(crate) fn write_each(
    dir: &Path,
    file: &str,
    open: &mut Option<std::fs::File>,
    value: &str,
    field: &str,
) -> Result<()> {
    let path = dir.join(file);
    // OpenOptions without create/truncate: cgroup files exist or the knob is not supported;
    // creating a regular file in cgroupfs is impossible anyway and O_TRUNC is meaningless.
    let res = match open {
        Some(f) => Ok(f),
        None => std::fs::OpenOptions::new()
            .write(true)
            .open(&path)
            .map(|f| open.insert(f)),
    }
    .and_then(|f| f.write_all(value.as_bytes()));
    res.map_err(|source| Error::CgroupFile {
        field: field.to_string(),
        op: format!("write {value:?} to"),
        file: path,
        source,
    })
}

/// Reads `dir/file` as a string (trailing newline kept; callers trim).
pub(crate) fn read(dir: &Path, file: &str, field: &str) -> Result<String> {
    let path = dir.join(file);
    std::fs::read_to_string(&path).map_err(|source| Error::CgroupFile {
        field: field.to_string(),
        op: "read".to_string(),
        file: path,
        source,
    })
}

/// Like [`read`] but `Ok(None)` when the file does not exist (controller or knob absent).
pub(crate) fn read_opt(dir: &Path, file: &str, field: &str) -> Result<Option<String>> {
    match read(dir, file, field) {
        Ok(s) => Ok(Some(s)),
        Err(Error::CgroupFile { source, .. }) if source.kind() == ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e),
    }
}

/// Parses a single number; "max" (v2) maps to `u64::MAX`.
pub(crate) fn parse_u64(text: &str, file: &Path, field: &str) -> Result<u64> {
    let t = text.trim();
    if t == "max" {
        return Ok(u64::MAX);
    }
    t.parse::<u64>()
        .map_err(|e| invalid(file, field, &format!("{t:?}: {e}")))
}

/// Reads an optional single-number file.
pub(crate) fn read_u64_opt(dir: &Path, file: &str, field: &str) -> Result<Option<u64>> {
    match read_opt(dir, file, field)? {
        Some(s) => Ok(Some(parse_u64(&s, &dir.join(file), field)?)),
        None => Ok(None),
    }
}

/// Iterates the `key value` lines of a flat-keyed file (memory.stat, cpu.stat, memory.events,
/// memory.oom_control), skipping lines that are not `name number`.
pub(crate) fn flat_keyed(text: &str) -> impl Iterator<Item = (&str, u64)> {
    text.lines().filter_map(|l| {
        let mut it = l.split_whitespace();
        let k = it.next()?;
        let v = it.next()?.parse::<u64>().ok()?;
        Some((k, v))
    })
}

/// An `InvalidData` error for a file whose content we could not parse.
pub(crate) fn invalid(file: &Path, field: &str, what: &str) -> Error {
    Error::CgroupFile {
        field: field.to_string(),
        op: "parse".to_string(),
        file: PathBuf::from(file),
        source: std::io::Error::new(ErrorKind::InvalidData, what.to_string()),
    }
}

/// Whether an error is the kernel's ENOENT for the file (knob not present).
pub(crate) fn is_not_found(e: &Error) -> bool {
    matches!(e, Error::CgroupFile { source, .. } if source.kind() == ErrorKind::NotFound)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flat_keyed_skips_garbage() {
        let v: Vec<_> = flat_keyed("a 1\nb x\n\nc 3 extra\n").collect();
        assert_eq!(v, vec![("a", 1), ("c", 3)]);
    }

    #[test]
    fn parse_max() {
        let p = Path::new("/x");
        assert_eq!(parse_u64("max\n", p, "f").unwrap(), u64::MAX);
        assert_eq!(parse_u64("42\n", p, "f").unwrap(), 42);
        let e = parse_u64("nope", p, "linux.resources.x").unwrap_err();
        assert!(e.to_string().contains("linux.resources.x"), "{e}");
    }

    #[test]
    fn write_error_names_field_file_and_errno() {
        let dir = tempfile::tempdir().unwrap();
        let e = write(dir.path(), "missing", "1", "linux.resources.pids.limit").unwrap_err();
        let chain = e.chain();
        assert!(chain.contains("linux.resources.pids.limit"), "{chain}");
        assert!(chain.contains("missing"), "{chain}");
        assert!(chain.contains("os error 2"), "{chain}");
        assert!(is_not_found(&e));
    }
}

//! Our own parser for the dm-thin status lines.
//!
//! Why not the `devicemapper` crate's: its thin-pool parser rejects the
//! `ignore_discard` word that our pools always show (the kernel prints it in
//! place of `discard_passdown`/`no_discard_passdown`), so it cannot read our
//! own pools. Format (Documentation/admin-guide/device-mapper/thin-provisioning.rst):
//! `<transaction id> <used meta>/<total meta> <used data>/<total data>
//!  <held metadata root> ro|rw|out_of_data_space [no_]discard_passdown|ignore_discard
//!  [error|queue]_if_no_space needs_check|- [metadata_low_watermark]`
//! or a single `Fail` / `Error` word.

use crate::{Error, Result};

/// The parts of a thin-pool status line that the snapshotter acts on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PoolStatus {
    pub transaction_id: u64,
    pub used_meta_blocks: u64,
    pub total_meta_blocks: u64,
    pub used_data_blocks: u64,
    pub total_data_blocks: u64,
    /// "rw", "ro" or "out_of_data_space".
    pub mode: String,
    /// True when the pool was created with `ignore_discard`.
    pub ignore_discard: bool,
    pub needs_check: bool,
}

impl PoolStatus {
    /// Percent of data blocks still free (0..=100).
    pub fn data_free_percent(&self) -> u64 {
        free_percent(self.used_data_blocks, self.total_data_blocks)
    }
    /// Percent of metadata blocks still free (0..=100).
    pub fn meta_free_percent(&self) -> u64 {
        free_percent(self.used_meta_blocks, self.total_meta_blocks)
    }
}

fn free_percent(used: u64, total: u64) -> u64 {
    if total == 0 {
        return 0;
    }
    total.saturating_sub(used).saturating_mul(100) / total
}

fn bad(pool: &str, line: &str, why: &str) -> Error {
    Error::Devmapper {
        what: format!("pool {pool} status"),
        reason: format!("{why} in {line:?}"),
    }
}

fn number(pool: &str, line: &str, field: &str, s: &str) -> Result<u64> {
    s.parse::<u64>()
        .map_err(|_| bad(pool, line, &format!("{field} is not a number ({s:?})")))
}

fn ratio(pool: &str, line: &str, field: &str, s: &str) -> Result<(u64, u64)> {
    let (used, total) = s
        .split_once('/')
        .ok_or_else(|| bad(pool, line, &format!("{field} is not used/total ({s:?})")))?;
    Ok((
        number(pool, line, field, used)?,
        number(pool, line, field, total)?,
    ))
}

/// Parse the params of a `thin-pool` status target; `pool` only names it in errors.
pub fn parse_pool_status(pool: &str, line: &str) -> Result<PoolStatus> {
    let f: Vec<&str> = line.split_whitespace().collect();
    match f.first() {
        Some(&"Fail") => return Err(bad(pool, line, "pool has failed")),
        Some(&"Error") => return Err(bad(pool, line, "kernel could not report status")),
        _ => {}
    }
    if f.len() < 8 {
        return Err(bad(pool, line, "fewer than 8 fields"));
    }
    let (used_meta_blocks, total_meta_blocks) = ratio(pool, line, "metadata usage", f[1])?;
    let (used_data_blocks, total_data_blocks) = ratio(pool, line, "data usage", f[2])?;
    let mode = f[4];
    if !matches!(mode, "rw" | "ro" | "out_of_data_space") {
        return Err(bad(pool, line, &format!("unknown mode {mode:?}")));
    }
    let discard = f[5];
    if !matches!(
        discard,
        "ignore_discard" | "discard_passdown" | "no_discard_passdown"
    ) {
        return Err(bad(
            pool,
            line,
            &format!("unknown discard word {discard:?}"),
        ));
    }
    Ok(PoolStatus {
        transaction_id: number(pool, line, "transaction id", f[0])?,
        used_meta_blocks,
        total_meta_blocks,
        used_data_blocks,
        total_data_blocks,
        mode: mode.to_string(),
        ignore_discard: discard == "ignore_discard",
        needs_check: f[7] == "needs_check",
    })
}

/// Sectors mapped by one thin device (`<nr mapped sectors> <highest mapped sector>`).
pub fn parse_thin_mapped(dev: &str, line: &str) -> Result<u64> {
    let first = line.split_whitespace().next().unwrap_or("");
    first.parse::<u64>().map_err(|_| Error::Devmapper {
        what: format!("thin device {dev} status"),
        reason: format!("mapped sectors is not a number in {line:?}"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_ignore_discard_line() {
        let s = parse_pool_status(
            "p",
            "7 181/4096 26/32768 - rw ignore_discard queue_if_no_space - 1024",
        )
        .unwrap();
        assert_eq!(s.transaction_id, 7);
        assert_eq!((s.used_meta_blocks, s.total_meta_blocks), (181, 4096));
        assert_eq!((s.used_data_blocks, s.total_data_blocks), (26, 32768));
        assert!(s.ignore_discard);
        assert!(!s.needs_check);
        assert_eq!(s.mode, "rw");
        assert_eq!(s.data_free_percent(), 99);
        assert_eq!(s.meta_free_percent(), 95);
    }

    #[test]
    fn parses_passdown_and_needs_check() {
        let s = parse_pool_status(
            "p",
            "0 10/100 90/100 - out_of_data_space discard_passdown error_if_no_space needs_check 80",
        )
        .unwrap();
        assert!(!s.ignore_discard);
        assert!(s.needs_check);
        assert_eq!(s.data_free_percent(), 10);
    }

    #[test]
    fn rejects_garbage_naming_the_pool() {
        for line in [
            "Fail",
            "Error",
            "1 2/3",
            "x 1/2 3/4 - rw ignore_discard q -",
            "1 1/2 3/4 - rw weird q -",
        ] {
            let e = parse_pool_status("rpaas-pool", line)
                .unwrap_err()
                .to_string();
            assert!(e.contains("rpaas-pool"), "{e}");
        }
    }

    #[test]
    fn thin_mapped() {
        assert_eq!(parse_thin_mapped("d", "2048 4095").unwrap(), 2048);
        assert!(parse_thin_mapped("d", "-").is_err());
    }
}

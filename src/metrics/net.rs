//! Per-interface counters of an instance's network namespace.
//!
//! `/proc/<pid>/net/dev` is the table of the network namespace that process
//! `<pid>` is in (procfs resolves `net/` through the reading task's view of
//! the target process), so reading it for the instance's init gives the
//! container's interfaces without entering its namespace (no setns, no
//! thread of ours ever changes namespace).

use serde::Serialize;

use crate::error::{Error, Result};

#[derive(Debug, Clone, Default, Serialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct NetInterface {
    pub name: String,
    pub rx_bytes: u64,
    pub rx_packets: u64,
    pub rx_errors: u64,
    pub rx_dropped: u64,
    pub tx_bytes: u64,
    pub tx_packets: u64,
    pub tx_errors: u64,
    pub tx_dropped: u64,
}

/// The interfaces of `pid`'s network namespace, loopback left out (as cAdvisor does).
pub fn read(pid: i32) -> Result<Vec<NetInterface>> {
    let path = format!("/proc/{pid}/net/dev");
    let text = std::fs::read_to_string(&path).map_err(|e| Error::io("read", &path, e))?;
    Ok(parse(&text)
        .into_iter()
        .filter(|i| i.name != "lo")
        .collect())
}

/// The two header lines, then `name: rx(bytes packets errs drop fifo frame
/// compressed multicast) tx(bytes packets errs drop fifo colls carrier
/// compressed)`.
pub fn parse(text: &str) -> Vec<NetInterface> {
    text.lines()
        .filter_map(|l| {
            let (name, rest) = l.split_once(':')?;
            let v: Vec<u64> = rest
                .split_whitespace()
                .map(|x| x.parse().ok())
                .collect::<Option<Vec<u64>>>()?;
            if v.len() < 16 {
                return None;
            }
            Some(NetInterface {
                name: name.trim().to_string(),
                rx_bytes: v[0],
                rx_packets: v[1],
                rx_errors: v[2],
                rx_dropped: v[3],
                tx_bytes: v[8],
                tx_packets: v[9],
                tx_errors: v[10],
                tx_dropped: v[11],
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    #[test]
    fn parses_proc_net_dev() {
        let t = "Inter-|   Receive                                                |  Transmit\n face |bytes    packets errs drop fifo frame compressed multicast|bytes    packets errs drop fifo colls carrier compressed\n    lo:     100       2    0    0    0     0          0         0      100       2    0    0    0     0       0          0\n  eth0: 5000 40 1 2 0 0 0 0 7000 50 3 4 0 0 0 0\n";
        let v = super::parse(t);
        assert_eq!(v.len(), 2);
        assert_eq!(
            (
                v[1].name.as_str(),
                v[1].rx_bytes,
                v[1].rx_dropped,
                v[1].tx_packets,
                v[1].tx_errors
            ),
            ("eth0", 5000, 2, 50, 3)
        );
    }
}

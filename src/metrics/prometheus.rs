//! The Prometheus text exposition format (version 0.0.4) of a sweep, with
//! cAdvisor's metric names, types and units (seconds, bytes), so dashboards
//! and alerts written for kubelet/cAdvisor read it unchanged. Every series is
//! labelled `app`, `instance`, `ip`, `numa_node` ("" when unknown), plus
//! `cpu`, `interface` or `device` where cAdvisor has them.

use std::fmt::Write;

use super::InstanceMetrics;

/// The samples of one family for one instance: extra labels and value.
type Samples = Vec<(Vec<(&'static str, String)>, f64)>;

/// One metric family: name, type, help, and how to get its samples.
struct Family {
    name: &'static str,
    kind: &'static str,
    help: &'static str,
    samples: fn(&InstanceMetrics, &mut Samples),
}

fn secs(ns: u64) -> f64 {
    ns as f64 / 1e9
}

macro_rules! fam {
    ($name:literal, $kind:literal, $help:literal, |$m:ident, $out:ident| $body:expr) => {
        Family {
            name: $name,
            kind: $kind,
            help: $help,
            samples: |$m: &InstanceMetrics, $out: &mut Samples| $body,
        }
    };
}

fn one(out: &mut Samples, v: Option<f64>) {
    if let Some(v) = v {
        out.push((Vec::new(), v));
    }
}

fn families() -> Vec<Family> {
    vec![
        fam!(
            "container_cpu_usage_seconds_total",
            "counter",
            "Cumulative cpu time consumed in seconds.",
            |m, out| if let Some(c) = &m.cpu {
                if c.per_cpu_ns.is_empty() {
                    out.push((vec![("cpu", "total".to_string())], secs(c.usage_ns)));
                } else {
                    for (i, ns) in c.per_cpu_ns.iter().enumerate() {
                        out.push((vec![("cpu", format!("cpu{i:02}"))], secs(*ns)));
                    }
                }
            }
        ),
        fam!(
            "container_cpu_user_seconds_total",
            "counter",
            "Cumulative user cpu time consumed in seconds.",
            |m, out| one(out, m.cpu.as_ref().map(|c| secs(c.user_ns)))
        ),
        fam!(
            "container_cpu_system_seconds_total",
            "counter",
            "Cumulative system cpu time consumed in seconds.",
            |m, out| one(out, m.cpu.as_ref().map(|c| secs(c.system_ns)))
        ),
        fam!(
            "container_cpu_cfs_periods_total",
            "counter",
            "Number of elapsed enforcement period intervals.",
            |m, out| one(out, m.cpu.as_ref().map(|c| c.periods as f64))
        ),
        fam!(
            "container_cpu_cfs_throttled_periods_total",
            "counter",
            "Number of throttled period intervals.",
            |m, out| one(out, m.cpu.as_ref().map(|c| c.throttled_periods as f64))
        ),
        fam!(
            "container_cpu_cfs_throttled_seconds_total",
            "counter",
            "Total time duration the container has been throttled.",
            |m, out| one(out, m.cpu.as_ref().map(|c| secs(c.throttled_ns)))
        ),
        fam!(
            "container_memory_usage_bytes",
            "gauge",
            "Current memory usage in bytes, including all memory regardless of when it was accessed.",
            |m, out| one(out, m.memory.as_ref().map(|x| x.usage as f64))
        ),
        fam!(
            "container_memory_working_set_bytes",
            "gauge",
            "Current working set in bytes.",
            |m, out| one(out, m.memory.as_ref().map(|x| x.working_set as f64))
        ),
        fam!(
            "container_memory_rss",
            "gauge",
            "Size of RSS in bytes.",
            |m, out| one(out, m.memory.as_ref().map(|x| x.rss as f64))
        ),
        fam!(
            "container_memory_cache",
            "gauge",
            "Number of bytes of page cache memory.",
            |m, out| one(out, m.memory.as_ref().map(|x| x.cache as f64))
        ),
        fam!(
            "container_memory_swap",
            "gauge",
            "Container swap usage in bytes.",
            |m, out| one(out, m.memory.as_ref().and_then(|x| x.swap).map(|v| v as f64))
        ),
        fam!(
            "container_memory_failcnt",
            "counter",
            "Number of memory usage hits limits.",
            |m, out| one(out, m.memory.as_ref().map(|x| x.failcnt as f64))
        ),
        fam!(
            "container_spec_memory_limit_bytes",
            "gauge",
            "Memory limit for the container (0 = unlimited).",
            |m, out| one(
                out,
                m.memory.as_ref().map(|x| x.limit.unwrap_or(0) as f64)
            )
        ),
        fam!(
            "container_oom_events_total",
            "counter",
            "Count of out of memory events observed for the container.",
            |m, out| one(out, m.memory.as_ref().map(|x| x.oom_kills as f64))
        ),
        fam!(
            "container_pressure_cpu_waiting_seconds_total",
            "counter",
            "Total time duration tasks in the container have waited due to CPU congestion.",
            |m, out| one(out, stall(m, |p| p.cpu.as_ref()).map(|s| secs(s.waiting_ns)))
        ),
        fam!(
            "container_pressure_cpu_stalled_seconds_total",
            "counter",
            "Total time duration no tasks in the container could make progress due to CPU congestion.",
            |m, out| one(out, stall(m, |p| p.cpu.as_ref()).map(|s| secs(s.stalled_ns)))
        ),
        fam!(
            "container_pressure_memory_waiting_seconds_total",
            "counter",
            "Total time duration tasks in the container have waited due to memory congestion.",
            |m, out| one(out, stall(m, |p| p.memory.as_ref()).map(|s| secs(s.waiting_ns)))
        ),
        fam!(
            "container_pressure_memory_stalled_seconds_total",
            "counter",
            "Total time duration no tasks in the container could make progress due to memory congestion.",
            |m, out| one(out, stall(m, |p| p.memory.as_ref()).map(|s| secs(s.stalled_ns)))
        ),
        fam!(
            "container_pressure_io_waiting_seconds_total",
            "counter",
            "Total time duration tasks in the container have waited due to IO congestion.",
            |m, out| one(out, stall(m, |p| p.io.as_ref()).map(|s| secs(s.waiting_ns)))
        ),
        fam!(
            "container_pressure_io_stalled_seconds_total",
            "counter",
            "Total time duration no tasks in the container could make progress due to IO congestion.",
            |m, out| one(out, stall(m, |p| p.io.as_ref()).map(|s| secs(s.stalled_ns)))
        ),
        fam!(
            "container_network_receive_bytes_total",
            "counter",
            "Cumulative count of bytes received.",
            |m, out| net(m, out, |i| i.rx_bytes)
        ),
        fam!(
            "container_network_receive_packets_total",
            "counter",
            "Cumulative count of packets received.",
            |m, out| net(m, out, |i| i.rx_packets)
        ),
        fam!(
            "container_network_receive_errors_total",
            "counter",
            "Cumulative count of errors encountered while receiving.",
            |m, out| net(m, out, |i| i.rx_errors)
        ),
        fam!(
            "container_network_receive_packets_dropped_total",
            "counter",
            "Cumulative count of packets dropped while receiving.",
            |m, out| net(m, out, |i| i.rx_dropped)
        ),
        fam!(
            "container_network_transmit_bytes_total",
            "counter",
            "Cumulative count of bytes transmitted.",
            |m, out| net(m, out, |i| i.tx_bytes)
        ),
        fam!(
            "container_network_transmit_packets_total",
            "counter",
            "Cumulative count of packets transmitted.",
            |m, out| net(m, out, |i| i.tx_packets)
        ),
        fam!(
            "container_network_transmit_errors_total",
            "counter",
            "Cumulative count of errors encountered while transmitting.",
            |m, out| net(m, out, |i| i.tx_errors)
        ),
        fam!(
            "container_network_transmit_packets_dropped_total",
            "counter",
            "Cumulative count of packets dropped while transmitting.",
            |m, out| net(m, out, |i| i.tx_dropped)
        ),
        fam!(
            "container_processes",
            "gauge",
            "Number of processes running inside the container.",
            |m, out| one(out, m.processes.as_ref().map(|p| p.processes as f64))
        ),
        fam!(
            "container_threads",
            "gauge",
            "Number of threads running inside the container.",
            |m, out| one(out, m.processes.as_ref().map(|p| p.threads as f64))
        ),
        fam!(
            "container_threads_max",
            "gauge",
            "Maximum number of threads allowed inside the container, infinity if value is zero.",
            |m, out| one(
                out,
                m.pids.as_ref().map(|p| p.limit.unwrap_or(0) as f64)
            )
        ),
        fam!(
            "container_file_descriptors",
            "gauge",
            "Number of open file descriptors for the container.",
            |m, out| one(out, m.processes.as_ref().map(|p| p.file_descriptors as f64))
        ),
        fam!(
            "container_fs_usage_bytes",
            "gauge",
            "Number of bytes that are consumed by the container's writable layer.",
            |m, out| fs(m, out, |f| Some(f.usage_bytes))
        ),
        fam!(
            "container_fs_limit_bytes",
            "gauge",
            "Number of bytes of the filesystem holding the container's writable layer.",
            |m, out| fs(m, out, |f| f.capacity_bytes)
        ),
        fam!(
            "container_fs_inodes_total",
            "gauge",
            "Number of inodes of the filesystem holding the container's writable layer.",
            |m, out| fs(m, out, |f| f.inodes_total)
        ),
        fam!(
            "container_fs_inodes_free",
            "gauge",
            "Number of available inodes of the filesystem holding the container's writable layer.",
            |m, out| fs(m, out, |f| f.inodes_free)
        ),
        fam!(
            "container_fs_inodes_usage",
            "gauge",
            "Number of inodes that are consumed by the container's writable layer (overlay only).",
            |m, out| fs(m, out, |f| Some(f.inodes_used).filter(|_| f.driver == "overlay"))
        ),
        fam!(
            "container_fs_reads_bytes_total",
            "counter",
            "Cumulative count of bytes read.",
            |m, out| io(m, out, |d| d.read_bytes)
        ),
        fam!(
            "container_fs_writes_bytes_total",
            "counter",
            "Cumulative count of bytes written.",
            |m, out| io(m, out, |d| d.write_bytes)
        ),
        fam!(
            "container_fs_reads_total",
            "counter",
            "Cumulative count of reads completed.",
            |m, out| io(m, out, |d| d.reads)
        ),
        fam!(
            "container_fs_writes_total",
            "counter",
            "Cumulative count of writes completed.",
            |m, out| io(m, out, |d| d.writes)
        ),
    ]
}

fn stall<'a>(
    m: &'a InstanceMetrics,
    f: impl Fn(&'a super::PressureMetrics) -> Option<&'a super::cgroup::Stall>,
) -> Option<&'a super::cgroup::Stall> {
    m.pressure.as_ref().and_then(f)
}

fn net(m: &InstanceMetrics, out: &mut Samples, f: fn(&super::NetInterface) -> u64) {
    for i in &m.network {
        out.push((vec![("interface", i.name.clone())], f(i) as f64));
    }
}

fn fs(m: &InstanceMetrics, out: &mut Samples, f: fn(&super::FsMetrics) -> Option<u64>) {
    if let Some(x) = &m.fs {
        if let Some(v) = f(x) {
            out.push((vec![("device", x.device.clone())], v as f64));
        }
    }
}

fn io(m: &InstanceMetrics, out: &mut Samples, f: fn(&super::IoDevice) -> u64) {
    for d in &m.io {
        out.push((vec![("device", d.device.clone())], f(d) as f64));
    }
}

/// A label value escaped as the format wants (backslash, quote, newline).
fn escape(v: &str) -> String {
    let mut s = String::with_capacity(v.len());
    for ch in v.chars() {
        match ch {
            '\\' => s.push_str("\\\\"),
            '"' => s.push_str("\\\""),
            '\n' => s.push_str("\\n"),
            c => s.push(c),
        }
    }
    s
}

fn value(v: f64) -> String {
    if v.is_finite() && v.fract() == 0.0 && v.abs() < 1e15 {
        format!("{}", v as i64)
    } else {
        format!("{v}")
    }
}

/// The exposition of `metrics`: each family once (HELP, TYPE, then its
/// series for every instance); families without any sample are left out.
pub fn render(metrics: &[InstanceMetrics]) -> String {
    let mut text = String::new();
    let mut samples = Vec::new();
    for fam in families() {
        let mut lines = String::new();
        for m in metrics {
            samples.clear();
            (fam.samples)(m, &mut samples);
            for (extra, v) in &samples {
                let mut labels = vec![
                    ("app", m.app.clone()),
                    ("instance", m.instance.clone()),
                    ("ip", m.ip.clone().unwrap_or_default()),
                    (
                        "numa_node",
                        m.numa_node.map(|n| n.to_string()).unwrap_or_default(),
                    ),
                ];
                labels.extend(extra.iter().cloned());
                let l: Vec<String> = labels
                    .iter()
                    .map(|(k, v)| format!("{k}=\"{}\"", escape(v)))
                    .collect();
                let _ = writeln!(lines, "{}{{{}}} {}", fam.name, l.join(","), value(*v));
            }
        }
        if !lines.is_empty() {
            let _ = writeln!(text, "# HELP {} {}", fam.name, fam.help);
            let _ = writeln!(text, "# TYPE {} {}", fam.name, fam.kind);
            text.push_str(&lines);
        }
    }
    text
}

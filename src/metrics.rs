//! Counters for `/metrics`, rendered in the Prometheus text format.

use std::fmt::Write;
use std::sync::atomic::{AtomicU64, Ordering};

/// Process-wide counters and gauges. Shared by reference; every field is updated with relaxed
/// atomics.
#[derive(Debug, Default)]
pub struct Metrics {
    /// Open mobile connections.
    pub mobile_connections: AtomicU64,
    /// Open web/dashboard connections.
    pub dashboard_connections: AtomicU64,
    /// Store writes waiting to be sent, as sampled at the last scrape.
    pub store_write_backlog: AtomicU64,
    /// Sockets not upgraded (HTTP, upgrades under way), as sampled at the last scrape.
    pub pending_connections: AtomicU64,
    /// WebSocket upgrades refused for a bad token.
    pub auth_failures: AtomicU64,
    /// HEARTBEAT frames received.
    pub heartbeats: AtomicU64,
    /// Heartbeats written to the store.
    pub heartbeat_writes: AtomicU64,
    /// Frames of other types, dropped.
    pub frames_dropped: AtomicU64,
    /// Frames refused with a PRESENCE_ERROR.
    pub frames_refused: AtomicU64,
    /// PRESENCE_UPDATE frames sent.
    pub updates_sent: AtomicU64,
    /// Dashboards closed because they fell behind.
    pub slow_consumers_closed: AtomicU64,
    /// Connections closed for not answering pings.
    pub ping_timeouts: AtomicU64,
    /// Store operations that failed.
    pub store_errors: AtomicU64,
    /// Bulk status requests answered.
    pub bulk_requests: AtomicU64,
    /// Sockets closed at accept: too many not upgraded.
    pub sockets_refused: AtomicU64,
    /// Connections closed for sending over their rate for too long.
    pub floods_closed: AtomicU64,
    /// Talk frames put in a connection's mailbox on this router.
    pub talk_delivered: AtomicU64,
    /// Talk frames not delivered: the connection's mailbox was full.
    pub talk_mailbox_full: AtomicU64,
    /// STARTs answered Busy.
    pub floors_busy: AtomicU64,
    /// AUDIO frames dropped: the sender did not hold the floor.
    pub audio_without_floor: AtomicU64,
    /// From a presence change's decision to its frame written to a dashboard.
    pub update_delivery: Histogram,
    /// What a connection waited for each store operation.
    pub store_operation: Histogram,
}

/// Upper bounds of the latency buckets, in seconds.
const BUCKETS: [f64; 12] = [
    0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
];

/// A latency histogram with fixed buckets (Prometheus' cumulative `le` form when rendered).
#[derive(Debug, Default)]
pub struct Histogram {
    /// Observations per bucket (not cumulative), and one past the last bound.
    counts: [AtomicU64; BUCKETS.len() + 1],
    /// The sum of all observations, in microseconds.
    sum_micros: AtomicU64,
}

impl Histogram {
    /// Counts one observation.
    pub fn observe(&self, took: std::time::Duration) {
        let seconds = took.as_secs_f64();
        let at = BUCKETS
            .iter()
            .position(|bound| seconds <= *bound)
            .unwrap_or(BUCKETS.len());
        self.counts[at].fetch_add(1, Ordering::Relaxed);
        let micros = u64::try_from(took.as_micros()).unwrap_or(u64::MAX);
        self.sum_micros.fetch_add(micros, Ordering::Relaxed);
    }

    fn render(&self, out: &mut String, name: &str, help: &str) {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} histogram");
        let mut cumulative = 0;
        for (at, count) in self.counts.iter().enumerate() {
            cumulative += count.load(Ordering::Relaxed);
            match BUCKETS.get(at) {
                Some(bound) => {
                    let _ = writeln!(out, "{name}_bucket{{le=\"{bound}\"}} {cumulative}");
                }
                None => {
                    let _ = writeln!(out, "{name}_bucket{{le=\"+Inf\"}} {cumulative}");
                }
            }
        }
        let sum = self.sum_micros.load(Ordering::Relaxed) as f64 / 1e6;
        let _ = writeln!(out, "{name}_sum {sum}\n{name}_count {cumulative}");
    }
}

/// Adds one to a counter.
pub fn inc(counter: &AtomicU64) {
    counter.fetch_add(1, Ordering::Relaxed);
}

/// Subtracts one from a gauge.
pub fn dec(counter: &AtomicU64) {
    counter.fetch_sub(1, Ordering::Relaxed);
}

impl Metrics {
    /// Open WebSocket connections of every role.
    pub fn connections(&self) -> u64 {
        self.mobile_connections.load(Ordering::Relaxed)
            + self.dashboard_connections.load(Ordering::Relaxed)
    }

    /// The Prometheus text exposition of every metric.
    pub fn render(&self) -> String {
        let mut out = String::with_capacity(2048);
        let series: [(&str, &str, &str, &AtomicU64); 20] = [
            (
                "presence_connections_mobile",
                "gauge",
                "Open mobile connections.",
                &self.mobile_connections,
            ),
            (
                "presence_connections_dashboard",
                "gauge",
                "Open web/dashboard connections.",
                &self.dashboard_connections,
            ),
            (
                "presence_connections_pending",
                "gauge",
                "Open sockets that are not WebSockets (HTTP requests, upgrades under way, idle clients), this scrape's included.",
                &self.pending_connections,
            ),
            (
                "presence_store_write_backlog",
                "gauge",
                "Store writes waiting to be sent (Redis store; a backlog that grows means the writer cannot keep up).",
                &self.store_write_backlog,
            ),
            (
                "presence_auth_failures_total",
                "counter",
                "Upgrades refused for a bad token.",
                &self.auth_failures,
            ),
            (
                "presence_heartbeats_total",
                "counter",
                "HEARTBEAT frames received.",
                &self.heartbeats,
            ),
            (
                "presence_heartbeat_writes_total",
                "counter",
                "Heartbeats written to the store.",
                &self.heartbeat_writes,
            ),
            (
                "presence_frames_dropped_total",
                "counter",
                "Frames of other types, dropped.",
                &self.frames_dropped,
            ),
            (
                "presence_frames_refused_total",
                "counter",
                "Frames answered with PRESENCE_ERROR.",
                &self.frames_refused,
            ),
            (
                "presence_updates_sent_total",
                "counter",
                "PRESENCE_UPDATE frames sent.",
                &self.updates_sent,
            ),
            (
                "presence_slow_consumers_closed_total",
                "counter",
                "Dashboards closed for falling behind.",
                &self.slow_consumers_closed,
            ),
            (
                "presence_ping_timeouts_total",
                "counter",
                "Connections closed for not answering pings.",
                &self.ping_timeouts,
            ),
            (
                "presence_store_errors_total",
                "counter",
                "Store operations that failed.",
                &self.store_errors,
            ),
            (
                "presence_bulk_requests_total",
                "counter",
                "Bulk status requests answered.",
                &self.bulk_requests,
            ),
            (
                "presence_sockets_refused_total",
                "counter",
                "Sockets closed at accept because PRESENCE_MAX_PENDING_CONNECTIONS were not upgraded.",
                &self.sockets_refused,
            ),
            (
                "presence_floods_closed_total",
                "counter",
                "WebSockets closed with 1008 for sending over PRESENCE_MAX_FRAMES_PER_SECOND or PRESENCE_MAX_BYTES_PER_SECOND for 5 s.",
                &self.floods_closed,
            ),
            (
                "presence_talk_delivered_total",
                "counter",
                "Talk frames (START, AUDIO, STOP, TEXT...) handed to a connection of this router.",
                &self.talk_delivered,
            ),
            (
                "presence_talk_mailbox_full_total",
                "counter",
                "Talk frames a connection of this router missed because it was not reading fast enough.",
                &self.talk_mailbox_full,
            ),
            (
                "presence_floors_busy_total",
                "counter",
                "STARTs answered Busy: another user held the group's floor.",
                &self.floors_busy,
            ),
            (
                "presence_audio_without_floor_total",
                "counter",
                "AUDIO frames dropped because their sender did not hold the group's floor.",
                &self.audio_without_floor,
            ),
        ];
        for (name, kind, help, value) in series {
            // Writing to a String cannot fail.
            let _ = writeln!(
                out,
                "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {}",
                value.load(Ordering::Relaxed)
            );
        }
        let _ = writeln!(
            out,
            "# HELP presence_build_info The running version.\n# TYPE presence_build_info gauge\npresence_build_info{{version=\"{}\"}} 1",
            env!("CARGO_PKG_VERSION")
        );
        self.update_delivery.render(
            &mut out,
            "presence_update_delivery_seconds",
            "From a presence change's decision to its PRESENCE_UPDATE written to a dashboard (millisecond clock).",
        );
        self.store_operation.render(
            &mut out,
            "presence_store_operation_seconds",
            "What a connection waited for a store operation (Redis: floors, snapshots and lookups are round trips; presence writes are queued).",
        );
        process(&mut out);
        out
    }
}

/// The process's own figures, read from `/proc/self` (left out where there is none): resident
/// memory, open files and CPU time, under the names Prometheus clients give them.
fn process(out: &mut String) {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let rss_kib = status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|rest| {
            rest.trim()
                .trim_end_matches("kB")
                .trim()
                .parse::<u64>()
                .ok()
        });
    let open_files = std::fs::read_dir("/proc/self/fd")
        .map(|dir| dir.count())
        .ok();
    // utime and stime, fields 14 and 15 of /proc/self/stat (after the parenthesised name), in
    // clock ticks of 1/100 s on Linux.
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    let cpu_ticks = stat.rsplit_once(')').and_then(|(_, rest)| {
        let fields: Vec<&str> = rest.split_whitespace().collect();
        let utime = fields.get(11)?.parse::<u64>().ok()?;
        let stime = fields.get(12)?.parse::<u64>().ok()?;
        Some(utime + stime)
    });
    let series = [
        (
            "presence_process_resident_memory_bytes",
            "gauge",
            "Resident memory of the router process.",
            rss_kib.map(|kib| (kib * 1024) as f64),
        ),
        (
            "presence_process_open_fds",
            "gauge",
            "Open file descriptors (sockets included) of the router process.",
            open_files.map(|n| n as f64),
        ),
        (
            "presence_process_cpu_seconds_total",
            "counter",
            "CPU time of the router process, user and system.",
            cpu_ticks.map(|ticks| ticks as f64 / 100.0),
        ),
    ];
    for (name, kind, help, value) in series {
        if let Some(value) = value {
            let _ = writeln!(
                out,
                "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {value}"
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A metric's value in `text`, when it is there once.
    fn value(text: &str, name: &str) -> Option<f64> {
        let mut found = text
            .lines()
            .filter(|line| !line.starts_with('#'))
            .filter_map(|line| line.strip_prefix(name)?.strip_prefix(' '))
            .map(|v| v.parse::<f64>().ok());
        let first = found.next()?;
        found.next().is_none().then_some(first).flatten()
    }

    #[test]
    fn the_process_reports_its_memory_files_cpu_and_version() {
        let text = Metrics::default().render();
        assert!(value(&text, "presence_process_resident_memory_bytes").is_some_and(|v| v > 1e6));
        assert!(value(&text, "presence_process_open_fds").is_some_and(|v| v >= 3.0));
        assert!(value(&text, "presence_process_cpu_seconds_total").is_some_and(|v| v >= 0.0));
        let version = format!(
            "presence_build_info{{version=\"{}\"}}",
            env!("CARGO_PKG_VERSION")
        );
        assert_eq!(value(&text, &version), Some(1.0));
        assert_eq!(value(&text, "presence_talk_delivered_total"), Some(0.0));
    }

    #[test]
    fn histograms_count_each_observation_in_its_bucket_and_above() {
        let metrics = Metrics::default();
        for ms in [0, 3, 3, 40, 5_000] {
            metrics
                .store_operation
                .observe(std::time::Duration::from_millis(ms));
        }
        let text = metrics.render();
        let bucket = |le: &str| {
            value(
                &text,
                &format!("presence_store_operation_seconds_bucket{{le=\"{le}\"}}"),
            )
        };
        assert_eq!(bucket("0.0005"), Some(1.0));
        assert_eq!(bucket("0.005"), Some(3.0));
        assert_eq!(bucket("0.05"), Some(4.0));
        assert_eq!(bucket("2.5"), Some(4.0));
        assert_eq!(bucket("+Inf"), Some(5.0));
        assert_eq!(
            value(&text, "presence_store_operation_seconds_count"),
            Some(5.0)
        );
        assert_eq!(
            value(&text, "presence_store_operation_seconds_sum"),
            Some(5.046)
        );
        assert_eq!(
            value(&text, "presence_update_delivery_seconds_count"),
            Some(0.0)
        );
    }
}

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
        out
    }
}

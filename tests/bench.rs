//! presence-bench at a small size, against the real router: it runs, connects everyone and
//! reports sane figures. (The figures themselves belong in BENCHMARKS.md, not in a test.)

mod common;

use common::{RouterProcess, SECRET};
use std::process::Command;

#[test]
fn the_load_generator_runs_and_reports_sane_figures() {
    let router = RouterProcess::start(&[
        ("PRESENCE_OFFLINE_DEBOUNCE", "0"),
        ("PRESENCE_TTL", "2s"),
        ("PRESENCE_HEARTBEAT_MIN_INTERVAL", "500ms"),
    ]);
    let json = std::env::temp_dir().join(format!("presence-bench-{}.json", std::process::id()));
    let out = Command::new(env!("CARGO_BIN_EXE_presence-bench"))
        .env("JWT_SECRET", SECRET)
        .args([
            "--url",
            &router.ws_url(),
            "--handsets",
            "200",
            "--dashboards",
            "3",
            "--processes",
            "2",
        ])
        .args([
            "--duration",
            "2s",
            "--heartbeat-interval",
            "500ms",
            "--probes",
            "10",
        ])
        .args([
            "--expiry-probes",
            "2",
            "--ttl",
            "2s",
            "--bulk-duration",
            "1s",
            "--bulk-concurrency",
            "2",
        ])
        .args(["--router-pid", &router.child.id().to_string(), "--json"])
        .arg(&json)
        .output()
        .expect("presence-bench runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let table = String::from_utf8_lossy(&out.stdout);
    assert!(table.contains("new authenticated connections/s"), "{table}");
    let r: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&json).expect("JSON written")).expect("JSON");
    let _ = std::fs::remove_file(&json);
    assert_eq!(
        (r["connected"].as_u64(), r["failed"].as_u64()),
        (Some(200), Some(0)),
        "{r}"
    );
    assert!(r["connects_per_s"].as_f64().is_some_and(|v| v > 0.0), "{r}");
    assert!(
        r["heartbeats_received_per_s"]
            .as_f64()
            .is_some_and(|v| v > 100.0),
        "{r}"
    );
    assert_eq!(
        r["connect_to_update"]["samples"], 30,
        "10 probes × 3 dashboards: {r}"
    );
    assert_eq!(r["close_to_update"]["samples"], 30, "{r}");
    assert_eq!(r["expiry_lag"]["samples"], 6, "{r}");
    assert!(
        r["expiry_lag"]["max_ms"]
            .as_f64()
            .is_some_and(|v| v < 1_000.0),
        "{r}"
    );
    assert!(
        r["bulk_requests_per_s"].as_f64().is_some_and(|v| v > 0.0),
        "{r}"
    );
    assert!(
        r["router_rss_kib_after"].as_u64().is_some_and(|v| v > 0),
        "{r}"
    );
}

#[test]
fn the_talk_mode_delivers_every_frame_and_reports_sane_figures() {
    let router = RouterProcess::start(&[]);
    let json = std::env::temp_dir().join(format!("presence-talk-{}.json", std::process::id()));
    let out = Command::new(env!("CARGO_BIN_EXE_presence-bench"))
        .env("JWT_SECRET", SECRET)
        .args(["talk", "--url", &router.ws_url()])
        .args(["--groups", "3", "--members", "5", "--talkers", "2"])
        .args(["--frame-rate", "50", "--frame-bytes", "60"])
        .args(["--duration", "1s", "--drain", "500ms", "--settle", "100ms"])
        .args(["--processes", "2", "--memberships", "2"])
        .args(["--router-pid", &router.child.id().to_string(), "--json"])
        .arg(&json)
        .output()
        .expect("presence-bench talk runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let table = String::from_utf8_lossy(&out.stdout);
    assert!(table.contains("frames delivered/s"), "{table}");
    let r: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&json).expect("JSON written")).expect("JSON");
    let _ = std::fs::remove_file(&json);
    assert_eq!(
        (r["connected"].as_u64(), r["registered"].as_u64()),
        (Some(15), Some(15)),
        "{r}"
    );
    assert_eq!(
        (r["talks_started"].as_u64(), r["stops_acked"].as_u64()),
        (Some(2), Some(2)),
        "{r}"
    );
    // 2 talkers × 50 frames, each to the 4 other members of its group.
    assert_eq!(r["frames_sent"], 100, "{r}");
    assert_eq!(r["frames_expected"], 400, "{r}");
    assert_eq!(r["frames_delivered"], 400, "every frame arrives: {r}");
    assert_eq!(r["frames_lost"], 0, "{r}");
    assert_eq!(r["latency"]["samples"], 400, "{r}");
    assert_eq!(
        (r["starts_heard"].as_u64(), r["stops_heard"].as_u64()),
        (Some(8), Some(8)),
        "{r}"
    );
    assert_eq!(
        (r["out_of_order"].as_u64(), r["errors"].as_u64()),
        (Some(0), Some(0)),
        "{r}"
    );
    let p50 = r["latency"]["p50_ms"].as_f64().expect("p50");
    let p99 = r["latency"]["p99_ms"].as_f64().expect("p99");
    let max = r["latency"]["max_ms"].as_f64().expect("max");
    assert!(
        0.0 < p50 && p50 <= p99 && p99 <= max && max < 1_000.0,
        "{r}"
    );
    assert!(
        r["delivered_per_s"].as_f64().is_some_and(|v| v > 0.0),
        "{r}"
    );
    assert!(
        r["router_rss_kib_connected"]
            .as_u64()
            .is_some_and(|v| v > 0),
        "{r}"
    );
}

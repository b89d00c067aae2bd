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

//! What an operator sees when Redis is misconfigured, away or behind TLS: the real binary, a
//! redis-server of the test's own, the log lines and `/health` / `/ready`.

mod common;

use common::binary::{get, get_until};
use common::{free_port, redis_server, RedisServer, RouterProcess, PATIENCE};
use presence_router::auth::Role;
use std::path::Path;
use std::process::{Child, Command, Stdio};

/// A WARN line naming `needle`.
fn warn_with(needle: &str) -> impl Fn(&str) -> bool + '_ {
    move |line| line.contains("WARN") && line.contains(needle)
}

/// A router that cannot reach Redis serves anyway: the log names the address (not the
/// password) and the cause, `/health` stays 200 and says degraded, `/ready` is 503 with the
/// reason; once Redis comes, the recovery is logged at INFO and `/ready` turns 200.
#[test]
fn an_unreachable_redis_is_named_with_its_cause_and_ready_waits_for_it() {
    let port = free_port();
    let url = format!("redis://:hunter2@127.0.0.1:{port}");
    let mut router = RouterProcess::start(&[("REDIS_URL", &url)]);
    let line = router
        .log
        .wait_for(PATIENCE, warn_with("cannot reach Redis"))
        .expect("a WARN for the unreachable Redis");
    assert!(line.contains(&format!("127.0.0.1:{port}")), "{line}");
    assert!(line.contains("Connection refused"), "{line}");

    let (status, health) = get(&router.addr, "/health");
    assert_eq!(status, 200, "{health}");
    assert!(health.contains(r#""status":"degraded""#), "{health}");
    let (status, ready) = get(&router.addr, "/ready");
    assert_eq!(status, 503, "{ready}");
    assert!(
        ready.contains(r#""reason":"Redis is not connected""#),
        "{ready}"
    );

    let _redis = RedisServer::start_on(port, &["--requirepass", "hunter2"]);
    assert!(router
        .log
        .wait_for(PATIENCE, |l| l.contains("INFO")
            && l.contains("Redis is reachable again"))
        .is_some());
    let (status, ready) = get_until(&router.addr, "/ready", 200, PATIENCE);
    assert_eq!(status, 200, "{ready}");
    assert!(
        !router.log.text().contains("hunter2"),
        "the password is logged"
    );
}

/// A refused password is a WARN with Redis's own answer, and never shows the password.
#[test]
fn a_refused_password_is_logged_with_the_cause() {
    let redis = RedisServer::start(&["--requirepass", "the-right-one"]);
    let url = format!("redis://:not-the-password@127.0.0.1:{}", redis.port);
    let mut router = RouterProcess::start(&[("REDIS_URL", &url)]);
    let line = router
        .log
        .wait_for(PATIENCE, warn_with("WRONGPASS"))
        .expect("a WARN with the refusal");
    assert!(
        line.contains(&format!("127.0.0.1:{}", redis.port)),
        "{line}"
    );
    assert_eq!(get(&router.addr, "/ready").0, 503);
    assert!(!router.log.text().contains("not-the-password"));
}

/// Redis going away mid-run is a WARN at once, its return an INFO, and `/ready` follows both.
#[test]
fn a_lost_connection_and_its_recovery_are_logged() {
    let mut redis = RedisServer::start(&[]);
    let mut router = RouterProcess::start(&[("REDIS_URL", &redis.url())]);
    assert_eq!(get_until(&router.addr, "/ready", 200, PATIENCE).0, 200);
    redis.stop();
    let line = router
        .log
        .wait_for(PATIENCE, warn_with("lost the connection to Redis"))
        .expect("a WARN for the lost connection");
    assert!(
        line.contains(&format!("127.0.0.1:{}", redis.port)),
        "{line}"
    );
    assert_eq!(get_until(&router.addr, "/ready", 503, PATIENCE).0, 503);
    redis.restart();
    assert!(router
        .log
        .wait_for(PATIENCE, |l| l.contains("INFO")
            && l.contains("Redis is reachable again"))
        .is_some());
    assert_eq!(get_until(&router.addr, "/ready", 200, PATIENCE).0, 200);
}

/// A redis-server that speaks only TLS on `port`; killed on drop.
struct TlsRedis(Child);

impl TlsRedis {
    fn start(dir: &Path, port: u16) -> TlsRedis {
        let mut child = Command::new(redis_server())
            .args(["--port", "0"])
            .args(common::redis_server::LOOPBACK_NOTHING_KEPT)
            .args(["--tls-port", &port.to_string(), "--tls-auth-clients", "no"])
            .args([
                "--tls-cert-file",
                "redis.crt",
                "--tls-key-file",
                "redis.key",
                "--tls-ca-cert-file",
                "ca.crt",
            ])
            .current_dir(dir)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server starts");
        let stdout = child.stdout.take().expect("piped");
        let mut log = common::binary::Log::read(stdout);
        assert!(
            log.wait_for(PATIENCE, |l| l.contains("Ready to accept connections"))
                .is_some(),
            "TLS redis-server did not start (is it built with TLS?):\n{}",
            log.text()
        );
        TlsRedis(child)
    }
}

impl Drop for TlsRedis {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// `rediss://` works: with the server's CA in `SSL_CERT_FILE` the router is ready and a handset
/// reaches a dashboard through the TLS Redis; without it, the log says the certificate is not
/// trusted and `/ready` stays 503.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rediss_urls_speak_tls_to_redis() {
    let dir = std::env::temp_dir().join(format!("presence-tls-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    common::tls::make_certificates(&dir, "redis");
    let port = free_port();
    let _redis = TlsRedis::start(&dir, port);
    let url = format!("rediss://127.0.0.1:{port}");
    let ca = dir.join("ca.crt");
    let router = RouterProcess::start(&[
        ("REDIS_URL", &url),
        ("SSL_CERT_FILE", ca.to_str().expect("utf-8 path")),
        ("PRESENCE_OFFLINE_DEBOUNCE", "0"),
    ]);
    assert_eq!(get_until(&router.addr, "/ready", 200, PATIENCE).0, 200);

    let mut dashboard = router.client("dispatcher", Role::Dashboard).await;
    let _snapshot = dashboard.next_frame().await;
    let phone = router.client("driver-1", Role::Mobile).await;
    let online = dashboard.next_update().await;
    assert_eq!(
        (online["userId"].as_str(), online["status"].as_str()),
        (Some("driver-1"), Some("online"))
    );
    drop(phone);

    let mut untrusting = RouterProcess::start(&[("REDIS_URL", &url)]);
    let line = untrusting
        .log
        .wait_for(PATIENCE, warn_with("cannot reach Redis"))
        .expect("a WARN for the refused certificate");
    assert!(line.to_lowercase().contains("certificate"), "{line}");
    assert_eq!(get(&untrusting.addr, "/ready").0, 503);
    let _ = std::fs::remove_dir_all(&dir);
}

/// Writes the router cannot send show in `/metrics` as a backlog, which drains once Redis is back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_write_backlog_shows_in_metrics() {
    let mut redis = RedisServer::start(&[]);
    let router = RouterProcess::start(&[
        ("REDIS_URL", &redis.url()),
        ("PRESENCE_HEARTBEAT_MIN_INTERVAL", "0"),
    ]);
    assert_eq!(get_until(&router.addr, "/ready", 200, PATIENCE).0, 200);
    redis.stop();
    assert_eq!(get_until(&router.addr, "/ready", 503, PATIENCE).0, 503);
    let mut phone = router.client("driver-1", Role::Mobile).await;
    for _ in 0..200 {
        phone.heartbeat("driver-1").await;
    }
    let backlog = |metrics: &str| -> u64 {
        metrics
            .lines()
            .find_map(|l| l.strip_prefix("presence_store_write_backlog "))
            .and_then(|v| v.trim().parse().ok())
            .expect("the backlog gauge")
    };
    let deadline = std::time::Instant::now() + PATIENCE;
    while backlog(&get(&router.addr, "/metrics").1) < 200 {
        assert!(std::time::Instant::now() < deadline, "no backlog shown");
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    redis.restart();
    assert_eq!(get_until(&router.addr, "/ready", 200, PATIENCE).0, 200);
    let deadline = std::time::Instant::now() + PATIENCE;
    while backlog(&get(&router.addr, "/metrics").1) > 0 {
        assert!(
            std::time::Instant::now() < deadline,
            "the backlog never drained"
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}

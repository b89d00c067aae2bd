//! Several routers on one Redis (a redis-server of the test's own): every dashboard sees the same
//! truth, each change once, and no router's death leaves a ghost.

mod common;

use common::{bulk, no_debounce, token, Client, RedisServer, Router, RouterProcess, Seen};
use presence_router::auth::Role;
use serde_json::json;
use std::time::{Duration, Instant};

async fn router(
    redis: &RedisServer,
    tweak: impl FnOnce(&mut presence_router::config::Args),
) -> Router {
    Router::on_redis(redis, tweak).await
}

/// A handset on one router is seen, once, by a dashboard on another.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_mobile_on_a_is_seen_once_by_a_dashboard_on_b() {
    let redis = RedisServer::start(&[]);
    let a = router(&redis, |_| {}).await;
    let b = router(&redis, |_| {}).await;
    let (mut dashboard, _) = Client::dashboard(&b, "dispatcher").await;
    let _phone = Client::mobile(&a, "driver-1", "phone-1").await;
    let update = dashboard.next_update().await;
    assert_eq!(
        (
            update["userId"].as_str(),
            update["status"].as_str(),
            update["deviceId"].as_str(),
            update["version"].as_u64()
        ),
        (
            Some("driver-1"),
            Some("online"),
            Some("phone-1"),
            update["timestamp"].as_u64()
        )
    );
    dashboard.quiet_for(Duration::from_millis(500)).await;
    let (_late, snapshot) = Client::dashboard(&a, "late").await;
    assert_eq!(snapshot["users"][0]["userId"], "driver-1");
}

/// With three routers each change reaches each dashboard exactly once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_routers_publish_each_change_once() {
    let redis = RedisServer::start(&[]);
    let routers = [
        router(&redis, no_debounce).await,
        router(&redis, no_debounce).await,
        router(&redis, no_debounce).await,
    ];
    let mut dashboards = Vec::new();
    for (i, r) in routers.iter().enumerate() {
        dashboards.push(Client::dashboard(r, &format!("dispatcher-{i}")).await.0);
    }
    let phone = Client::mobile(&routers[0], "driver-1", "phone").await;
    for d in &mut dashboards {
        assert_eq!(d.next_update().await["status"], "online");
    }
    phone.close().await;
    for d in &mut dashboards {
        assert_eq!(d.next_update().await["status"], "offline");
    }
    for d in &mut dashboards {
        d.quiet_for(Duration::from_millis(300)).await;
    }
}

/// A user with a phone on one router and a tablet on another is offline only after both leave.
/// (With a debounce, as in production: with none, the phone's leave on one router may land
/// before the tablet's connect on the other.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn multi_device_holds_across_routers() {
    let redis = RedisServer::start(&[]);
    let short_debounce = |a: &mut presence_router::config::Args| {
        a.presence_offline_debounce = Some("1s".into());
    };
    let a = router(&redis, short_debounce).await;
    let b = router(&redis, short_debounce).await;
    let (mut dashboard, _) = Client::dashboard(&b, "dispatcher").await;
    let phone = Client::mobile(&a, "driver-1", "phone").await;
    let online = dashboard.next_update().await;
    assert_eq!(online["version"], online["timestamp"]);
    let tablet = Client::mobile(&b, "driver-1", "tablet").await;
    phone.close().await;
    let _marker = Client::mobile(&a, "driver-2", "phone").await;
    assert_eq!(
        dashboard.next_update().await["userId"],
        "driver-2",
        "nothing about driver-1 first"
    );
    tablet.close().await;
    let offline = dashboard.next_update().await;
    assert_eq!(
        (offline["userId"].as_str(), offline["status"].as_str()),
        (Some("driver-1"), Some("offline"))
    );
}

/// A router killed without any shutdown leaves no ghost: its users go offline on the other
/// routers' dashboards within the TTL (+1 s).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_router_leaves_no_ghost() {
    let redis = RedisServer::start(&[]);
    let url = redis.url();
    let mut a = RouterProcess::start(&[
        ("REDIS_URL", &url),
        ("PRESENCE_TTL", "2s"),
        ("PRESENCE_HEARTBEAT_MIN_INTERVAL", "500ms"),
    ]);
    let b = router(&redis, |a| {
        a.presence_ttl = Some("2s".into());
        a.presence_heartbeat_min_interval = Some("500ms".into());
    })
    .await;
    let (mut dashboard, _) = Client::dashboard(&b, "dispatcher").await;
    let _phone = a.client("driver-1", Role::Mobile).await;
    assert_eq!(dashboard.next_update().await["status"], "online");

    a.kill();
    let killed = Instant::now();
    let offline = dashboard.next_update().await;
    assert_eq!(
        (offline["userId"].as_str(), offline["status"].as_str()),
        (Some("driver-1"), Some("offline"))
    );
    assert!(
        killed.elapsed() <= Duration::from_secs(3),
        "offline {:?} after the kill",
        killed.elapsed()
    );
}

/// An expiry that happens while no router is running is still reported by the next one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_expiry_is_not_lost_while_no_router_runs() {
    let redis = RedisServer::start(&["--notify-keyspace-events", ""]);
    let url = redis.url();
    let mut a = RouterProcess::start(&[
        ("REDIS_URL", &url),
        ("PRESENCE_TTL", "1s"),
        ("PRESENCE_HEARTBEAT_MIN_INTERVAL", "200ms"),
    ]);
    let phone = a.client("driver-1", Role::Mobile).await;
    while redis
        .command(&["EXISTS", "presence:user:driver-1"])
        .as_deref()
        != Some("1")
    {
        tokio::task::yield_now().await;
    }
    a.kill();
    drop(phone);
    while redis
        .command(&["EXISTS", "presence:user:driver-1"])
        .as_deref()
        != Some("0")
    {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(
        redis
            .command(&["HGET", "presence:meta:driver-1", "status"])
            .as_deref(),
        Some("online"),
        "nobody has processed it yet"
    );

    let b = router(&redis, |_| {}).await;
    let (mut dashboard, snapshot) = Client::dashboard(&b, "dispatcher").await;
    // A snapshot shows what the records hold (a late heartbeat may still keep a due user
    // online); a user whose expiry is due is then reported offline within a sweep.
    if snapshot["users"] != json!([]) {
        assert_eq!(snapshot["users"][0]["userId"], "driver-1");
        let offline = dashboard
            .next_within(Duration::from_secs(1))
            .await
            .expect("the offline update follows within a second");
        let Seen::Frame(frame) = offline else {
            panic!("closed instead of the offline update");
        };
        assert_eq!(
            (frame[4]["userId"].as_str(), frame[4]["status"].as_str()),
            (Some("driver-1"), Some("offline"))
        );
    }
    let deadline = Instant::now() + Duration::from_secs(5);
    while redis
        .command(&["HGET", "presence:meta:driver-1", "status"])
        .as_deref()
        != Some("offline")
    {
        assert!(
            Instant::now() < deadline,
            "the sweeper never reported the expiry"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Keyspace notifications refused (CONFIG disabled): expiry still arrives, through the sweeper.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expiry_arrives_without_keyspace_notifications() {
    let redis = RedisServer::start(&["--rename-command", "CONFIG", ""]);
    let r = router(&redis, |a| {
        a.presence_ttl = Some("1s".into());
        a.presence_heartbeat_min_interval = Some("200ms".into());
    })
    .await;
    let (mut dashboard, _) = Client::dashboard(&r, "dispatcher").await;
    let _silent = Client::mobile(&r, "driver-1", "phone").await;
    assert_eq!(dashboard.next_update().await["status"], "online");
    let online_at = Instant::now();
    assert_eq!(dashboard.next_update().await["status"], "offline");
    assert!(
        online_at.elapsed() <= Duration::from_secs(2),
        "offline {:?} after going online",
        online_at.elapsed()
    );
}

/// The router adds `E` and `x` to notify-keyspace-events and keeps the flags already set.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keyspace_flags_are_merged_not_replaced() {
    let redis = RedisServer::start(&["--notify-keyspace-events", "Kg"]);
    let _r = router(&redis, |_| {}).await;
    let flags = redis
        .command(&["CONFIG", "GET", "notify-keyspace-events"])
        .unwrap_or_default();
    let flags = flags
        .split_whitespace()
        .nth(1)
        .unwrap_or_default()
        .to_owned();
    for flag in ['K', 'g', 'E', 'x'] {
        assert!(flags.contains(flag), "{flag} missing from {flags:?}");
    }
}

/// Redis stopped and started again, empty: sockets stay up, health says degraded meanwhile, and
/// the state is rebuilt from the live connections.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_state_is_rebuilt_after_redis_restarts() {
    let mut redis = RedisServer::start(&[]);
    let r = router(&redis, |_| {}).await;
    let (mut dashboard, _) = Client::dashboard(&r, "dispatcher").await;
    let mut phone = Client::mobile(&r, "driver-1", "phone").await;
    assert_eq!(dashboard.next_update().await["status"], "online");

    redis.stop();
    let health = || async {
        common::http_raw(&r, "GET /health HTTP/1.1", b"")
            .await
            .json()["status"]
            .clone()
    };
    while health().await != "degraded" {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    phone.heartbeat("driver-1").await;
    assert!(
        phone
            .next_within(Duration::from_millis(300))
            .await
            .is_none(),
        "no error reaches the handset"
    );

    redis.restart();
    while health().await != "ok" {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // The dashboard resyncs: a fresh snapshot, then whatever the rebuild published after it.
    let mut online_again = false;
    while !online_again {
        match dashboard.next().await {
            Seen::Frame(frame) if frame[1] == 32 => {
                online_again = frame[4]["users"]
                    .as_array()
                    .is_some_and(|u| u.iter().any(|u| u["userId"] == "driver-1"));
            }
            Seen::Frame(frame) => {
                online_again = frame[4]["userId"] == "driver-1" && frame[4]["status"] == "online"
            }
            Seen::Closed(code) => panic!("dashboard closed ({code:?})"),
        }
    }
    assert_eq!(common::status_of(&r, "driver-1").await, "online");
}

/// The bulk API answers through Redis, and the seed's troubleshooting commands still work.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bulk_status_and_seed_keys_through_redis() {
    let redis = RedisServer::start(&[]);
    let r = router(&redis, |_| {}).await;
    let _a = Client::mobile(&r, "123", "phone").await;
    let _b = Client::mobile(&r, "driver-b", "tablet").await;
    while common::status_of(&r, "driver-b").await != "online"
        || common::status_of(&r, "123").await != "online"
    {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let mut ids: Vec<serde_json::Value> = (0..98).map(|i| json!(format!("nobody-{i}"))).collect();
    ids.push(json!(123));
    ids.push(json!("driver-b"));
    let reply = bulk(
        &r,
        Some(&token("ops", Role::Web)),
        &json!({ "userIds": ids }).to_string(),
    )
    .await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    let users = reply.json()["users"].as_array().cloned().expect("users");
    assert_eq!(users.len(), 100);
    assert_eq!(users[98]["userId"], 123);
    assert_eq!(
        (users[98]["status"].as_str(), users[98]["deviceId"].as_str()),
        (Some("online"), Some("phone"))
    );
    assert_eq!(users[99]["status"], "online");
    assert_eq!(
        users[0],
        json!({"userId": "nobody-0", "status": "offline", "lastSeen": 0})
    );

    let keys = redis
        .command(&["KEYS", "presence:user:*"])
        .unwrap_or_default();
    assert!(
        keys.contains("presence:user:123") && keys.contains("presence:user:driver-b"),
        "{keys}"
    );
    let ttl: i64 = redis
        .command(&["TTL", "presence:user:123"])
        .and_then(|t| t.parse().ok())
        .unwrap_or(-3);
    assert!((1..=60).contains(&ttl), "TTL {ttl}");
    let health = common::http_raw(&r, "GET /health HTTP/1.1", b"")
        .await
        .json();
    assert_eq!(
        (health["status"].as_str(), health["store"].as_str()),
        (Some("ok"), Some("redis"))
    );
}

/// A leave that Redis could not take at once (writes paused) is sent again, so the user goes
/// offline seconds later rather than a whole TTL later.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_leave_that_failed_is_sent_again() {
    let redis = RedisServer::start(&[]);
    let r = router(&redis, no_debounce).await;
    let (mut dashboard, _) = Client::dashboard(&r, "dispatcher").await;
    let phone = Client::mobile(&r, "driver-1", "phone").await;
    assert_eq!(dashboard.next_update().await["status"], "online");

    assert_eq!(
        redis
            .command(&["CLIENT", "PAUSE", "3000", "WRITE"])
            .as_deref(),
        Some("OK")
    );
    let closed = Instant::now();
    phone.close().await;
    let offline = dashboard.next_update().await;
    assert_eq!(offline["status"], "offline");
    assert!(
        closed.elapsed() < Duration::from_secs(10),
        "not a TTL (60 s) later: {:?}",
        closed.elapsed()
    );
}

/// Two deployments on one Redis, each under its own `REDIS_KEY_PREFIX`, do not see each other.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn key_prefixes_keep_deployments_apart() {
    let redis = RedisServer::start(&[]);
    let fleet_a = router(&redis, |a| a.redis_key_prefix = Some("fleet-a:".into())).await;
    let fleet_b = router(&redis, |a| a.redis_key_prefix = Some("fleet-b:".into())).await;
    let (mut dashboard_b, _) = Client::dashboard(&fleet_b, "dispatcher-b").await;
    let _phone = Client::mobile(&fleet_a, "driver-1", "phone").await;
    while common::status_of(&fleet_a, "driver-1").await != "online" {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(common::status_of(&fleet_b, "driver-1").await, "offline");
    assert_eq!(
        redis
            .command(&["EXISTS", "fleet-a:user:driver-1"])
            .as_deref(),
        Some("1")
    );
    assert_eq!(
        redis
            .command(&["EXISTS", "presence:user:driver-1"])
            .as_deref(),
        Some("0")
    );
    dashboard_b.quiet_for(Duration::from_millis(300)).await;
}

/// A connection whose record Redis lost without a trace of it (a connect dropped from a full
/// queue, a Redis back from an old save: the epoch survives, nothing is restored) comes back
/// with its next heartbeat.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_live_connection_unknown_to_redis_is_registered_by_its_heartbeat() {
    let redis = RedisServer::start(&[]);
    let r = router(&redis, |a| {
        a.presence_heartbeat_min_interval = Some("0".into());
        a.presence_offline_debounce = Some("0".into());
    })
    .await;
    let mut phone = Client::mobile(&r, "driver-1", "phone").await;
    while common::status_of(&r, "driver-1").await != "online" {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    redis.command(&["DEL", "presence:meta:driver-1", "presence:user:driver-1"]);
    assert_eq!(common::status_of(&r, "driver-1").await, "offline");
    phone.heartbeat("driver-1").await;
    let deadline = Instant::now() + Duration::from_secs(10);
    while common::status_of(&r, "driver-1").await != "online" {
        assert!(
            Instant::now() < deadline,
            "the heartbeat did not bring it back"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

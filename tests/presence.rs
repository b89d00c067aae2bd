//! Presence as a dashboard sees it, over real sockets: online, offline, debounce, multi-device,
//! TTL and versions.

mod common;

use common::{status_of, Client, Router};
use serde_json::json;
use std::time::Duration;
use tokio::time::Instant;

fn ms(text: &str) -> Option<String> {
    Some(text.to_owned())
}

/// A mobile connecting is announced to a dashboard that was already watching.
#[tokio::test]
async fn a_mobile_connecting_is_announced_to_dashboards() {
    let router = Router::start(|_| {}).await;
    let (mut dashboard, snapshot) = Client::dashboard(&router, "dispatcher").await;
    assert_eq!(snapshot["totalOnline"], 0);
    assert_eq!(snapshot["users"], json!([]));

    let _phone = Client::mobile(&router, "driver-1", "phone-1").await;
    let update = dashboard.next_update().await;
    assert_eq!(update["userId"], "driver-1");
    assert_eq!(update["status"], "online");
    assert_eq!(update["type"], "presence_update");
    assert_eq!(update["deviceId"], "phone-1");
    assert_eq!(
        update["version"], update["timestamp"],
        "a first version is the time of the change"
    );
    assert!(update["lastSeen"]
        .as_u64()
        .is_some_and(|t| t > 1_600_000_000_000));
    assert!(update["timestamp"].as_u64().is_some());
    router.stop().await;
}

/// A dashboard connecting later learns who is online from its snapshot.
#[tokio::test]
async fn the_snapshot_lists_the_users_online() {
    let router = Router::start(|_| {}).await;
    let (mut watcher, _) = Client::dashboard(&router, "watcher").await;
    let _a = Client::mobile(&router, "driver-a", "phone-a").await;
    let _b = Client::connect(
        &router,
        &common::token("driver-b", presence_router::auth::Role::Mobile),
        None,
    )
    .await;
    watcher.next_update().await;
    watcher.next_update().await;

    let (_dashboard, snapshot) = Client::dashboard(&router, "dispatcher").await;
    assert_eq!(snapshot["totalOnline"], 2);
    let users = snapshot["users"].as_array().expect("users");
    assert_eq!(users[0]["userId"], "driver-a");
    assert_eq!(users[0]["deviceId"], "phone-a");
    assert_eq!(users[0]["version"], users[0]["lastSeen"]);
    assert_eq!(users[1]["userId"], "driver-b");
    assert!(
        users[1].get("deviceId").is_none(),
        "no deviceId rather than undefined: {}",
        users[1]
    );
    assert!(snapshot["timestamp"].as_u64().is_some());
    router.stop().await;
}

/// Heartbeats keep a user online well past the TTL.
#[tokio::test]
async fn heartbeats_keep_a_user_online_past_the_ttl() {
    let router = Router::start(|a| {
        a.presence_ttl = ms("1s");
        a.presence_heartbeat_min_interval = ms("200ms");
    })
    .await;
    let (mut dashboard, _) = Client::dashboard(&router, "dispatcher").await;
    let mut phone = Client::mobile(&router, "driver-1", "phone").await;
    assert_eq!(dashboard.next_update().await["status"], "online");

    let until = Instant::now() + Duration::from_millis(2_500);
    while Instant::now() < until {
        phone.heartbeat("driver-1").await;
        dashboard.quiet_for(Duration::from_millis(300)).await;
    }
    assert_eq!(status_of(&router, "driver-1").await, "online");
    router.stop().await;
}

/// A handset that goes silent is offline after the TTL even though its socket is open; its next
/// heartbeat brings it back.
#[tokio::test(start_paused = true)]
async fn silence_expires_the_user_with_the_socket_still_open() {
    let router = Router::start(|a| {
        a.presence_ttl = ms("1s");
        a.presence_heartbeat_min_interval = ms("100ms");
    })
    .await;
    let (mut dashboard, _) = Client::dashboard(&router, "dispatcher").await;
    let started = Instant::now();
    let mut phone = Client::mobile(&router, "driver-1", "phone").await;
    let online = dashboard.next_update().await["version"].as_u64();

    let offline = dashboard.next_update().await;
    assert!(
        started.elapsed() >= Duration::from_secs(1),
        "not before the TTL"
    );
    assert_eq!(offline["status"], "offline");
    assert!(offline["version"].as_u64() > online);

    phone.heartbeat("driver-1").await;
    let back = dashboard.next_update().await;
    assert_eq!(back["status"], "online");
    assert!(back["version"].as_u64() > offline["version"].as_u64());
    router.stop().await;
}

/// Closing the last socket reports the user offline once the debounce has passed.
#[tokio::test(start_paused = true)]
async fn closing_goes_offline_after_the_debounce() {
    let router = Router::start(|a| a.presence_offline_debounce = ms("400ms")).await;
    let (mut dashboard, _) = Client::dashboard(&router, "dispatcher").await;
    let phone = Client::mobile(&router, "driver-1", "phone").await;
    dashboard.next_update().await;

    let closed_at = Instant::now();
    phone.close().await;
    let offline = dashboard.next_update().await;
    assert_eq!(offline["status"], "offline");
    assert!(
        closed_at.elapsed() >= Duration::from_millis(400),
        "not before the debounce"
    );
    assert_eq!(status_of(&router, "driver-1").await, "offline");
    router.stop().await;
}

/// A reconnect inside the debounce window is invisible: no offline, no online.
#[tokio::test(start_paused = true)]
async fn a_reconnect_inside_the_debounce_produces_no_update() {
    let router = Router::start(|a| a.presence_offline_debounce = ms("1s")).await;
    let (mut dashboard, _) = Client::dashboard(&router, "dispatcher").await;
    let phone = Client::mobile(&router, "driver-1", "phone").await;
    dashboard.next_update().await;

    phone.close().await;
    let _again = Client::mobile(&router, "driver-1", "phone").await;
    dashboard.quiet_for(Duration::from_millis(1_500)).await;
    let _marker = Client::mobile(&router, "driver-2", "phone").await;
    assert_eq!(
        dashboard.next_update().await["userId"],
        "driver-2",
        "nothing about driver-1 came first"
    );
    router.stop().await;
}

/// With two devices the user stays online until both have left.
#[tokio::test(start_paused = true)]
async fn two_devices_go_offline_only_after_both_leave() {
    let router = Router::start(|a| a.presence_offline_debounce = ms("0")).await;
    let (mut dashboard, _) = Client::dashboard(&router, "dispatcher").await;
    let phone = Client::mobile(&router, "driver-1", "phone").await;
    let tablet = Client::mobile(&router, "driver-1", "tablet").await;
    assert_eq!(dashboard.next_update().await["status"], "online");

    phone.close().await;
    let _marker = Client::mobile(&router, "driver-2", "phone").await;
    assert_eq!(dashboard.next_update().await["userId"], "driver-2");
    assert_eq!(status_of(&router, "driver-1").await, "online");

    tablet.close().await;
    let offline = dashboard.next_update().await;
    assert_eq!(
        (offline["userId"].as_str(), offline["status"].as_str()),
        (Some("driver-1"), Some("offline"))
    );
    router.stop().await;
}

/// Every change of a user carries a higher version than the one before.
#[tokio::test]
async fn versions_strictly_increase_per_user() {
    let router = Router::start(|a| a.presence_offline_debounce = ms("0")).await;
    let (mut dashboard, _) = Client::dashboard(&router, "dispatcher").await;
    let mut versions = Vec::new();
    for _ in 0..3 {
        let phone = Client::mobile(&router, "driver-1", "phone").await;
        versions.push(dashboard.next_update().await["version"].as_u64());
        phone.close().await;
        versions.push(dashboard.next_update().await["version"].as_u64());
    }
    let versions: Vec<u64> = versions.into_iter().flatten().collect();
    assert_eq!(versions.len(), 6);
    assert!(versions.windows(2).all(|w| w[0] < w[1]), "{versions:?}");

    let _phone = Client::mobile(&router, "driver-1", "phone").await;
    let last = dashboard.next_update().await["version"].clone();
    let (_late, snapshot) = Client::dashboard(&router, "late").await;
    assert_eq!(
        snapshot["users"][0]["version"], last,
        "the snapshot carries the version it reflects"
    );
    router.stop().await;
}

/// Mobiles never receive presence frames.
#[tokio::test]
async fn mobiles_get_no_presence_frames() {
    let router = Router::start(|a| a.presence_offline_debounce = ms("0")).await;
    let mut phone = Client::mobile(&router, "driver-1", "phone").await;
    let (mut dashboard, _) = Client::dashboard(&router, "dispatcher").await;
    let other = Client::mobile(&router, "driver-2", "phone").await;
    dashboard.next_update().await;
    other.close().await;
    dashboard.next_update().await;
    phone.quiet_for(Duration::from_millis(200)).await;
    router.stop().await;
}

/// Reads `client` for `window`, answering the router's pings meanwhile (a handset gets no frames).
async fn answering_pings(client: &mut Client, window: Duration) {
    if let Some(seen) = client.next_within(window).await {
        panic!("a handset got {seen:?}");
    }
}

/// A router whose TTL is 1 s and which pings every 300 ms (a pong due within 250 ms), under
/// `PRESENCE_LIVENESS=liveness`.
async fn pinging_router(liveness: &str) -> Router {
    let liveness = liveness.to_owned();
    Router::start(move |a| {
        a.presence_ttl = ms("1s");
        a.presence_heartbeat_min_interval = ms("100ms");
        a.presence_ping_interval = ms("300ms");
        a.presence_ping_timeout = ms("250ms");
        a.presence_liveness = Some(liveness);
    })
    .await
}

/// The VoicePing Android SDK never sends HEARTBEAT: its pongs keep it online.
#[tokio::test]
async fn a_handset_that_never_heartbeats_lives_by_its_pongs() {
    let router = pinging_router("auto").await;
    let (mut dashboard, _) = Client::dashboard(&router, "dispatcher").await;
    let mut phone = Client::mobile(&router, "driver-1", "android").await;
    assert_eq!(dashboard.next_update().await["status"], "online");
    tokio::join!(
        answering_pings(&mut phone, Duration::from_millis(2_500)),
        dashboard.quiet_for(Duration::from_millis(2_500)),
    );
    assert_eq!(status_of(&router, "driver-1").await, "online");
    router.stop().await;
}

/// Once a handset has sent a HEARTBEAT, only HEARTBEATs keep it online; and with
/// `PRESENCE_LIVENESS=heartbeat`, pongs never do.
#[tokio::test]
async fn heartbeating_handsets_and_the_strict_rule_are_held_to_heartbeats() {
    for (liveness, beats_first) in [("auto", true), ("heartbeat", false)] {
        let router = pinging_router(liveness).await;
        let (mut dashboard, _) = Client::dashboard(&router, "dispatcher").await;
        let mut phone = Client::mobile(&router, "driver-1", "phone").await;
        assert_eq!(dashboard.next_update().await["status"], "online");
        if beats_first {
            phone.heartbeat("driver-1").await;
        }
        let (_, offline) = tokio::join!(
            answering_pings(&mut phone, Duration::from_millis(2_000)),
            dashboard.next_update(),
        );
        assert_eq!(offline["status"], "offline", "{liveness}");
        router.stop().await;
    }
}

/// CONNECTION_TEST is answered to its sender with CONNECTION_ACK, the payload echoed, as the
/// VoicePing router does (addressed to the authenticated user, whatever `fromId` says).
#[tokio::test]
async fn a_connection_test_is_acknowledged_with_its_payload() {
    let router = Router::start(|_| {}).await;
    let mut phone = Client::mobile(&router, "driver-1", "phone").await;
    let mut e = presence_router::wire::Encoder::default();
    e.array(5).uint(0).uint(25).str("someone-else").uint(0);
    e.map(1).str("sent").uint(1_702_281_234_567);
    phone.send(e.into_bytes()).await;
    assert_eq!(
        phone.next_frame().await,
        json!([1, 26, 0, "driver-1", {"sent": 1_702_281_234_567u64}])
    );
    let mut e = presence_router::wire::Encoder::default();
    e.array(3).uint(1).uint(25).str("driver-1");
    phone.send(e.into_bytes()).await;
    assert_eq!(phone.next_frame().await, json!([1, 26, 0, "driver-1"]));
    router.stop().await;
}

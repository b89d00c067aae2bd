//! The `PresenceStore` contract, on tokio's paused clock: what any store must do, written once
//! and run against each implementation.

use presence_router::clock::Clock;
use presence_router::presence::{Rules, Status};
use presence_router::store::{Device, Feed, FeedEvent, MemoryStore, PresenceStore};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::broadcast::error::RecvError;
use tokio_util::sync::CancellationToken;

const RULES: Rules = Rules {
    ttl: 60_000,
    offline_debounce: 5_000,
};

fn memory(capacity: usize) -> (MemoryStore, Clock, CancellationToken) {
    let shutdown = CancellationToken::new();
    let clock = Clock::start();
    (
        MemoryStore::spawn(RULES, clock, capacity, shutdown.clone()),
        clock,
        shutdown,
    )
}

fn device(user: &str, conn: u64, id: &str) -> Device {
    Device {
        user_id: Arc::from(user),
        conn,
        device_id: Some(Arc::from(id)),
    }
}

async fn next(feed: &mut Feed) -> (String, Status, u64) {
    loop {
        let event = tokio::time::timeout(Duration::from_secs(3600), feed.recv())
            .await
            .expect("an update comes")
            .expect("not lagging");
        if let FeedEvent::Update(published) = &*event {
            let u = &published.update;
            return (u.user_id.to_string(), u.status, u.version);
        }
    }
}

async fn assert_quiet(feed: &mut Feed, window: Duration) {
    if let Ok(got) = tokio::time::timeout(window, feed.recv()).await {
        panic!("expected no update, got {got:?}");
    }
}

/// Expiry, debounce and multi-device, driven by the paused clock.
async fn timers_follow_the_rules(store: impl PresenceStore, clock: Clock) {
    let mut feed = store.feed();
    assert!(store.snapshot().await.expect("snapshot").users.is_empty());
    let phone = device("alice", 1, "phone");
    store.connect(&phone).await.expect("connect");
    assert_eq!(next(&mut feed).await, ("alice".into(), Status::Online, 1));

    // A heartbeat at 30 s moves the expiry to 90 s.
    tokio::time::sleep(Duration::from_secs(30)).await;
    store
        .heartbeat(&phone, clock.now_ms())
        .await
        .expect("heartbeat");
    assert_quiet(&mut feed, Duration::from_secs(59)).await;
    let started = tokio::time::Instant::now();
    assert_eq!(next(&mut feed).await, ("alice".into(), Status::Offline, 2));
    assert!(
        started.elapsed() <= Duration::from_secs(1),
        "expired at 90 s"
    );

    // Two devices: offline only after both leave, and only after the debounce.
    let tablet = device("alice", 2, "tablet");
    store.connect(&phone).await.expect("connect");
    store.connect(&tablet).await.expect("connect");
    assert_eq!(next(&mut feed).await, ("alice".into(), Status::Online, 3));
    store.disconnect(&phone).await.expect("disconnect");
    assert_quiet(&mut feed, Duration::from_secs(10)).await;
    store.disconnect(&tablet).await.expect("disconnect");
    assert_quiet(&mut feed, Duration::from_millis(4_900)).await;
    assert_eq!(next(&mut feed).await, ("alice".into(), Status::Offline, 4));

    let views = store
        .lookup(&[Arc::from("alice"), Arc::from("nobody")])
        .await
        .expect("lookup");
    assert_eq!(views[0].status, Status::Offline);
    assert_eq!(
        views[0].device_id.as_deref(),
        Some("tablet"),
        "the most recently active device"
    );
    assert_eq!(
        (views[1].status, views[1].last_seen, views[1].version),
        (Status::Offline, 0, 0)
    );
}

/// A subscriber that falls behind by more than the feed holds is told so, rather than the
/// store holding every update for it.
async fn a_lagging_subscriber_is_told(store: impl PresenceStore, capacity: usize) {
    let mut feed = store.feed();
    for conn in 0..(capacity as u64 * 4) {
        store
            .connect(&device(&format!("user-{conn}"), conn, "d"))
            .await
            .expect("connect");
    }
    assert!(matches!(feed.recv().await, Err(RecvError::Lagged(_))));
}

/// The snapshot and the feed fit together by sequence number: updates at or below the
/// snapshot's are in it, the ones above follow it.
async fn snapshot_and_feed_fit_together(store: impl PresenceStore) {
    let mut feed = store.feed();
    store.connect(&device("a", 1, "d")).await.expect("connect");
    let snapshot = store.snapshot().await.expect("snapshot");
    store.connect(&device("b", 2, "d")).await.expect("connect");
    let ids: Vec<&str> = snapshot.users.iter().map(|u| u.user_id.as_ref()).collect();
    assert_eq!(ids, ["a"]);
    let mut after = Vec::new();
    while after.is_empty() {
        let event = feed.recv().await.expect("event");
        if let FeedEvent::Update(p) = &*event {
            if p.seq > snapshot.seq {
                after.push(p.update.user_id.to_string());
            }
        }
    }
    assert_eq!(after, ["b"]);
}

#[tokio::test(start_paused = true)]
async fn memory_timers_follow_the_rules() {
    let (store, clock, shutdown) = memory(64);
    timers_follow_the_rules(store, clock).await;
    shutdown.cancel();
}

#[tokio::test(start_paused = true)]
async fn memory_lagging_subscriber_is_told() {
    let (store, _, shutdown) = memory(8);
    a_lagging_subscriber_is_told(store, 8).await;
    shutdown.cancel();
}

#[tokio::test(start_paused = true)]
async fn memory_snapshot_and_feed_fit_together() {
    let (store, _, shutdown) = memory(64);
    snapshot_and_feed_fit_together(store).await;
    shutdown.cancel();
}

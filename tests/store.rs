//! The `PresenceStore` contract, written once and run against each store: the memory store on
//! tokio's paused clock, the Redis store in real time on a redis-server of the test's own.

mod common;

use common::RedisServer;
use presence_router::clock::Clock;
use presence_router::presence::{Audience, Rules, Status, DEFAULT_RETENTION};
use presence_router::store::{Device, Feed, FeedEvent, MemoryStore, PresenceStore, RedisStore};
use presence_router::tasks::Tasks;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::broadcast::error::RecvError;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

/// Short enough for real time, long enough for Redis's timing (sweeps every 200 ms).
const RULES: Rules = Rules {
    ttl: 2_000,
    offline_debounce: 1_000,
    retention: DEFAULT_RETENTION,
};

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

fn device(user: &str, conn: u64, id: &str) -> Device {
    Device {
        user_id: Arc::from(user),
        conn,
        device_id: Some(Arc::from(id)),
        audience: Audience::none(),
    }
}

/// The next update on the feed (skipping resyncs): user, status, version.
async fn next(feed: &mut Feed) -> (String, Status, u64) {
    loop {
        let event = tokio::time::timeout(Duration::from_secs(30), feed.recv())
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
    let deadline = Instant::now() + window;
    while let Ok(event) = tokio::time::timeout_at(deadline, feed.recv()).await {
        if let Ok(FeedEvent::Update(p)) = event.as_deref() {
            panic!("expected no update, got {:?}", p.update);
        }
    }
}

/// Waits until the store reports `user` with `status` (writes may be asynchronous).
async fn until_status(store: &impl PresenceStore, user: &str, status: Status) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while store.lookup(&[Arc::from(user)]).await.expect("lookup")[0].status != status {
        assert!(Instant::now() < deadline, "{user} never became {status:?}");
        tokio::time::sleep(ms(5)).await;
    }
}

/// Expiry, heartbeats, debounce and multi-device.
async fn timers_follow_the_rules(store: impl PresenceStore, clock: Clock) {
    let mut feed = store.feed();
    assert!(store.snapshot().await.expect("snapshot").users.is_empty());
    let phone = device("alice", 1, "phone");
    store.connect(&phone).await.expect("connect");
    let (user, status, first) = next(&mut feed).await;
    assert_eq!((user.as_str(), status), ("alice", Status::Online));

    // A heartbeat at TTL/2 moves the expiry to 1.5 TTL.
    tokio::time::sleep(ms(RULES.ttl / 2)).await;
    let beat = Instant::now();
    store
        .heartbeat(&phone, clock.now_ms())
        .await
        .expect("heartbeat");
    assert_quiet(&mut feed, ms(RULES.ttl * 9 / 10)).await;
    let (user, status, second) = next(&mut feed).await;
    assert_eq!((user.as_str(), status), ("alice", Status::Offline));
    assert!(
        beat.elapsed() >= ms(RULES.ttl - 20),
        "expired a TTL after the heartbeat"
    );

    // Two devices: offline only after both leave, and only after the debounce.
    let tablet = device("alice", 2, "tablet");
    store.connect(&phone).await.expect("connect");
    store.connect(&tablet).await.expect("connect");
    let (user, status, third) = next(&mut feed).await;
    assert_eq!((user.as_str(), status), ("alice", Status::Online));
    store.disconnect(&phone).await.expect("disconnect");
    assert_quiet(&mut feed, ms(RULES.offline_debounce * 3 / 2)).await;
    // A heartbeat first, so that the TTL does not run out before the debounce does.
    store
        .heartbeat(&tablet, clock.now_ms())
        .await
        .expect("heartbeat");
    store.disconnect(&tablet).await.expect("disconnect");
    let left = Instant::now();
    let (user, status, fourth) = next(&mut feed).await;
    assert_eq!((user.as_str(), status), ("alice", Status::Offline));
    assert!(
        first < second && second < third && third < fourth,
        "versions grow: {first} {second} {third} {fourth}"
    );
    assert!(
        left.elapsed() >= ms(RULES.offline_debounce - 20),
        "not before the debounce"
    );

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

/// A reconnect inside the debounce produces no update at all.
async fn a_reconnect_inside_the_debounce_is_invisible(store: impl PresenceStore) {
    let mut feed = store.feed();
    store
        .connect(&device("bob", 1, "phone"))
        .await
        .expect("connect");
    assert_eq!(next(&mut feed).await.1, Status::Online);
    store
        .disconnect(&device("bob", 1, "phone"))
        .await
        .expect("disconnect");
    store
        .connect(&device("bob", 2, "phone"))
        .await
        .expect("connect");
    assert_quiet(&mut feed, ms(RULES.offline_debounce * 3 / 2)).await;
    until_status(&store, "bob", Status::Online).await;
}

/// A subscriber that falls behind by more than the feed holds is told so, rather than the
/// store holding every update for it.
async fn a_lagging_subscriber_is_told(store: impl PresenceStore, capacity: usize) {
    let mut feed = store.feed();
    let users = capacity as u64 * 4;
    for conn in 0..users {
        store
            .connect(&device(&format!("user-{conn}"), conn, "d"))
            .await
            .expect("connect");
    }
    until_status(&store, &format!("user-{}", users - 1), Status::Online).await;
    let mut lagged = false;
    while !lagged {
        match tokio::time::timeout(Duration::from_secs(30), feed.recv())
            .await
            .expect("events")
        {
            Err(RecvError::Lagged(_)) => lagged = true,
            Ok(_) => {}
            Err(RecvError::Closed) => panic!("feed closed"),
        }
    }
}

/// The snapshot and the feed fit together by sequence number: updates at or below the
/// snapshot's are in it, the ones above follow it.
async fn snapshot_and_feed_fit_together(store: impl PresenceStore) {
    let mut feed = store.feed();
    store.connect(&device("a", 1, "d")).await.expect("connect");
    until_status(&store, "a", Status::Online).await;
    let snapshot = store.snapshot().await.expect("snapshot");
    store.connect(&device("b", 2, "d")).await.expect("connect");
    let ids: Vec<&str> = snapshot.users.iter().map(|u| u.user_id.as_ref()).collect();
    assert_eq!(ids, ["a"]);
    assert!(snapshot.users[0].version >= snapshot.users[0].last_seen);
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

fn memory(capacity: usize) -> (MemoryStore, Clock, CancellationToken) {
    let shutdown = CancellationToken::new();
    let clock = Clock::start();
    (
        MemoryStore::spawn(RULES, clock, capacity, &Tasks::new(shutdown.clone())),
        clock,
        shutdown,
    )
}

async fn redis(server: &RedisServer, capacity: usize) -> (RedisStore, Clock, CancellationToken) {
    let shutdown = CancellationToken::new();
    let clock = Clock::start();
    let (store, _drain) = RedisStore::start(
        &server.url(),
        "presence:",
        RULES,
        clock,
        capacity,
        &Tasks::new(shutdown.clone()),
    )
    .await
    .expect("Redis store starts");
    (store, clock, shutdown)
}

#[tokio::test(start_paused = true)]
async fn memory_timers_follow_the_rules() {
    let (store, clock, _shutdown) = memory(64);
    timers_follow_the_rules(store, clock).await;
}

#[tokio::test(start_paused = true)]
async fn memory_reconnect_inside_the_debounce_is_invisible() {
    let (store, _, _shutdown) = memory(64);
    a_reconnect_inside_the_debounce_is_invisible(store).await;
}

#[tokio::test(start_paused = true)]
async fn memory_lagging_subscriber_is_told() {
    let (store, _, _shutdown) = memory(8);
    a_lagging_subscriber_is_told(store, 8).await;
}

#[tokio::test(start_paused = true)]
async fn memory_snapshot_and_feed_fit_together() {
    let (store, _, _shutdown) = memory(64);
    snapshot_and_feed_fit_together(store).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_timers_follow_the_rules() {
    let server = RedisServer::start(&[]);
    let (store, clock, _shutdown) = redis(&server, 64).await;
    timers_follow_the_rules(store, clock).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_reconnect_inside_the_debounce_is_invisible() {
    let server = RedisServer::start(&[]);
    let (store, _, _shutdown) = redis(&server, 64).await;
    a_reconnect_inside_the_debounce_is_invisible(store).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_lagging_subscriber_is_told() {
    let server = RedisServer::start(&[]);
    let (store, _, _shutdown) = redis(&server, 8).await;
    a_lagging_subscriber_is_told(store, 8).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_snapshot_and_feed_fit_together() {
    let server = RedisServer::start(&[]);
    let (store, _, _shutdown) = redis(&server, 64).await;
    snapshot_and_feed_fit_together(store).await;
}

//! The Redis store's heartbeat path: heartbeat writes per second through the pipelined writer,
//! against a redis-server of its own. `cargo bench --bench redis_heartbeats` prints the figure;
//! compare with `redis-benchmark -P 16` running the same EVALSHA (the command is printed too).

#[path = "../tests/common/mod.rs"]
mod common;

use common::RedisServer;
use presence_router::clock::Clock;
use presence_router::presence::{Rules, Status, DEFAULT_RETENTION};
use presence_router::store::{Device, PresenceStore, RedisStore};
use presence_router::tasks::Tasks;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;

const DEVICES: u64 = 10_000;
const HEARTBEATS: u64 = 300_000;

#[tokio::main]
async fn main() {
    let server = RedisServer::start(&[]);
    let clock = Clock::start();
    let rules = Rules {
        ttl: 60_000,
        offline_debounce: 5_000,
        retention: DEFAULT_RETENTION,
    };
    let (store, _drain) = RedisStore::start(
        &server.url(),
        "presence:",
        rules,
        clock,
        1024,
        &Tasks::new(CancellationToken::new()),
    )
    .await
    .expect("store");
    let devices: Vec<Device> = (0..DEVICES)
        .map(|i| Device {
            user_id: Arc::from(format!("user-{i}")),
            conn: i,
            device_id: Some(Arc::from("phone")),
        })
        .collect();
    for device in &devices {
        while store.connect(device).await.is_err() {
            tokio::task::yield_now().await;
        }
    }
    settle(&store, &format!("user-{}", DEVICES - 1)).await;

    let start = Instant::now();
    for i in 0..HEARTBEATS {
        let device = &devices[(i % DEVICES) as usize];
        while store.heartbeat(device, clock.now_ms()).await.is_err() {
            tokio::task::yield_now().await;
        }
    }
    // A marker written after every heartbeat: once it is online, all of them were sent.
    let marker = Device {
        user_id: Arc::from("marker"),
        conn: DEVICES,
        device_id: None,
    };
    while store.connect(&marker).await.is_err() {
        tokio::task::yield_now().await;
    }
    settle(&store, "marker").await;
    let elapsed = start.elapsed();
    println!(
        "Redis store: {HEARTBEATS} heartbeat writes over {DEVICES} users in {:.2} s = {:.0} writes/s",
        elapsed.as_secs_f64(),
        HEARTBEATS as f64 / elapsed.as_secs_f64()
    );
    println!(
        "compare: redis-benchmark -p {} -P 16 -n {HEARTBEATS} -r {DEVICES} EVALSHA <sha of seen> 0 user-__rand_int__ r:1 phone 60000 0",
        server.port
    );
}

async fn settle(store: &RedisStore, user: &str) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while store.lookup(&[Arc::from(user)]).await.expect("lookup")[0].status != Status::Online {
        assert!(Instant::now() < deadline, "writes never arrived");
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
}

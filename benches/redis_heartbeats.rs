//! The Redis store against a redis-server of its own, `cargo bench --bench redis_heartbeats`:
//! - heartbeat writes per second through the writer (read, decide, compare-and-set);
//! - a snapshot of 100k online users: how long it takes, and the worst stall another Redis
//!   client sees meanwhile (PINGs on a connection of their own, against a baseline);
//! - Redis CPU per bulk lookup of 100 ids (`INFO commandstats`), against the same lookup done
//!   the Node router's way (one MULTI of EXISTS + HGETALL per id).

#[path = "../tests/common/mod.rs"]
mod common;

use common::RedisServer;
use presence_router::clock::Clock;
use presence_router::presence::{Audience, Rules, Status, DEFAULT_RETENTION};
use presence_router::store::{Device, PresenceStore, RedisStore};
use presence_router::tasks::Tasks;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;

const DEVICES: u64 = 10_000;
const HEARTBEATS: u64 = 300_000;
const SNAPSHOT_USERS: u64 = 100_000;
const LOOKUPS: usize = 2_000;

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
            audience: Audience::none(),
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
        // A full queue: wait for the writer instead of spinning against it for the CPU.
        while store.heartbeat(device, clock.now_ms()).await.is_err() {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    }
    // A marker written after every heartbeat: once it is online, all of them were sent.
    let marker = Device {
        user_id: Arc::from("marker"),
        conn: DEVICES,
        device_id: None,
        audience: Audience::none(),
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

    let all: Vec<Device> = (DEVICES..SNAPSHOT_USERS)
        .map(|i| Device {
            user_id: Arc::from(format!("user-{i}")),
            conn: i + 1,
            device_id: Some(Arc::from("phone")),
            audience: Audience::none(),
        })
        .collect();
    for device in &all {
        while store.connect(device).await.is_err() {
            tokio::task::yield_now().await;
        }
    }
    settle(&store, &format!("user-{}", SNAPSHOT_USERS - 1)).await;
    let baseline = worst_ping(server.port, Duration::from_secs(1), || async {
        tokio::time::sleep(Duration::from_secs(1)).await;
    })
    .await;
    let mut taken = Vec::new();
    let during = worst_ping(server.port, Duration::from_secs(1), || async {
        for _ in 0..3 {
            let start = Instant::now();
            let snapshot = store.snapshot().await.expect("snapshot");
            assert!(snapshot.users.len() as u64 > SNAPSHOT_USERS - 10);
            taken.push(start.elapsed());
        }
    })
    .await;
    println!(
        "Redis store: snapshot of {SNAPSHOT_USERS} online users in {:?} (3 runs); worst PING of another client {:?} during them, {:?} without",
        taken, during, baseline
    );

    let ids: Vec<Arc<str>> = (0..100)
        .map(|i| Arc::from(format!("user-{}", i * 997)))
        .collect();
    let before = lookup_usec(server.port);
    for _ in 0..LOOKUPS {
        store.lookup(&ids).await.expect("lookup");
    }
    let ours = (lookup_usec(server.port) - before) / LOOKUPS as f64;
    let before = lookup_usec(server.port);
    node_router_lookups(server.port, &ids, LOOKUPS);
    let theirs = (lookup_usec(server.port) - before) / LOOKUPS as f64;
    println!(
        "Redis CPU per bulk lookup of 100 ids: {ours:.0} µs (ours: one pipeline of HMGET), {theirs:.0} µs (the Node router's MULTI of EXISTS + HGETALL)"
    );
}

/// The worst PING round trip on a connection of its own while `work` runs (at least `least`).
async fn worst_ping<F, Fut>(port: u16, least: Duration, work: F) -> Duration
where
    F: FnOnce() -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let pinger = std::thread::spawn({
        let stop = stop.clone();
        move || {
            use std::io::{Read, Write};
            let mut stream = std::net::TcpStream::connect(("127.0.0.1", port)).expect("connect");
            stream.set_nodelay(true).expect("nodelay");
            let mut worst = Duration::ZERO;
            let mut buf = [0u8; 16];
            let started = Instant::now();
            while !stop.load(std::sync::atomic::Ordering::Relaxed) || started.elapsed() < least {
                let sent = Instant::now();
                stream.write_all(b"PING\r\n").expect("ping");
                let n = stream.read(&mut buf).expect("pong");
                assert!(n > 0);
                worst = worst.max(sent.elapsed());
                std::thread::sleep(Duration::from_micros(200));
            }
            worst
        }
    });
    work().await;
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    pinger.join().expect("pinger")
}

/// Microseconds Redis has spent in the commands a bulk lookup uses, so far.
fn lookup_usec(port: u16) -> f64 {
    let stats =
        common::redis_server::command_on(port, &["INFO", "commandstats"]).unwrap_or_default();
    stats
        .split_whitespace()
        .filter(|l| {
            [
                "cmdstat_hmget:",
                "cmdstat_exists:",
                "cmdstat_hgetall:",
                "cmdstat_multi:",
                "cmdstat_exec:",
            ]
            .iter()
            .any(|c| l.starts_with(c))
        })
        .filter_map(|l| {
            l.split(",usec=")
                .nth(1)?
                .split(',')
                .next()?
                .parse::<f64>()
                .ok()
        })
        .sum()
}

/// The Node router's bulk lookup: one MULTI with EXISTS and HGETALL per id, `n` times.
fn node_router_lookups(port: u16, ids: &[Arc<str>], n: usize) {
    use std::io::{BufRead, BufReader, Write};
    let stream = std::net::TcpStream::connect(("127.0.0.1", port)).expect("connect");
    let mut reader = BufReader::new(stream.try_clone().expect("clone"));
    let mut writer = stream;
    let mut request = String::from("MULTI\r\n");
    for id in ids {
        request.push_str(&format!(
            "EXISTS presence:user:{id}\r\nHGETALL presence:meta:{id}\r\n"
        ));
    }
    request.push_str("EXEC\r\n");
    for _ in 0..n {
        writer.write_all(request.as_bytes()).expect("send");
        // +OK, one +QUEUED per command, then the EXEC reply: read until EXEC's array has come.
        let mut line = String::new();
        let mut queued = 0;
        while queued < ids.len() * 2 {
            line.clear();
            reader.read_line(&mut line).expect("reply");
            if line.starts_with("+QUEUED") {
                queued += 1;
            }
        }
        skip_value(&mut reader);
    }
}

/// Reads one RESP value and throws it away.
fn skip_value(reader: &mut impl std::io::BufRead) {
    let mut line = String::new();
    reader.read_line(&mut line).expect("reply");
    match line.as_bytes().first() {
        Some(b'*') => {
            let n: i64 = line[1..].trim().parse().unwrap_or(0);
            for _ in 0..n.max(0) {
                skip_value(reader);
            }
        }
        Some(b'$') => {
            let n: i64 = line[1..].trim().parse().unwrap_or(-1);
            if n >= 0 {
                let mut data = vec![0u8; n as usize + 2];
                std::io::Read::read_exact(reader, &mut data).expect("bulk");
            }
        }
        _ => {}
    }
}

async fn settle(store: &RedisStore, user: &str) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while store.lookup(&[Arc::from(user)]).await.expect("lookup")[0].status != Status::Online {
        assert!(Instant::now() < deadline, "writes never arrived");
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
}

//! One rule engine, checked: random histories of connects (with their tokens' groups),
//! heartbeats, leaves, late heartbeats, groups joined and left, availabilities stated and
//! passing time, over several
//! users, devices and two routers, are driven through the bare
//! rules (a map of [`Record`]s), the embedded store's core ([`Presence`]) and the Redis store
//! (two routers on one redis-server of the test's own, through the writer's own path: read,
//! decide, compare-and-set, publish, and the listener's feed). All three must publish the same
//! updates, in the same order, and answer the same lookups; Redis's membership sets mirror the
//! records.

#[path = "../../../tests/common/redis_server.rs"]
#[allow(dead_code)]
mod redis_server;

#[path = "../../../tests/common/rng.rs"]
mod rng;

#[path = "../../../tests/common/system.rs"]
mod system;

use super::{records, RedisStore, Write};
use crate::clock::Clock;
use crate::presence::{
    Audience, Availability, ConnKey, GroupChange, Millis, Presence, Record, Rules, Stated, Update,
    DEFAULT_RETENTION,
};
use crate::store::{Device, FeedEvent, PresenceStore};
use crate::tasks::Tasks;
use fred::prelude::SetsInterface;
use rng::Rng;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

const RULES: Rules = Rules {
    ttl: 1_000,
    offline_debounce: 300,
    retention: DEFAULT_RETENTION,
};

const USERS: [&str; 3] = ["a", "b", "c"];
const GROUPS: [&str; 3] = ["18", "19", "20"];
const ROUTERS: usize = 2;
const CONNS_PER_ROUTER: u64 = 3;
const SEEDS: u64 = 24;
const STEPS: usize = 60;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
struct Conn {
    user: usize,
    router: usize,
    conn: u64,
}

#[derive(Debug)]
enum Op {
    /// With a device id or not, and the token's groups (bits of [`GROUPS`]).
    Connect(Conn, bool, u64),
    /// A user joins (or leaves) a group.
    Regroup(usize, bool, usize),
    /// A user states an availability (an index in [`Availability::NAMES`]).
    State(usize, usize),
    Heartbeat(Conn),
    Leave(Conn),
    /// A heartbeat of a connection that has left (a late write).
    LateHeartbeat(Conn),
    Advance(Millis),
}

/// The three implementations, side by side.
struct Sides {
    bare: HashMap<Arc<str>, Record>,
    core: Presence,
    routers: Vec<RedisStore>,
}

fn user(i: usize) -> Arc<str> {
    Arc::from(USERS[i])
}

fn device(c: Conn, with_id: bool, groups: u64) -> Device {
    let groups = (0..GROUPS.len())
        .filter(|i| groups & (1 << i) != 0)
        .map(|i| Arc::from(GROUPS[i]))
        .collect();
    Device {
        user_id: user(c.user),
        conn: c.conn,
        device_id: with_id.then(|| Arc::from(format!("dev-{}-{}", c.router, c.conn).as_str())),
        audience: Arc::new(Audience {
            tenant: None,
            groups,
        }),
    }
}

/// What a dashboard could tell of an update.
type Observed = (
    String,
    &'static str,
    u64,
    Millis,
    Option<String>,
    Millis,
    String,
);

fn observable(u: &Update) -> Observed {
    (
        u.user_id.to_string(),
        match u.status {
            crate::presence::Status::Online => "online",
            crate::presence::Status::Offline => "offline",
        },
        u.version,
        u.last_seen,
        u.device_id.as_ref().map(|d| d.to_string()),
        u.timestamp,
        format!("{:?} {:?} before {:?}", u.stated, u.audience, u.before),
    )
}

impl Sides {
    fn key(&self, c: Conn) -> ConnKey {
        ConnKey {
            router: self.routers[c.router].shared.router_id,
            conn: c.conn,
        }
    }

    /// The embedded core's connection id for `c` (it is one router: routers are folded in).
    fn core_conn(c: Conn) -> u64 {
        c.router as u64 * 100 + c.conn
    }

    /// Applies one write to every side; returns the bare rules' updates and the core's.
    async fn apply(&mut self, c: Conn, write: Write, at: Millis) -> (Vec<Update>, Vec<Update>) {
        let u = user(c.user);
        let key = self.key(c);
        let record = self.bare.entry(u.clone()).or_default();
        let mut bare = Vec::new();
        let core = match &write {
            Write::Connect { device, .. } => {
                let id = device.device_id.clone();
                let joining = &device.audience;
                record.connect(&RULES, &u, key, id.clone(), joining, at, &mut bare);
                self.core.connect(&u, Self::core_conn(c), id, joining, at)
            }
            Write::Regroup { change, .. } => {
                record.regroup(&RULES, &u, change, at, &mut bare);
                self.core.regroup(&u, change, at)
            }
            Write::State { stated, .. } => {
                record.state(&RULES, &u, stated, at, &mut bare);
                self.core.state(&u, stated, at)
            }
            Write::Heartbeat { .. } => {
                record.heartbeat(&RULES, &u, key, at, &mut bare);
                self.core.heartbeat(&u, Self::core_conn(c), at)
            }
            Write::Leave { .. } => {
                record.disconnect(&RULES, &u, key, at, &mut bare);
                self.core.disconnect(&u, Self::core_conn(c), at)
            }
            _ => unreachable!("only connection writes here"),
        };
        let failed = records::apply(&self.routers[c.router].shared, vec![write]).await;
        assert!(failed.is_empty(), "a Redis write failed");
        (bare, core.updates)
    }

    async fn wake_all(&mut self, at: Millis) -> (Vec<Update>, Vec<Update>) {
        let mut bare = Vec::new();
        let mut core = Vec::new();
        for i in 0..USERS.len() {
            let u = user(i);
            if let Some(record) = self.bare.get_mut(&u) {
                record.wake(&RULES, &u, at, &mut bare);
            }
            core.extend(self.core.wake(&u, at).updates);
            let wake = Write::Wake {
                user_id: u.clone(),
                at,
            };
            let failed = records::apply(&self.routers[i % ROUTERS].shared, vec![wake]).await;
            assert!(failed.is_empty(), "a Redis wake failed");
        }
        (bare, core)
    }
}

async fn history(seed: u64, url: &str, prefix: &str) {
    let tasks = Tasks::new(CancellationToken::new());
    let mut routers = Vec::new();
    let mut drains = Vec::new();
    for _ in 0..ROUTERS {
        let (store, drain) = RedisStore::start(url, prefix, RULES, Clock::start(), 4096, &tasks)
            .await
            .expect("store");
        routers.push(store);
        drains.push(drain);
    }
    let mut feed = routers[0].feed();
    let mut sides = Sides {
        bare: HashMap::new(),
        core: Presence::new(RULES),
        routers,
    };
    let mut rng = Rng(seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1);
    // Far from the routers' own clocks, so that no sweep or expiry event of theirs interferes:
    // time moves only as the history says.
    let mut t: Millis = Clock::start().now_ms() + 10 * 24 * 3600 * 1000;
    let mut open: Vec<Conn> = Vec::new();
    let mut closed: Vec<Conn> = Vec::new();
    let mut log = Vec::new();
    for _ in 0..STEPS {
        let op = match rng.below(10) {
            0..=2 => {
                let c = Conn {
                    user: rng.below(USERS.len() as u64) as usize,
                    router: rng.below(ROUTERS as u64) as usize,
                    conn: rng.below(CONNS_PER_ROUTER) + 1,
                };
                if open
                    .iter()
                    .any(|o| o.router == c.router && o.conn == c.conn)
                {
                    Op::Advance(50)
                } else {
                    Op::Connect(c, rng.below(4) != 0, rng.below(8))
                }
            }
            8 => Op::State(
                rng.below(USERS.len() as u64) as usize,
                rng.below(Availability::NAMES.len() as u64) as usize,
            ),
            7 => Op::Regroup(
                rng.below(USERS.len() as u64) as usize,
                rng.below(3) != 0,
                rng.below(GROUPS.len() as u64) as usize,
            ),
            3..=4 if !open.is_empty() => Op::Heartbeat(open[rng.below(open.len() as u64) as usize]),
            5 if !open.is_empty() => Op::Leave(open[rng.below(open.len() as u64) as usize]),
            6 if !closed.is_empty() => {
                Op::LateHeartbeat(closed[rng.below(closed.len() as u64) as usize])
            }
            _ => Op::Advance([0, 50, 200, 400, 900, 1_500][rng.below(6) as usize]),
        };
        log.push(format!("t={t} {op:?}"));
        let (bare, core) = match op {
            Op::Connect(c, with_id, groups) => {
                open.push(c);
                closed.retain(|x| *x != c);
                let write = Write::Connect {
                    device: device(c, with_id, groups),
                    at: t,
                };
                sides.apply(c, write, t).await
            }
            Op::State(u, a) => {
                let text = format!("on shift {a}");
                let write = Write::State {
                    user_id: user(u),
                    stated: Stated::parse(Availability::NAMES[a], Some(&text)).expect("valid"),
                    at: t,
                };
                let c = Conn {
                    user: u,
                    router: (u + 1) % ROUTERS,
                    conn: 0,
                };
                sides.apply(c, write, t).await
            }
            Op::Regroup(u, join, g) => {
                let group = Arc::from(GROUPS[g]);
                let change = if join {
                    GroupChange::Join(group)
                } else {
                    GroupChange::Leave(group)
                };
                let write = Write::Regroup {
                    user_id: user(u),
                    change,
                    at: t,
                };
                let c = Conn {
                    user: u,
                    router: u % ROUTERS,
                    conn: 0,
                };
                sides.apply(c, write, t).await
            }
            Op::Heartbeat(c) | Op::LateHeartbeat(c) => {
                let write = Write::Heartbeat {
                    device: device(c, false, 0),
                    at: t,
                };
                sides.apply(c, write, t).await
            }
            Op::Leave(c) => {
                open.retain(|x| *x != c);
                closed.push(c);
                let write = Write::Leave {
                    device: device(c, false, 0),
                    at: t,
                };
                sides.apply(c, write, t).await
            }
            Op::Advance(dt) => {
                t += dt;
                sides.wake_all(t).await
            }
        };
        let expected: Vec<_> = bare.iter().map(observable).collect();
        let from_core: Vec<_> = core.iter().map(observable).collect();
        assert_eq!(
            from_core,
            expected,
            "seed {seed}, core vs rules:\n{}",
            log.join("\n")
        );
        let mut from_redis = Vec::new();
        while from_redis.len() < expected.len() {
            let event = tokio::time::timeout(Duration::from_secs(5), feed.recv())
                .await
                .unwrap_or_else(|_| {
                    panic!(
                        "seed {seed}: Redis published {from_redis:?}, rules {expected:?}:\n{}",
                        log.join("\n")
                    )
                })
                .expect("feed");
            if let FeedEvent::Update(published) = &*event {
                from_redis.push(observable(&published.update));
            }
        }
        assert_eq!(
            from_redis,
            expected,
            "seed {seed}, Redis vs rules:\n{}",
            log.join("\n")
        );
    }
    // Nothing more was published than the rules decided.
    assert!(
        tokio::time::timeout(Duration::from_millis(50), feed.recv())
            .await
            .is_err(),
        "seed {seed}: Redis published more than the rules"
    );
    for i in 0..USERS.len() {
        let u = user(i);
        let bare = sides.bare.get(&u).map(|r| r.view(&u, t));
        let core = sides.core.user(&u, t);
        let (_, record) = records::read_records(&sides.routers[0].shared, [u.clone()].iter())
            .await
            .expect("read")
            .remove(0);
        let redis = record.map(|r| r.view(&u, t));
        assert_eq!(core, bare, "seed {seed}: core lookup of {u}");
        assert_eq!(redis, bare, "seed {seed}: Redis lookup of {u}");
        let shared = &sides.routers[0].shared;
        let mirrored: Vec<String> = shared
            .client
            .smembers(shared.keys.user_groups(&u))
            .await
            .expect("membership set");
        let mut mirrored: Vec<Arc<str>> = mirrored.into_iter().map(Arc::from).collect();
        mirrored.sort_unstable();
        let held = bare.map(|v| v.audience.groups.clone()).unwrap_or_default();
        assert_eq!(mirrored, held, "seed {seed}: membership set of {u}");
    }
    tasks.shutdown().cancel();
    for drain in drains {
        drain.wait(Duration::from_secs(1)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_rules_the_embedded_store_and_redis_agree_on_random_histories() {
    let server = redis_server::RedisServer::start(&[]);
    for seed in 0..SEEDS {
        // A prefix per history: each starts from an empty store.
        history(seed, &server.url(), &format!("h{seed}:")).await;
    }
}

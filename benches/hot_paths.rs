//! Micro-benchmarks of the hot paths, without sockets: frame decode, update encode, the presence
//! core, the heartbeat gate, and what visibility adds to a fan-out and a snapshot. `cargo bench --bench hot_paths`.

use divan::{black_box, Bencher};
use presence_router::auth::{Identity, Role};
use presence_router::presence::{
    Audience, HeartbeatGate, Presence, Rules, Status, Update, UserView, DEFAULT_RETENTION,
};
use presence_router::visibility::{Show, Viewer};
use presence_router::wire::{encode_snapshot, encode_update, Frame, MessageType, OnAir};
use std::sync::Arc;

fn main() {
    divan::main();
}

/// The design's example heartbeat, as notepack encodes it.
const HEARTBEAT: &str = "95001ea7757365723132330082a474797065a9686561727462656174a974696d657374616d70cf0000018c57de4887";

fn unhex(text: &str) -> Vec<u8> {
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&text[i..i + 2], 16).unwrap_or(0))
        .collect()
}

fn update() -> Update {
    Update {
        user_id: Arc::from("driver-123456"),
        status: Status::Online,
        version: 42,
        last_seen: 1_702_281_234_567,
        device_id: Some(Arc::from("phone-1")),
        timestamp: 1_702_281_234_567,
        stated: Default::default(),
        audience: Audience::none(),
        before: None,
    }
}

#[divan::bench]
fn decode_heartbeat(bencher: Bencher) {
    let bytes = unhex(HEARTBEAT);
    bencher.bench(|| {
        let frame = Frame::decode(black_box(&bytes));
        assert!(matches!(frame, Ok(ref f) if f.message_type == MessageType::HEARTBEAT));
    });
}

/// The same frame through `rmpv`'s zero-copy `read_value_ref`, the fields checked as
/// `Frame::decode` checks them: what keeps the reader hand-written (it builds the payload map
/// and a growing array where the reader builds nothing, and it cannot tell `d4 00` from `c7 01 00`).
#[divan::bench]
fn decode_heartbeat_rmpv(bencher: Bencher) {
    use rmpv::ValueRef;
    let bytes = unhex(HEARTBEAT);
    let id = |v: &ValueRef<'_>| {
        matches!(
            v,
            ValueRef::Integer(_) | ValueRef::String(_) | ValueRef::Nil
        )
    };
    bencher.bench(|| {
        let mut rest = black_box(&bytes[..]);
        let frame = rmpv::decode::read_value_ref_with_max_depth(&mut rest, 32);
        let ok = match frame {
            Ok(ValueRef::Array(items)) if rest.is_empty() && (3..=6).contains(&items.len()) => {
                matches!(items[0].as_u64(), Some(0 | 1))
                    && items[1].as_u64() == Some(30)
                    && items[2..4].iter().all(id)
                    && items
                        .get(4)
                        .is_some_and(|payload| *payload != ValueRef::Nil)
            }
            _ => false,
        };
        assert!(ok);
    });
}

#[divan::bench]
fn encode_presence_update(bencher: Bencher) {
    let update = update();
    bencher.bench(|| encode_update(black_box(&update)));
}

/// `n` online users, user `i` with the audience `audience(i)`.
fn online_views(n: usize, audience: impl Fn(usize) -> Arc<Audience>) -> Vec<UserView> {
    (0..n)
        .map(|i| UserView {
            user_id: Arc::from(format!("user-{i}")),
            status: Status::Online,
            last_seen: 1_702_281_234_567,
            device_id: Some(Arc::from("phone")),
            version: 3,
            stated: Default::default(),
            audience: audience(i),
        })
        .collect()
}

#[divan::bench(args = [100, 10_000])]
fn encode_snapshot_of(bencher: Bencher, users: usize) {
    let views = online_views(users, |_| Audience::none());
    let views: Vec<&UserView> = views.iter().collect();
    bencher.bench(|| {
        encode_snapshot(
            black_box("dispatcher"),
            1_702_281_234_567,
            &views,
            &OnAir::new(),
        )
    });
}

fn users(n: usize) -> Vec<Arc<str>> {
    (0..n).map(|i| Arc::from(format!("user-{i}"))).collect()
}

fn online_core(users: &[Arc<str>]) -> Presence {
    let mut core = Presence::new(Rules {
        ttl: 60_000,
        offline_debounce: 5_000,
        retention: DEFAULT_RETENTION,
    });
    for (conn, user) in users.iter().enumerate() {
        let _ = core.connect(user, conn as u64, None, &Audience::default(), 0);
    }
    core
}

#[divan::bench]
fn core_heartbeat_10k_online(bencher: Bencher) {
    let users = users(10_000);
    let mut core = online_core(&users);
    let mut i = 0u64;
    bencher.bench_local(|| {
        i += 1;
        let n = (i % 10_000) as usize;
        core.heartbeat(&users[n], n as u64, 1_000 + i)
    });
}

#[divan::bench]
fn core_connect_disconnect_10k_online(bencher: Bencher) {
    let users = users(10_000);
    let mut core = online_core(&users);
    let mut i = 0u64;
    bencher.bench_local(|| {
        i += 1;
        let n = (i % 10_000) as usize;
        let conn = 1_000_000 + i;
        let _ = core.connect(&users[n], conn, None, &Audience::default(), 1_000 + i);
        core.disconnect(&users[n], conn, 1_000 + i)
    });
}

#[divan::bench]
fn gate_held_heartbeat(bencher: Bencher) {
    let mut gate = HeartbeatGate::new(25_000, 60_000, 0);
    let mut i = 0u64;
    bencher.bench_local(|| {
        i += 1;
        gate.heartbeat(black_box(i % 20_000))
    });
}

/// 100 dashboards, each watching `k % 10 + 1` of 100 groups (or, without groups, everyone).
fn viewers(groups: bool) -> Vec<Viewer> {
    (0..100)
        .map(|k: usize| {
            let watched: Vec<Arc<str>> = (0..k % 10 + 1)
                .map(|m| Arc::from(format!("g{}", (k * 13 + m) % 100)))
                .collect();
            let identity = Identity {
                groups: groups.then(|| watched.into()),
                ..Identity::user(Arc::from(format!("dash-{k}")), Role::Dashboard)
            };
            Viewer::of(&identity)
        })
        .collect()
}

fn in_group(g: usize) -> Arc<Audience> {
    Arc::new(Audience {
        tenant: None,
        groups: vec![Arc::from(format!("g{g}"))],
    })
}

/// What 100 dashboards decide of one update: the per-update cost of visibility in a fan-out.
#[divan::bench(args = [false, true])]
fn fan_out_decision_100_dashboards(bencher: Bencher, groups: bool) {
    let viewers = viewers(groups);
    let update = Update {
        audience: in_group(7),
        ..update()
    };
    bencher.bench(|| {
        viewers
            .iter()
            .filter(|v| v.show(black_box(&update)) == Show::Update)
            .count()
    });
}

/// A snapshot of 10,000 users in 100 groups for one dashboard watching 10 groups (or everyone):
/// the filter and the encoding.
#[divan::bench(args = [false, true])]
fn snapshot_10k_for_one_dashboard(bencher: Bencher, groups: bool) {
    let views = online_views(10_000, |i| in_group(i % 100));
    let viewer = &viewers(groups)[9];
    bencher.bench(|| {
        let visible: Vec<&UserView> = views.iter().filter(|u| viewer.sees(&u.audience)).collect();
        encode_snapshot(
            black_box("dispatcher"),
            1_702_281_234_567,
            &visible,
            &OnAir::new(),
        )
    });
}

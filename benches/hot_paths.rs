//! Figures for the hot paths, without sockets: frame decode, update encode, the presence core and
//! the heartbeat gate. `cargo bench --bench hot_paths` prints nanoseconds per operation.

use presence_router::presence::{HeartbeatGate, Presence, Rules, Status, Update};
use presence_router::wire::{encode_update, Frame, MessageType};
use std::hint::black_box;
use std::sync::Arc;
use std::time::Instant;

/// Runs `op` `n` times and prints the mean time per call.
fn measure(name: &str, n: u64, mut op: impl FnMut(u64)) {
    for i in 0..n / 10 {
        op(i);
    }
    let start = Instant::now();
    for i in 0..n {
        op(i);
    }
    let per = start.elapsed().as_nanos() as f64 / n as f64;
    println!("{name:<40} {per:>9.1} ns/op {:>12.0} op/s", 1e9 / per);
}

fn main() {
    // The design's example heartbeat, as notepack encodes it.
    const HEARTBEAT: &str = "95001ea7757365723132330082a474797065a9686561727462656174a974696d657374616d70cf0000018c57de4887";
    let heartbeat: Vec<u8> = (0..HEARTBEAT.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&HEARTBEAT[i..i + 2], 16).unwrap_or(0))
        .collect();
    measure("decode HEARTBEAT frame", 5_000_000, |_| {
        let frame = Frame::decode(black_box(&heartbeat));
        assert!(matches!(frame, Ok(ref f) if f.message_type == MessageType::HEARTBEAT));
    });

    let update = Update {
        user_id: Arc::from("driver-123456"),
        status: Status::Online,
        version: 42,
        last_seen: 1_702_281_234_567,
        device_id: Some(Arc::from("phone-1")),
        timestamp: 1_702_281_234_567,
    };
    measure("encode PRESENCE_UPDATE", 5_000_000, |_| {
        black_box(encode_update(black_box(&update)));
    });

    let users: Vec<Arc<str>> = (0..10_000)
        .map(|i| Arc::from(format!("user-{i}")))
        .collect();
    let mut core = Presence::new(Rules {
        ttl: 60_000,
        offline_debounce: 5_000,
    });
    for (conn, user) in users.iter().enumerate() {
        let _ = core.connect(user, conn as u64, None, 0);
    }
    measure("core heartbeat (10k users online)", 5_000_000, |i| {
        let n = (i % 10_000) as usize;
        let _ = black_box(core.heartbeat(&users[n], n as u64, 1_000 + i));
    });
    measure("core connect + disconnect", 2_000_000, |i| {
        let n = (i % 10_000) as usize;
        let conn = 1_000_000 + i;
        let _ = black_box(core.connect(&users[n], conn, None, 1_000 + i));
        let _ = black_box(core.disconnect(&users[n], conn, 1_000 + i));
    });

    let mut gate = HeartbeatGate::new(25_000, 0);
    measure("heartbeat gate (held back)", 10_000_000, |i| {
        black_box(gate.heartbeat(black_box(i % 20_000)));
    });
}

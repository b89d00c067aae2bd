//! `presence-bench talk`: push-to-talk load. Handsets join groups (by their token's
//! `channelIds`, or with USER_ADD for routers that take the user id as the token), one talker
//! per talking group sends START, waits for START_ACK, sends AUDIO at a frame rate for a
//! duration, then STOP; every other member measures each frame's delivery latency from the send
//! time the talker wrote in the first 8 bytes of the payload (nanoseconds since the Unix epoch:
//! one clock for every process on the machine).
//!
//!     presence-bench talk --url ws://127.0.0.1:3000/ws --groups 100 --members 100 \
//!         --talkers 100 --frame-rate 50 --frame-bytes 60 --duration 10s --processes 2 \
//!         --router-pid $(pgrep -n presence-router)

use crate::clients::{self, Target, Ws};
use crate::stats::{self, Histogram, HistogramDump, Spread};
use bytes::Bytes;
use clap::Parser;
use futures_util::{SinkExt, StreamExt};
use presence_router::auth::Role;
use presence_router::config::parse_duration;
use presence_router::wire::{Encoder, Frame, MessageType, Value};
use serde::{Deserialize, Serialize};
use serde_json::json;
use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Write as _};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use tokio::sync::watch;
use tokio_tungstenite::tungstenite::Message;
use tokio_util::sync::CancellationToken;

#[derive(Parser, Debug, Clone)]
#[command(
    name = "presence-bench talk",
    about = "Push-to-talk load: talkers send AUDIO to groups, every member measures delivery latency (loopback only)"
)]
pub struct TalkArgs {
    /// Router WebSocket URL (repeat for several routers: the members of each group are spread
    /// over them, member j on router j % routers; every talker is on the first).
    #[arg(long = "url", required = true)]
    urls: Vec<String>,
    /// The routers' JWT secret (not needed with --plain-tokens).
    #[arg(long, env = "JWT_SECRET", hide_env_values = true, default_value = "")]
    secret: String,
    /// Groups (`g0`, `g1`, …).
    #[arg(long, default_value_t = 1)]
    groups: usize,
    /// Members per group, the talker included (groups × members connections in all).
    #[arg(long, default_value_t = 10)]
    members: usize,
    /// Groups with a talker (member 0 of groups 0..talkers talks): at most --groups.
    #[arg(long, default_value_t = 1)]
    talkers: usize,
    /// AUDIO frames per second per talker.
    #[arg(long, default_value_t = 50)]
    frame_rate: u32,
    /// Bytes of each AUDIO payload (at least 12: send time and sequence number).
    #[arg(long, default_value_t = 60)]
    frame_bytes: usize,
    /// How long each talker talks.
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    duration: Duration,
    /// How long listeners keep counting after the last talker's last frame.
    #[arg(long, default_value = "2s", value_parser = parse_duration)]
    drain: Duration,
    /// Pause between every listener being registered and the first START (lets a router that
    /// applies USER_ADD asynchronously catch up).
    #[arg(long, default_value = "1s", value_parser = parse_duration)]
    settle: Duration,
    /// Groups each handset is a member of: its own group and memberships − 1 others that nobody
    /// talks in (`x0`, `x1`, …): the memory cost of membership.
    #[arg(long, default_value_t = 1)]
    memberships: usize,
    /// Send the user id itself as the token (the Node VoicePing router) and join groups with
    /// USER_ADD instead of the token's channelIds.
    #[arg(long)]
    plain_tokens: bool,
    /// Processes to spread the handsets over (one process may hold ~20k sockets here).
    #[arg(long, default_value_t = 1)]
    processes: usize,
    /// Most handshakes in flight per process.
    #[arg(long, default_value_t = 256)]
    connect_concurrency: usize,
    /// A router's pid, to read its memory and CPU time (repeat for several).
    #[arg(long)]
    router_pid: Vec<u32>,
    /// Where to write the results.
    #[arg(long, default_value = "talk-results.json")]
    json: PathBuf,
    /// Internal: run as worker N of --processes.
    #[arg(long, hide = true)]
    worker: Option<usize>,
}

/// One process's report, once its handsets are registered.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct Ready {
    connected: usize,
    failed: usize,
    registered: usize,
}

/// One process's report after the talk.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct Share {
    /// Listeners registered in each talking group.
    listeners: BTreeMap<usize, u64>,
    /// AUDIO frames each talking group's talker sent.
    sent: BTreeMap<usize, u64>,
    start_ack_ms: Vec<f64>,
    start_failed: u64,
    stop_acked: u64,
    delivered: u64,
    /// AUDIO frames that came with a sequence number not above the last one from that talker.
    out_of_order: u64,
    /// START and STOP frames listeners got.
    starts_heard: u64,
    stops_heard: u64,
    /// PRESENCE_ERROR, UNAUTHORIZED_GROUP and START_FAILED frames anyone got.
    errors: u64,
    /// The same by kind (the first 48 characters of a PRESENCE_ERROR's message, digits
    /// dropped), with a count each.
    error_kinds: BTreeMap<String, u64>,
    /// Connections closed by the router before the end.
    closed_early: u64,
    latency: HistogramDump,
    /// This process's CPU time during the talk window.
    cpu_ms: u64,
    /// How late talkers' frames left against their schedule, worst case (ms).
    worst_send_lag_ms: f64,
}

/// What handsets of one process share.
struct Ctx {
    args: TalkArgs,
    targets: Vec<Target>,
    listeners: Vec<AtomicU64>,
    sent: Vec<AtomicU64>,
    start_ack_ms: Mutex<Vec<f64>>,
    start_failed: AtomicU64,
    stop_acked: AtomicU64,
    delivered: AtomicU64,
    out_of_order: AtomicU64,
    starts_heard: AtomicU64,
    stops_heard: AtomicU64,
    errors: AtomicU64,
    error_kinds: Mutex<BTreeMap<String, u64>>,
    closed_early: AtomicU64,
    worst_send_lag_us: AtomicU64,
    latency: Histogram,
    connected: AtomicU64,
    failed: AtomicU64,
    registered: AtomicU64,
    /// The talk's start (ns since the epoch), once the parent has said it.
    go: watch::Receiver<Option<u64>>,
    stop: CancellationToken,
}

fn epoch_ns() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64)
}

/// The `Instant` of epoch time `ns` (now when it has passed).
fn instant_at(ns: u64) -> Instant {
    Instant::now() + Duration::from_nanos(ns.saturating_sub(epoch_ns()))
}

fn group_id(g: usize) -> String {
    format!("g{g}")
}

/// Handset `i`: its group, its index in the group, its user id.
fn handset(args: &TalkArgs, i: usize) -> (usize, usize, String) {
    (i % args.groups, i / args.groups, format!("u{i}"))
}

/// The groups handset of group `g` is a member of: its own, then memberships − 1 silent ones.
fn groups_of(args: &TalkArgs, g: usize) -> Vec<String> {
    let mut groups = vec![group_id(g)];
    for k in 1..args.memberships {
        let extra = format!("x{}", (g + k) % args.groups.max(args.memberships));
        if !groups.contains(&extra) {
            groups.push(extra);
        }
    }
    groups
}

fn frame(message_type: MessageType, user: &str, group: &str, payload: Option<u64>) -> Bytes {
    let mut e = Encoder::with_capacity(48);
    e.array(if payload.is_some() { 5 } else { 4 })
        .uint(0)
        .uint(message_type.0)
        .str(user)
        .str(group);
    if let Some(p) = payload {
        e.uint(p);
    }
    Bytes::from(e.into_bytes())
}

fn audio_frame(user: &str, group: &str, seq: u32, bytes: usize) -> Bytes {
    let mut payload = vec![0u8; bytes.max(12)];
    payload[..8].copy_from_slice(&epoch_ns().to_be_bytes());
    payload[8..12].copy_from_slice(&seq.to_be_bytes());
    let mut e = Encoder::with_capacity(bytes + 32);
    e.array(5)
        .uint(0)
        .uint(MessageType::AUDIO.0)
        .str(user)
        .str(group)
        .bin(&payload);
    Bytes::from(e.into_bytes())
}

fn connection_test(user: &str) -> Bytes {
    let mut e = Encoder::with_capacity(32);
    e.array(5)
        .uint(0)
        .uint(MessageType::CONNECTION_TEST.0)
        .str(user)
        .uint(0)
        .str("x");
    Bytes::from(e.into_bytes())
}

/// What a listener keeps of one message; `true` when the socket is done.
fn on_message(ctx: &Ctx, message: Option<Result<Message, impl Sized>>, last_seq: &mut i64) -> bool {
    let bytes = match message {
        Some(Ok(Message::Binary(bytes))) => bytes,
        Some(Ok(_)) => return false,
        _ => {
            if !ctx.stop.is_cancelled() {
                ctx.closed_early.fetch_add(1, Ordering::Relaxed);
            }
            return true;
        }
    };
    let now = epoch_ns();
    let Ok(frame) = Frame::decode(&bytes) else {
        return false;
    };
    match frame.message_type {
        MessageType::AUDIO => {
            if let Some(Value::Bin(payload)) = frame.payload_value() {
                if payload.len() >= 12 {
                    let sent = u64::from_be_bytes(payload[..8].try_into().unwrap_or_default());
                    let seq = u32::from_be_bytes(payload[8..12].try_into().unwrap_or_default());
                    ctx.latency
                        .record(Duration::from_nanos(now.saturating_sub(sent)));
                    ctx.delivered.fetch_add(1, Ordering::Relaxed);
                    if i64::from(seq) <= *last_seq {
                        ctx.out_of_order.fetch_add(1, Ordering::Relaxed);
                    }
                    *last_seq = i64::from(seq);
                }
            }
        }
        MessageType::START => {
            ctx.starts_heard.fetch_add(1, Ordering::Relaxed);
            *last_seq = -1;
        }
        MessageType::STOP => {
            ctx.stops_heard.fetch_add(1, Ordering::Relaxed);
        }
        MessageType::PRESENCE_ERROR
        | MessageType::UNAUTHORIZED_GROUP
        | MessageType::START_FAILED => ctx.error(&frame),
        _ => {}
    }
    false
}

/// Reads until a frame of `wanted` comes (true), or `limit` passes, the socket closes or a
/// START_FAILED comes (false); every other frame goes to [`on_message`].
async fn await_frame(ctx: &Ctx, ws: &mut Ws, wanted: MessageType, limit: Duration) -> bool {
    let deadline = tokio::time::Instant::now() + limit;
    let mut seq = -1;
    loop {
        let message = tokio::select! {
            _ = tokio::time::sleep_until(deadline) => return false,
            message = ws.next() => message,
        };
        if let Some(Ok(Message::Binary(bytes))) = &message {
            if let Ok(frame) = Frame::decode(bytes) {
                if frame.message_type == wanted {
                    return true;
                }
                if frame.message_type == MessageType::START_FAILED {
                    ctx.error(&frame);
                    return false;
                }
            }
        }
        if on_message(ctx, message, &mut seq) {
            return false;
        }
    }
}

/// One handset from connect to the end of the run.
async fn run_handset(ctx: Arc<Ctx>, i: usize, permit: tokio::sync::OwnedSemaphorePermit) {
    let args = &ctx.args;
    let (g, member, user) = handset(args, i);
    let target = &ctx.targets[member % ctx.targets.len()];
    let groups = groups_of(args, g);
    let connection = if args.plain_tokens {
        clients::connect_with_token(target, None, &user, Some("bench")).await
    } else {
        clients::connect(target, None, &user, Role::Mobile, Some("bench"), &groups).await
    };
    drop(permit);
    let Ok(mut ws) = connection else {
        ctx.failed.fetch_add(1, Ordering::Relaxed);
        return;
    };
    ctx.connected.fetch_add(1, Ordering::Relaxed);
    if args.plain_tokens {
        for group in &groups {
            if ws
                .send(Message::Binary(frame(
                    MessageType::USER_ADD,
                    &user,
                    group,
                    None,
                )))
                .await
                .is_err()
            {
                return;
            }
        }
    }
    // Registered once the router answers a CONNECTION_TEST sent after the joins.
    if ws
        .send(Message::Binary(connection_test(&user)))
        .await
        .is_err()
        || !await_frame(
            &ctx,
            &mut ws,
            MessageType::CONNECTION_ACK,
            Duration::from_secs(60),
        )
        .await
    {
        return;
    }
    ctx.registered.fetch_add(1, Ordering::Relaxed);
    let talker = member == 0 && g < args.talkers;
    if !talker && g < args.talkers {
        ctx.listeners[g].fetch_add(1, Ordering::Relaxed);
    }
    let mut last_seq = -1;
    // Wait for the start, reading (and so answering pings) meanwhile.
    let mut go = ctx.go.clone();
    let start_ns = loop {
        if let Some(start) = *go.borrow_and_update() {
            break start;
        }
        tokio::select! {
            _ = ctx.stop.cancelled() => return,
            changed = go.changed() => if changed.is_err() { return },
            message = ws.next() => if on_message(&ctx, message, &mut last_seq) { return },
        }
    };
    if talker {
        talk(&ctx, &mut ws, g, &user, start_ns).await;
    }
    loop {
        tokio::select! {
            _ = ctx.stop.cancelled() => break,
            message = ws.next() => if on_message(&ctx, message, &mut last_seq) { return },
        }
    }
    let _ = ws.close(None).await;
}

/// A talker's START, AUDIO at the frame rate for the duration, STOP. Talkers start spread over
/// one frame period, so their frames do not all leave in the same instant.
async fn talk(ctx: &Ctx, ws: &mut Ws, g: usize, user: &str, start_ns: u64) {
    let args = &ctx.args;
    let period = Duration::from_secs(1) / args.frame_rate.max(1);
    let offset = period.mul_f64(g as f64 / args.talkers.max(1) as f64);
    tokio::time::sleep_until(instant_at(start_ns).into()).await;
    tokio::time::sleep(offset).await;
    let group = group_id(g);
    let asked = Instant::now();
    let start = frame(
        MessageType::START,
        user,
        &group,
        Some(epoch_ns() / 1_000_000),
    );
    if ws.send(Message::Binary(start)).await.is_err() {
        return;
    }
    if !await_frame(ctx, ws, MessageType::START_ACK, Duration::from_secs(10)).await {
        ctx.start_failed.fetch_add(1, Ordering::Relaxed);
        return;
    }
    ctx.start_ack_ms
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .push(asked.elapsed().as_secs_f64() * 1000.0);
    let frames = (args.duration.as_secs_f64() * f64::from(args.frame_rate)).round() as u32;
    let first = tokio::time::Instant::now();
    let mut seq = -1;
    for k in 0..frames {
        let due = first + period * k;
        loop {
            tokio::select! {
                _ = tokio::time::sleep_until(due) => break,
                message = ws.next() => if on_message(ctx, message, &mut seq) { return },
            }
        }
        let lag = due.elapsed().as_micros() as u64;
        ctx.worst_send_lag_us.fetch_max(lag, Ordering::Relaxed);
        if ws
            .send(Message::Binary(audio_frame(
                user,
                &group,
                k,
                args.frame_bytes,
            )))
            .await
            .is_err()
        {
            return;
        }
        ctx.sent[g].fetch_add(1, Ordering::Relaxed);
    }
    if ws
        .send(Message::Binary(frame(
            MessageType::STOP,
            user,
            &group,
            None,
        )))
        .await
        .is_ok()
        && await_frame(ctx, ws, MessageType::STOP_ACK, Duration::from_secs(10)).await
    {
        ctx.stop_acked.fetch_add(1, Ordering::Relaxed);
    }
}

/// Connects process `index`'s handsets (i % processes == index) and waits until each is
/// registered or failed.
async fn connect_share(ctx: &Arc<Ctx>, index: usize) -> Ready {
    let args = &ctx.args;
    let total = args.groups * args.members;
    let mine: Vec<usize> = (index..total).step_by(args.processes).collect();
    let limit = Arc::new(tokio::sync::Semaphore::new(args.connect_concurrency.max(1)));
    for &i in &mine {
        let Ok(permit) = limit.clone().acquire_owned().await else {
            break;
        };
        tokio::spawn(run_handset(ctx.clone(), i, permit));
    }
    // Each handset is registered, failed, or gave up on its CONNECTION_ACK within 60 s.
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        let connected = ctx.connected.load(Ordering::Relaxed) as usize;
        let failed = ctx.failed.load(Ordering::Relaxed) as usize;
        let registered = ctx.registered.load(Ordering::Relaxed) as usize;
        if registered + failed >= mine.len() || Instant::now() > deadline {
            return Ready {
                connected,
                failed,
                registered,
            };
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

impl Ctx {
    fn new(args: TalkArgs, go: watch::Receiver<Option<u64>>) -> anyhow::Result<Ctx> {
        let targets = crate::resolve_targets(&args.urls, &args.secret)?;
        Ok(Ctx {
            listeners: (0..args.talkers).map(|_| AtomicU64::new(0)).collect(),
            sent: (0..args.talkers).map(|_| AtomicU64::new(0)).collect(),
            args,
            targets,
            start_ack_ms: Mutex::default(),
            start_failed: AtomicU64::new(0),
            stop_acked: AtomicU64::new(0),
            delivered: AtomicU64::new(0),
            out_of_order: AtomicU64::new(0),
            starts_heard: AtomicU64::new(0),
            stops_heard: AtomicU64::new(0),
            errors: AtomicU64::new(0),
            error_kinds: Mutex::default(),
            closed_early: AtomicU64::new(0),
            worst_send_lag_us: AtomicU64::new(0),
            latency: Histogram::default(),
            connected: AtomicU64::new(0),
            failed: AtomicU64::new(0),
            registered: AtomicU64::new(0),
            go,
            stop: CancellationToken::new(),
        })
    }

    /// Counts an error frame by its kind.
    fn error(&self, frame: &Frame<'_>) {
        self.errors.fetch_add(1, Ordering::Relaxed);
        let payload = frame.payload_value();
        let text = match &payload {
            Some(Value::Str(s)) => s,
            Some(map) => map.get("message").and_then(Value::as_str).unwrap_or(""),
            None => "",
        };
        let kind = format!(
            "{} {}",
            frame.message_type.0,
            text.chars()
                .filter(|c| !c.is_ascii_digit())
                .take(48)
                .collect::<String>()
        );
        *self
            .error_kinds
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .entry(kind)
            .or_default() += 1;
    }

    fn share(&self, cpu_ms: u64) -> Share {
        let load = |a: &AtomicU64| a.load(Ordering::Relaxed);
        let by_group = |v: &[AtomicU64]| {
            v.iter()
                .enumerate()
                .map(|(g, a)| (g, load(a)))
                .filter(|(_, n)| *n > 0)
                .collect()
        };
        Share {
            listeners: by_group(&self.listeners),
            sent: by_group(&self.sent),
            start_ack_ms: self
                .start_ack_ms
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .clone(),
            start_failed: load(&self.start_failed),
            stop_acked: load(&self.stop_acked),
            delivered: load(&self.delivered),
            out_of_order: load(&self.out_of_order),
            starts_heard: load(&self.starts_heard),
            stops_heard: load(&self.stops_heard),
            errors: load(&self.errors),
            error_kinds: self
                .error_kinds
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .clone(),
            closed_early: load(&self.closed_early),
            latency: self.latency.dump(),
            cpu_ms,
            worst_send_lag_ms: load(&self.worst_send_lag_us) as f64 / 1000.0,
        }
    }
}

/// When a process stops counting: the start, the talkers' spread, the talk, the drain.
fn end_of(args: &TalkArgs, start_ns: u64) -> Instant {
    let period = Duration::from_secs(1) / args.frame_rate.max(1);
    instant_at(start_ns) + period + args.duration + args.drain
}

/// Runs process `index`'s share after `go`, and returns its figures once the drain is over.
async fn talk_share(ctx: &Ctx, start_ns: u64) -> Share {
    tokio::time::sleep_until(instant_at(start_ns).into()).await;
    let cpu_before = stats::cpu_ms(std::process::id()).unwrap_or(0);
    tokio::time::sleep_until(end_of(&ctx.args, start_ns).into()).await;
    let cpu = stats::cpu_ms(std::process::id())
        .unwrap_or(0)
        .saturating_sub(cpu_before);
    ctx.share(cpu)
}

/// Worker mode: lines of JSON on stdout (ready, then the share), commands on stdin
/// (`go <start ns>`; end of input ends the run).
async fn worker(args: TalkArgs, index: usize) -> anyhow::Result<()> {
    let (go_tx, go_rx) = watch::channel(None);
    let ctx = Arc::new(Ctx::new(args, go_rx)?);
    let ready = connect_share(&ctx, index).await;
    println!("{}", json!({ "ready": ready }));
    std::io::stdout().flush()?;
    let (line_tx, mut line_rx) = tokio::sync::mpsc::unbounded_channel();
    std::thread::spawn(move || {
        for line in std::io::stdin().lines().map_while(Result::ok) {
            if line_tx.send(line).is_err() {
                return;
            }
        }
    });
    while let Some(line) = line_rx.recv().await {
        if let Some(start) = line.trim().strip_prefix("go ") {
            let start_ns: u64 = start.parse()?;
            go_tx.send_replace(Some(start_ns));
            let share = talk_share(&ctx, start_ns).await;
            println!("{}", json!({ "share": share }));
            std::io::stdout().flush()?;
        }
    }
    ctx.stop.cancel();
    tokio::time::sleep(Duration::from_millis(200)).await;
    Ok(())
}

/// The whole run's figures.
#[derive(Debug, Default, Serialize)]
struct Results {
    routers: usize,
    processes: usize,
    groups: usize,
    members: usize,
    talkers: usize,
    memberships: usize,
    plain_tokens: bool,
    frame_rate: u32,
    frame_bytes: usize,
    duration_s: f64,
    connections: usize,
    connected: usize,
    failed: usize,
    registered: usize,
    connect_seconds: f64,
    talks_started: usize,
    start_failed: u64,
    stops_acked: u64,
    start_ack: crate::stats::Percentiles,
    frames_sent: u64,
    frames_expected: u64,
    frames_delivered: u64,
    frames_lost: i64,
    delivered_per_s: f64,
    out_of_order: u64,
    starts_heard: u64,
    stops_heard: u64,
    errors: u64,
    error_kinds: BTreeMap<String, u64>,
    closed_early: u64,
    /// From the routers' /metrics (ours only): frames dropped at a full mailbox, and AUDIO
    /// refused for want of the floor, during the run.
    router_mailbox_full: Option<u64>,
    router_audio_without_floor: Option<u64>,
    latency: Spread,
    worst_send_lag_ms: f64,
    router_rss_kib_before: Option<u64>,
    router_rss_kib_connected: Option<u64>,
    router_rss_kib_after_talk: Option<u64>,
    router_rss_bytes_per_connection: Option<f64>,
    router_cpu_ms: Option<u64>,
    router_cpu_percent: Option<f64>,
    generator_cpu_ms: u64,
    generator_cpu_percent: f64,
}

fn total_rss(pids: &[u32]) -> Option<u64> {
    pids.iter().map(|pid| stats::rss_kib(*pid)).sum()
}

fn total_cpu_ms(pids: &[u32]) -> Option<u64> {
    pids.iter().map(|pid| stats::cpu_ms(*pid)).sum()
}

/// A counter summed over the routers' /metrics (`None` when one has none: not this router).
async fn metric(targets: &[Target], name: &str) -> Option<u64> {
    let mut total = 0;
    for target in targets {
        total += crate::http::metric(target.addr, name).await?;
    }
    Some(total)
}

/// Field `want` of the next line a worker wrote (at most 300 s from now).
async fn next(
    lines: &mut tokio::sync::mpsc::UnboundedReceiver<serde_json::Value>,
    want: &str,
) -> anyhow::Result<serde_json::Value> {
    let value = tokio::time::timeout(Duration::from_secs(300), lines.recv())
        .await
        .map_err(|_| anyhow::anyhow!("a worker said nothing for 300 s"))?
        .ok_or_else(|| anyhow::anyhow!("a worker ended early"))?;
    Ok(value[want].clone())
}

async fn parent(args: TalkArgs) -> anyhow::Result<()> {
    let total = args.groups * args.members;
    let mut results = Results {
        routers: args.urls.len(),
        processes: args.processes,
        groups: args.groups,
        members: args.members,
        talkers: args.talkers,
        memberships: args.memberships,
        plain_tokens: args.plain_tokens,
        frame_rate: args.frame_rate,
        frame_bytes: args.frame_bytes,
        duration_s: args.duration.as_secs_f64(),
        connections: total,
        router_rss_kib_before: total_rss(&args.router_pid),
        ..Results::default()
    };
    eprintln!(
        "talk: {} groups × {} members ({} connections) over {} process(es), {} talker(s)",
        args.groups, args.members, total, args.processes, args.talkers
    );
    let exe = std::env::current_exe()?;
    let (line_tx, mut line_rx) = tokio::sync::mpsc::unbounded_channel::<serde_json::Value>();
    let mut children = Vec::new();
    for index in 1..args.processes {
        let mut command = Command::new(&exe);
        command.arg("talk");
        for url in &args.urls {
            command.args(["--url", url]);
        }
        command
            .env("JWT_SECRET", &args.secret)
            .args(["--worker", &index.to_string()])
            .args(["--groups", &args.groups.to_string()])
            .args(["--members", &args.members.to_string()])
            .args(["--talkers", &args.talkers.to_string()])
            .args(["--frame-rate", &args.frame_rate.to_string()])
            .args(["--frame-bytes", &args.frame_bytes.to_string()])
            .args(["--duration", &format!("{}ms", args.duration.as_millis())])
            .args(["--drain", &format!("{}ms", args.drain.as_millis())])
            .args(["--memberships", &args.memberships.to_string()])
            .args(["--processes", &args.processes.to_string()])
            .args([
                "--connect-concurrency",
                &args.connect_concurrency.to_string(),
            ])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped());
        if args.plain_tokens {
            command.arg("--plain-tokens");
        }
        let mut child = command.spawn()?;
        let stdout = child
            .stdout
            .take()
            .ok_or_else(|| anyhow::anyhow!("worker stdout"))?;
        let tx = line_tx.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if let Ok(value) = serde_json::from_str(&line) {
                    if tx.send(value).is_err() {
                        return;
                    }
                }
            }
        });
        children.push(child);
    }
    drop(line_tx);
    let (go_tx, go_rx) = watch::channel(None);
    let ctx = Arc::new(Ctx::new(args.clone(), go_rx)?);
    let targets = crate::resolve_targets(&args.urls, &args.secret)?;
    let metrics_before = (
        metric(&targets, "presence_talk_mailbox_full_total").await,
        metric(&targets, "presence_audio_without_floor_total").await,
    );
    let connecting = Instant::now();
    let mut readies = vec![connect_share(&ctx, 0).await];
    for _ in &children {
        readies.push(serde_json::from_value(next(&mut line_rx, "ready").await?)?);
    }
    results.connect_seconds = connecting.elapsed().as_secs_f64();
    results.connected = readies.iter().map(|r| r.connected).sum();
    results.failed = readies.iter().map(|r| r.failed).sum();
    results.registered = readies.iter().map(|r| r.registered).sum();
    results.router_rss_kib_connected = total_rss(&args.router_pid);
    if let (Some(before), Some(after)) = (
        results.router_rss_kib_before,
        results.router_rss_kib_connected,
    ) {
        results.router_rss_bytes_per_connection =
            Some((after.saturating_sub(before) * 1024) as f64 / results.connected.max(1) as f64);
    }
    eprintln!(
        "{} connected, {} registered, {} failed in {:.1} s; talking for {:?}",
        results.connected,
        results.registered,
        results.failed,
        results.connect_seconds,
        args.duration
    );
    tokio::time::sleep(args.settle).await;
    let start_ns = epoch_ns() + 300_000_000;
    for child in &mut children {
        if let Some(stdin) = child.stdin.as_mut() {
            writeln!(stdin, "go {start_ns}")?;
            stdin.flush()?;
        }
    }
    go_tx.send_replace(Some(start_ns));
    let own = {
        let ctx = ctx.clone();
        tokio::spawn(async move { talk_share(&ctx, start_ns).await })
    };
    // The router's CPU over the talk itself (the talkers' spread and the talk, not the drain).
    tokio::time::sleep_until(instant_at(start_ns).into()).await;
    let cpu_before = total_cpu_ms(&args.router_pid);
    let window = Instant::now();
    let period = Duration::from_secs(1) / args.frame_rate.max(1);
    tokio::time::sleep(args.duration + period).await;
    if let (Some(before), Some(after)) = (cpu_before, total_cpu_ms(&args.router_pid)) {
        let ms = after.saturating_sub(before);
        results.router_cpu_ms = Some(ms);
        results.router_cpu_percent =
            Some(ms as f64 / (window.elapsed().as_secs_f64() * 1000.0) * 100.0);
    }
    let mut shares = vec![own.await?];
    for _ in &children {
        shares.push(serde_json::from_value(next(&mut line_rx, "share").await?)?);
    }
    results.router_rss_kib_after_talk = total_rss(&args.router_pid);
    if let (Some(before), Some(after)) = (
        metrics_before.0,
        metric(&targets, "presence_talk_mailbox_full_total").await,
    ) {
        results.router_mailbox_full = Some(after.saturating_sub(before));
    }
    if let (Some(before), Some(after)) = (
        metrics_before.1,
        metric(&targets, "presence_audio_without_floor_total").await,
    ) {
        results.router_audio_without_floor = Some(after.saturating_sub(before));
    }
    ctx.stop.cancel();
    for mut child in children {
        drop(child.stdin.take());
        let _ = child.wait();
    }

    let mut listeners = BTreeMap::<usize, u64>::new();
    let mut sent = BTreeMap::<usize, u64>::new();
    let mut start_acks = Vec::new();
    for share in &shares {
        for (g, n) in &share.listeners {
            *listeners.entry(*g).or_default() += n;
        }
        for (g, n) in &share.sent {
            *sent.entry(*g).or_default() += n;
        }
        start_acks.extend(
            share
                .start_ack_ms
                .iter()
                .map(|ms| Duration::from_secs_f64(ms / 1000.0)),
        );
        results.start_failed += share.start_failed;
        results.stops_acked += share.stop_acked;
        results.frames_delivered += share.delivered;
        results.out_of_order += share.out_of_order;
        results.starts_heard += share.starts_heard;
        results.stops_heard += share.stops_heard;
        results.errors += share.errors;
        for (kind, n) in &share.error_kinds {
            *results.error_kinds.entry(kind.clone()).or_default() += n;
        }
        results.closed_early += share.closed_early;
        results.generator_cpu_ms += share.cpu_ms;
        results.worst_send_lag_ms = results.worst_send_lag_ms.max(share.worst_send_lag_ms);
    }
    results.talks_started = start_acks.len();
    results.start_ack = crate::stats::Percentiles::of(start_acks);
    results.frames_sent = sent.values().sum();
    results.frames_expected = sent
        .iter()
        .map(|(g, n)| n * listeners.get(g).copied().unwrap_or(0))
        .sum();
    results.frames_lost = results.frames_expected as i64 - results.frames_delivered as i64;
    results.delivered_per_s = results.frames_delivered as f64 / args.duration.as_secs_f64();
    let counted_ms = (period + args.duration + args.drain).as_secs_f64() * 1000.0;
    results.generator_cpu_percent = results.generator_cpu_ms as f64 / counted_ms * 100.0;
    results.latency = Spread::of(&shares.iter().map(|s| s.latency.clone()).collect::<Vec<_>>());
    stats::report(&table(&results), &results, &args.json)
}

/// The run's table: a name and a value per row.
fn table(r: &Results) -> Vec<(&'static str, String)> {
    let opt = stats::or_dash;
    vec![
        (
            "groups × members / talkers / memberships",
            format!(
                "{} × {} / {} / {}",
                r.groups, r.members, r.talkers, r.memberships
            ),
        ),
        (
            "routers / processes / plain tokens",
            format!("{} / {} / {}", r.routers, r.processes, r.plain_tokens),
        ),
        (
            "AUDIO: frames/s per talker × bytes × seconds",
            format!("{} × {} × {}", r.frame_rate, r.frame_bytes, r.duration_s),
        ),
        (
            "connected / registered (failed), seconds",
            format!(
                "{} / {} ({}), {:.1} s",
                r.connected, r.registered, r.failed, r.connect_seconds
            ),
        ),
        (
            "talks started (START_FAILED) / STOP_ACKs",
            format!(
                "{} ({}) / {}",
                r.talks_started, r.start_failed, r.stops_acked
            ),
        ),
        ("START → START_ACK p50/p99/p999", r.start_ack.line()),
        ("frames sent", r.frames_sent.to_string()),
        (
            "frames delivered / expected (lost)",
            format!(
                "{} / {} ({})",
                r.frames_delivered, r.frames_expected, r.frames_lost
            ),
        ),
        ("frames delivered/s", format!("{:.0}", r.delivered_per_s)),
        ("latency p50/p90/p99/max", r.latency.line()),
        (
            "out of order / errors / closed early",
            format!("{} / {} / {}", r.out_of_order, r.errors, r.closed_early),
        ),
        (
            "errors by kind",
            if r.error_kinds.is_empty() {
                "-".into()
            } else {
                r.error_kinds
                    .iter()
                    .map(|(k, n)| format!("{n} × [{k}]"))
                    .collect::<Vec<_>>()
                    .join("; ")
            },
        ),
        (
            "router: mailbox full drops / AUDIO without floor",
            format!(
                "{} / {}",
                opt(r.router_mailbox_full.map(|v| v as f64), ""),
                opt(r.router_audio_without_floor.map(|v| v as f64), "")
            ),
        ),
        (
            "STARTs / STOPs heard by listeners",
            format!("{} / {}", r.starts_heard, r.stops_heard),
        ),
        (
            "talkers' worst send lag",
            format!("{:.1} ms", r.worst_send_lag_ms),
        ),
        (
            "router RSS before → connected → after talk",
            format!(
                "{} → {} → {} KiB",
                opt(r.router_rss_kib_before.map(|v| v as f64), ""),
                opt(r.router_rss_kib_connected.map(|v| v as f64), ""),
                opt(r.router_rss_kib_after_talk.map(|v| v as f64), "")
            ),
        ),
        (
            "router RSS per connection",
            opt(r.router_rss_bytes_per_connection, " bytes"),
        ),
        (
            "router CPU during the talk",
            match (r.router_cpu_ms, r.router_cpu_percent) {
                (Some(ms), Some(p)) => format!("{ms} ms ({p:.0} % of one core)"),
                _ => "-".into(),
            },
        ),
        (
            "generator CPU (talk + drain)",
            format!(
                "{} ms ({:.0} % of one core)",
                r.generator_cpu_ms, r.generator_cpu_percent
            ),
        ),
    ]
}

/// `presence-bench talk …`: `argv` without the program name and `talk`.
pub fn main(argv: impl Iterator<Item = String>) -> anyhow::Result<()> {
    let args = TalkArgs::parse_from(std::iter::once("presence-bench talk".to_owned()).chain(argv));
    anyhow::ensure!(
        args.processes >= 1 && args.groups >= 1 && args.members >= 1,
        "--processes, --groups and --members need at least one"
    );
    anyhow::ensure!(args.talkers <= args.groups, "--talkers is at most --groups");
    anyhow::ensure!(
        args.plain_tokens || !args.secret.is_empty(),
        "--secret (or JWT_SECRET), or --plain-tokens"
    );
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    match args.worker {
        Some(index) => runtime.block_on(worker(args, index)),
        None => runtime.block_on(parent(args)),
    }
}

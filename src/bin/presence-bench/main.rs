//! presence-bench: a load generator for presence routers (this one, or any that speaks its
//! protocol). It simulates handsets and dashboards against one or more router URLs, on loopback
//! only, and measures connects/s, heartbeats/s, update latency, expiry lag, bulk API throughput
//! and router memory per connection. Ends with a table and a JSON file.
//!
//!     presence-bench --url ws://127.0.0.1:3000/ws --secret "$JWT_SECRET" --handsets 10000 \
//!         --dashboards 100 --processes 2 --router-pid $(pgrep -n presence-router)
//!
//! `presence-bench talk …` measures push-to-talk instead (talk.rs; `presence-bench talk --help`).

mod clients;
mod http;
mod stats;
mod talk;

use clap::Parser;
use clients::{Arrivals, Target};
use presence_router::auth::{self, Role};
use presence_router::config::parse_duration;
use serde::Serialize;
use serde_json::json;
use stats::{rss_kib, Percentiles};
use std::io::{BufRead, BufReader, Write as _};
use std::net::{IpAddr, ToSocketAddrs};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use tokio_util::sync::CancellationToken;

#[derive(Parser, Debug, Clone)]
#[command(
    about = "Load generator for presence routers (loopback only); `presence-bench talk --help` for push-to-talk"
)]
struct Args {
    /// Router WebSocket URL (repeat for several routers; handsets and dashboards are spread).
    #[arg(long = "url", required = true)]
    urls: Vec<String>,
    /// The routers' JWT secret (tokens are minted per handset).
    #[arg(long, env = "JWT_SECRET", hide_env_values = true)]
    secret: String,
    /// Handsets to simulate in all.
    #[arg(long, default_value_t = 1000)]
    handsets: usize,
    /// Dashboards to connect.
    #[arg(long, default_value_t = 10)]
    dashboards: usize,
    /// Time between one handset's heartbeats.
    #[arg(long, default_value = "1s", value_parser = parse_duration)]
    heartbeat_interval: Duration,
    /// Most new connections per second per process (0 = as fast as they go).
    #[arg(long, default_value_t = 0)]
    ramp: u64,
    /// How long handsets heartbeat once all are connected.
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    duration: Duration,
    /// Connect/close latency probes (run while the handsets heartbeat).
    #[arg(long, default_value_t = 100)]
    probes: usize,
    /// Silent handsets whose expiry lag is measured (needs --ttl).
    #[arg(long, default_value_t = 0)]
    expiry_probes: usize,
    /// The routers' PRESENCE_TTL, for the expiry lag.
    #[arg(long, value_parser = parse_duration)]
    ttl: Option<Duration>,
    /// How long to load the bulk API (0 = skip).
    #[arg(long, default_value = "5s", value_parser = parse_duration)]
    bulk_duration: Duration,
    /// Concurrent bulk API connections.
    #[arg(long, default_value_t = 16)]
    bulk_concurrency: usize,
    /// Source addresses to spread connections over (each gives ~28k ports), e.g. 127.0.0.2,127.0.0.3.
    #[arg(long, value_delimiter = ',', default_value = "127.0.0.1")]
    sources: Vec<IpAddr>,
    /// Processes to spread the handsets over (one process may hold ~20k sockets here).
    #[arg(long, default_value_t = 1)]
    processes: usize,
    /// Groups (0 = none: every dashboard sees everyone). With N groups, handset and probe i are
    /// members of group i % N, and dashboard k watches k % 10 + 1 of them: the cost of
    /// visibility, against the same run with 0.
    #[arg(long, default_value_t = 0)]
    groups: usize,
    /// A router's pid, to read its memory and CPU time (repeat for several).
    #[arg(long)]
    router_pid: Vec<u32>,
    /// Where to write the results.
    #[arg(long, default_value = "bench-results.json")]
    json: PathBuf,
    /// Internal: run as worker N of --processes, handling its share of the handsets.
    #[arg(long, hide = true)]
    worker: Option<usize>,
}

/// One process's ramp: how many handsets connected, when it started and ended (epoch ms).
#[derive(Debug, Clone, Serialize, serde::Deserialize)]
struct Ramp {
    connected: usize,
    failed: usize,
    start_ms: u64,
    end_ms: u64,
}

fn epoch_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

fn targets(args: &Args) -> anyhow::Result<Vec<Target>> {
    resolve_targets(&args.urls, &args.secret)
}

/// The routers at `urls` (loopback only), whose tokens are signed with `secret`.
fn resolve_targets(urls: &[String], secret: &str) -> anyhow::Result<Vec<Target>> {
    let secret = Arc::new(secret.as_bytes().to_vec());
    urls.iter()
        .map(|url| {
            let rest = url
                .strip_prefix("ws://")
                .ok_or_else(|| anyhow::anyhow!("{url}: only ws:// URLs"))?;
            let hostport = rest.split('/').next().unwrap_or(rest);
            let addr = hostport
                .to_socket_addrs()?
                .next()
                .ok_or_else(|| anyhow::anyhow!("{url}: cannot resolve"))?;
            anyhow::ensure!(
                addr.ip().is_loopback(),
                "{url}: presence-bench only targets loopback addresses"
            );
            Ok(Target {
                url: url.clone(),
                addr,
                secret: secret.clone(),
            })
        })
        .collect()
}

/// Connects `count` handsets (ids `h-{process}-{i}`) and keeps them heartbeating until `stop`.
async fn ramp_handsets(
    args: &Args,
    targets: &[Target],
    process: usize,
    count: usize,
    sent: Arc<AtomicU64>,
    stop: CancellationToken,
) -> Ramp {
    let start_ms = epoch_ms();
    let started = Instant::now();
    // At most this many handshakes in flight at once.
    let limit = Arc::new(tokio::sync::Semaphore::new(256));
    let connected = Arc::new(AtomicU64::new(0));
    let failed = Arc::new(AtomicU64::new(0));
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..count {
        if args.ramp > 0 {
            let due = started + Duration::from_secs_f64(i as f64 / args.ramp as f64);
            tokio::time::sleep_until(due.into()).await;
        }
        let Ok(permit) = limit.clone().acquire_owned().await else {
            break;
        };
        let target = targets[i % targets.len()].clone();
        let source = (args.sources.len() > 1).then(|| args.sources[i % args.sources.len()]);
        let (sent, stop, connected, failed) = (
            sent.clone(),
            stop.clone(),
            connected.clone(),
            failed.clone(),
        );
        let interval = args.heartbeat_interval;
        let offset = interval.mul_f64((i % 1000) as f64 / 1000.0);
        let user = format!("h-{process}-{i}");
        let groups = member_of(args.groups, i);
        tasks.spawn(async move {
            let connection =
                clients::connect(&target, source, &user, Role::Mobile, Some("bench"), &groups)
                    .await;
            drop(permit);
            match connection {
                Ok(ws) => {
                    connected.fetch_add(1, Ordering::Relaxed);
                    clients::run_handset(ws, Some(interval), offset, sent, stop).await;
                }
                Err(_) => {
                    failed.fetch_add(1, Ordering::Relaxed);
                }
            }
        });
    }
    while (connected.load(Ordering::Relaxed) + failed.load(Ordering::Relaxed)) < count as u64 {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    tokio::spawn(async move { while tasks.join_next().await.is_some() {} });
    Ramp {
        connected: connected.load(Ordering::Relaxed) as usize,
        failed: failed.load(Ordering::Relaxed) as usize,
        start_ms,
        end_ms: epoch_ms(),
    }
}

/// Worker mode: ramp this process's share, report it, heartbeat for the duration, report the
/// heartbeats sent. Lines of JSON on stdout.
async fn worker(args: Args, index: usize) -> anyhow::Result<()> {
    let targets = targets(&args)?;
    let sent = Arc::new(AtomicU64::new(0));
    let stop = CancellationToken::new();
    let ramp = ramp_handsets(
        &args,
        &targets,
        index,
        args.handsets,
        sent.clone(),
        stop.clone(),
    )
    .await;
    println!("{}", json!({ "ramp": ramp }));
    std::io::stdout().flush()?;
    // The parent drives the rest on stdin: "mark" starts a measuring window, "report" ends it,
    // end of input stops the handsets.
    let mut mark = (sent.load(Ordering::Relaxed), Instant::now());
    for line in std::io::stdin().lines() {
        match line?.trim() {
            "mark" => mark = (sent.load(Ordering::Relaxed), Instant::now()),
            "report" => {
                let heartbeats = sent.load(Ordering::Relaxed) - mark.0;
                let seconds = mark.1.elapsed().as_secs_f64();
                println!(
                    "{}",
                    json!({ "heartbeats": heartbeats, "seconds": seconds })
                );
                std::io::stdout().flush()?;
            }
            _ => {}
        }
    }
    stop.cancel();
    Ok(())
}

/// Sends one command line to every worker.
fn tell(children: &mut [std::process::Child], command: &str) {
    for child in children {
        if let Some(stdin) = child.stdin.as_mut() {
            let _ = writeln!(stdin, "{command}");
        }
    }
}

/// The share of handsets of process `index` out of `processes`.
fn share(total: usize, processes: usize, index: usize) -> usize {
    total / processes + usize::from(index < total % processes)
}

/// What the parent measures besides the ramps.
#[derive(Debug, Default, Serialize)]
struct Results {
    handsets: usize,
    dashboards: usize,
    routers: usize,
    processes: usize,
    connected: usize,
    failed: usize,
    connects_per_s: f64,
    heartbeats_sent_per_s: f64,
    heartbeats_received_per_s: Option<f64>,
    connect_to_update: Percentiles,
    close_to_update: Percentiles,
    expiry_lag: Percentiles,
    bulk_requests_per_s: f64,
    bulk_latency: Percentiles,
    router_rss_kib_before: Option<u64>,
    router_rss_kib_after: Option<u64>,
    router_rss_bytes_per_handset: Option<f64>,
    groups: usize,
    /// Changes the probes caused (a connect and a close each) and the frames dashboards got for
    /// them.
    probe_updates: u64,
    updates_delivered: u64,
    /// The routers' CPU time during the probe window (with --router-pid).
    router_cpu_ms: Option<u64>,
}

async fn heartbeats_received(targets: &[Target]) -> Option<u64> {
    let mut total = 0;
    for target in targets {
        total += http::metric(target.addr, "presence_heartbeats_total").await?;
    }
    Some(total)
}

fn total_rss(pids: &[u32]) -> Option<u64> {
    pids.iter().map(|pid| rss_kib(*pid)).sum()
}

fn total_cpu_ms(pids: &[u32]) -> Option<u64> {
    pids.iter().map(|pid| stats::cpu_ms(*pid)).sum()
}

/// The groups of handset (or probe) `i` among `groups` (none when there are none).
fn member_of(groups: usize, i: usize) -> Vec<String> {
    match groups {
        0 => Vec::new(),
        n => vec![format!("g{}", i % n)],
    }
}

/// The groups dashboard `k` watches: `k % 10 + 1` of them, spread over all.
fn watched_by(groups: usize, k: usize) -> Vec<String> {
    match groups {
        0 => Vec::new(),
        n => (0..(k % 10 + 1).min(n))
            .map(|m| format!("g{}", (k * 13 + m) % n))
            .collect(),
    }
}

/// Waits until `dashboards` dashboards saw `user` go online/offline (at most 10 s).
async fn seen_by_all(
    arrivals: &Arrivals,
    user: &str,
    online: bool,
    dashboards: usize,
) -> Vec<Instant> {
    let deadline = Instant::now() + Duration::from_secs(10);
    while arrivals.count(user, online) < dashboards && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_micros(200)).await;
    }
    arrivals.take(user, online)
}

async fn parent(args: Args) -> anyhow::Result<()> {
    let targets = targets(&args)?;
    let mut results = Results {
        handsets: args.handsets,
        dashboards: args.dashboards,
        routers: targets.len(),
        processes: args.processes,
        groups: args.groups,
        router_rss_kib_before: total_rss(&args.router_pid),
        ..Results::default()
    };
    let stop = CancellationToken::new();
    let arrivals = Arc::new(Arrivals::default());
    eprintln!(
        "ramping {} handsets over {} process(es)",
        args.handsets, args.processes
    );
    let exe = std::env::current_exe()?;
    let mut children = Vec::new();
    for index in 1..args.processes {
        let mut command = Command::new(&exe);
        for url in &args.urls {
            command.args(["--url", url]);
        }
        let sources: Vec<String> = args.sources.iter().map(ToString::to_string).collect();
        command
            .env("JWT_SECRET", &args.secret)
            .args([
                "--worker",
                &index.to_string(),
                "--handsets",
                &share(args.handsets, args.processes, index).to_string(),
            ])
            .args([
                "--heartbeat-interval",
                &format!("{}ms", args.heartbeat_interval.as_millis()),
            ])
            .args([
                "--ramp",
                &args.ramp.to_string(),
                "--sources",
                &sources.join(","),
            ])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped());
        children.push(command.spawn()?);
    }
    let sent = Arc::new(AtomicU64::new(0));
    let own = share(args.handsets, args.processes, 0);
    let mut ramps = vec![ramp_handsets(&args, &targets, 0, own, sent.clone(), stop.clone()).await];
    let mut child_lines = Vec::new();
    for child in &mut children {
        let stdout = child
            .stdout
            .take()
            .ok_or_else(|| anyhow::anyhow!("worker stdout"))?;
        let mut lines = BufReader::new(stdout).lines();
        let line = tokio::task::block_in_place(|| lines.next())
            .transpose()?
            .unwrap_or_default();
        let value: serde_json::Value = serde_json::from_str(&line)?;
        ramps.push(serde_json::from_value(value["ramp"].clone())?);
        child_lines.push(lines);
    }
    results.connected = ramps.iter().map(|r| r.connected).sum();
    results.failed = ramps.iter().map(|r| r.failed).sum();
    let span_ms = ramps.iter().map(|r| r.end_ms).max().unwrap_or(0)
        - ramps.iter().map(|r| r.start_ms).min().unwrap_or(0);
    results.connects_per_s = results.connected as f64 * 1000.0 / span_ms.max(1) as f64;
    eprintln!(
        "{} connected, {} failed, {:.0} connects/s",
        results.connected, results.failed, results.connects_per_s
    );
    results.router_rss_kib_after = total_rss(&args.router_pid);
    if let (Some(before), Some(after)) =
        (results.router_rss_kib_before, results.router_rss_kib_after)
    {
        results.router_rss_bytes_per_handset =
            Some((after.saturating_sub(before) * 1024) as f64 / results.connected.max(1) as f64);
    }

    eprintln!("connecting {} dashboards", args.dashboards);
    let mut readies = Vec::new();
    for i in 0..args.dashboards {
        let target = &targets[i % targets.len()];
        let groups = watched_by(args.groups, i);
        let ws = clients::connect(
            target,
            None,
            &format!("dash-{i}"),
            Role::Dashboard,
            None,
            &groups,
        )
        .await?;
        let (ready, snapshot_came) = tokio::sync::oneshot::channel();
        readies.push(snapshot_came);
        tokio::spawn(clients::run_dashboard(
            ws,
            "p-",
            arrivals.clone(),
            ready,
            stop.clone(),
        ));
    }
    // A probe that comes online before a dashboard's snapshot is in that snapshot, not an update.
    for snapshot_came in readies {
        tokio::time::timeout(Duration::from_secs(30), snapshot_came)
            .await
            .map_err(|_| anyhow::anyhow!("a dashboard got no snapshot within 30 s"))?
            .map_err(|_| anyhow::anyhow!("a dashboard closed before its snapshot"))?;
    }

    eprintln!(
        "heartbeating for {:?}, probing update latency",
        args.duration
    );
    let window = Instant::now();
    tell(&mut children, "mark");
    let sent_before = sent.load(Ordering::Relaxed);
    let received_before = heartbeats_received(&targets).await;
    let mut connect_lat = Vec::new();
    let mut close_lat = Vec::new();
    let mut probe_updates = 0u64;
    let cpu_before = total_cpu_ms(&args.router_pid);
    for j in 0..args.probes {
        if window.elapsed() >= args.duration {
            break;
        }
        let target = &targets[j % targets.len()];
        let user = format!("p-{j}");
        let start = Instant::now();
        let groups = member_of(args.groups, j);
        let watchers = (0..args.dashboards)
            .filter(|k| groups.is_empty() || watched_by(args.groups, *k).contains(&groups[0]))
            .count();
        let ws =
            clients::connect(target, None, &user, Role::Mobile, Some("probe"), &groups).await?;
        probe_updates += 2;
        connect_lat.extend(
            seen_by_all(&arrivals, &user, true, watchers)
                .await
                .iter()
                .map(|t| t.saturating_duration_since(start)),
        );
        let closing = Instant::now();
        drop(ws);
        close_lat.extend(
            seen_by_all(&arrivals, &user, false, watchers)
                .await
                .iter()
                .map(|t| t.saturating_duration_since(closing)),
        );
    }
    tokio::time::sleep(args.duration.saturating_sub(window.elapsed())).await;
    let elapsed = window.elapsed().as_secs_f64();
    let own_rate = (sent.load(Ordering::Relaxed) - sent_before) as f64 / elapsed;
    tell(&mut children, "report");
    let mut child_rate = 0.0;
    for lines in &mut child_lines {
        let line = tokio::task::block_in_place(|| lines.next())
            .transpose()?
            .unwrap_or_default();
        let value: serde_json::Value = serde_json::from_str(&line).unwrap_or_default();
        child_rate += value["heartbeats"].as_f64().unwrap_or(0.0)
            / value["seconds"].as_f64().unwrap_or(1.0).max(0.001);
    }
    results.heartbeats_sent_per_s = own_rate + child_rate;
    if let (Some(before), Some(after)) = (received_before, heartbeats_received(&targets).await) {
        results.heartbeats_received_per_s = Some((after - before) as f64 / elapsed);
    }
    if let (Some(before), Some(after)) = (cpu_before, total_cpu_ms(&args.router_pid)) {
        results.router_cpu_ms = Some(after.saturating_sub(before));
    }
    results.probe_updates = probe_updates;
    results.updates_delivered = (connect_lat.len() + close_lat.len()) as u64;
    results.connect_to_update = Percentiles::of(connect_lat);
    results.close_to_update = Percentiles::of(close_lat);

    if let (Some(ttl), true) = (args.ttl, args.expiry_probes > 0) {
        eprintln!(
            "{} silent handsets: waiting for their expiry",
            args.expiry_probes
        );
        let mut silent = Vec::new();
        for j in 0..args.expiry_probes {
            let target = &targets[j % targets.len()];
            let user = format!("p-x{j}");
            let ws = clients::connect(target, None, &user, Role::Mobile, None, &[]).await?;
            let connected = Instant::now();
            let quiet = CancellationToken::new();
            tokio::spawn(clients::run_handset(
                ws,
                None,
                Duration::ZERO,
                Arc::new(AtomicU64::new(0)),
                quiet.clone(),
            ));
            silent.push((user, connected, quiet));
        }
        let mut lags = Vec::new();
        for (user, connected, quiet) in silent {
            let deadline = connected + ttl;
            tokio::time::sleep_until(deadline.into()).await;
            lags.extend(
                seen_by_all(&arrivals, &user, false, args.dashboards)
                    .await
                    .iter()
                    .map(|t| t.saturating_duration_since(deadline)),
            );
            quiet.cancel();
        }
        results.expiry_lag = Percentiles::of(lags);
    }

    if !args.bulk_duration.is_zero() {
        eprintln!("bulk API for {:?}", args.bulk_duration);
        let ids: Vec<String> = (0..100).map(|i| format!("h-0-{i}")).collect();
        let body = json!({ "userIds": ids }).to_string();
        let token = auth::mint(
            args.secret.as_bytes(),
            "bench-api",
            Role::Web,
            Duration::from_secs(3600),
            auth::now_secs(),
        )?;
        let started = Instant::now();
        let latencies = http::bulk_load(
            targets[0].addr,
            &token,
            body,
            args.bulk_concurrency,
            args.bulk_duration,
        )
        .await;
        results.bulk_requests_per_s = latencies.len() as f64 / started.elapsed().as_secs_f64();
        results.bulk_latency = Percentiles::of(latencies);
    }

    stop.cancel();
    for mut child in children {
        drop(child.stdin.take());
        let _ = child.wait();
    }
    stats::report(&table(&results), &results, &args.json)
}

/// The run's table: a name and a value per row.
fn table(r: &Results) -> Vec<(&'static str, String)> {
    let opt = stats::or_dash;
    vec![
        (
            "handsets / dashboards / routers / processes",
            format!(
                "{} / {} / {} / {}",
                r.handsets, r.dashboards, r.routers, r.processes
            ),
        ),
        (
            "connected (failed)",
            format!("{} ({})", r.connected, r.failed),
        ),
        (
            "new authenticated connections/s",
            format!("{:.0}", r.connects_per_s),
        ),
        (
            "heartbeats/s sent",
            format!("{:.0}", r.heartbeats_sent_per_s),
        ),
        (
            "heartbeats/s received by the routers",
            opt(r.heartbeats_received_per_s, ""),
        ),
        (
            "connect → update at dashboards p50/p99/p999",
            r.connect_to_update.line(),
        ),
        (
            "close → update at dashboards p50/p99/p999",
            r.close_to_update.line(),
        ),
        ("TTL expiry → offline update lag", r.expiry_lag.line()),
        (
            "bulk API (100 ids) requests/s",
            format!("{:.0}", r.bulk_requests_per_s),
        ),
        ("bulk API latency p50/p99/p999", r.bulk_latency.line()),
        (
            "router RSS before → after ramp",
            format!(
                "{} → {} KiB",
                opt(r.router_rss_kib_before.map(|v| v as f64), ""),
                opt(r.router_rss_kib_after.map(|v| v as f64), "")
            ),
        ),
        (
            "router RSS per handset",
            opt(r.router_rss_bytes_per_handset, " bytes"),
        ),
        (
            "groups; probe changes → frames delivered",
            format!(
                "{}; {} → {}",
                r.groups, r.probe_updates, r.updates_delivered
            ),
        ),
        (
            "router CPU in the probe window",
            opt(r.router_cpu_ms.map(|v| v as f64), " ms"),
        ),
    ]
}

fn main() -> anyhow::Result<()> {
    if std::env::args().nth(1).as_deref() == Some("talk") {
        return talk::main(std::env::args().skip(2));
    }
    let args = Args::parse();
    anyhow::ensure!(
        args.processes >= 1 && !args.sources.is_empty(),
        "--processes and --sources need at least one"
    );
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    match args.worker {
        Some(index) => runtime.block_on(worker(args, index)),
        None => runtime.block_on(parent(args)),
    }
}

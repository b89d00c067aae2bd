//! The Redis store's background tasks: writer, listener, sweeper and rebuilder.

use super::{
    Shared, Write, MAX_BATCH, MAX_PENDING, RETRY_MAX, RETRY_MIN, SWEEP_INTERVAL, SWEEP_LIMIT,
    UNREACHABLE_LOG_INTERVAL,
};
use crate::presence::{Status, Update};
use crate::store::{FeedEvent, Published};
use fred::prelude::{ClientLike, ConfigInterface, EventInterface, PubsubInterface};
use fred::types::{ClusterHash, CustomCommand, Value};
use serde::Deserialize;
use std::collections::VecDeque;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use tokio::sync::broadcast::error::RecvError;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

/// The channel every transition is published on.
pub const UPDATES: &str = "presence:updates";

/// The prefix of the keys whose expiry means "offline".
const USER_KEY: &str = "presence:user:";

/// Connects and starts every task; returns the writer's handle.
pub(super) async fn spawn(
    shared: &Arc<Shared>,
    queue: mpsc::Receiver<Write>,
    db: u8,
    shutdown: CancellationToken,
    finish: CancellationToken,
) -> JoinHandle<()> {
    // Subscribe to (re)connections before connecting: the first connection counts as one.
    let mut client_up = shared.client.reconnect_rx();
    let mut subscriber_up = shared.subscriber.reconnect_rx();
    let mut errors = shared.client.error_rx();
    tokio::spawn(report_connection(
        shared.clone(),
        shared.client.error_rx(),
        shared.client.reconnect_rx(),
        shutdown.clone(),
    ));
    // The connection tasks run (and reconnect) on their own; their handles are not needed.
    drop(shared.client.connect());
    drop(shared.subscriber.connect());
    // Ready before the router serves: scripts loaded, expiry events on, and subscribed, so that
    // no update of ours is missed.
    let ready = async {
        shared.client.wait_for_connect().await?;
        shared.scripts.load(&shared.client).await?;
        enable_expiry_events(shared).await;
        shared.subscriber.wait_for_connect().await?;
        shared.subscriber.subscribe(channels(db)).await
    };
    // A connection that fails (refused, TLS, password) ends the wait at once: the router serves
    // degraded and the tasks below finish the set-up when Redis comes.
    let failed = async move {
        match errors.recv().await {
            Ok((error, _)) => error,
            Err(_) => fred::error::Error::new_canceled(),
        }
    };
    let outcome = tokio::select! {
        ready = tokio::time::timeout(super::READY_TIMEOUT, ready) => ready,
        error = failed => Ok(Err(error)),
    };
    match outcome {
        Ok(Ok(())) => {
            // Those first connections are handled: the tasks wait for the next ones.
            shared.subscribed.store(true, Ordering::Relaxed);
            while client_up.try_recv().is_ok() {}
            while subscriber_up.try_recv().is_ok() {}
        }
        Ok(Err(error)) => warn!(
            redis = %shared.address,
            cause = %error,
            "Redis is not ready; serving with presence degraded until it is"
        ),
        Err(_) => warn!(
            redis = %shared.address,
            cause = "no answer within 10 s",
            "Redis is not ready; serving with presence degraded until it is"
        ),
    }
    tokio::spawn(rebuild(shared.clone(), client_up, shutdown.clone()));
    tokio::spawn(listen(shared.clone(), subscriber_up, db, shutdown.clone()));
    tokio::spawn(sweep(shared.clone(), shutdown));
    tokio::spawn(write(shared.clone(), queue, finish))
}

/// Logs the main connection's life: each loss and each failure to reach Redis at WARN with the
/// cause (the same cause again at most every [`UNREACHABLE_LOG_INTERVAL`]), each (re)connection
/// at INFO.
async fn report_connection(
    shared: Arc<Shared>,
    mut errors: tokio::sync::broadcast::Receiver<(
        fred::error::Error,
        Option<fred::types::config::Server>,
    )>,
    mut up: tokio::sync::broadcast::Receiver<fred::types::config::Server>,
    shutdown: CancellationToken,
) {
    let mut connected = false;
    let mut last_warned: Option<(String, tokio::time::Instant)> = None;
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            event = up.recv() => match event {
                Ok(_) => {
                    if last_warned.take().is_some() {
                        info!(redis = %shared.address, "Redis is reachable again");
                    } else {
                        info!(redis = %shared.address, "connected to Redis");
                    }
                    connected = true;
                }
                Err(RecvError::Lagged(_)) => {}
                Err(RecvError::Closed) => return,
            },
            event = errors.recv() => match event {
                Ok((error, _)) => {
                    let cause = error.to_string();
                    if std::mem::take(&mut connected) {
                        warn!(redis = %shared.address, %cause, "lost the connection to Redis; reconnecting");
                    } else if last_warned.as_ref().is_some_and(|(last, at)| {
                        *last == cause && at.elapsed() < UNREACHABLE_LOG_INTERVAL
                    }) {
                        debug!(redis = %shared.address, %cause, "Redis still unreachable");
                        continue;
                    } else {
                        warn!(redis = %shared.address, %cause, "cannot reach Redis; retrying");
                    }
                    last_warned = Some((cause, tokio::time::Instant::now()));
                }
                Err(RecvError::Lagged(_)) => {}
                Err(RecvError::Closed) => return,
            },
        }
    }
}

/// Each time the main connection comes up: load the scripts, ask for expiry notifications and
/// re-register this router's live connections (Redis may have restarted empty).
async fn rebuild(
    shared: Arc<Shared>,
    mut up: tokio::sync::broadcast::Receiver<fred::types::config::Server>,
    shutdown: CancellationToken,
) {
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            event = up.recv() => if event.is_err() && up.is_closed() { return },
        }
        if let Err(error) = shared.scripts.load(&shared.client).await {
            warn!(%error, "loading the presence scripts failed");
        }
        enable_expiry_events(&shared).await;
        let live: Vec<_> = shared
            .live
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .values()
            .cloned()
            .collect();
        info!(
            connections = live.len(),
            "Redis connected; re-registering live connections"
        );
        for device in live {
            if shared.writes.send(Write::Rebuild { device }).await.is_err() {
                return;
            }
        }
    }
}

/// Adds `E` and `x` to `notify-keyspace-events`, keeping the flags already set. Where CONFIG is
/// refused, expiry still arrives through the sweeper.
async fn enable_expiry_events(shared: &Shared) {
    let current: Result<Vec<String>, _> = shared.client.config_get("notify-keyspace-events").await;
    let flags = match current {
        Ok(pair) => pair.get(1).cloned().unwrap_or_default(),
        Err(error) => {
            warn!(%error, "cannot read notify-keyspace-events; relying on the sweeper");
            return;
        }
    };
    let mut wanted = flags.clone();
    if !wanted.contains('E') {
        wanted.push('E');
    }
    if !wanted.contains('x') && !wanted.contains('A') {
        wanted.push('x');
    }
    if wanted != flags {
        match shared
            .client
            .config_set("notify-keyspace-events", wanted.as_str())
            .await
        {
            Ok(()) => info!(from = %flags, to = %wanted, "enabled keyspace expiry events"),
            Err(error) => {
                warn!(%error, "cannot enable keyspace expiry events; relying on the sweeper")
            }
        }
    }
}

/// EVALSHA as a custom command (pipelines and per-command options have no Lua interface).
pub(super) fn evalsha() -> CustomCommand {
    CustomCommand::new_static("EVALSHA", ClusterHash::FirstKey, false)
}

/// The channels the listener needs: the updates, and expiry events of database `db`.
fn channels(db: u8) -> Vec<String> {
    vec![UPDATES.to_owned(), format!("__keyevent@{db}__:expired")]
}

/// A message on `presence:updates`, as the scripts encode it.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Message {
    user_id: String,
    status: String,
    version: u64,
    last_seen: u64,
    timestamp: u64,
    seq: u64,
    device_id: Option<String>,
}

fn parse(value: &Value) -> Option<Published> {
    let text = value.as_str()?;
    let m: Message = serde_json::from_str(&text).ok()?;
    let status = match m.status.as_str() {
        "online" => Status::Online,
        "offline" => Status::Offline,
        _ => return None,
    };
    let update = Update {
        user_id: Arc::from(m.user_id),
        status,
        version: m.version,
        last_seen: m.last_seen,
        device_id: m.device_id.map(Arc::from),
        timestamp: m.timestamp,
    };
    Some(Published::new(update, m.seq))
}

/// Forwards updates to this router's feed and expiry events to the writer. After every
/// (re)subscription the feed gets a `Resync`: messages may have been missed meanwhile.
async fn listen(
    shared: Arc<Shared>,
    mut up: tokio::sync::broadcast::Receiver<fred::types::config::Server>,
    db: u8,
    shutdown: CancellationToken,
) {
    let mut messages = shared.subscriber.message_rx();
    let mut expiries = shared.subscriber.keyspace_event_rx();
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            event = up.recv() => {
                if event.is_err() && up.is_closed() {
                    return;
                }
                shared.subscribed.store(false, Ordering::Relaxed);
                if !resubscribe(&shared, db, &shutdown).await {
                    return;
                }
                shared.subscribed.store(true, Ordering::Relaxed);
                let _ = shared.feed.send(Arc::new(FeedEvent::Resync));
            }
            message = messages.recv() => match message {
                Ok(message) if message.channel == UPDATES => match parse(&message.value) {
                    Some(published) => {
                        let _ = shared.feed.send(Arc::new(FeedEvent::Update(published)));
                    }
                    None => warn!("unreadable message on presence:updates"),
                },
                Ok(_) => {}
                // Missed messages: let dashboards take a fresh snapshot.
                Err(RecvError::Lagged(_)) => {
                    let _ = shared.feed.send(Arc::new(FeedEvent::Resync));
                }
                Err(RecvError::Closed) => return,
            },
            event = expiries.recv() => match event {
                Ok(event) if event.operation == "expired" => {
                    if let Some(user_id) = event.key.as_str_lossy().strip_prefix(USER_KEY) {
                        let _ = shared.writes.try_send(Write::Wake { user_id: Arc::from(user_id) });
                    }
                }
                // A missed expiry event is caught by the sweeper.
                Ok(_) | Err(RecvError::Lagged(_)) => {}
                Err(RecvError::Closed) => return,
            },
        }
    }
}

/// Subscribes again, with backoff, until it works (true) or the router shuts down (false).
async fn resubscribe(shared: &Shared, db: u8, shutdown: &CancellationToken) -> bool {
    let mut backoff = RETRY_MIN;
    loop {
        match shared.subscriber.subscribe(channels(db)).await {
            Ok(()) => return true,
            Err(error) => {
                warn!(%error, ?backoff, "subscribing to presence updates failed; retrying")
            }
        }
        tokio::select! {
            _ = shutdown.cancelled() => return false,
            _ = tokio::time::sleep(backoff) => {}
        }
        backoff = (backoff * 2).min(RETRY_MAX);
    }
}

/// Runs the sweep script every [`SWEEP_INTERVAL`], again at once when a sweep was full.
async fn sweep(shared: Arc<Shared>, shutdown: CancellationToken) {
    let mut tick = tokio::time::interval(SWEEP_INTERVAL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tick.tick() => {}
        }
        while shared.client.is_connected() {
            let swept: Result<u64, _> = shared
                .scripts
                .sweep
                .evalsha_with_reload(
                    &shared.client,
                    Vec::<String>::new(),
                    vec![SWEEP_LIMIT.to_string()],
                )
                .await;
            match swept {
                Ok(n) if n as usize >= SWEEP_LIMIT => continue,
                Ok(_) => break,
                Err(error) => {
                    debug!(%error, "sweep failed");
                    break;
                }
            }
        }
    }
}

/// Sends writes in arrival order, as pipelines. Writes that fail (Redis unreachable, a timeout,
/// an error) are kept, in order, and sent again with backoff; meanwhile the store reports itself
/// degraded. Once `finish` is cancelled it sends what is left and stops.
async fn write(shared: Arc<Shared>, mut queue: mpsc::Receiver<Write>, finish: CancellationToken) {
    let mut pending: VecDeque<Write> = VecDeque::new();
    let mut backoff = RETRY_MIN;
    loop {
        if pending.is_empty() {
            tokio::select! {
                biased;
                write = queue.recv() => match write {
                    Some(write) => pending.push_back(write),
                    None => return,
                },
                _ = finish.cancelled() => return,
            }
        }
        while pending.len() < MAX_PENDING {
            match queue.try_recv() {
                Ok(write) => pending.push_back(write),
                Err(_) => break,
            }
        }
        let sent = shared.client.is_connected() && send(&shared, &mut pending).await;
        shared.writes_failing.store(!sent, Ordering::Relaxed);
        if sent {
            backoff = RETRY_MIN;
            continue;
        }
        if finish.is_cancelled() {
            warn!(
                lost = pending.len(),
                "Redis unreachable at exit; writes lost"
            );
            return;
        }
        debug!(
            pending = pending.len(),
            ?backoff,
            "Redis writes failing; retrying"
        );
        tokio::select! {
            _ = tokio::time::sleep(backoff) => {}
            _ = finish.cancelled() => {}
        }
        backoff = (backoff * 2).min(RETRY_MAX);
    }
}

/// Sends up to [`MAX_BATCH`] writes from the front of `pending` as one pipeline and removes the
/// ones that succeeded; the failed ones stay at the front, in order. Writes refused for a missing
/// script are sent again at once after the scripts are loaded. True when all succeeded.
async fn send(shared: &Shared, pending: &mut VecDeque<Write>) -> bool {
    let take = pending.len().min(MAX_BATCH);
    let mut batch: Vec<Write> = pending
        .drain(..take)
        .filter(|w| shared.still_wanted(w))
        .collect();
    let mut results = pipeline(shared, batch.iter()).await;
    let noscript = |r: &Result<Value, fred::error::Error>| matches!(r, Err(e) if e.details().starts_with("NOSCRIPT"));
    if results.iter().any(noscript) && shared.scripts.load(&shared.client).await.is_ok() {
        let (again, done): (Vec<_>, Vec<_>) = batch
            .into_iter()
            .zip(results)
            .partition(|(_, r)| noscript(r));
        let again: Vec<Write> = again.into_iter().map(|(w, _)| w).collect();
        let retried = pipeline(shared, again.iter()).await;
        (batch, results) = done
            .into_iter()
            .chain(again.into_iter().zip(retried))
            .unzip();
    }
    let mut failed = Vec::new();
    for (write, result) in batch.into_iter().zip(results) {
        if let Err(error) = result {
            debug!(%error, "presence write failed");
            failed.push(write);
        }
    }
    let ok = failed.is_empty();
    for write in failed.into_iter().rev() {
        pending.push_front(write);
    }
    ok
}

/// ARGV of `seen.lua` for `device`, seen `age` ms ago.
fn seen_args(shared: &Shared, device: &crate::store::Device, age: u64) -> Vec<String> {
    vec![
        device.user_id.to_string(),
        shared.member(device.conn),
        device.device_id.as_deref().unwrap_or("").to_owned(),
        shared.rules.ttl.to_string(),
        age.to_string(),
    ]
}

async fn pipeline<'a>(
    shared: &Shared,
    writes: impl Iterator<Item = &'a Write>,
) -> Vec<Result<Value, fred::error::Error>> {
    let pipe = shared.client.pipeline();
    let now = shared.clock.now_ms();
    for write in writes {
        let (script, args) = match write {
            Write::Seen { device, at } => (
                &shared.scripts.seen,
                seen_args(shared, device, now.saturating_sub(*at)),
            ),
            Write::Leave { device } => (
                &shared.scripts.leave,
                vec![
                    device.user_id.to_string(),
                    shared.member(device.conn),
                    shared.rules.offline_debounce.to_string(),
                ],
            ),
            Write::Wake { user_id } => (&shared.scripts.wake, vec![user_id.to_string()]),
            Write::Rebuild { device } => (&shared.scripts.seen, seen_args(shared, device, 0)),
        };
        // EVALSHA sha 0 argv...
        let mut command = Vec::with_capacity(args.len() + 2);
        command.push(script.sha1().to_string());
        command.push("0".to_owned());
        command.extend(args);
        let queued: Result<(), _> = pipe.custom(evalsha(), command).await;
        if let Err(error) = queued {
            debug!(%error, "could not queue a presence write");
        }
    }
    pipe.try_all::<Value>().await
}

//! The Redis store's background tasks: writer, listener, sweeper and rebuilder.

use super::{
    Shared, Write, EPOCH_CHECK_INTERVAL, MAX_BATCH, MAX_PENDING, RESTORE_GRACE, RETRY_MAX,
    RETRY_MIN, SWEEP_INTERVAL, SWEEP_LIMIT, UNREACHABLE_LOG_INTERVAL,
};
use crate::presence::{Audience, Stated, Status, Update};
use crate::store::{FeedEvent, Published};
use crate::tasks::Tasks;
use fred::prelude::KeysInterface;
use fred::prelude::{
    ClientLike, ConfigInterface, EventInterface, PubsubInterface, SortedSetsInterface,
};
use fred::types::Value;
use fred::types::{Expiration, SetOptions};
use serde::Deserialize;
use std::collections::VecDeque;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use tokio::sync::broadcast::error::RecvError;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

/// What the writer reads: writes in arrival order, and urgent ones (restores and their barrier).
pub(super) struct Queues {
    pub writes: mpsc::Receiver<Write>,
    pub urgent: mpsc::Receiver<Write>,
}

/// Connects and starts every task; returns the writer's handle.
pub(super) async fn spawn(
    shared: &Arc<Shared>,
    queues: Queues,
    db: u8,
    tasks: &Tasks,
    finish: CancellationToken,
) -> JoinHandle<()> {
    let shutdown = tasks.shutdown().clone();
    // The listener asks the rebuilder for a resync after each resubscription.
    let (resync, resync_requests) = mpsc::channel(1);
    // Subscribe to (re)connections before connecting: the first connection counts as one.
    let mut client_up = shared.client.reconnect_rx();
    let mut subscriber_up = shared.subscriber.reconnect_rx();
    let mut errors = shared.client.error_rx();
    tasks.spawn_service(
        "Redis connection reporter",
        report_connection(
            shared.clone(),
            shared.client.error_rx(),
            shared.client.reconnect_rx(),
            shutdown.clone(),
        ),
    );
    // The connection tasks run (and reconnect) on their own; their handles are not needed.
    drop(shared.client.connect());
    drop(shared.subscriber.connect());
    // Ready before the router serves: scripts loaded, expiry events on, and subscribed, so that
    // no update of ours is missed.
    let ready = async {
        shared.client.wait_for_connect().await?;
        shared.scripts.load(&shared.client).await?;
        enable_expiry_events(shared).await;
        // At start there is nothing of ours to restore: the epoch found (or made) is adopted.
        let epoch = current_epoch(shared).await?;
        *shared.epoch.lock().unwrap_or_else(|p| p.into_inner()) = Some(epoch);
        shared.subscriber.wait_for_connect().await?;
        shared.subscriber.subscribe(channels(shared, db)).await
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
    tasks.spawn_service(
        "Redis rebuilder",
        rebuild(shared.clone(), client_up, resync_requests, shutdown.clone()),
    );
    tasks.spawn_service(
        "Redis listener",
        listen(shared.clone(), subscriber_up, resync, db, shutdown.clone()),
    );
    tasks.spawn_service("Redis sweeper", sweep(shared.clone(), shutdown));
    // Not on the tracker: it outlives the server, to send the leaves of the connections that
    // shutdown closed; the store's `Drain` owns it.
    tokio::spawn(tasks.watch("Redis writer", write(shared.clone(), queues, finish)))
}

/// The epoch in Redis, made by this router when there is none.
async fn current_epoch(shared: &Shared) -> Result<String, fred::error::Error> {
    let found: Option<String> = shared.client.get(shared.keys.epoch()).await?;
    if let Some(epoch) = found {
        return Ok(epoch);
    }
    let mine = format!("{}:{}", shared.clock.now_ms(), shared.router_id);
    let _: Option<String> = shared
        .client
        .set(
            shared.keys.epoch(),
            mine.as_str(),
            None::<Expiration>,
            Some(SetOptions::NX),
            false,
        )
        .await?;
    let epoch: Option<String> = shared.client.get(shared.keys.epoch()).await?;
    Ok(epoch.unwrap_or(mine))
}

/// When Redis has lost its data since this router registered its connections: the new epoch.
async fn lost_data(shared: &Shared) -> Result<Option<String>, fred::error::Error> {
    let current = current_epoch(shared).await?;
    let mut known = shared.epoch.lock().unwrap_or_else(|p| p.into_inner());
    match known.as_deref() {
        Some(epoch) if epoch == current => Ok(None),
        // Until the first epoch is known there is nothing registered to lose.
        None => {
            *known = Some(current);
            Ok(None)
        }
        Some(_) => Ok(Some(current)),
    }
}

/// Re-registers every live connection of this router, ahead of any other write,
/// waits until they are sent, then until the epoch's grace has passed, so that every router has
/// restored its own before any dashboard takes a snapshot. False when the router stops first.
async fn restore(shared: &Shared, epoch: &str, shutdown: &CancellationToken) -> bool {
    let live: Vec<_> = shared.live().values().cloned().collect();
    info!(
        connections = live.len(),
        %epoch,
        "Redis lost its presence data; restoring this router's connections"
    );
    let (done, sent) = tokio::sync::oneshot::channel();
    let writes = live
        .into_iter()
        .map(|device| Write::Restore { device })
        .chain([Write::Barrier(done)]);
    for write in writes {
        if shared.urgent.send(write).await.is_err() {
            return false;
        }
    }
    let started: u64 = epoch
        .split(':')
        .next()
        .and_then(|ms| ms.parse().ok())
        .unwrap_or(0);
    let grace_end = started.saturating_add(RESTORE_GRACE.as_millis() as u64);
    let wait = std::time::Duration::from_millis(grace_end.saturating_sub(shared.clock.now_ms()))
        .min(RESTORE_GRACE);
    tokio::select! {
        _ = shutdown.cancelled() => return false,
        _ = async { let _ = sent.await; tokio::time::sleep(wait).await } => {}
    }
    *shared.epoch.lock().unwrap_or_else(|p| p.into_inner()) = Some(epoch.to_owned());
    true
}

/// Waits until the listener is subscribed again (a snapshot taken before would miss updates).
async fn subscribed(shared: &Shared, shutdown: &CancellationToken) -> bool {
    while !shared.subscribed.load(Ordering::Relaxed) {
        tokio::select! {
            _ = shutdown.cancelled() => return false,
            _ = tokio::time::sleep(RETRY_MIN) => {}
        }
    }
    true
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

/// Keeps this router's records and its dashboards' views right. Each time the main connection
/// comes up it loads the scripts and asks for expiry notifications; then, and every
/// [`EPOCH_CHECK_INTERVAL`], it checks the epoch: when Redis lost its data, this router's live
/// connections are restored (see [`restore`]). After a reconnect, a resubscription or a restore
/// its dashboards get a `Resync`, once subscribed again: updates may have been missed.
async fn rebuild(
    shared: Arc<Shared>,
    mut up: tokio::sync::broadcast::Receiver<fred::types::config::Server>,
    mut requests: mpsc::Receiver<()>,
    shutdown: CancellationToken,
) {
    let mut check = tokio::time::interval(EPOCH_CHECK_INTERVAL);
    check.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        let mut resync = tokio::select! {
            _ = shutdown.cancelled() => return,
            event = up.recv() => {
                if event.is_err() && up.is_closed() {
                    return;
                }
                if let Err(error) = shared.scripts.load(&shared.client).await {
                    warn!(%error, "loading the presence scripts failed");
                }
                enable_expiry_events(&shared).await;
                true
            }
            request = requests.recv() => match request {
                Some(()) => true,
                None => return,
            },
            _ = check.tick() => false,
        };
        if !shared.client.is_connected() {
            continue;
        }
        match lost_data(&shared).await {
            Ok(Some(epoch)) => {
                if !restore(&shared, &epoch, &shutdown).await {
                    return;
                }
                resync = true;
            }
            Ok(None) => {}
            Err(error) => debug!(%error, "epoch check failed"),
        }
        if resync {
            if !subscribed(&shared, &shutdown).await {
                return;
            }
            let _ = shared.feed.send(Arc::new(FeedEvent::Resync));
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

/// The channels the listener needs: the updates, talk between routers, and expiry events of
/// database `db`.
fn channels(shared: &Shared, db: u8) -> Vec<String> {
    vec![
        shared.keys.updates(),
        shared.keys.talk(),
        format!("__keyevent@{db}__:expired"),
    ]
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
    #[serde(default)]
    stated: Stated,
    #[serde(default)]
    audience: Audience,
    before: Option<Audience>,
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
        stated: Arc::new(m.stated),
        audience: Arc::new(m.audience),
        before: m.before.map(Arc::new),
    };
    Some(Published::new(update, m.seq))
}

/// Forwards updates to this router's feed and expiry events to the writer. After every
/// (re)subscription it asks the rebuilder for a resync: messages may have been missed meanwhile.
async fn listen(
    shared: Arc<Shared>,
    mut up: tokio::sync::broadcast::Receiver<fred::types::config::Server>,
    resync: mpsc::Sender<()>,
    db: u8,
    shutdown: CancellationToken,
) {
    let mut messages = shared.subscriber.message_rx();
    let mut expiries = shared.subscriber.keyspace_event_rx();
    let updates = shared.keys.updates();
    let talk = shared.keys.talk();
    let user_prefix = shared.keys.user_prefix();
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
                // The rebuilder resyncs once any lost data is restored (a full channel means a
                // resync is asked for already).
                let _ = resync.try_send(());
            }
            message = messages.recv() => match message {
                Ok(message) if *message.channel == *updates => match parse(&message.value) {
                    Some(published) => {
                        let _ = shared.feed.send(Arc::new(FeedEvent::Update(published)));
                    }
                    None => warn!("unreadable message on presence:updates"),
                },
                Ok(message) if *message.channel == *talk => match message.value.as_bytes() {
                    Some(bytes) => super::talk::received(&shared, bytes),
                    None => warn!("unreadable message on the talk channel"),
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
                    if let Some(user_id) = event.key.as_str_lossy().strip_prefix(user_prefix.as_str()) {
                        let _ = shared.writes.try_send(Write::Wake {
                            user_id: Arc::from(user_id),
                            at: shared.clock.now_ms(),
                        });
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
        match shared.subscriber.subscribe(channels(shared, db)).await {
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

/// Every [`SWEEP_INTERVAL`], asks the writer to look at each user whose deadline has passed
/// (at once again when a sweep was full). Safe on every router at once: each change is decided
/// on a record read fresh and written by compare-and-set.
async fn sweep(shared: Arc<Shared>, shutdown: CancellationToken) {
    let mut tick = tokio::time::interval(SWEEP_INTERVAL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tick.tick() => {}
        }
        // A writer that is behind gets no more wakes: the users stay due and come next time.
        while shared.client.is_connected() && shared.backlog() < super::BACKLOG_BEHIND {
            let due: Result<Vec<String>, _> = shared
                .client
                .zrangebyscore(
                    shared.keys.deadlines(),
                    "-inf",
                    shared.clock.now_ms() as f64,
                    false,
                    Some((0, SWEEP_LIMIT as i64)),
                )
                .await;
            let due = match due {
                Ok(due) => due,
                Err(error) => {
                    debug!(%error, "sweep failed");
                    break;
                }
            };
            let full = due.len() >= SWEEP_LIMIT;
            for user_id in due {
                let user_id: Arc<str> = Arc::from(user_id);
                // A user whose wake is still queued is not asked for again.
                if !shared.waking().insert(user_id.clone()) {
                    continue;
                }
                let wake = Write::Wake {
                    user_id,
                    at: shared.clock.now_ms(),
                };
                if shared.writes.send(wake).await.is_err() {
                    return;
                }
            }
            if !full {
                break;
            }
            // Let the writer take the wakes before looking again.
            tokio::time::sleep(RETRY_MIN).await;
        }
    }
}

/// Sends writes in arrival order, as pipelines, urgent ones (restores) ahead of the rest.
/// Writes that fail (Redis unreachable, a timeout, an error) are kept, in order, and sent again
/// with backoff; meanwhile the store reports itself degraded. Once `finish` is cancelled it sends
/// what is left and stops.
async fn write(shared: Arc<Shared>, mut queues: Queues, finish: CancellationToken) {
    // Urgent writes (restores and their barrier) in their own order, all sent before any other.
    let mut urgent: VecDeque<Write> = VecDeque::new();
    let mut pending: VecDeque<Write> = VecDeque::new();
    let mut backoff = RETRY_MIN;
    // Set while writes held back by a failure are still being sent.
    let mut replaying = false;
    loop {
        if urgent.is_empty() && pending.is_empty() {
            replaying = false;
            tokio::select! {
                biased;
                write = queues.urgent.recv() => match write {
                    Some(write) => urgent.push_back(write),
                    None => return,
                },
                write = queues.writes.recv() => match write {
                    Some(write) => pending.push_back(write),
                    None => return,
                },
                _ = finish.cancelled() => return,
            }
        }
        while let Ok(write) = queues.urgent.try_recv() {
            urgent.push_back(write);
        }
        while pending.len() < MAX_PENDING {
            match queues.writes.try_recv() {
                Ok(write) => pending.push_back(write),
                Err(_) => break,
            }
        }
        // Every urgent write before a barrier at the front has been sent.
        while let Some(Write::Barrier(_)) = urgent.front() {
            if let Some(Write::Barrier(done)) = urgent.pop_front() {
                let _ = done.send(());
            }
        }
        shared
            .held
            .store(urgent.len() + pending.len(), Ordering::Relaxed);
        let queue = if urgent.is_empty() {
            &mut pending
        } else {
            &mut urgent
        };
        if queue.is_empty() {
            continue;
        }
        let sent = shared.client.is_connected() && send(&shared, queue, replaying).await;
        shared
            .held
            .store(urgent.len() + pending.len(), Ordering::Relaxed);
        shared.writes_failing.store(!sent, Ordering::Relaxed);
        if sent {
            backoff = RETRY_MIN;
            continue;
        }
        replaying = true;
        if finish.is_cancelled() {
            warn!(
                lost = urgent.len() + pending.len(),
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

/// Applies up to [`MAX_BATCH`] writes from the front of `pending` (up to the first barrier)
/// and removes the ones that landed. Writes that did not land go back to the front, each user's
/// in order, so that a failed write never lands after a later one of the same user. True when
/// all landed.
async fn send(shared: &Shared, pending: &mut VecDeque<Write>, replaying: bool) -> bool {
    let take = pending
        .iter()
        .take(MAX_BATCH)
        .take_while(|w| !matches!(w, Write::Barrier(_)))
        .count();
    let batch: Vec<Write> = pending
        .drain(..take)
        .filter(|w| shared.still_wanted(w, replaying))
        .collect();
    shared.woken(&batch);
    let again = super::records::apply(shared, batch).await;
    let ok = again.is_empty();
    for write in again.into_iter().rev() {
        pending.push_front(write);
    }
    ok
}

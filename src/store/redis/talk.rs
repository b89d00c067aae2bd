//! Push-to-talk on Redis: floors decided in the router with [`crate::ptt`] and written by
//! `floor.lua` (a compare-and-set on the talk holding the floor, so that two routers never both
//! grant it), and talk and activity carried between routers on `{prefix}talk`.
//!
//! A floor key expires when the floor frees itself, so a router that dies while its user talks
//! leaves no floor behind for longer than the idle duration.

use super::{Shared, COMMAND_TIMEOUT};
use crate::presence::Millis;
use crate::ptt::{claim, Claim, Floor};
use crate::store::{Activity, FeedEvent, Relayed, StoreError};
use crate::wire::{from_record, to_record};
use bytes::Bytes;
use fred::prelude::{HashesInterface, PubsubInterface, SortedSetsInterface};
use fred::types::Value;
use serde::{Deserialize, Serialize};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tracing::{debug, warn};

/// Reads and writes of one claim before it gives up on a floor that keeps changing.
const CLAIM_ATTEMPTS: usize = 4;

/// Messages for other routers that may wait to be published; more are dropped.
pub(super) const RELAY_QUEUE: usize = 65_536;

/// Bytes of messages for other routers that may wait to be published (a Redis that is slow to
/// answer must not make the router hold talk without end); more are dropped.
const RELAY_BYTES: usize = 32 << 20;

/// Messages from other routers that may wait for this router's delivery (which only puts
/// them in mailboxes, so it rarely waits); more are dropped.
pub(super) const RELAYED_QUEUE: usize = 8_192;

/// Most messages published in one pipeline.
const PUBLISH_BATCH: usize = 256;

/// What travels on `{prefix}talk`.
#[derive(Debug, Serialize, Deserialize)]
struct Envelope {
    /// The router that sent it (which ignores its own).
    origin: u64,
    message: Message,
}

#[derive(Debug, Serialize, Deserialize)]
enum Message {
    Talk(Relayed),
    Activity(Activity),
}

fn unavailable(e: fred::error::Error) -> StoreError {
    StoreError::Unavailable(e.to_string())
}

/// The floor at `key` as Redis has it (an expired one is gone).
async fn read(shared: &Shared, key: &str) -> Result<Option<Floor>, StoreError> {
    let record: Option<Vec<u8>> = shared
        .client
        .hget(shared.keys.floor(key), "rec")
        .await
        .map_err(unavailable)?;
    Ok(record.and_then(|bytes| from_record(&bytes)))
}

/// Writes `next` over `floor`'s key (or frees it) if the floor is still held by `expected`;
/// whether it was. The key expires when the floor frees itself, counted from now on Redis's
/// clock (a router's clock never decides when Redis forgets a floor).
pub(super) async fn write(
    shared: &Shared,
    floor: &Floor,
    expected: Option<u64>,
    next: Option<&Floor>,
) -> Result<bool, StoreError> {
    let talk = |t: Option<u64>| t.map_or_else(String::new, |t| t.to_string());
    let now = shared.clock.now_ms();
    let args: Vec<Value> = vec![
        talk(expected).into(),
        talk(next.map(|f| f.talk)).into(),
        Value::Bytes(next.map(to_record).unwrap_or_default().into()),
        next.map_or(0, |f| f.until.saturating_sub(now).max(1))
            .to_string()
            .into(),
        next.map_or(0, |f| f.until).to_string().into(),
        now.to_string().into(),
    ];
    let keys = vec![shared.keys.floor(&floor.key()), shared.keys.floors()];
    let written: i64 = tokio::time::timeout(
        COMMAND_TIMEOUT,
        shared
            .scripts
            .floor
            .evalsha_with_reload(&shared.client, keys, args),
    )
    .await
    .map_err(|_| StoreError::Unavailable("floor write timed out".into()))?
    .map_err(unavailable)?;
    Ok(written == 1)
}

/// A START: the floor read, decided by [`claim`], written over what was read (read again when
/// another router wrote it meanwhile).
pub(super) async fn take(shared: &Shared, want: &Floor, now: Millis) -> Result<Claim, StoreError> {
    let key = want.key();
    for _ in 0..CLAIM_ATTEMPTS {
        let current = read(shared, &key).await?;
        if claim(current.as_ref(), want, now) == Claim::Busy {
            return Ok(Claim::Busy);
        }
        if write(shared, want, current.map(|f| f.talk), Some(want)).await? {
            return Ok(Claim::Granted);
        }
    }
    Err(StoreError::Unavailable(
        "the floor kept changing: too many claims at once".into(),
    ))
}

/// The floors held at `now`: the index's live entries, read in one pipeline.
pub(super) async fn on_air(shared: &Shared, now: Millis) -> Result<Vec<Floor>, StoreError> {
    let keys: Vec<String> = shared
        .client
        .zrangebyscore(shared.keys.floors(), (now + 1) as f64, "+inf", false, None)
        .await
        .map_err(unavailable)?;
    if keys.is_empty() {
        return Ok(Vec::new());
    }
    let pipe = shared.client.pipeline();
    for key in &keys {
        let _: Result<(), _> = pipe.hget(key.as_str(), "rec").await;
    }
    let records: Vec<Option<Vec<u8>>> = pipe.all().await.map_err(unavailable)?;
    Ok(records
        .into_iter()
        .flatten()
        .filter_map(|bytes| from_record::<Floor>(&bytes))
        .filter(|floor| floor.held(now))
        .collect())
}

/// Queues a message for the other routers (dropped when the publisher is that far behind).
pub(super) fn relay(shared: &Shared, message: Relayed) {
    send(shared, Message::Talk(message));
}

/// Activity to this router's dashboards at once, and to the other routers'.
pub(super) fn announce(shared: &Shared, activity: Activity) {
    let _ = shared
        .feed
        .send(Arc::new(FeedEvent::Activity(activity.clone())));
    send(shared, Message::Activity(activity));
}

fn send(shared: &Shared, message: Message) {
    let envelope = Envelope {
        origin: shared.router_id,
        message,
    };
    let bytes = Bytes::from(to_record(&envelope));
    let len = bytes.len();
    let queued = shared.relay_bytes.fetch_add(len, Ordering::Relaxed);
    if queued + len > RELAY_BYTES || shared.relay.try_send(bytes).is_err() {
        shared.relay_bytes.fetch_sub(len, Ordering::Relaxed);
        debug!("talk for other routers dropped: the publisher is behind");
    }
}

/// Publishes what this router relays, in order, a pipeline at a time.
pub(super) async fn publish(
    shared: Arc<Shared>,
    mut queue: mpsc::Receiver<Bytes>,
    shutdown: CancellationToken,
) {
    let channel = shared.keys.talk();
    let mut batch = Vec::with_capacity(PUBLISH_BATCH);
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            n = queue.recv_many(&mut batch, PUBLISH_BATCH) => if n == 0 { return },
        }
        let pipe = shared.client.pipeline();
        let mut bytes = 0;
        for message in batch.drain(..) {
            bytes += message.len();
            let _: Result<(), _> = pipe.publish(channel.as_str(), Value::Bytes(message)).await;
        }
        shared.relay_bytes.fetch_sub(bytes, Ordering::Relaxed);
        if let Err(error) = pipe.all::<Value>().await {
            warn!(%error, "publishing talk to other routers failed");
        }
    }
}

/// A message on `{prefix}talk`: activity into this router's feed, talk to its delivery; its
/// own messages are ignored.
pub(super) fn received(shared: &Shared, bytes: &[u8]) {
    let Some(envelope) = from_record::<Envelope>(bytes) else {
        warn!("unreadable message on the talk channel");
        return;
    };
    if envelope.origin == shared.router_id {
        return;
    }
    match envelope.message {
        Message::Activity(activity) => {
            let _ = shared.feed.send(Arc::new(FeedEvent::Activity(activity)));
        }
        Message::Talk(talk) => {
            if shared.relayed_in.try_send(talk).is_err() {
                debug!("talk from another router dropped: delivery is behind");
            }
        }
    }
}

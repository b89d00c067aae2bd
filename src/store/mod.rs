//! Where presence state lives: the [`PresenceStore`] interface and its implementations.
//!
//! A store applies the rules of [`crate::presence`] to the devices the router reports, and
//! publishes every resulting [`Update`] to its subscribers exactly once and in order.

mod memory;
mod redis;
mod talk;

pub use memory::MemoryStore;
pub use redis::{redacted_url, Drain, RedisStore};
pub use talk::{Activity, Relayed, TalkStore};

use crate::presence::{Audience, ConnId, GroupChange, Millis, Stated, Update, UserView};
use bytes::Bytes;
use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, OnceLock};
use thiserror::Error;
use tokio::sync::broadcast;

/// One connected device, as the router reports it to the store.
#[derive(Debug, Clone)]
pub struct Device {
    /// The authenticated user id.
    pub user_id: Arc<str>,
    /// This process's id for the connection.
    pub conn: ConnId,
    /// The device id the client gave, if any.
    pub device_id: Option<Arc<str>>,
    /// The tenant of the connection's token, and the groups it joins (the token's).
    pub audience: Arc<Audience>,
}

/// An update as it travels to dashboards: the change, and its wire frame encoded once and shared.
#[derive(Debug)]
pub struct Published {
    /// The change.
    pub update: Update,
    /// The store-wide sequence number of this change (see [`Snapshot::seq`]).
    pub seq: u64,
    frame: OnceLock<Bytes>,
}

impl Published {
    /// Wraps an update for publication.
    pub fn new(update: Update, seq: u64) -> Self {
        Published {
            update,
            seq,
            frame: OnceLock::new(),
        }
    }

    /// The encoded frame, encoded by the first caller with `encode` and shared by all others.
    pub fn frame(&self, encode: impl FnOnce(&Update) -> Vec<u8>) -> Bytes {
        self.frame
            .get_or_init(|| Bytes::from(encode(&self.update)))
            .clone()
    }
}

/// What a feed carries.
#[derive(Debug)]
pub enum FeedEvent {
    /// One change.
    Update(Published),
    /// Updates may have been lost (the store reconnected): take a fresh snapshot.
    Resync,
    /// A user went on or off the air.
    Activity(Activity),
}

/// Live events for one subscriber, in order. Lagging too far behind is reported as
/// [`broadcast::error::RecvError::Lagged`].
pub type Feed = broadcast::Receiver<Arc<FeedEvent>>;

/// The users online at one moment (or, read in pages, over a short while).
///
/// Take the feed first, then the snapshot, then send the feed updates [`Snapshot::is_news`]
/// accepts: none is missed and none the snapshot already reflects is sent.
#[derive(Debug)]
pub struct Snapshot {
    /// When it was taken.
    pub timestamp: Millis,
    /// Every change up to this sequence number is reflected.
    pub seq: u64,
    /// Changes after `seq` up to this one happened while it was read: each may be reflected.
    pub unsure_through: u64,
    /// The online users, each with the version this snapshot reflects.
    pub users: Vec<UserView>,
    /// The users' versions by id, built when first needed.
    versions: OnceLock<HashMap<Arc<str>, u64>>,
}

impl Snapshot {
    /// A snapshot reflecting every change up to `seq`, and maybe some up to `unsure_through`.
    pub fn new(timestamp: Millis, seq: u64, unsure_through: u64, users: Vec<UserView>) -> Self {
        Snapshot {
            timestamp,
            seq,
            unsure_through: unsure_through.max(seq),
            users,
            versions: OnceLock::new(),
        }
    }

    /// Whether a feed update is news to a dashboard that got this snapshot: after it, or in the
    /// unsure range with a version above the one the snapshot shows for that user.
    pub fn is_news(&self, published: &Published) -> bool {
        if published.seq <= self.seq {
            return false;
        }
        if published.seq > self.unsure_through {
            return true;
        }
        let versions = self.versions.get_or_init(|| {
            self.users
                .iter()
                .map(|u| (u.user_id.clone(), u.version))
                .collect()
        });
        let shown = versions
            .get(&published.update.user_id)
            .copied()
            .unwrap_or(0);
        published.update.version > shown
    }
}

/// How the store is doing, for `/health` and `/ready`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StoreHealth {
    /// Working.
    Ok,
    /// Reachable only in part; presence may be stale. The reason is safe to show to anyone.
    Degraded(&'static str),
}

/// A store operation that failed.
#[derive(Debug, Error)]
pub enum StoreError {
    /// The store is not reachable right now.
    #[error("presence store unavailable: {0}")]
    Unavailable(String),
}

/// The presence state shared by every connection of a router (and, for shared stores, by every
/// router). Implementations apply [`crate::presence`] and publish each change exactly once.
pub trait PresenceStore: TalkStore + Clone + Send + Sync + 'static {
    /// A short name for `/health` ("memory", "redis").
    fn kind(&self) -> &'static str;

    /// How the store is doing.
    fn health(&self) -> StoreHealth;

    /// Writes accepted but not yet applied (0 for a store that applies them at once).
    fn write_backlog(&self) -> usize;

    /// A mobile device connected (the first write of its presence).
    fn connect(&self, device: &Device) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// A heartbeat of `device`, received at `at`, is written: the user's TTL restarts from `at`.
    fn heartbeat(
        &self,
        device: &Device,
        at: Millis,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// A user joins or leaves a group (any role; membership outlives connections).
    fn regroup(
        &self,
        user_id: &Arc<str>,
        change: GroupChange,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// A user states their availability (ignored while they are offline).
    fn state(
        &self,
        user_id: &Arc<str>,
        stated: Stated,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// A mobile device disconnected.
    fn disconnect(&self, device: &Device) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// Every change from now on.
    fn feed(&self) -> Feed;

    /// The users online now (see [`Snapshot`] for how it fits with a feed). Shared: many
    /// dashboards asking at once may get the same one, taken after all of them asked.
    fn snapshot(&self) -> impl Future<Output = Result<Arc<Snapshot>, StoreError>> + Send;

    /// The members of a group (a tenant-scoped id), in no particular order.
    fn members(
        &self,
        group: &str,
    ) -> impl Future<Output = Result<Vec<Arc<str>>, StoreError>> + Send;

    /// The status of each user, in the order asked; users never seen are
    /// [`UserView::unknown`].
    fn lookup(
        &self,
        user_ids: &[Arc<str>],
    ) -> impl Future<Output = Result<Vec<UserView>, StoreError>> + Send;
}

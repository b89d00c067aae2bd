//! What push-to-talk needs of a store: floors decided once for every router ([`TalkStore::claim`]
//! and friends, applying [`crate::ptt`]), talk carried to the other routers ([`Relayed`]), and
//! on-air activity for every dashboard ([`Activity`]).

use super::StoreError;
use crate::presence::{Audience, Millis};
use crate::ptt::{Claim, Floor};
use bytes::Bytes;
use serde::{Deserialize, Serialize};
use std::future::Future;
use std::sync::Arc;
use tokio::sync::mpsc;

/// A user went on or off the air: what dashboards are told.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Activity {
    /// Who (tenant-scoped).
    pub user_id: Arc<str>,
    /// Who may see them.
    pub audience: Arc<Audience>,
    /// In which group or with which peer, and since when.
    pub floor: Floor,
    /// On the air (true) or off it.
    pub on_air: bool,
    /// When it happened.
    pub timestamp: Millis,
}

/// What one router hands the others, to deliver to their own connections.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Relayed {
    /// A frame for the members of a group (tenant-scoped), but for the sender's connections.
    Group {
        /// The group.
        group: Arc<str>,
        /// The sender, who does not get their own frame back.
        except: Arc<str>,
        /// The frame as it is to be sent.
        frame: Bytes,
    },
    /// A frame for every connection of one user.
    User {
        /// The user (tenant-scoped).
        user: Arc<str>,
        /// The frame as it is to be sent.
        frame: Bytes,
    },
    /// `PTT_SINGLE_SESSION`: `user` connected from `device` elsewhere; close their connections
    /// here (with LOGIN_DUPLICATED to those of another device).
    Kick {
        /// The user (tenant-scoped).
        user: Arc<str>,
        /// The new connection's device id.
        device: Option<Arc<str>>,
        /// When it connected: only connections older than that are closed (a later one, on
        /// any router, is the user's newest).
        at: Millis,
    },
}

/// Floors, talk between routers and on-air activity. A store with no other routers relays
/// nothing.
pub trait TalkStore {
    /// Gives `want` its floor ([`Floor::key`]) if [`crate::ptt::claim`] grants it at `now`,
    /// written at once for every router.
    fn claim(
        &self,
        want: &Floor,
        now: Millis,
    ) -> impl Future<Output = Result<Claim, StoreError>> + Send;

    /// Writes `floor`, refreshed by its talker; false when its talk no longer holds it.
    fn refresh(&self, floor: &Floor) -> impl Future<Output = Result<bool, StoreError>> + Send;

    /// Frees `floor` if its talk still holds it; whether it did.
    fn release(&self, floor: &Floor) -> impl Future<Output = Result<bool, StoreError>> + Send;

    /// The floors held at `now`.
    fn on_air(&self, now: Millis) -> impl Future<Output = Result<Vec<Floor>, StoreError>> + Send;

    /// Hands `message` to every other router, in order.
    fn relay(&self, message: Relayed);

    /// What other routers relay to this one, in their order; `None` once taken, and for a store
    /// without other routers.
    fn relayed(&self) -> Option<mpsc::Receiver<Relayed>>;

    /// Tells every dashboard of every router (through its feed).
    fn announce(&self, activity: Activity);
}

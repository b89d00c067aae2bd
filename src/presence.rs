//! The presence rules, and nothing else: no I/O, no clock, no locks.
//!
//! [`Record`] is one user's state as every store keeps it, and its methods are the only place
//! transitions are decided: the embedded store keeps records in [`Presence`], the Redis store
//! reads a record, applies the same methods and writes it back atomically. Time is passed in as
//! milliseconds since the epoch; when a user needs to be looked at again later (TTL expiry, end
//! of an offline debounce, end of the retention) [`Record::next_deadline`] says when, and the
//! store arranges a wake then. [`HeartbeatGate`] is the per-connection rule that decides which
//! heartbeats are worth a store write.

mod record;

pub use record::{ConnKey, Record};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::sync::Arc;

/// Milliseconds since the Unix epoch.
pub type Millis = u64;

/// Identifies one live connection inside this process.
pub type ConnId = u64;

/// A user's presence status.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Status {
    /// At least one device is connected and the TTL has not run out.
    Online,
    /// Not online.
    Offline,
}

/// The timing rules of presence.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rules {
    /// How long a user stays online after their last connect or heartbeat write.
    pub ttl: Millis,
    /// How long after their last device leaves a user is reported offline (0 = at once).
    pub offline_debounce: Millis,
    /// How long an offline user is remembered (for `lastSeen`) before being forgotten.
    pub retention: Millis,
}

/// The default [`Rules::retention`]: 30 days.
pub const DEFAULT_RETENTION: Millis = 30 * 24 * 3600 * 1000;

/// Who may see a user: their tenant and the groups they are a member of. Group ids are scoped
/// by tenant (see [`crate::visibility::scoped`]) and kept sorted, without repeats.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Audience {
    /// The tenant of the user's latest connection.
    #[serde(rename = "t", default, skip_serializing_if = "Option::is_none")]
    pub tenant: Option<Arc<str>>,
    /// The user's groups.
    #[serde(rename = "g", default, skip_serializing_if = "Vec::is_empty")]
    pub groups: Vec<Arc<str>>,
}

/// The most groups one user is a member of; joins beyond it are ignored.
pub const MAX_GROUPS_PER_USER: usize = 1024;

impl Audience {
    /// No tenant, no groups.
    pub fn none() -> Arc<Audience> {
        static NONE: std::sync::OnceLock<Arc<Audience>> = std::sync::OnceLock::new();
        NONE.get_or_init(|| Arc::new(Audience::default())).clone()
    }

    /// Adds `group`; whether it was added (not there yet, and room for it).
    fn join(&mut self, group: &Arc<str>) -> bool {
        match self.groups.binary_search(group) {
            Ok(_) => false,
            Err(_) if self.groups.len() >= MAX_GROUPS_PER_USER => false,
            Err(at) => {
                self.groups.insert(at, group.clone());
                true
            }
        }
    }

    /// Removes `group`; whether it was there.
    fn leave(&mut self, group: &str) -> bool {
        match self.groups.binary_search_by(|g| g.as_ref().cmp(group)) {
            Ok(at) => {
                self.groups.remove(at);
                true
            }
            Err(_) => false,
        }
    }
}

/// A change of one user's groups (a tenant-scoped group id).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GroupChange {
    /// Joins the group (USER_ADD, or a group of the token at connect).
    Join(Arc<str>),
    /// Leaves the group (USER_REMOVE).
    Leave(Arc<str>),
}

/// What a user says of their availability, while online.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Availability {
    /// Ready to talk.
    Available,
    /// Away from the handset.
    Away,
    /// Busy.
    Busy,
    /// Do not disturb.
    Dnd,
}

impl Availability {
    /// Every availability, as the wire names them.
    pub const NAMES: [&'static str; 4] = ["available", "away", "busy", "dnd"];

    /// From its wire name.
    pub fn parse(name: &str) -> Option<Availability> {
        match name {
            "available" => Some(Availability::Available),
            "away" => Some(Availability::Away),
            "busy" => Some(Availability::Busy),
            "dnd" => Some(Availability::Dnd),
            _ => None,
        }
    }

    /// Its wire name.
    pub fn as_str(self) -> &'static str {
        Availability::NAMES[self as usize]
    }
}

/// The longest status text, in characters.
pub const MAX_STATUS_TEXT_CHARS: usize = 140;

/// What a user states of themself: an availability and a short status text. Kept while they
/// are online; cleared when they go offline.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Stated {
    /// Their availability, when stated.
    #[serde(rename = "a", default, skip_serializing_if = "Option::is_none")]
    pub availability: Option<Availability>,
    /// Their status text, when stated (never empty).
    #[serde(rename = "x", default, skip_serializing_if = "Option::is_none")]
    pub status_text: Option<Arc<str>>,
}

/// Why a statement was refused; the message is safe to show to the client.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StatedError {
    /// Not one of [`Availability::NAMES`].
    #[error("availability must be one of available, away, busy, dnd")]
    Availability,
    /// Too long, or with control characters.
    #[error("statusText must be at most 140 characters, without control characters")]
    StatusText,
}

impl Stated {
    /// Checks what a client sent: an availability name and a status text ("" clears it).
    pub fn parse(availability: &str, status_text: Option<&str>) -> Result<Stated, StatedError> {
        let availability = Availability::parse(availability).ok_or(StatedError::Availability)?;
        let status_text = match status_text {
            None | Some("") => None,
            Some(text)
                if text.chars().count() <= MAX_STATUS_TEXT_CHARS
                    && !text.chars().any(char::is_control) =>
            {
                Some(Arc::from(text))
            }
            Some(_) => return Err(StatedError::StatusText),
        };
        Ok(Stated {
            availability: Some(availability),
            status_text,
        })
    }
}

/// One change of one user: their status, who may see them, or what they state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Update {
    /// The authenticated user id.
    pub user_id: Arc<str>,
    /// The new status.
    pub status: Status,
    /// Grows with every change of this user, and never goes backwards, also across restarts
    /// and lost store data: see [`next_version`].
    pub version: u64,
    /// Last heartbeat or connect while online; the moment they went offline.
    pub last_seen: Millis,
    /// The most recently active device, when it had an id.
    pub device_id: Option<Arc<str>>,
    /// When the change was decided.
    pub timestamp: Millis,
    /// What the user states (nothing while offline).
    pub stated: Arc<Stated>,
    /// Who may see the user after the change.
    pub audience: Arc<Audience>,
    /// Who could see the user before, when the change is of that (a group joined or left, a
    /// connection under another tenant): viewers who could and now cannot must drop the user.
    pub before: Option<Arc<Audience>>,
}

/// The version of a user's next change: above the previous one, and at least the time of the
/// change in milliseconds. A store that lost a user's record (a restart, an emptied Redis)
/// starts them again from the clock, above any version they had before, so a dashboard that
/// keeps the highest version it saw never drops the updates that follow.
pub fn next_version(previous: u64, at: Millis) -> u64 {
    previous.saturating_add(1).max(at)
}

/// What is known of one user right now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserView {
    /// The user id.
    pub user_id: Arc<str>,
    /// Online or offline.
    pub status: Status,
    /// See [`Update::last_seen`].
    pub last_seen: Millis,
    /// The most recently active device, when it had an id.
    pub device_id: Option<Arc<str>>,
    /// The version of the last change this view reflects.
    pub version: u64,
    /// What the user states (nothing while offline).
    pub stated: Arc<Stated>,
    /// Who may see the user.
    pub audience: Arc<Audience>,
}

impl UserView {
    /// A user never seen (or forgotten), or one the asker may not see: the two read the same.
    pub fn unknown(user_id: Arc<str>) -> UserView {
        UserView {
            user_id,
            status: Status::Offline,
            last_seen: 0,
            device_id: None,
            version: 0,
            stated: Arc::default(),
            audience: Audience::none(),
        }
    }
}

/// What an operation asks of its caller.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[must_use]
pub struct Effect {
    /// Changes to publish to every dashboard, in order (two when an expiry that was due is
    /// settled before a return).
    pub updates: Vec<Update>,
    /// Call [`Presence::wake`] for this user at this time.
    pub wake_at: Option<Millis>,
}

/// A user in the embedded store: their record, and the wake-up asked for.
#[derive(Debug, Default)]
struct Slot {
    record: Record,
    /// The earliest wake-up the caller has been asked for and that has not happened yet.
    armed: Option<Millis>,
}

/// Every user this process knows (the embedded store's state), each a [`Record`].
#[derive(Debug)]
pub struct Presence {
    rules: Rules,
    users: HashMap<Arc<str>, Slot>,
    online: usize,
}

/// The key of a connection of the embedded store (a router on its own).
fn local(conn: ConnId) -> ConnKey {
    ConnKey { router: 0, conn }
}

impl Presence {
    /// No users yet.
    pub fn new(rules: Rules) -> Self {
        Presence {
            rules,
            users: HashMap::new(),
            online: 0,
        }
    }

    /// How many users are online.
    pub fn online_count(&self) -> usize {
        self.online
    }

    /// Runs one record operation and tells the caller what to publish and when to wake.
    fn apply(
        &mut self,
        user_id: &Arc<str>,
        create: bool,
        op: impl FnOnce(&mut Record, &Rules, &mut Vec<Update>),
    ) -> Effect {
        let slot = match self.users.get_mut(user_id) {
            Some(slot) => slot,
            None if create => self.users.entry(user_id.clone()).or_default(),
            None => return Effect::default(),
        };
        let mut updates = Vec::new();
        let was_online = slot.record.status() == Status::Online;
        op(&mut slot.record, &self.rules, &mut updates);
        match (was_online, slot.record.status() == Status::Online) {
            (false, true) => self.online += 1,
            (true, false) => self.online -= 1,
            _ => {}
        }
        // Only online users are woken: the retention of offline ones is [`Presence::forget`]'s,
        // so that a user who flaps does not leave a 30-day wake-up behind each time.
        let deadline = match slot.record.status() {
            Status::Online => slot.record.next_deadline(&self.rules),
            Status::Offline => None,
        };
        let wake_at = deadline.and_then(|deadline| match slot.armed {
            Some(armed) if armed <= deadline => None,
            _ => {
                slot.armed = Some(deadline);
                Some(deadline)
            }
        });
        Effect { updates, wake_at }
    }

    /// A mobile connection opened: its user is online (no update if they already were, or if
    /// they are back inside the offline debounce).
    pub fn connect(
        &mut self,
        user_id: &Arc<str>,
        conn: ConnId,
        device_id: Option<Arc<str>>,
        joining: &Audience,
        now: Millis,
    ) -> Effect {
        self.apply(user_id, true, |record, rules, updates| {
            record.connect(
                rules,
                user_id,
                local(conn),
                device_id,
                joining,
                now,
                updates,
            )
        })
    }

    /// The user states their availability; ignored while they are offline.
    pub fn state(&mut self, user_id: &Arc<str>, stated: &Stated, now: Millis) -> Effect {
        self.apply(user_id, false, |record, rules, updates| {
            record.state(rules, user_id, stated, now, updates)
        })
    }

    /// The user joins or leaves a group (a user never seen is remembered for it, offline).
    pub fn regroup(&mut self, user_id: &Arc<str>, change: &GroupChange, now: Millis) -> Effect {
        self.apply(user_id, true, |record, rules, updates| {
            record.regroup(rules, user_id, change, now, updates)
        })
    }

    /// A heartbeat from `conn`, received at `at`, is written: the TTL restarts from `at`.
    pub fn heartbeat(&mut self, user_id: &Arc<str>, conn: ConnId, at: Millis) -> Effect {
        self.apply(user_id, false, |record, rules, updates| {
            record.heartbeat(rules, user_id, local(conn), at, updates)
        })
    }

    /// A mobile connection closed. When it was the user's last, they go offline after the
    /// debounce (at once when it is 0).
    pub fn disconnect(&mut self, user_id: &Arc<str>, conn: ConnId, now: Millis) -> Effect {
        self.apply(user_id, false, |record, rules, updates| {
            record.disconnect(rules, user_id, local(conn), now, updates)
        })
    }

    /// Time has come for a wake-up asked for earlier: expire or end the debounce if due.
    pub fn wake(&mut self, user_id: &Arc<str>, now: Millis) -> Effect {
        if let Some(slot) = self.users.get_mut(user_id) {
            if slot.armed.is_some_and(|armed| armed <= now) {
                slot.armed = None;
            }
        }
        self.apply(user_id, false, |record, rules, updates| {
            record.wake(rules, user_id, now, updates)
        })
    }

    /// Forgets every offline user whose retention has passed; returns how many.
    pub fn forget(&mut self, now: Millis) -> usize {
        let before = self.users.len();
        let rules = self.rules;
        self.users
            .retain(|_, slot| !slot.record.forgotten(&rules, now));
        before - self.users.len()
    }

    /// The users online in their records, in no particular order.
    pub fn online_users(&self) -> Vec<UserView> {
        self.users
            .iter()
            .filter(|(_, slot)| slot.record.status() == Status::Online)
            .map(|(id, slot)| slot.record.stored_view(id))
            .collect()
    }

    /// The members of `group`, in no particular order (one scan of every user).
    pub fn members(&self, group: &str) -> Vec<Arc<str>> {
        self.users
            .iter()
            .filter(|(_, slot)| {
                let groups = &slot.record.audience().groups;
                groups.binary_search_by(|g| g.as_ref().cmp(group)).is_ok()
            })
            .map(|(id, _)| id.clone())
            .collect()
    }

    /// What is known of one user at `now`; `None` for a user never seen (or forgotten).
    pub fn user(&self, user_id: &str, now: Millis) -> Option<UserView> {
        self.users
            .get_key_value(user_id)
            .map(|(id, slot)| slot.record.view(id, now))
    }

    /// How many users are known, online or not (the retention bounds it).
    pub fn known_count(&self) -> usize {
        self.users.len()
    }
}

/// What keeps a handset online besides connecting: `PRESENCE_LIVENESS`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum LivenessRule {
    /// HEARTBEATs; and, from a connection that has never sent one (the VoicePing Android SDK
    /// never does), anything it sends: its pongs, its push-to-talk frames.
    #[default]
    Auto,
    /// HEARTBEATs only.
    Heartbeat,
}

/// One mobile connection's signs of life under a [`LivenessRule`]: which inbound messages count
/// as a heartbeat (then through the [`HeartbeatGate`] as any heartbeat).
#[derive(Debug, Clone, Copy)]
pub struct LifeSigns {
    rule: LivenessRule,
    /// Whether the connection has sent a HEARTBEAT: from then on only HEARTBEATs count, so a
    /// heartbeating client whose heartbeats stop still goes offline with its socket open.
    speaks_heartbeat: bool,
}

impl LifeSigns {
    /// A connection that has sent nothing yet.
    pub fn new(rule: LivenessRule) -> Self {
        LifeSigns {
            rule,
            speaks_heartbeat: false,
        }
    }

    /// A HEARTBEAT came: it counts, always.
    pub fn heartbeat(&mut self) -> bool {
        self.speaks_heartbeat = true;
        true
    }

    /// Something else came (a pong, a push-to-talk frame): whether it counts as a heartbeat.
    pub fn other(&self) -> bool {
        self.rule == LivenessRule::Auto && !self.speaks_heartbeat
    }
}

/// Decides which heartbeats of one connection are written to the store.
///
/// Connecting counts as the first write. A heartbeat less than `min_interval` after the last
/// write is held back; when the interval has passed, the held heartbeat is written with its own
/// time ([`HeartbeatGate::flush`]), so the TTL always counts from the latest heartbeat. A
/// heartbeat is never held past the moment the TTL of the last write runs out: then it is
/// written at once.
#[derive(Debug, Clone, Copy)]
pub struct HeartbeatGate {
    min_interval: Millis,
    ttl: Millis,
    /// When the last write was made.
    last_write: Millis,
    /// The time the last write carried (the TTL counts from it).
    last_at: Millis,
    pending: Option<Millis>,
}

impl HeartbeatGate {
    /// A gate for a connection that was written (connected) at `connected_at`, under `ttl`.
    pub fn new(min_interval: Millis, ttl: Millis, connected_at: Millis) -> Self {
        HeartbeatGate {
            min_interval,
            ttl,
            last_write: connected_at,
            last_at: connected_at,
            pending: None,
        }
    }

    /// A heartbeat arrived at `now`: `Some(at)` means write it now, with time `at`.
    pub fn heartbeat(&mut self, now: Millis) -> Option<Millis> {
        let interval_passed = now.saturating_sub(self.last_write) >= self.min_interval;
        let flush_too_late = self.last_write.saturating_add(self.min_interval)
            >= self.last_at.saturating_add(self.ttl);
        if interval_passed || flush_too_late {
            self.last_write = now;
            self.last_at = now;
            self.pending = None;
            Some(now)
        } else {
            self.pending = Some(now);
            None
        }
    }

    /// When a held-back heartbeat becomes due for writing.
    pub fn flush_at(&self) -> Option<Millis> {
        self.pending
            .map(|_| self.last_write.saturating_add(self.min_interval))
    }

    /// Releases the held-back heartbeat if it is due: `Some(at)` means write it, with time `at`.
    pub fn flush(&mut self, now: Millis) -> Option<Millis> {
        let due = self.flush_at().is_some_and(|at| at <= now);
        if !due {
            return None;
        }
        self.last_write = now;
        let at = self.pending.take()?;
        self.last_at = at;
        Some(at)
    }
}

#[cfg(test)]
mod tests;

//! The presence rules, and nothing else: no I/O, no clock, no locks.
//!
//! [`Presence`] holds every known user and decides each transition. Time is passed in as
//! milliseconds since the epoch; when a user needs to be looked at again later (TTL expiry, end
//! of an offline debounce) an operation returns [`Effect::wake_at`] and the caller arranges for
//! [`Presence::wake`] to be called then. [`HeartbeatGate`] is the per-connection rule that decides
//! which heartbeats are worth a store write.

use std::collections::HashMap;
use std::sync::Arc;

/// Milliseconds since the Unix epoch.
pub type Millis = u64;

/// Identifies one live connection inside this process.
pub type ConnId = u64;

/// A user's presence status.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
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
}

/// One change of one user's status.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Update {
    /// The authenticated user id.
    pub user_id: Arc<str>,
    /// The new status.
    pub status: Status,
    /// Grows with every change of this user's status, and never goes backwards, also across
    /// restarts and lost store data: see [`next_version`].
    pub version: u64,
    /// Last heartbeat or connect while online; the moment they went offline.
    pub last_seen: Millis,
    /// The most recently active device, when it had an id.
    pub device_id: Option<Arc<str>>,
    /// When the change was decided.
    pub timestamp: Millis,
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
}

/// What an operation asks of its caller.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[must_use]
pub struct Effect {
    /// A change to publish to every dashboard.
    pub update: Option<Update>,
    /// Call [`Presence::wake`] for this user at this time.
    pub wake_at: Option<Millis>,
}

#[derive(Debug)]
struct User {
    /// Live connections and their device ids.
    conns: Vec<(ConnId, Option<Arc<str>>)>,
    status: Status,
    version: u64,
    last_seen: Millis,
    device_id: Option<Arc<str>>,
    /// When the TTL runs out, while online.
    expires_at: Millis,
    /// When the offline debounce ends, while online with no connection left.
    offline_at: Option<Millis>,
    /// When the last connection left (the `lastSeen` of a debounced offline).
    left_at: Millis,
    /// The earliest wake-up the caller has been asked for and that has not happened yet.
    armed: Option<Millis>,
}

impl User {
    fn new() -> Self {
        User {
            conns: Vec::new(),
            status: Status::Offline,
            version: 0,
            last_seen: 0,
            device_id: None,
            expires_at: 0,
            offline_at: None,
            left_at: 0,
            armed: None,
        }
    }

    fn view(&self, user_id: &Arc<str>) -> UserView {
        UserView {
            user_id: user_id.clone(),
            status: self.status,
            last_seen: self.last_seen,
            device_id: self.device_id.clone(),
            version: self.version,
        }
    }

    fn transition(&mut self, user_id: &Arc<str>, status: Status, now: Millis) -> Update {
        self.status = status;
        self.version = next_version(self.version, now);
        if status == Status::Offline {
            self.offline_at = None;
        }
        Update {
            user_id: user_id.clone(),
            status,
            version: self.version,
            last_seen: self.last_seen,
            device_id: self.device_id.clone(),
            timestamp: now,
        }
    }

    /// Marks the user as seen now on `conn`'s device; online again if they were not.
    fn seen(
        &mut self,
        user_id: &Arc<str>,
        conn: ConnId,
        at: Millis,
        ttl: Millis,
    ) -> Option<Update> {
        // The most recently active device: a held heartbeat written late does not take it over.
        if at >= self.last_seen {
            if let Some((_, Some(device))) = self.conns.iter().find(|(c, _)| *c == conn) {
                self.device_id = Some(device.clone());
            }
        }
        self.last_seen = self.last_seen.max(at);
        self.expires_at = self.expires_at.max(at.saturating_add(ttl));
        self.offline_at = None;
        (self.status == Status::Offline).then(|| self.transition(user_id, Status::Online, at))
    }

    fn next_deadline(&self) -> Option<Millis> {
        match self.status {
            Status::Online => Some(
                self.offline_at
                    .map_or(self.expires_at, |at| at.min(self.expires_at)),
            ),
            Status::Offline => None,
        }
    }

    /// Asks for a wake-up unless one at or before the next deadline is already pending.
    fn arm(&mut self) -> Option<Millis> {
        let deadline = self.next_deadline()?;
        match self.armed {
            Some(armed) if armed <= deadline => None,
            _ => {
                self.armed = Some(deadline);
                Some(deadline)
            }
        }
    }
}

/// Every user this process knows, and the rules that move them between online and offline.
#[derive(Debug)]
pub struct Presence {
    rules: Rules,
    users: HashMap<Arc<str>, User>,
    online: usize,
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

    fn effect(&mut self, user_id: &Arc<str>, update: Option<Update>) -> Effect {
        if let Some(update) = &update {
            match update.status {
                Status::Online => self.online += 1,
                Status::Offline => self.online -= 1,
            }
        }
        let wake_at = self.users.get_mut(user_id).and_then(User::arm);
        Effect { update, wake_at }
    }

    /// A mobile connection opened: its user is online (no update if they already were, or if
    /// they are back inside the offline debounce).
    pub fn connect(
        &mut self,
        user_id: &Arc<str>,
        conn: ConnId,
        device_id: Option<Arc<str>>,
        now: Millis,
    ) -> Effect {
        let ttl = self.rules.ttl;
        let user = self.users.entry(user_id.clone()).or_insert_with(User::new);
        user.conns.push((conn, device_id));
        let update = user.seen(user_id, conn, now, ttl);
        self.effect(user_id, update)
    }

    /// A heartbeat from `conn` was written at `at`: the TTL restarts from then.
    pub fn heartbeat(&mut self, user_id: &Arc<str>, conn: ConnId, at: Millis) -> Effect {
        let ttl = self.rules.ttl;
        let Some(user) = self.users.get_mut(user_id) else {
            return Effect::default();
        };
        if !user.conns.iter().any(|(c, _)| *c == conn) {
            return Effect::default();
        }
        let update = user.seen(user_id, conn, at, ttl);
        self.effect(user_id, update)
    }

    /// A mobile connection closed. When it was the user's last, they go offline after the
    /// debounce (at once when it is 0).
    pub fn disconnect(&mut self, user_id: &Arc<str>, conn: ConnId, now: Millis) -> Effect {
        let debounce = self.rules.offline_debounce;
        let Some(user) = self.users.get_mut(user_id) else {
            return Effect::default();
        };
        let before = user.conns.len();
        user.conns.retain(|(c, _)| *c != conn);
        if user.conns.len() == before || !user.conns.is_empty() || user.status == Status::Offline {
            return Effect::default();
        }
        user.left_at = now;
        let update = if debounce == 0 {
            user.last_seen = now;
            Some(user.transition(user_id, Status::Offline, now))
        } else {
            user.offline_at = Some(now.saturating_add(debounce));
            None
        };
        self.effect(user_id, update)
    }

    /// Time has come for a wake-up asked for earlier: expire or end the debounce if due.
    pub fn wake(&mut self, user_id: &Arc<str>, now: Millis) -> Effect {
        let Some(user) = self.users.get_mut(user_id) else {
            return Effect::default();
        };
        if user.armed.is_some_and(|armed| armed <= now) {
            user.armed = None;
        }
        let update = match user.status {
            Status::Online if user.expires_at <= now => {
                user.last_seen = user.expires_at;
                Some(user.transition(user_id, Status::Offline, now))
            }
            Status::Online if user.offline_at.is_some_and(|at| at <= now) => {
                user.last_seen = user.left_at;
                Some(user.transition(user_id, Status::Offline, now))
            }
            _ => None,
        };
        self.effect(user_id, update)
    }

    /// The users online now, in no particular order.
    pub fn online_users(&self) -> Vec<UserView> {
        self.users
            .iter()
            .filter(|(_, u)| u.status == Status::Online)
            .map(|(id, u)| u.view(id))
            .collect()
    }

    /// What is known of one user; `None` for a user never seen.
    pub fn user(&self, user_id: &str) -> Option<UserView> {
        self.users.get_key_value(user_id).map(|(id, u)| u.view(id))
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

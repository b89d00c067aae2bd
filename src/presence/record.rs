//! One user's presence as every store keeps it, and the transitions of the rules on it.

use super::{next_version, Audience, GroupChange, Millis, Rules, Stated, Status, Update, UserView};
use serde::{Deserialize, Serialize};
use std::sync::Arc;

/// Names one connection among every router's: the router (0 for a router on its own) and the
/// connection's number there.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct ConnKey {
    /// The router that holds the connection.
    #[serde(rename = "r")]
    pub router: u64,
    /// The connection's number on that router.
    #[serde(rename = "c")]
    pub conn: u64,
}

/// One connection of a user, with its own deadline: it counts as live until then.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct Conn {
    #[serde(rename = "k")]
    key: ConnKey,
    #[serde(rename = "d", default, skip_serializing_if = "Option::is_none")]
    device_id: Option<Arc<str>>,
    /// Its last write plus the TTL.
    #[serde(rename = "t")]
    deadline: Millis,
}

/// Everything the rules know of one user. Stores keep it as it is (the Redis store as JSON) and
/// change it only through these methods, so every store makes the same decisions.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Record {
    /// Open connections: removed by their own disconnect only. One whose deadline has passed
    /// (silent, or on a router that died) no longer keeps the user online.
    #[serde(rename = "c", default)]
    conns: Vec<Conn>,
    #[serde(rename = "s")]
    status: Status,
    #[serde(rename = "v")]
    version: u64,
    #[serde(rename = "l")]
    last_seen: Millis,
    #[serde(rename = "d", default, skip_serializing_if = "Option::is_none")]
    device_id: Option<Arc<str>>,
    /// When the TTL runs out, while online.
    #[serde(rename = "e")]
    expires_at: Millis,
    /// When the offline debounce ends, while online with no live connection.
    #[serde(rename = "o", default, skip_serializing_if = "Option::is_none")]
    offline_at: Option<Millis>,
    /// When the last live connection left (the `lastSeen` of a debounced offline).
    #[serde(rename = "a")]
    left_at: Millis,
    /// When the status last changed, or an offline user's groups (the retention of an offline
    /// user counts from it).
    #[serde(rename = "x")]
    changed_at: Millis,
    /// Who may see the user.
    #[serde(rename = "u", default, skip_serializing_if = "is_default")]
    audience: Audience,
    /// What the user states, while online.
    #[serde(rename = "m", default, skip_serializing_if = "is_default")]
    stated: Stated,
}

fn is_default<T: Default + PartialEq>(value: &T) -> bool {
    *value == T::default()
}

impl Default for Record {
    fn default() -> Self {
        Record {
            conns: Vec::new(),
            status: Status::Offline,
            version: 0,
            last_seen: 0,
            device_id: None,
            expires_at: 0,
            offline_at: None,
            left_at: 0,
            changed_at: 0,
            audience: Audience::default(),
            stated: Stated::default(),
        }
    }
}

impl Record {
    /// The status the record holds (see [`Record::view`] for what it means at a given time).
    pub fn status(&self) -> Status {
        self.status
    }

    /// The version of the last change.
    pub fn version(&self) -> u64 {
        self.version
    }

    /// When the TTL runs out, while online.
    pub fn expires_at(&self) -> Millis {
        self.expires_at
    }

    /// The last connect or heartbeat while online; when they went offline.
    pub fn last_seen(&self) -> Millis {
        self.last_seen
    }

    /// The most recently active device, when it had an id.
    pub fn device_id(&self) -> Option<&Arc<str>> {
        self.device_id.as_ref()
    }

    /// Who may see the user.
    pub fn audience(&self) -> &Audience {
        &self.audience
    }

    /// A mobile connection opened at `now`, under the tenant of `joining`, joining its groups
    /// (a connection under another tenant than the record's moves the user there, leaving the
    /// old tenant's groups). Every operation first settles what is due at its time (so an
    /// expiry not yet processed by a store's timers is reported, then the return), and pushes
    /// the changes it makes to `updates`, in order.
    #[allow(clippy::too_many_arguments)]
    pub fn connect(
        &mut self,
        rules: &Rules,
        user_id: &Arc<str>,
        key: ConnKey,
        device_id: Option<Arc<str>>,
        joining: &Audience,
        now: Millis,
        updates: &mut Vec<Update>,
    ) {
        self.wake(rules, user_id, now, updates);
        let moved = self.enter(joining);
        let deadline = now.saturating_add(rules.ttl);
        match self.conns.iter_mut().find(|c| c.key == key) {
            // The same connection again (a restore, a replay): its deadline never moves back.
            Some(conn) => {
                conn.deadline = conn.deadline.max(deadline);
                conn.device_id = device_id.or(conn.device_id.take());
            }
            None => self.conns.push(Conn {
                key,
                device_id,
                deadline,
            }),
        }
        match (self.seen(rules, user_id, key, now), moved) {
            (Some(online), moved) => updates.push(Update {
                before: moved,
                ..online
            }),
            (None, Some(before)) => updates.push(self.changed(user_id, Some(before), now)),
            (None, None) => {}
        }
    }

    /// Takes the tenant of `joining` (a new tenant starts with no groups) and joins its groups;
    /// returns who could see the user before, when that changed. Nothing is copied in the usual
    /// case of a connection that changes nothing.
    fn enter(&mut self, joining: &Audience) -> Option<Arc<Audience>> {
        let same_tenant = self.audience.tenant == joining.tenant;
        let known = |g: &Arc<str>| self.audience.groups.binary_search(g).is_ok();
        if same_tenant && joining.groups.iter().all(known) {
            return None;
        }
        let before = self.audience.clone();
        if !same_tenant {
            self.audience = Audience {
                tenant: joining.tenant.clone(),
                groups: Vec::new(),
            };
        }
        for group in &joining.groups {
            self.audience.join(group);
        }
        (self.audience != before).then(|| Arc::new(before))
    }

    /// The user joins or leaves a group at `now`. While online, viewers learn it from an update
    /// (with a new version) that says who could see the user before.
    pub fn regroup(
        &mut self,
        rules: &Rules,
        user_id: &Arc<str>,
        change: &GroupChange,
        now: Millis,
        updates: &mut Vec<Update>,
    ) {
        self.wake(rules, user_id, now, updates);
        let before = self.audience.clone();
        let changed = match change {
            GroupChange::Join(group) => self.audience.join(group),
            GroupChange::Leave(group) => self.audience.leave(group),
        };
        if !changed {
            return;
        }
        match self.status {
            Status::Online => updates.push(self.changed(user_id, Some(Arc::new(before)), now)),
            Status::Offline => self.changed_at = self.changed_at.max(now),
        }
    }

    /// The user states their availability at `now` (an update with a new version when it
    /// changes). Ignored while offline: a statement lasts while the user is online.
    pub fn state(
        &mut self,
        rules: &Rules,
        user_id: &Arc<str>,
        stated: &Stated,
        now: Millis,
        updates: &mut Vec<Update>,
    ) {
        self.wake(rules, user_id, now, updates);
        if self.status == Status::Offline || self.stated == *stated {
            return;
        }
        self.stated = stated.clone();
        updates.push(self.changed(user_id, None, now));
    }

    /// Whether connection `key` is open in this record.
    pub fn has_conn(&self, key: ConnKey) -> bool {
        self.conns.iter().any(|c| c.key == key)
    }

    /// A heartbeat of connection `key`, received at `at`, is written (as of `at`, however late
    /// the write: every operation is decided at its own time). A heartbeat of a connection
    /// that is not open (it left already) changes nothing.
    pub fn heartbeat(
        &mut self,
        rules: &Rules,
        user_id: &Arc<str>,
        key: ConnKey,
        at: Millis,
        updates: &mut Vec<Update>,
    ) {
        if !self.conns.iter().any(|c| c.key == key) {
            return;
        }
        self.wake(rules, user_id, at, updates);
        if let Some(conn) = self.conns.iter_mut().find(|c| c.key == key) {
            conn.deadline = conn.deadline.max(at.saturating_add(rules.ttl));
        }
        updates.extend(self.seen(rules, user_id, key, at));
    }

    /// Connection `key` closed at `now`. When no live connection is left the user goes offline
    /// after the debounce (at once when it is 0).
    pub fn disconnect(
        &mut self,
        rules: &Rules,
        user_id: &Arc<str>,
        key: ConnKey,
        now: Millis,
        updates: &mut Vec<Update>,
    ) {
        let before = self.conns.len();
        self.conns.retain(|c| c.key != key);
        if self.conns.len() == before {
            return;
        }
        self.wake(rules, user_id, now, updates);
        if self.status == Status::Offline {
            return;
        }
        // Still connected elsewhere: online until those connections' own deadlines at most (a
        // connection of a router that died stops writing, and the user goes with it).
        if let Some(latest) = self
            .conns
            .iter()
            .map(|c| c.deadline)
            .filter(|d| *d > now)
            .max()
        {
            self.expires_at = latest;
            return;
        }
        // Already in the debounce of an earlier leave (a silent connection closing now does not
        // restart it).
        if self.offline_at.is_some() {
            return;
        }
        self.left_at = now;
        if rules.offline_debounce == 0 {
            self.last_seen = now;
            updates.push(self.transition(user_id, Status::Offline, now));
        } else {
            self.offline_at = Some(now.saturating_add(rules.offline_debounce));
        }
    }

    /// Looks at the user at `now`: the TTL or the debounce ends when due.
    pub fn wake(
        &mut self,
        rules: &Rules,
        user_id: &Arc<str>,
        now: Millis,
        updates: &mut Vec<Update>,
    ) {
        self.prune(rules, now);
        if let Some(last_seen) = self.due(now) {
            self.last_seen = last_seen;
            updates.push(self.transition(user_id, Status::Offline, now));
        }
    }

    /// When the record needs looking at next: the TTL or the debounce while online, the end of
    /// the retention while offline.
    pub fn next_deadline(&self, rules: &Rules) -> Option<Millis> {
        match self.status {
            Status::Online => Some(
                self.offline_at
                    .map_or(self.expires_at, |at| at.min(self.expires_at)),
            ),
            Status::Offline => Some(self.changed_at.saturating_add(rules.retention)),
        }
    }

    /// An offline user whose retention has passed, with no open connection: to be forgotten.
    pub fn forgotten(&self, rules: &Rules, now: Millis) -> bool {
        self.status == Status::Offline
            && self.changed_at.saturating_add(rules.retention) <= now
            && self.conns.iter().all(|c| c.deadline <= now)
    }

    /// What the user is at `now`, as a wake at `now` would decide, without deciding it.
    pub fn view(&self, user_id: &Arc<str>, now: Millis) -> UserView {
        let (status, last_seen) = match self.due(now) {
            Some(last_seen) => (Status::Offline, last_seen),
            None => (self.status, self.last_seen),
        };
        UserView {
            user_id: user_id.clone(),
            status,
            last_seen,
            device_id: self.device_id.clone(),
            version: self.version,
            stated: match status {
                Status::Online => Arc::new(self.stated.clone()),
                Status::Offline => Arc::default(),
            },
            audience: Arc::new(self.audience.clone()),
        }
    }

    /// What the record holds, whatever is due (a snapshot shows an online user until the offline
    /// update that a due expiry brings: a late heartbeat may still keep them online).
    pub fn stored_view(&self, user_id: &Arc<str>) -> UserView {
        UserView {
            user_id: user_id.clone(),
            status: self.status,
            last_seen: self.last_seen,
            device_id: self.device_id.clone(),
            version: self.version,
            stated: Arc::new(self.stated.clone()),
            audience: Arc::new(self.audience.clone()),
        }
    }

    /// When an online user is due to go offline at `now`: the `lastSeen` they go with.
    fn due(&self, now: Millis) -> Option<Millis> {
        if self.status != Status::Online {
            return None;
        }
        if self.expires_at <= now {
            return Some(self.expires_at);
        }
        match self.offline_at {
            Some(at) if at <= now => Some(self.left_at),
            _ => None,
        }
    }

    /// Forgets connections silent for longer than the retention (their router died long ago).
    fn prune(&mut self, rules: &Rules, now: Millis) {
        self.conns
            .retain(|c| c.deadline.saturating_add(rules.retention) > now);
    }

    fn transition(&mut self, user_id: &Arc<str>, status: Status, now: Millis) -> Update {
        self.status = status;
        self.changed_at = now;
        self.offline_at = None;
        if status == Status::Offline {
            self.stated = Stated::default();
        }
        self.changed(user_id, None, now)
    }

    /// The update of a change at `now`, with a new version; `before` says who could see the
    /// user before, when that changed.
    fn changed(
        &mut self,
        user_id: &Arc<str>,
        before: Option<Arc<Audience>>,
        now: Millis,
    ) -> Update {
        self.version = next_version(self.version, now);
        Update {
            user_id: user_id.clone(),
            status: self.status,
            version: self.version,
            last_seen: self.last_seen,
            device_id: self.device_id.clone(),
            timestamp: now,
            stated: Arc::new(self.stated.clone()),
            audience: Arc::new(self.audience.clone()),
            before,
        }
    }

    /// The user is seen at `at` on connection `key`; online again if they were not.
    fn seen(
        &mut self,
        rules: &Rules,
        user_id: &Arc<str>,
        key: ConnKey,
        at: Millis,
    ) -> Option<Update> {
        // The most recently active device: a held heartbeat written late does not take it over.
        if at >= self.last_seen {
            if let Some(device) = self
                .conns
                .iter()
                .find(|c| c.key == key)
                .and_then(|c| c.device_id.clone())
            {
                self.device_id = Some(device);
            }
        }
        self.last_seen = self.last_seen.max(at);
        self.expires_at = self.expires_at.max(at.saturating_add(rules.ttl));
        self.offline_at = None;
        (self.status == Status::Offline).then(|| self.transition(user_id, Status::Online, at))
    }
}

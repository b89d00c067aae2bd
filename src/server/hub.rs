//! [`Hub`]: this router's live connections as talk reaches them. Each connection has a bounded
//! mailbox; the hub finds them by user and by group, so that a frame for a group or a user is
//! put in the mailbox of every connection concerned on this router (the store relays it to the
//! other routers, whose hubs do the same).
//!
//! Locking rule: one `std` `RwLock`, held for one lookup or change and the non-blocking
//! `try_send`s of one delivery, never across an `.await`. A full mailbox loses the frame for that
//! connection only: a listener that cannot keep up never slows the talker or the others.

use crate::presence::{ConnId, Millis, MAX_GROUPS_PER_USER};
use crate::store::Relayed;
use crate::visibility::unscoped;
use crate::wire::encode_login_duplicated;
use bytes::Bytes;
use std::collections::HashMap;
use std::sync::{Arc, OnceLock, RwLock, RwLockReadGuard, RwLockWriteGuard};
use tokio::sync::{mpsc, Notify};

/// Frames one connection may have waiting: a few seconds of audio at 50 frames/s.
pub const MAILBOX: usize = 256;

/// `PTT_SINGLE_SESSION`: a connection's notice that its user logged in again. Apart from the
/// mailbox, so that a full mailbox never loses it.
#[derive(Debug, Default)]
pub struct Kick {
    /// The frame to send before closing (LOGIN_DUPLICATED), if any; set once.
    notice: OnceLock<Option<Bytes>>,
    wake: Notify,
}

impl Kick {
    fn kick(&self, notice: Option<Bytes>) {
        if self.notice.set(notice).is_ok() {
            // Kept as a permit when the session is not waiting yet.
            self.wake.notify_one();
        }
    }

    /// Waits until the connection is kicked; returns the frame to send before closing.
    pub async fn kicked(&self) -> Option<Bytes> {
        self.wake.notified().await;
        self.notice.get().cloned().flatten()
    }
}

/// How one delivery went.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Delivery {
    /// Mailboxes that took the frame.
    pub delivered: u64,
    /// Mailboxes that were full.
    pub full: u64,
}

#[derive(Debug)]
struct Listener {
    conn: ConnId,
    user: Arc<str>,
    device: Option<Arc<str>>,
    /// When it registered (epoch ms): a kick from another router closes only older ones.
    since: Millis,
    mailbox: mpsc::Sender<Bytes>,
    kick: Arc<Kick>,
}

#[derive(Debug, Default)]
struct UserEntry {
    conns: Vec<Arc<Listener>>,
    /// The user's groups (tenant-scoped), sorted.
    groups: Vec<Arc<str>>,
}

#[derive(Debug, Default)]
struct State {
    users: HashMap<Arc<str>, UserEntry>,
    /// The connections of each group's members.
    groups: HashMap<Arc<str>, Vec<Arc<Listener>>>,
}

impl State {
    fn index(&mut self, group: &Arc<str>, listener: &Arc<Listener>) {
        self.groups
            .entry(group.clone())
            .or_default()
            .push(listener.clone());
    }

    fn unindex(&mut self, group: &str, conn: ConnId) {
        if let Some(listeners) = self.groups.get_mut(group) {
            listeners.retain(|l| l.conn != conn);
            if listeners.is_empty() {
                self.groups.remove(group);
            }
        }
    }
}

/// This router's connections by user and group. Shared by reference.
#[derive(Debug, Default)]
pub struct Hub {
    state: RwLock<State>,
}

/// A connection's place in the hub; leaves it when dropped.
pub struct Registration<'a> {
    hub: &'a Hub,
    user: Arc<str>,
    conn: ConnId,
    /// Talk for the connection, in order.
    pub inbox: mpsc::Receiver<Bytes>,
    /// Whether its user logged in again (`PTT_SINGLE_SESSION`).
    pub kick: Arc<Kick>,
}

impl Drop for Registration<'_> {
    fn drop(&mut self) {
        self.hub.unregister(&self.user, self.conn);
    }
}

fn send(listener: &Listener, frame: &Bytes, delivery: &mut Delivery) {
    match listener.mailbox.try_send(frame.clone()) {
        Ok(()) => delivery.delivered += 1,
        Err(mpsc::error::TrySendError::Full(_)) => delivery.full += 1,
        // The session is ending; it unregisters itself.
        Err(mpsc::error::TrySendError::Closed(_)) => {}
    }
}

/// Kicks every connection of `entry` (of `user`) registered before `before`: those of a device
/// other than `device` get LOGIN_DUPLICATED first, as VoicePing sends it.
fn kick_all(entry: &UserEntry, device: Option<&str>, user: &str, before: Millis) {
    for listener in entry.conns.iter().filter(|l| l.since < before) {
        let notice = (listener.device.as_deref() != device).then(|| {
            Bytes::from(encode_login_duplicated(
                unscoped(user),
                device.unwrap_or_default(),
            ))
        });
        listener.kick.kick(notice);
    }
}

impl Hub {
    fn read(&self) -> RwLockReadGuard<'_, State> {
        self.state.read().unwrap_or_else(|p| p.into_inner())
    }

    fn write(&self) -> RwLockWriteGuard<'_, State> {
        self.state.write().unwrap_or_else(|p| p.into_inner())
    }

    /// Adds connection `conn` of `user` (tenant-scoped), a member of `groups`; returns its
    /// registration, with its mailbox. A user's groups are the same for all their connections:
    /// the union of what each registration brought, until [`Hub::set_groups`] says otherwise.
    /// With `single`, the user's other connections here are kicked at once (under the same
    /// lock, so that of two connections registering together one survives).
    pub fn register(
        &self,
        user: &Arc<str>,
        conn: ConnId,
        device: Option<Arc<str>>,
        groups: &[Arc<str>],
        single: bool,
        now: Millis,
    ) -> Registration<'_> {
        let (mailbox, inbox) = mpsc::channel(MAILBOX);
        let kick = Arc::new(Kick::default());
        let listener = Arc::new(Listener {
            conn,
            user: user.clone(),
            device,
            since: now,
            mailbox,
            kick: kick.clone(),
        });
        let mut state = self.write();
        let entry = state.users.entry(user.clone()).or_default();
        if single {
            kick_all(entry, listener.device.as_deref(), user, Millis::MAX);
        }
        entry.conns.push(listener.clone());
        let known = entry.groups.clone();
        let mut joined: Vec<Arc<str>> = groups
            .iter()
            .filter(|g| known.binary_search(g).is_err())
            .take(MAX_GROUPS_PER_USER.saturating_sub(known.len()))
            .cloned()
            .collect();
        joined.sort_unstable();
        joined.dedup();
        entry.groups.extend(joined.iter().cloned());
        entry.groups.sort_unstable();
        let conns = entry.conns.clone();
        for group in &known {
            state.index(group, &listener);
        }
        for group in &joined {
            for member in &conns {
                state.index(group, member);
            }
        }
        drop(state);
        Registration {
            hub: self,
            user: user.clone(),
            conn,
            inbox,
            kick,
        }
    }

    fn unregister(&self, user: &str, conn: ConnId) {
        let mut state = self.write();
        let Some(entry) = state.users.get_mut(user) else {
            return;
        };
        entry.conns.retain(|l| l.conn != conn);
        let groups = if entry.conns.is_empty() {
            state
                .users
                .remove(user)
                .map(|e| e.groups)
                .unwrap_or_default()
        } else {
            entry.groups.clone()
        };
        for group in &groups {
            state.unindex(group, conn);
        }
    }

    /// Makes `groups` (sorted) the groups of `user`, if they have a connection here.
    pub fn set_groups(&self, user: &str, groups: &[Arc<str>]) {
        self.regroup(user, |_| groups.to_vec());
    }

    /// `user` joined `group` (scoped); beyond [`MAX_GROUPS_PER_USER`] groups, nothing is.
    pub fn join(&self, user: &str, group: &Arc<str>) {
        self.regroup(user, |groups| {
            let mut groups = groups.to_vec();
            if let Err(at) = groups.binary_search(group) {
                if groups.len() < MAX_GROUPS_PER_USER {
                    groups.insert(at, group.clone());
                }
            }
            groups
        });
    }

    /// `user` left `group` (scoped).
    pub fn leave(&self, user: &str, group: &str) {
        self.regroup(user, |groups| {
            groups
                .iter()
                .filter(|g| g.as_ref() != group)
                .cloned()
                .collect()
        });
    }

    /// Changes the groups of `user` (if connected here) to what `change` makes of them, and the
    /// index with them, under one lock.
    fn regroup(&self, user: &str, change: impl FnOnce(&[Arc<str>]) -> Vec<Arc<str>>) {
        let mut state = self.write();
        let Some(entry) = state.users.get_mut(user) else {
            return;
        };
        let groups = change(&entry.groups);
        if entry.groups == groups {
            return;
        }
        let old = std::mem::replace(&mut entry.groups, groups);
        let (conns, groups) = (entry.conns.clone(), entry.groups.clone());
        for group in old.iter().filter(|g| groups.binary_search(g).is_err()) {
            for listener in &conns {
                state.unindex(group, listener.conn);
            }
        }
        for group in groups.iter().filter(|g| old.binary_search(g).is_err()) {
            for listener in &conns {
                state.index(group, listener);
            }
        }
    }

    /// The users with a connection here.
    pub fn users(&self) -> Vec<Arc<str>> {
        self.read().users.keys().cloned().collect()
    }

    /// The groups of `user` (empty when not connected here).
    pub fn groups_of(&self, user: &str) -> Vec<Arc<str>> {
        self.read()
            .users
            .get(user)
            .map(|e| e.groups.clone())
            .unwrap_or_default()
    }

    /// Whether `user`, connected here, is a member of `group`.
    pub fn is_member(&self, user: &str, group: &Arc<str>) -> bool {
        self.read()
            .users
            .get(user)
            .is_some_and(|e| e.groups.binary_search(group).is_ok())
    }

    /// `frame` to the connections here of every member of `group` but `except`.
    pub fn to_group(&self, group: &str, except: &str, frame: &Bytes) -> Delivery {
        let mut delivery = Delivery::default();
        if let Some(listeners) = self.read().groups.get(group) {
            for listener in listeners.iter().filter(|l| l.user.as_ref() != except) {
                send(listener, frame, &mut delivery);
            }
        }
        delivery
    }

    /// `frame` to every connection of `user` here.
    pub fn to_user(&self, user: &str, frame: &Bytes) -> Delivery {
        let mut delivery = Delivery::default();
        if let Some(entry) = self.read().users.get(user) {
            for listener in &entry.conns {
                send(listener, frame, &mut delivery);
            }
        }
        delivery
    }

    /// `PTT_SINGLE_SESSION`: `user` connected from `device` on another router at `at`: every
    /// connection of theirs here that is older is kicked.
    pub fn kick(&self, user: &str, device: Option<&str>, at: Millis) {
        if let Some(entry) = self.read().users.get(user) {
            kick_all(entry, device, user, at);
        }
    }

    /// Delivers what another router relayed.
    pub fn deliver(&self, relayed: &Relayed) -> Delivery {
        match relayed {
            Relayed::Group {
                group,
                except,
                frame,
            } => self.to_group(group, except, frame),
            Relayed::User { user, frame } => self.to_user(user, frame),
            Relayed::Kick { user, device, at } => {
                self.kick(user, device.as_deref(), *at);
                Delivery::default()
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(s: &str) -> Arc<str> {
        Arc::from(s)
    }

    fn frame(n: u8) -> Bytes {
        Bytes::from(vec![n])
    }

    fn next(registration: &mut Registration<'_>) -> Option<Bytes> {
        registration.inbox.try_recv().ok()
    }

    fn join<'h>(hub: &'h Hub, user: &str, conn: ConnId, groups: &[Arc<str>]) -> Registration<'h> {
        hub.register(&id(user), conn, None, groups, false, 0)
    }

    #[test]
    fn a_group_frame_reaches_every_member_connection_but_the_senders() {
        let hub = Hub::default();
        let g = id("18");
        let mut a = join(&hub, "alice", 1, std::slice::from_ref(&g));
        let mut b1 = join(&hub, "bob", 2, std::slice::from_ref(&g));
        let mut b2 = join(&hub, "bob", 3, &[]);
        let mut c = join(&hub, "carol", 4, &[]);
        let delivery = hub.to_group("18", "alice", &frame(1));
        assert_eq!(delivery.delivered, 2, "both of bob's connections");
        assert_eq!(next(&mut b1), Some(frame(1)));
        assert_eq!(next(&mut b2), Some(frame(1)));
        assert_eq!(next(&mut a), None);
        assert_eq!(next(&mut c), None);
    }

    #[test]
    fn joins_leaves_and_goodbyes_keep_the_index_true() {
        let hub = Hub::default();
        let g = id("18");
        let mut a = join(&hub, "alice", 1, &[]);
        let sender = id("zed");
        assert_eq!(hub.to_group("18", &sender, &frame(1)).delivered, 0);
        hub.join("alice", &g);
        assert!(hub.is_member("alice", &g));
        assert_eq!(hub.to_group("18", &sender, &frame(2)).delivered, 1);
        assert_eq!(next(&mut a), Some(frame(2)));
        hub.leave("alice", "18");
        assert_eq!(hub.to_group("18", &sender, &frame(3)).delivered, 0);
        hub.set_groups("alice", std::slice::from_ref(&g));
        let second = join(&hub, "alice", 2, &[]);
        assert_eq!(hub.to_group("18", &sender, &frame(4)).delivered, 2);
        drop(second);
        assert_eq!(hub.to_group("18", &sender, &frame(5)).delivered, 1);
        drop(a);
        assert!(hub.read().groups.is_empty() && hub.read().users.is_empty());
    }

    #[test]
    fn a_full_mailbox_loses_frames_for_that_connection_only() {
        let hub = Hub::default();
        let _slow = join(&hub, "slow", 1, &[id("g")]);
        let mut fast = join(&hub, "fast", 2, &[id("g")]);
        for n in 0..MAILBOX + 10 {
            let delivery = hub.to_group("g", "talker", &frame(n as u8));
            assert!(next(&mut fast).is_some());
            assert_eq!(delivery.full, u64::from(n >= MAILBOX));
        }
    }

    #[test]
    fn joins_stop_at_the_most_groups_a_user_may_have() {
        let hub = Hub::default();
        let _a = join(&hub, "alice", 1, &[]);
        for n in 0..MAX_GROUPS_PER_USER + 50 {
            hub.join("alice", &id(&format!("g{n}")));
        }
        assert_eq!(hub.groups_of("alice").len(), MAX_GROUPS_PER_USER);
        assert_eq!(hub.read().groups.len(), MAX_GROUPS_PER_USER);
    }

    #[tokio::test]
    async fn a_single_session_kicks_the_older_connections_even_with_a_full_mailbox() {
        let hub = Hub::default();
        let user = id("u1");
        let old = hub.register(&user, 1, Some(id("d1")), &[id("g")], true, 10);
        let same = hub.register(&user, 2, Some(id("d2")), &[], false, 20);
        for _ in 0..MAILBOX + 1 {
            hub.to_group("g", "talker", &frame(0));
        }
        let new = hub.register(&user, 3, Some(id("d2")), &[], true, 30);
        let notice = old
            .kick
            .kicked()
            .await
            .expect("LOGIN_DUPLICATED for another device");
        assert!(String::from_utf8_lossy(&notice).contains("another deviceId d2"));
        assert_eq!(
            same.kick.kicked().await,
            None,
            "the same device: closed silently"
        );
        let not_kicked =
            tokio::time::timeout(std::time::Duration::from_millis(20), new.kick.kicked()).await;
        assert!(not_kicked.is_err(), "the new connection stays");
        // Another router's kick closes only what is older than its login.
        hub.kick("u1", Some("d9"), 25);
        let not_kicked =
            tokio::time::timeout(std::time::Duration::from_millis(20), new.kick.kicked()).await;
        assert!(not_kicked.is_err(), "newer than the other router's login");
        hub.kick("u1", Some("d9"), 31);
        assert!(new.kick.kicked().await.is_some(), "older than it");
    }
}

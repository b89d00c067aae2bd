//! [`Hub`]: this router's live connections as talk reaches them. Each connection has a bounded
//! mailbox; the hub finds them by user and by group, so that a frame for a group or a user is
//! put in the mailbox of every connection concerned on this router (the store relays it to the
//! other routers, whose hubs do the same).
//!
//! Locking rule: one `std` `RwLock`, held for one lookup or change and the non-blocking
//! `try_send`s of one delivery, never across an `.await`. A full mailbox loses the frame for that
//! connection only: a listener that cannot keep up never slows the talker or the others.

use crate::presence::ConnId;
use crate::store::Relayed;
use crate::visibility::unscoped;
use crate::wire::encode_login_duplicated;
use bytes::Bytes;
use std::collections::HashMap;
use std::sync::{Arc, RwLock, RwLockReadGuard, RwLockWriteGuard};
use tokio::sync::mpsc;

/// Frames one connection may have waiting: a few seconds of audio at 50 frames/s.
pub const MAILBOX: usize = 256;

/// What a session finds in its mailbox.
#[derive(Debug)]
pub enum Outbound {
    /// A frame to send.
    Frame(Bytes),
    /// `PTT_SINGLE_SESSION`: the user logged in elsewhere; send this frame (if any), then close.
    Kick(Option<Bytes>),
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
    mailbox: mpsc::Sender<Outbound>,
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
}

impl Drop for Registration<'_> {
    fn drop(&mut self) {
        self.hub.unregister(&self.user, self.conn);
    }
}

fn send(listener: &Listener, frame: &Bytes, delivery: &mut Delivery) {
    match listener.mailbox.try_send(Outbound::Frame(frame.clone())) {
        Ok(()) => delivery.delivered += 1,
        Err(mpsc::error::TrySendError::Full(_)) => delivery.full += 1,
        // The session is ending; it unregisters itself.
        Err(mpsc::error::TrySendError::Closed(_)) => {}
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
    /// registration and mailbox. A user's groups are the same for all their connections: the
    /// union of what each registration brought, until [`Hub::set_groups`] says otherwise.
    pub fn register(
        &self,
        user: &Arc<str>,
        conn: ConnId,
        device: Option<Arc<str>>,
        groups: &[Arc<str>],
    ) -> (Registration<'_>, mpsc::Receiver<Outbound>) {
        let (mailbox, inbox) = mpsc::channel(MAILBOX);
        let listener = Arc::new(Listener {
            conn,
            user: user.clone(),
            device,
            mailbox,
        });
        let mut state = self.write();
        let entry = state.users.entry(user.clone()).or_default();
        entry.conns.push(listener.clone());
        let known = entry.groups.clone();
        let mut joined: Vec<Arc<str>> = groups
            .iter()
            .filter(|g| known.binary_search(g).is_err())
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
        let registration = Registration {
            hub: self,
            user: user.clone(),
            conn,
        };
        (registration, inbox)
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
        let mut state = self.write();
        let Some(entry) = state.users.get_mut(user) else {
            return;
        };
        if entry.groups == groups {
            return;
        }
        let old = std::mem::replace(&mut entry.groups, groups.to_vec());
        let conns = entry.conns.clone();
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

    /// `user` joined `group` (scoped).
    pub fn join(&self, user: &str, group: &Arc<str>) {
        let groups = self.with_groups(user, |groups| {
            if let Err(at) = groups.binary_search(group) {
                groups.insert(at, group.clone());
            }
        });
        if let Some(groups) = groups {
            self.set_groups(user, &groups);
        }
    }

    /// `user` left `group` (scoped).
    pub fn leave(&self, user: &str, group: &str) {
        let groups = self.with_groups(user, |groups| groups.retain(|g| g.as_ref() != group));
        if let Some(groups) = groups {
            self.set_groups(user, &groups);
        }
    }

    fn with_groups(
        &self,
        user: &str,
        change: impl FnOnce(&mut Vec<Arc<str>>),
    ) -> Option<Vec<Arc<str>>> {
        let mut groups = self.read().users.get(user)?.groups.clone();
        change(&mut groups);
        Some(groups)
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

    /// `PTT_SINGLE_SESSION`: `user` connected from `device` (as connection `keep`, when here):
    /// every other connection of theirs here is closed, with LOGIN_DUPLICATED first when its
    /// device id differs. Closing is the session's business once the mailbox says so.
    pub fn kick(&self, user: &str, device: Option<&str>, keep: Option<ConnId>) {
        let state = self.read();
        let Some(entry) = state.users.get(user) else {
            return;
        };
        for listener in entry.conns.iter().filter(|l| Some(l.conn) != keep) {
            let notice = (listener.device.as_deref() != device).then(|| {
                Bytes::from(encode_login_duplicated(
                    unscoped(user),
                    device.unwrap_or_default(),
                ))
            });
            // A full mailbox: the kick goes when there is room, or with the session.
            let _ = listener.mailbox.try_send(Outbound::Kick(notice));
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
            Relayed::Kick { user, device } => {
                self.kick(user, device.as_deref(), None);
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

    fn next(inbox: &mut mpsc::Receiver<Outbound>) -> Option<Bytes> {
        match inbox.try_recv() {
            Ok(Outbound::Frame(f)) => Some(f),
            _ => None,
        }
    }

    #[test]
    fn a_group_frame_reaches_every_member_connection_but_the_senders() {
        let hub = Hub::default();
        let g = id("18");
        let (_a, mut a) = hub.register(&id("alice"), 1, None, std::slice::from_ref(&g));
        let (_b1, mut b1) = hub.register(&id("bob"), 2, None, std::slice::from_ref(&g));
        let (_b2, mut b2) = hub.register(&id("bob"), 3, None, &[]);
        let (_c, mut c) = hub.register(&id("carol"), 4, None, &[]);
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
        let (_a, mut a) = hub.register(&id("alice"), 1, None, &[]);
        let sender = id("zed");
        assert_eq!(hub.to_group("18", &sender, &frame(1)).delivered, 0);
        hub.join("alice", &g);
        assert!(hub.is_member("alice", &g));
        assert_eq!(hub.to_group("18", &sender, &frame(2)).delivered, 1);
        assert_eq!(next(&mut a), Some(frame(2)));
        hub.leave("alice", "18");
        assert_eq!(hub.to_group("18", &sender, &frame(3)).delivered, 0);
        hub.set_groups("alice", std::slice::from_ref(&g));
        let (second, _second_inbox) = hub.register(&id("alice"), 2, None, &[]);
        assert_eq!(hub.to_group("18", &sender, &frame(4)).delivered, 2);
        drop(second);
        assert_eq!(hub.to_group("18", &sender, &frame(5)).delivered, 1);
        drop(_a);
        assert!(hub.read().groups.is_empty() && hub.read().users.is_empty());
    }

    #[test]
    fn a_full_mailbox_loses_frames_for_that_connection_only() {
        let hub = Hub::default();
        let (_slow, _slow_inbox) = hub.register(&id("slow"), 1, None, &[id("g")]);
        let (_fast, mut fast) = hub.register(&id("fast"), 2, None, &[id("g")]);
        for n in 0..MAILBOX + 10 {
            let delivery = hub.to_group("g", "talker", &frame(n as u8));
            assert!(next(&mut fast).is_some());
            assert_eq!(delivery.full, u64::from(n >= MAILBOX));
        }
    }

    #[test]
    fn a_kick_spares_the_new_connection_and_tells_other_devices() {
        let hub = Hub::default();
        let (_old, mut old) = hub.register(&id("u1"), 1, Some(id("d1")), &[]);
        let (_same, mut same) = hub.register(&id("u1"), 2, Some(id("d2")), &[]);
        let (_new, mut new) = hub.register(&id("u1"), 3, Some(id("d2")), &[]);
        hub.kick("u1", Some("d2"), Some(3));
        assert!(matches!(old.try_recv(), Ok(Outbound::Kick(Some(_)))));
        assert!(matches!(same.try_recv(), Ok(Outbound::Kick(None))));
        assert!(new.try_recv().is_err());
    }
}

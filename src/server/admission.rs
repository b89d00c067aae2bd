//! Who may open one more connection: a cap on sockets not (yet) upgraded
//! (`PRESENCE_MAX_PENDING_CONNECTIONS`), taken at accept, so that idle or slow sockets cannot
//! use up the process's files; a cap on WebSockets (`PRESENCE_MAX_CONNECTIONS`), taken as a
//! permit before the 101 so that concurrent upgrades cannot overshoot it; and a cap per user
//! (`PRESENCE_MAX_CONNECTIONS_PER_USER`), so that one leaked token cannot take every slot.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// Why a connection is not admitted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// The router holds `PRESENCE_MAX_CONNECTIONS` already.
    Full,
    /// This user holds `PRESENCE_MAX_CONNECTIONS_PER_USER` already.
    UserFull,
}

/// The caps, shared by every connection.
#[derive(Debug)]
pub struct Admission {
    max_pending: usize,
    pending: Arc<Semaphore>,
    slots: Arc<Semaphore>,
    per_user: Mutex<HashMap<Arc<str>, usize>>,
    max_per_user: usize,
}

/// One admitted connection: its slots are given back when it is dropped.
#[derive(Debug)]
pub struct Ticket {
    admission: Arc<Admission>,
    user: Arc<str>,
    _slot: OwnedSemaphorePermit,
}

impl Admission {
    /// At most `max_pending` sockets not upgraded, `max` WebSockets in all and `max_per_user`
    /// per user.
    pub fn new(max_pending: usize, max: usize, max_per_user: usize) -> Arc<Admission> {
        let semaphore = |n: usize| Arc::new(Semaphore::new(n.min(Semaphore::MAX_PERMITS)));
        let max_pending = max_pending.min(Semaphore::MAX_PERMITS);
        Arc::new(Admission {
            max_pending,
            pending: semaphore(max_pending),
            slots: semaphore(max),
            per_user: Mutex::new(HashMap::new()),
            max_per_user,
        })
    }

    /// A slot for an accepted socket until it upgrades or closes; `None` when all are taken.
    pub fn socket(&self) -> Option<OwnedSemaphorePermit> {
        self.pending.clone().try_acquire_owned().ok()
    }

    /// How many sockets hold a pending slot now.
    pub fn pending(&self) -> usize {
        self.max_pending - self.pending.available_permits()
    }

    /// Admits one more WebSocket of `user` (the store's id of the user), or says why not.
    pub fn admit(self: &Arc<Self>, user: &Arc<str>) -> Result<Ticket, Refusal> {
        let slot = self
            .slots
            .clone()
            .try_acquire_owned()
            .map_err(|_| Refusal::Full)?;
        let mut per_user = self.users();
        let held = per_user.entry(user.clone()).or_insert(0);
        if *held >= self.max_per_user {
            return Err(Refusal::UserFull);
        }
        *held += 1;
        Ok(Ticket {
            admission: self.clone(),
            user: user.clone(),
            _slot: slot,
        })
    }

    fn users(&self) -> std::sync::MutexGuard<'_, HashMap<Arc<str>, usize>> {
        self.per_user.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl Drop for Ticket {
    fn drop(&mut self) {
        let mut per_user = self.admission.users();
        if let Some(held) = per_user.get_mut(&self.user) {
            *held -= 1;
            if *held == 0 {
                per_user.remove(&self.user);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_caps_hold_and_slots_come_back() {
        let admission = Admission::new(8, 3, 2);
        let (alice, bob) = (Arc::from("alice"), Arc::from("bob"));
        let a1 = admission.admit(&alice).expect("first");
        let _a2 = admission.admit(&alice).expect("second");
        assert_eq!(admission.admit(&alice).err(), Some(Refusal::UserFull));
        let _b1 = admission.admit(&bob).expect("another user");
        assert_eq!(admission.admit(&bob).err(), Some(Refusal::Full));
        drop(a1);
        let _a3 = admission.admit(&alice).expect("a slot came back");
        assert_eq!(admission.users().get(&alice).copied(), Some(2));
    }

    #[test]
    fn sockets_not_upgraded_have_their_own_cap() {
        let admission = Admission::new(2, 10, 10);
        let first = admission.socket().expect("first");
        let _second = admission.socket().expect("second");
        assert!(admission.socket().is_none());
        drop(first);
        assert!(admission.socket().is_some());
    }

    #[test]
    fn a_user_refused_leaves_no_count_behind() {
        let admission = Admission::new(8, 10, 1);
        let carol: Arc<str> = Arc::from("carol");
        let ticket = admission.admit(&carol).expect("first");
        assert!(admission.admit(&carol).is_err());
        drop(ticket);
        assert!(admission.users().is_empty(), "{:?}", admission.users());
    }
}

//! The embedded store: the presence core behind one mutex, with one timer task for every user.
//!
//! Locking rule: `Shared::state` is a `std` mutex, held only for a core operation and the
//! non-blocking publication of its update, never across an `.await`. Publishing under the lock is
//! what keeps updates in order and their sequence numbers in step with snapshots.

use super::{
    Activity, Device, Feed, FeedEvent, PresenceStore, Published, Relayed, Snapshot, StoreError,
    StoreHealth, TalkStore,
};
use crate::clock::Clock;
use crate::presence::{Effect, GroupChange, Millis, Presence, Rules, Stated, UserView};
use crate::ptt::{claim, Claim, Floor};
use crate::tasks::Tasks;
use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};
use tokio::sync::{broadcast, Notify};
use tokio_util::sync::CancellationToken;

/// How many due wake-ups the timer task handles under one lock before letting others in.
const WAKE_BATCH: usize = 1024;

/// The in-process presence store. Cheap to clone; all clones share one state.
#[derive(Clone, Debug)]
pub struct MemoryStore {
    shared: Arc<Shared>,
}

#[derive(Debug)]
struct Shared {
    state: Mutex<State>,
    feed: broadcast::Sender<Arc<FeedEvent>>,
    /// Tells the timer task that an earlier wake-up was queued.
    timer_moved: Notify,
    /// The floors by key, each as [`crate::ptt`] decided it (a `std` mutex of its own, held for
    /// one decision).
    floors: Mutex<HashMap<String, Floor>>,
    clock: Clock,
}

#[derive(Debug)]
struct State {
    presence: Presence,
    /// Wake-ups the core asked for, earliest first.
    timers: BinaryHeap<Reverse<(Millis, Arc<str>)>>,
    /// The sequence number of the last update published.
    seq: u64,
}

impl State {
    /// Publishes and schedules what a core operation asked for.
    fn apply(&mut self, effect: Effect, user_id: &Arc<str>, shared: &Shared) {
        for update in effect.updates {
            self.seq += 1;
            // No subscriber is not an error: nobody is watching.
            let _ = shared.feed.send(Arc::new(FeedEvent::Update(Published::new(
                update, self.seq,
            ))));
        }
        if let Some(at) = effect.wake_at {
            let earliest = self.timers.peek().map(|Reverse((t, _))| *t);
            self.timers.push(Reverse((at, user_id.clone())));
            if earliest.is_none_or(|t| at < t) {
                shared.timer_moved.notify_one();
            }
        }
    }
}

impl MemoryStore {
    /// A store applying `rules`, whose timer task runs on `tasks` until shutdown.
    /// `feed_capacity` is how many updates a subscriber may fall behind before it lags.
    pub fn spawn(rules: Rules, clock: Clock, feed_capacity: usize, tasks: &Tasks) -> Self {
        let (feed, _) = broadcast::channel(feed_capacity.max(1));
        let shared = Arc::new(Shared {
            state: Mutex::new(State {
                presence: Presence::new(rules),
                timers: BinaryHeap::new(),
                seq: 0,
            }),
            feed,
            timer_moved: Notify::new(),
            floors: Mutex::new(HashMap::new()),
            clock,
        });
        tasks.spawn_service(
            "presence timers",
            run_timers(shared.clone(), tasks.shutdown().clone()),
        );
        MemoryStore { shared }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        lock(&self.shared)
    }

    fn with_core(&self, user_id: &Arc<str>, op: impl FnOnce(&mut Presence, Millis) -> Effect) {
        let now = self.shared.clock.now_ms();
        let mut state = self.lock();
        let effect = op(&mut state.presence, now);
        state.apply(effect, user_id, &self.shared);
    }
}

/// A poisoned lock only means another thread panicked mid-operation; the core's state is
/// still consistent per user, so carry on rather than take the whole router down.
fn lock(shared: &Shared) -> MutexGuard<'_, State> {
    shared
        .state
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

fn floors(shared: &Shared) -> MutexGuard<'_, HashMap<String, Floor>> {
    shared
        .floors
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// How often offline users past their retention are forgotten (one scan of every user).
const FORGET_INTERVAL: std::time::Duration = std::time::Duration::from_secs(3600);

/// Fires the wake-ups the core asked for, in deadline order, and forgets users past their
/// retention every [`FORGET_INTERVAL`].
async fn run_timers(shared: Arc<Shared>, shutdown: CancellationToken) {
    let mut forget = tokio::time::interval(FORGET_INTERVAL);
    forget.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        let (next, more_due) = {
            let now = shared.clock.now_ms();
            let mut state = lock(&shared);
            let mut fired = 0;
            while fired < WAKE_BATCH {
                match state.timers.peek() {
                    Some(Reverse((at, _))) if *at <= now => {}
                    _ => break,
                }
                let Some(Reverse((_, user_id))) = state.timers.pop() else {
                    break;
                };
                let effect = state.presence.wake(&user_id, now);
                state.apply(effect, &user_id, &shared);
                fired += 1;
            }
            (
                state.timers.peek().map(|Reverse((at, _))| *at),
                fired == WAKE_BATCH,
            )
        };
        if more_due {
            tokio::task::yield_now().await;
            continue;
        }
        let sleep = async {
            match next {
                Some(at) => tokio::time::sleep_until(shared.clock.instant_at(at)).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = shared.timer_moved.notified() => {}
            _ = sleep => {}
            _ = forget.tick() => {
                let now = shared.clock.now_ms();
                lock(&shared).presence.forget(now);
                floors(&shared).retain(|_, floor| floor.held(now));
            }
        }
    }
}

impl PresenceStore for MemoryStore {
    fn kind(&self) -> &'static str {
        "memory"
    }

    fn health(&self) -> StoreHealth {
        StoreHealth::Ok
    }

    fn write_backlog(&self) -> usize {
        0
    }

    async fn connect(&self, device: &Device) -> Result<(), StoreError> {
        self.with_core(&device.user_id, |p, now| {
            p.connect(
                &device.user_id,
                device.conn,
                device.device_id.clone(),
                &device.audience,
                now,
            )
        });
        Ok(())
    }

    async fn state(&self, user_id: &Arc<str>, stated: Stated) -> Result<(), StoreError> {
        self.with_core(user_id, |p, now| p.state(user_id, &stated, now));
        Ok(())
    }

    async fn regroup(&self, user_id: &Arc<str>, change: GroupChange) -> Result<(), StoreError> {
        self.with_core(user_id, |p, now| p.regroup(user_id, &change, now));
        Ok(())
    }

    async fn heartbeat(&self, device: &Device, at: Millis) -> Result<(), StoreError> {
        self.with_core(&device.user_id, |p, _| {
            p.heartbeat(&device.user_id, device.conn, at)
        });
        Ok(())
    }

    async fn disconnect(&self, device: &Device) -> Result<(), StoreError> {
        self.with_core(&device.user_id, |p, now| {
            p.disconnect(&device.user_id, device.conn, now)
        });
        Ok(())
    }

    fn feed(&self) -> Feed {
        self.shared.feed.subscribe()
    }

    async fn snapshot(&self) -> Result<Arc<Snapshot>, StoreError> {
        let now = self.shared.clock.now_ms();
        let (mut users, seq) = {
            let state = self.lock();
            (state.presence.online_users(), state.seq)
        };
        users.sort_unstable_by(|a, b| a.user_id.cmp(&b.user_id));
        Ok(Arc::new(Snapshot::new(now, seq, seq, users)))
    }

    async fn members(&self, group: &str) -> Result<Vec<Arc<str>>, StoreError> {
        Ok(self.lock().presence.members(group))
    }

    async fn lookup(&self, user_ids: &[Arc<str>]) -> Result<Vec<UserView>, StoreError> {
        let now = self.shared.clock.now_ms();
        let state = self.lock();
        Ok(user_ids
            .iter()
            .map(|id| {
                state
                    .presence
                    .user(id, now)
                    .unwrap_or_else(|| UserView::unknown(id.clone()))
            })
            .collect())
    }
}

/// One router: floors in a map, nothing to relay, activity straight into the feed.
impl TalkStore for MemoryStore {
    async fn claim(&self, want: &Floor, now: Millis) -> Result<Claim, StoreError> {
        let key = want.key();
        let mut floors = floors(&self.shared);
        let decision = claim(floors.get(&key), want, now);
        if decision == Claim::Granted {
            floors.insert(key, want.clone());
        }
        Ok(decision)
    }

    async fn refresh(&self, floor: &Floor) -> Result<bool, StoreError> {
        let mut floors = floors(&self.shared);
        match floors.get_mut(&floor.key()) {
            Some(held) if held.talk == floor.talk => {
                *held = floor.clone();
                Ok(true)
            }
            _ => Ok(false),
        }
    }

    async fn release(&self, floor: &Floor) -> Result<bool, StoreError> {
        let key = floor.key();
        let mut floors = floors(&self.shared);
        let held = floors.get(&key).is_some_and(|held| held.talk == floor.talk);
        if held {
            floors.remove(&key);
        }
        Ok(held)
    }

    async fn on_air(&self, now: Millis) -> Result<Vec<Floor>, StoreError> {
        Ok(floors(&self.shared)
            .values()
            .filter(|floor| floor.held(now))
            .cloned()
            .collect())
    }

    fn relay(&self, _message: Relayed) {}

    fn relayed(&self) -> Option<tokio::sync::mpsc::Receiver<Relayed>> {
        None
    }

    fn announce(&self, activity: Activity) {
        // No subscriber is not an error: nobody is watching.
        let _ = self
            .shared
            .feed
            .send(Arc::new(FeedEvent::Activity(activity)));
    }
}

//! The Redis store: each user's [`crate::presence::Record`] lives in Redis, the rules of
//! `presence` decide every change in the router, `apply.lua` writes the decided record
//! atomically (a compare-and-set on its revision) and publishes each change once on
//! `presence:updates`, which carries it to every router.
//!
//! Tasks (all stopped by the shutdown token, the writer once it has drained):
//! - the **writer** applies connects, heartbeats, leaves and wake-ups in order, in batches: one
//!   round trip reads the batch's records, one writes them back (see `records`);
//! - the **listener** forwards `presence:updates` to this router's feed and turns keyspace
//!   `expired` events into wake-ups (the fast path);
//! - the **sweeper** turns every passed deadline of `presence:deadlines` into a wake-up (the
//!   guarantee: safe on every router at once, and nothing is lost while notifications are off or
//!   a router was away);
//! - the **rebuilder** reloads the script and re-enables notifications on every (re)connect, and
//!   restores this router's live connections when Redis has lost its data.

mod keys;
mod records;
mod scripts;
mod talk;
mod tasks;
#[cfg(test)]
mod tests;

use super::{
    Activity, Device, Feed, FeedEvent, PresenceStore, Relayed, Snapshot, StoreError, StoreHealth,
    TalkStore,
};
use crate::clock::Clock;
use crate::presence::{ConnId, GroupChange, Millis, Rules, Stated, Status, UserView};
use crate::ptt::{Claim, Floor};
use crate::tasks::Tasks;
use fred::prelude::{
    Builder, ClientLike, Config as FredConfig, KeysInterface, ReconnectPolicy, SetsInterface,
};
use fred::types::{ClusterHash, CustomCommand, Value};
use keys::Keys;
use scripts::Scripts;
use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;
use tokio::sync::{broadcast, mpsc, oneshot};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tracing::warn;

/// Most writes the writer sends in one pipeline.
const MAX_BATCH: usize = 512;

/// Writes that may wait for the writer; more are dropped (and rebuilt on reconnect).
const WRITE_QUEUE: usize = 65_536;

/// Failed writes kept for sending again; more and the oldest are not read from the queue.
const MAX_PENDING: usize = 65_536;

/// A backlog of writes above this (about a third of a second of the writer's work) makes the
/// store report that it is falling behind.
const BACKLOG_BEHIND: usize = 16_384;

/// Backoff between attempts while writes fail.
const RETRY_MIN: Duration = Duration::from_millis(50);
const RETRY_MAX: Duration = Duration::from_secs(2);

/// Messages fred may buffer for the listener before it counts as behind (and dashboards resync).
const SUBSCRIBER_BUFFER: usize = 16_384;

/// How often each router sweeps for passed deadlines.
const SWEEP_INTERVAL: Duration = Duration::from_millis(200);

/// Most users one sweep handles; a full sweep is followed at once by another.
const SWEEP_LIMIT: usize = 1_000;

/// How long a snapshot may take in all (it reads every online user, a page at a time).
const SNAPSHOT_TIMEOUT: Duration = Duration::from_secs(30);

/// Users asked for per page of a snapshot: each page is one ZSCAN and one pipeline of reads,
/// small enough that other clients of Redis never wait behind it for long.
const SNAPSHOT_PAGE: u32 = 200;

/// How long start-up waits for Redis to be ready (scripts loaded, subscribed) before the router
/// serves anyway, degraded: long enough for a busy Redis, short enough for one that is down.
const READY_TIMEOUT: Duration = Duration::from_secs(10);

/// While Redis stays unreachable for the same cause, it is logged again this often.
const UNREACHABLE_LOG_INTERVAL: Duration = Duration::from_secs(60);

/// How often each router checks `presence:epoch` for lost data (a FLUSHALL, say).
const EPOCH_CHECK_INTERVAL: Duration = Duration::from_millis(500);

/// After Redis lost its data, how long from the new epoch every router has to restore its
/// connections before dashboards get their snapshots (a few epoch checks).
const RESTORE_GRACE: Duration = Duration::from_secs(2);

/// How long one Redis command may take before it counts as failed.
const COMMAND_TIMEOUT: Duration = Duration::from_secs(2);

/// One write for the writer, kept in arrival order.
#[derive(Debug)]
enum Write {
    /// A mobile connection opened at `at`.
    Connect { device: Device, at: Millis },
    /// A heartbeat received at `at` is to be written.
    Heartbeat { device: Device, at: Millis },
    /// A mobile connection closed at `at`.
    Leave { device: Device, at: Millis },
    /// Look at a user at `at` (an expiry event, a passed deadline).
    Wake { user_id: Arc<str>, at: Millis },
    /// A user joins or leaves a group at `at`.
    Regroup {
        user_id: Arc<str>,
        change: GroupChange,
        at: Millis,
    },
    /// A user states their availability at `at`.
    State {
        user_id: Arc<str>,
        stated: Stated,
        at: Millis,
    },
    /// Re-registers a live connection after Redis lost its data (an online update, which a
    /// dashboard still showing the user online sees as no change).
    Restore { device: Device },
    /// Answered once every write queued before it has been sent.
    Barrier(oneshot::Sender<()>),
}

impl Write {
    /// The user a write is about (none for a barrier).
    fn user_id(&self) -> Option<&Arc<str>> {
        match self {
            Write::Connect { device, .. }
            | Write::Heartbeat { device, .. }
            | Write::Leave { device, .. }
            | Write::Restore { device } => Some(&device.user_id),
            Write::Wake { user_id, .. }
            | Write::Regroup { user_id, .. }
            | Write::State { user_id, .. } => Some(user_id),
            Write::Barrier(_) => None,
        }
    }
}

/// The store shared by routers through Redis. Cheap to clone.
#[derive(Clone)]
pub struct RedisStore {
    shared: Arc<Shared>,
}

struct Shared {
    /// Where Redis is, without the password: what the logs name.
    address: String,
    /// Where the store's short-lived tasks (snapshots) are spawned.
    tracker: tokio_util::task::TaskTracker,
    client: fred::prelude::Client,
    subscriber: fred::clients::SubscriberClient,
    scripts: Scripts,
    keys: Keys,
    rules: Rules,
    clock: Clock,
    /// Distinguishes this router's connections from other routers' in the records (random).
    router_id: u64,
    feed: broadcast::Sender<Arc<FeedEvent>>,
    writes: mpsc::Sender<Write>,
    /// Restores and their barrier, which the writer sends before anything else it holds.
    urgent: mpsc::Sender<Write>,
    /// The `presence:epoch` this router's connections are registered under (`None` until known).
    epoch: Mutex<Option<String>>,
    /// This router's live mobile connections, to re-register after Redis comes back.
    live: Mutex<HashMap<ConnId, Device>>,
    /// The listener is subscribed to the updates channel.
    subscribed: AtomicBool,
    /// The last batch of writes failed.
    writes_failing: AtomicBool,
    /// Writes the writer has taken from its queues and not yet sent.
    held: AtomicUsize,
    /// Users with a sweeper's wake queued, so that a slow writer does not get the same again.
    waking: Mutex<HashSet<Arc<str>>>,
    /// Dashboards waiting for a snapshot.
    snapshots: Mutex<SnapshotQueue>,
    /// Talk and activity for the other routers, to the publisher.
    relay: mpsc::Sender<bytes::Bytes>,
    /// The bytes waiting in `relay`.
    relay_bytes: AtomicUsize,
    /// Talk from the other routers, to this router's delivery...
    relayed_in: mpsc::Sender<Relayed>,
    /// ...which takes this end once.
    relayed_out: Mutex<Option<mpsc::Receiver<Relayed>>>,
}

/// Lets the store's writer send what is still queued once the server has stopped.
pub struct Drain {
    shared: Arc<Shared>,
    finish: CancellationToken,
    writer: JoinHandle<()>,
}

impl Drain {
    /// Sends every queued write (the leaves of the connections shutdown closed, and a leave for
    /// any connection still open), waiting at most `limit`.
    pub async fn wait(self, limit: Duration) {
        let still_open: Vec<Device> = self.shared.live().drain().map(|(_, d)| d).collect();
        let at = self.shared.clock.now_ms();
        for device in still_open {
            let _ = self.shared.writes.try_send(Write::Leave { device, at });
        }
        self.finish.cancel();
        if tokio::time::timeout(limit, self.writer).await.is_err() {
            warn!("Redis writes still queued at exit");
        }
    }
}

impl RedisStore {
    /// Connects to `url` and starts the store's tasks. A Redis that is down is not an error: the
    /// store reports itself degraded and keeps reconnecting.
    pub async fn start(
        url: &str,
        key_prefix: &str,
        rules: Rules,
        clock: Clock,
        feed_capacity: usize,
        tasks: &Tasks,
    ) -> Result<(RedisStore, Drain), StoreError> {
        let mut config = FredConfig::from_url(url)
            .map_err(|e| StoreError::Unavailable(format!("{}: {e}", redacted_url(url))))?;
        let db = config.database.unwrap_or(0);
        // A Redis that is down at start is retried like one lost later (fred's default gives up).
        config.fail_fast = false;
        let mut builder = Builder::from_config(config);
        builder
            .with_connection_config(|c| {
                c.connection_timeout = COMMAND_TIMEOUT;
                c.internal_command_timeout = COMMAND_TIMEOUT;
                c.max_command_attempts = 1;
            })
            .with_performance_config(|p| {
                p.default_command_timeout = COMMAND_TIMEOUT;
                p.broadcast_channel_capacity = SUBSCRIBER_BUFFER;
            })
            .set_policy(ReconnectPolicy::new_exponential(0, 100, 2_000, 2));
        let unavailable = |e: fred::error::Error| StoreError::Unavailable(e.to_string());
        let client = builder.build().map_err(unavailable)?;
        let subscriber = builder.build_subscriber_client().map_err(unavailable)?;
        let (feed, _) = broadcast::channel(feed_capacity.max(1));
        let (writes, queue) = mpsc::channel(WRITE_QUEUE);
        let (urgent, urgent_queue) = mpsc::channel(WRITE_QUEUE);
        let (relay, relay_queue) = mpsc::channel(talk::RELAY_QUEUE);
        let (relayed_in, relayed_out) = mpsc::channel(talk::RELAYED_QUEUE);
        let mut id = [0u8; 8];
        getrandom::fill(&mut id).map_err(|e| StoreError::Unavailable(e.to_string()))?;
        let shared = Arc::new(Shared {
            address: redacted_url(url),
            tracker: tasks.tracker().clone(),
            client,
            subscriber,
            scripts: Scripts::new(),
            keys: Keys::new(key_prefix),
            rules,
            clock,
            router_id: u64::from_le_bytes(id),
            feed,
            writes,
            urgent,
            epoch: Mutex::new(None),
            live: Mutex::new(HashMap::new()),
            subscribed: AtomicBool::new(false),
            writes_failing: AtomicBool::new(false),
            held: AtomicUsize::new(0),
            waking: Mutex::new(HashSet::new()),
            snapshots: Mutex::new(SnapshotQueue::default()),
            relay,
            relay_bytes: AtomicUsize::new(0),
            relayed_in,
            relayed_out: Mutex::new(Some(relayed_out)),
        });
        tasks.spawn_service(
            "talk publisher",
            talk::publish(shared.clone(), relay_queue, tasks.shutdown().clone()),
        );
        let finish = CancellationToken::new();
        let writer = tasks::spawn(
            &shared,
            tasks::Queues {
                writes: queue,
                urgent: urgent_queue,
            },
            db,
            tasks,
            finish.clone(),
        )
        .await;
        Ok((
            RedisStore {
                shared: shared.clone(),
            },
            Drain {
                shared,
                finish,
                writer,
            },
        ))
    }

    fn enqueue(&self, write: Write) -> Result<(), StoreError> {
        self.shared
            .writes
            .try_send(write)
            .map_err(|_| StoreError::Unavailable("Redis write queue is full".into()))
    }
}

impl Shared {
    fn health(&self) -> StoreHealth {
        if !self.client.is_connected() {
            StoreHealth::Degraded("Redis is not connected")
        } else if !self.subscriber.is_connected() || !self.subscribed.load(Ordering::Relaxed) {
            StoreHealth::Degraded("not subscribed to presence updates on Redis")
        } else if self.writes_failing.load(Ordering::Relaxed) {
            StoreHealth::Degraded("presence writes to Redis are failing")
        } else if self.backlog() > BACKLOG_BEHIND {
            StoreHealth::Degraded("presence writes to Redis are falling behind")
        } else {
            StoreHealth::Ok
        }
    }

    /// Writes queued or held by the writer, not yet sent.
    fn backlog(&self) -> usize {
        let queued = |sender: &mpsc::Sender<Write>| sender.max_capacity() - sender.capacity();
        queued(&self.writes) + queued(&self.urgent) + self.held.load(Ordering::Relaxed)
    }

    fn waking(&self) -> MutexGuard<'_, HashSet<Arc<str>>> {
        self.waking.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The wakes of `batch` are being sent: the sweeper may ask for those users again.
    fn woken(&self, batch: &[Write]) {
        let mut waking = self.waking();
        for write in batch {
            if let Write::Wake { user_id, .. } = write {
                waking.remove(user_id);
            }
        }
    }

    fn live(&self) -> MutexGuard<'_, HashMap<ConnId, Device>> {
        self.live.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A restore of a connection that has closed since is not sent, nor, when `replaying` writes
    /// held back while Redis was away, a connect or heartbeat of one: its leave follows, and the
    /// replayed connect would show a handset that left during the outage online again.
    fn still_wanted(&self, write: &Write, replaying: bool) -> bool {
        match write {
            Write::Restore { device } => self.live().contains_key(&device.conn),
            Write::Connect { device, .. } | Write::Heartbeat { device, .. } if replaying => {
                self.live().contains_key(&device.conn)
            }
            _ => true,
        }
    }
}

/// `url` with its password replaced by `***`, for logs and error messages.
pub fn redacted_url(url: &str) -> String {
    let (scheme, rest) = match url.split_once("://") {
        Some((scheme, rest)) => (format!("{scheme}://"), rest),
        None => (String::new(), url),
    };
    let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let (authority, path) = rest.split_at(authority_end);
    match authority.rsplit_once('@') {
        Some((userinfo, host)) => {
            let user = userinfo.split_once(':').map_or("", |(user, _)| user);
            format!("{scheme}{user}:***@{host}{path}")
        }
        None => url.to_owned(),
    }
}

/// Dashboards waiting for a snapshot, and whether a task is taking one.
#[derive(Default)]
struct SnapshotQueue {
    waiting: Vec<oneshot::Sender<Result<Arc<Snapshot>, String>>>,
    running: bool,
}

/// Takes one snapshot for everyone waiting, again while more are waiting. Each snapshot is asked
/// for after its waiters took their feed, so it fits their feeds (see [`Snapshot`]).
async fn serve_snapshots(shared: Arc<Shared>) {
    loop {
        let waiting = {
            let mut queue = shared.snapshots.lock().unwrap_or_else(|p| p.into_inner());
            if queue.waiting.is_empty() {
                queue.running = false;
                return;
            }
            std::mem::take(&mut queue.waiting)
        };
        let snapshot = take_snapshot(&shared)
            .await
            .map(Arc::new)
            .map_err(|e| e.to_string());
        for answer in waiting {
            let _ = answer.send(snapshot.clone());
        }
    }
}

/// The users online now, read in pages from the index of online users (`presence:deadlines`)
/// so that no single command holds Redis up. The sequence number is read before and after:
/// changes in between may or may not be reflected (see [`Snapshot::is_news`]).
async fn take_snapshot(shared: &Shared) -> Result<Snapshot, fred::error::Error> {
    let seq_before = read_seq(shared).await?;
    let mut seen: HashSet<Arc<str>> = HashSet::new();
    let mut users = Vec::new();
    let mut cursor = "0".to_owned();
    let deadline = tokio::time::Instant::now() + SNAPSHOT_TIMEOUT;
    loop {
        if tokio::time::Instant::now() > deadline {
            return Err(fred::error::Error::new(
                fred::error::ErrorKind::Timeout,
                "snapshot took too long",
            ));
        }
        let reply: Value = shared
            .client
            .custom(
                CustomCommand::new_static("ZSCAN", ClusterHash::FirstKey, false),
                vec![
                    shared.keys.deadlines(),
                    cursor.clone(),
                    "COUNT".to_owned(),
                    SNAPSHOT_PAGE.to_string(),
                ],
            )
            .await?;
        let (next, page) = match reply {
            Value::Array(mut parts) if parts.len() == 2 => {
                let page = match parts.pop() {
                    Some(Value::Array(page)) => page,
                    _ => Vec::new(),
                };
                let next = parts.pop().and_then(|c| c.as_string()).unwrap_or_default();
                (next, page)
            }
            _ => ("0".to_owned(), Vec::new()),
        };
        // Members and scores alternate; a member may come twice across pages.
        let ids: Vec<Arc<str>> = page
            .iter()
            .step_by(2)
            .filter_map(|v| v.as_str().map(|s| Arc::from(s.as_ref())))
            .filter(|id: &Arc<str>| seen.insert(id.clone()))
            .collect();
        let records = records::read_records(shared, ids.iter()).await?;
        users.extend(
            ids.iter()
                .zip(records)
                .filter_map(|(id, (_, record))| Some(record?.stored_view(id)))
                .filter(|view| view.status == Status::Online),
        );
        if next == "0" {
            break;
        }
        cursor = next;
    }
    let seq_after = read_seq(shared).await?;
    users.sort_unstable_by(|a, b| a.user_id.cmp(&b.user_id));
    Ok(Snapshot::new(
        shared.clock.now_ms(),
        seq_before,
        seq_after,
        users,
    ))
}

async fn read_seq(shared: &Shared) -> Result<u64, fred::error::Error> {
    let seq: Option<u64> = shared.client.get(shared.keys.seq()).await?;
    Ok(seq.unwrap_or(0))
}

impl PresenceStore for RedisStore {
    fn kind(&self) -> &'static str {
        "redis"
    }

    fn health(&self) -> StoreHealth {
        self.shared.health()
    }

    fn write_backlog(&self) -> usize {
        self.shared.backlog()
    }

    async fn connect(&self, device: &Device) -> Result<(), StoreError> {
        self.shared.live().insert(device.conn, device.clone());
        self.enqueue(Write::Connect {
            device: device.clone(),
            at: self.shared.clock.now_ms(),
        })
    }

    async fn heartbeat(&self, device: &Device, at: Millis) -> Result<(), StoreError> {
        self.enqueue(Write::Heartbeat {
            device: device.clone(),
            at,
        })
    }

    async fn regroup(&self, user_id: &Arc<str>, change: GroupChange) -> Result<(), StoreError> {
        self.enqueue(Write::Regroup {
            user_id: user_id.clone(),
            change,
            at: self.shared.clock.now_ms(),
        })
    }

    async fn state(&self, user_id: &Arc<str>, stated: Stated) -> Result<(), StoreError> {
        self.enqueue(Write::State {
            user_id: user_id.clone(),
            stated,
            at: self.shared.clock.now_ms(),
        })
    }

    async fn disconnect(&self, device: &Device) -> Result<(), StoreError> {
        self.shared.live().remove(&device.conn);
        self.enqueue(Write::Leave {
            device: device.clone(),
            at: self.shared.clock.now_ms(),
        })
    }

    fn feed(&self) -> Feed {
        self.shared.feed.subscribe()
    }

    async fn snapshot(&self) -> Result<Arc<Snapshot>, StoreError> {
        let (answer, wait) = oneshot::channel();
        let start = {
            let mut queue = self
                .shared
                .snapshots
                .lock()
                .unwrap_or_else(|p| p.into_inner());
            queue.waiting.push(answer);
            !std::mem::replace(&mut queue.running, true)
        };
        if start {
            self.shared
                .tracker
                .spawn(serve_snapshots(self.shared.clone()));
        }
        wait.await
            .map_err(|_| StoreError::Unavailable("snapshot task ended".into()))?
            .map_err(StoreError::Unavailable)
    }

    async fn members(&self, group: &str) -> Result<Vec<Arc<str>>, StoreError> {
        let members: Vec<String> = self
            .shared
            .client
            .smembers(self.shared.keys.group_members(group))
            .await
            .map_err(|e| StoreError::Unavailable(e.to_string()))?;
        Ok(members.into_iter().map(Arc::from).collect())
    }

    async fn lookup(&self, user_ids: &[Arc<str>]) -> Result<Vec<UserView>, StoreError> {
        let records = records::read_records(&self.shared, user_ids.iter())
            .await
            .map_err(|e| StoreError::Unavailable(e.to_string()))?;
        let now = self.shared.clock.now_ms();
        Ok(user_ids
            .iter()
            .zip(records)
            .map(|(id, (_, record))| match record {
                Some(record) => record.view(id, now),
                None => UserView::unknown(id.clone()),
            })
            .collect())
    }
}

impl TalkStore for RedisStore {
    async fn claim(&self, want: &Floor, now: Millis) -> Result<Claim, StoreError> {
        talk::take(&self.shared, want, now).await
    }

    async fn refresh(&self, floor: &Floor) -> Result<bool, StoreError> {
        talk::write(&self.shared, floor, Some(floor.talk), Some(floor)).await
    }

    async fn release(&self, floor: &Floor) -> Result<bool, StoreError> {
        talk::write(&self.shared, floor, Some(floor.talk), None).await
    }

    async fn on_air(&self, now: Millis) -> Result<Vec<Floor>, StoreError> {
        talk::on_air(&self.shared, now).await
    }

    fn relay(&self, message: Relayed) {
        talk::relay(&self.shared, message);
    }

    fn relayed(&self) -> Option<mpsc::Receiver<Relayed>> {
        self.shared
            .relayed_out
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .take()
    }

    fn announce(&self, activity: Activity) {
        talk::announce(&self.shared, activity);
    }
}

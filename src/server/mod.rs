//! The network edge: one TCP port serving HTTP and upgrading to WebSocket.
//!
//! [`run`] owns the accept loop; each TCP connection is served by hyper ([`http`], which routes
//! the presence API to [`api`]); upgrades are checked in [`handshake`] and become a [`session`]
//! over a [`connection::Connection`].

mod admission;
mod api;
mod connection;
mod dashboard;
mod deadline;
mod fragments;
mod handshake;
mod http;
mod hub;
mod limits;
mod session;
mod talk;

pub use api::{bulk_request, BulkError, BulkRequest};
pub use handshake::{check_device_id, credentials, BadDeviceId, Credentials};

use crate::clock::Clock;
use crate::config::Config;
use crate::jwks::Jwks;
use crate::metrics::{inc, Metrics};
use crate::store::PresenceStore;
use crate::tasks::Tasks;
use admission::Admission;
use deadline::Deadline;
use hub::Hub;
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use limits::BulkLimits;
use std::sync::atomic::AtomicU64;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{info, warn};

/// How long shutdown waits for connections to close before giving up on them.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

/// The most a request head may take in bytes (hyper's read buffer, whose floor is 8 KiB).
const MAX_HEAD_BYTES: usize = 16 * 1024;

/// How long a client may take to send its request headers.
const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);

/// Where a router listens: the public port, and the admin port when `ADMIN_PORT` sets one.
pub struct Listeners {
    /// HTTP and WebSocket (and `/health`, `/ready`, `/metrics` without an admin port).
    pub public: TcpListener,
    /// `/health`, `/ready` and `/metrics` only.
    pub admin: Option<TcpListener>,
}

/// What every connection task shares. Read-only but for the atomics in `metrics` and
/// `next_conn`; the store has its own locking rule.
pub(crate) struct Context<S> {
    pub config: Config,
    pub store: S,
    pub clock: Clock,
    pub metrics: Metrics,
    pub shutdown: CancellationToken,
    pub tracker: TaskTracker,
    /// The router's tasks: a store task that died shows in `/health` and `/ready`.
    pub tasks: Tasks,
    pub next_conn: AtomicU64,
    /// The identity provider's keys, when `JWT_JWKS_URL` names one.
    pub jwks: Option<Arc<Jwks>>,
    /// The connection caps.
    pub admission: Arc<Admission>,
    /// The presence API's rate per token.
    pub bulk_limits: std::sync::Mutex<BulkLimits>,
    /// This router's connections, as talk reaches them.
    pub hub: Hub,
}

/// Serves HTTP and WebSocket on `listeners` until the shutdown token of `tasks` is cancelled,
/// then closes every WebSocket with 1001 and returns once every task on the tracker has ended
/// (or after a grace period).
pub async fn run<S: PresenceStore>(
    listeners: Listeners,
    config: Config,
    store: S,
    clock: Clock,
    tasks: Tasks,
) {
    let shutdown = tasks.shutdown().clone();
    let jwks = config.jwks.clone().map(|source| {
        let jwks = Jwks::new(source, config.verifier.clone());
        tasks.spawn_service("token keys", jwks.clone().run(shutdown.clone()));
        jwks
    });
    let bulk_rate = config.bulk_rate;
    let admission = Admission::new(
        config.max_pending_connections,
        config.max_connections,
        config.max_connections_per_user,
    );
    let ctx = Arc::new(Context {
        config,
        store,
        clock,
        metrics: Metrics::default(),
        shutdown: shutdown.clone(),
        tracker: tasks.tracker().clone(),
        tasks,
        next_conn: AtomicU64::new(1),
        jwks,
        admission,
        bulk_limits: std::sync::Mutex::new(BulkLimits::new(bulk_rate)),
        hub: Hub::default(),
    });
    ctx.tasks.spawn_service(
        "talk delivery",
        deliver_talk(ctx.clone(), ctx.store.relayed(), ctx.store.feed()),
    );
    let surface = match listeners.admin {
        Some(admin) => {
            let admin_ctx = ctx.clone();
            ctx.tracker
                .spawn(accept(admin_ctx, admin, http::Surface::Admin));
            http::Surface::Public
        }
        None => http::Surface::All,
    };
    accept(ctx.clone(), listeners.public, surface).await;
    ctx.tracker.close();
    info!(connections = ctx.metrics.connections(), "shutting down");
    if tokio::time::timeout(SHUTDOWN_GRACE, ctx.tracker.wait())
        .await
        .is_err()
    {
        warn!("some connections did not close within the grace period");
    }
}

/// Accepts connections on `listener` until shutdown, each served with the routes of `surface`;
/// backs off when accepting fails.
async fn accept<S: PresenceStore>(
    ctx: Arc<Context<S>>,
    listener: TcpListener,
    surface: http::Surface,
) {
    let mut backoff = Duration::from_millis(5);
    loop {
        let accepted = tokio::select! {
            _ = ctx.shutdown.cancelled() => break,
            accepted = listener.accept() => accepted,
        };
        match accepted {
            Ok((stream, _)) => {
                backoff = Duration::from_millis(5);
                ctx.tracker.spawn(serve(ctx.clone(), stream, surface));
            }
            Err(error) => {
                // Usually out of file descriptors: wait for some to be freed.
                warn!(%error, ?backoff, "accept failed");
                tokio::select! {
                    _ = ctx.shutdown.cancelled() => break,
                    _ = tokio::time::sleep(backoff) => {}
                }
                backoff = (backoff * 2).min(Duration::from_secs(1));
            }
        }
    }
}

/// Delivers to this router's connections what other routers relay, and keeps the hub's groups
/// of each user as the store's updates say (a group joined through another router, say).
async fn deliver_talk<S: PresenceStore>(
    ctx: Arc<Context<S>>,
    mut relayed: Option<tokio::sync::mpsc::Receiver<crate::store::Relayed>>,
    mut feed: crate::store::Feed,
) {
    let shutdown = ctx.shutdown.clone();
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            message = async {
                match relayed.as_mut() {
                    Some(relayed) => relayed.recv().await,
                    None => std::future::pending().await,
                }
            } => match message {
                Some(message) => talk::count(&ctx, ctx.hub.deliver(&message)),
                None => return,
            },
            event = feed.recv() => match event.as_deref() {
                Ok(crate::store::FeedEvent::Update(published)) => {
                    let update = &published.update;
                    ctx.hub.set_groups(&update.user_id, &update.audience.groups);
                }
                // Updates may have been missed: every user's groups are read again.
                Ok(crate::store::FeedEvent::Resync)
                | Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {
                    regroup_all(&ctx).await;
                }
                Ok(crate::store::FeedEvent::Activity(_)) => {}
                Err(tokio::sync::broadcast::error::RecvError::Closed) => return,
            },
        }
    }
}

/// Reads again the groups of every user connected here, a batch at a time, and makes them the
/// hub's.
async fn regroup_all<S: PresenceStore>(ctx: &Context<S>) {
    for users in ctx.hub.users().chunks(REGROUP_BATCH) {
        match ctx.store.lookup(users).await {
            Ok(views) => {
                for view in views {
                    ctx.hub.set_groups(&view.user_id, &view.audience.groups);
                }
            }
            Err(error) => warn!(%error, "could not read the groups of this router's users"),
        }
    }
}

/// Users whose groups one lookup reads after missed updates.
const REGROUP_BATCH: usize = 500;

/// Serves one TCP connection with hyper, upgrades included; closes it at once when the sockets
/// not upgraded are at their cap.
async fn serve<S: PresenceStore>(ctx: Arc<Context<S>>, stream: TcpStream, surface: http::Surface) {
    let Some(pending) = ctx.admission.socket() else {
        inc(&ctx.metrics.sockets_refused);
        return;
    };
    let pending = http::PendingSlot::new(pending);
    // Presence frames are small and latency matters more than packet count.
    let _ = stream.set_nodelay(true);
    let service_ctx = ctx.clone();
    let service = hyper::service::service_fn(move |req| {
        http::handle(service_ctx.clone(), req, pending.clone(), surface)
    });
    let io = Deadline::new(stream, ctx.config.idle_timeout);
    let conn = http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(HEADER_READ_TIMEOUT)
        .max_buf_size(MAX_HEAD_BYTES)
        .serve_connection(TokioIo::new(io), service)
        .with_upgrades();
    tokio::pin!(conn);
    tokio::select! {
        _ = conn.as_mut() => {}
        _ = ctx.shutdown.cancelled() => {
            conn.as_mut().graceful_shutdown();
            let _ = conn.await;
        }
    }
}

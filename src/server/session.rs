//! One WebSocket session, from the 101 to the close: the inbound messages of a connection are a
//! closed set ([`Inbound`]), each handled here in one place.
//!
//! A mobile session reports connect, heartbeats and disconnect to the store; a web/dashboard
//! session gets a snapshot and then the store's feed, both filtered by what its token may see
//! ([`Viewer`]). Any session may join and leave groups. All are pinged, and all get a
//! PRESENCE_ERROR for a frame they may not send.

use super::admission::Ticket;
use super::connection::{Connection, Inbound};
use super::hub::Registration;
use super::limits::{InboundLimits, Verdict};
use super::talk::{is_talk, TalkState, Talker};
use super::Context;
use crate::auth::{valid_group_id, Identity, Role};
use crate::metrics::{dec, inc, Metrics};
use crate::presence::{
    ConnId, GroupChange, HeartbeatGate, LifeSigns, Millis, Stated, Status, Update,
};
use crate::ptt::Channel;
use crate::store::{Activity, Device, Feed, FeedEvent, PresenceStore, Relayed, Snapshot};
use crate::visibility::{joining, may_join, scoped, user_key, Show, Viewer};
use crate::wire::{
    encode_activity, encode_connection_ack, encode_error, encode_snapshot,
    encode_unauthorized_group, encode_update, ErrorCode, Frame, MessageType, OnAir, Value,
};
use bytes::Bytes;
use std::pin::Pin;
use std::sync::atomic::AtomicU64;
use std::sync::Arc;
use tokio::sync::broadcast::error::RecvError;
use tokio::time::{sleep_until, Instant, Sleep};
use tracing::{debug, warn};

/// Most talk frames from a connection's mailbox written in one go (one flush).
const MAILBOX_BATCH: usize = 32;

/// Refused messages within [`BAD_FRAMES_WINDOW`] after which a connection is closed with 1008.
const MAX_BAD_FRAMES: u32 = 16;

/// The window refused messages are counted in (good ones between them do not reset it: one good
/// frame in every sixteen bad ones would otherwise keep a flood of refusals going for ever).
const BAD_FRAMES_WINDOW: std::time::Duration = std::time::Duration::from_secs(10);

/// Counts a connection's refused messages per window.
struct Refusals {
    window_start: Instant,
    count: u32,
}

impl Refusals {
    fn new(now: Instant) -> Self {
        Refusals {
            window_start: now,
            count: 0,
        }
    }

    /// One more refused at `now`: whether the connection has now sent too many.
    fn one_more(&mut self, now: Instant) -> bool {
        if now.duration_since(self.window_start) >= BAD_FRAMES_WINDOW {
            *self = Refusals::new(now);
        }
        self.count += 1;
        self.count >= MAX_BAD_FRAMES
    }
}

/// Who is on the other end of a session.
#[derive(Debug)]
pub struct Peer {
    /// From the token.
    pub identity: Identity,
    /// From the handshake.
    pub device_id: Option<Arc<str>>,
    /// This process's id for the connection.
    pub conn_id: ConnId,
}

/// Counts a connection in its role's gauge, and holds its admission ticket, from before its 101
/// until it ends, however it ends, a failed upgrade included.
pub struct Counted<S> {
    ctx: Arc<Context<S>>,
    role: Role,
    _ticket: Ticket,
}

impl<S> Counted<S> {
    /// Starts counting an admitted connection of `role`.
    pub fn new(ctx: Arc<Context<S>>, role: Role, ticket: Ticket) -> Self {
        inc(gauge(&ctx.metrics, role));
        Counted {
            ctx,
            role,
            _ticket: ticket,
        }
    }
}

impl<S> Drop for Counted<S> {
    fn drop(&mut self) {
        dec(gauge(&self.ctx.metrics, self.role));
    }
}

fn gauge(metrics: &Metrics, role: Role) -> &AtomicU64 {
    match role {
        Role::Mobile => &metrics.mobile_connections,
        Role::Web | Role::Dashboard => &metrics.dashboard_connections,
    }
}

/// How a session ends.
enum Ending {
    /// Send a close frame with this code and reason.
    Close(u16, &'static str),
    /// The peer is gone or unresponsive: just drop the socket.
    Drop,
}

/// When to ping, and whether the last ping went unanswered.
struct KeepAlive {
    interval: std::time::Duration,
    timeout: std::time::Duration,
    last_inbound: Instant,
    ping_sent: Option<Instant>,
}

enum Liveness {
    Ping,
    Wait(Instant),
    Dead,
}

impl KeepAlive {
    fn check(&mut self, now: Instant) -> Liveness {
        if let Some(sent) = self.ping_sent {
            if self.last_inbound >= sent {
                self.ping_sent = None;
            } else if now >= sent + self.timeout {
                return Liveness::Dead;
            } else {
                return Liveness::Wait(sent + self.timeout);
            }
        }
        let due = self.last_inbound + self.interval;
        if now >= due {
            self.ping_sent = Some(now);
            Liveness::Ping
        } else {
            Liveness::Wait(due)
        }
    }
}

/// Runs one session to its end.
pub async fn run<S: PresenceStore>(counted: Counted<S>, mut conn: Connection, peer: Peer) {
    let ctx = counted.ctx.clone();
    let role = counted.role;
    let tracked = ctx.config.presence_enabled;
    let device = Device {
        user_id: user_key(&peer.identity),
        conn: peer.conn_id,
        device_id: peer.device_id.clone(),
        audience: joining(&peer.identity),
    };
    if tracked && role == Role::Mobile {
        report(&ctx, timed(&ctx, ctx.store.connect(&device)).await);
    }
    // Talk reaches this connection through its mailbox in the hub, by user and by group.
    let groups = talk_groups(&ctx, &device, role).await;
    let single = ctx.config.ptt_single_session;
    let now = ctx.clock.now_ms();
    let mut registration = ctx.hub.register(
        &device.user_id,
        peer.conn_id,
        peer.device_id.clone(),
        &groups,
        single,
        now,
    );
    if single {
        ctx.store.relay(Relayed::Kick {
            user: device.user_id.clone(),
            device: peer.device_id.clone(),
            at: now,
        });
    }
    let mut watch = None;
    if tracked && role.watches_presence() {
        // The feed first: whatever happens while the snapshot is taken is then in one or both.
        let feed = ctx.store.feed();
        let viewer = Viewer::of(&peer.identity);
        match Box::pin(send_snapshot(&ctx, &mut conn, &peer, &viewer)).await {
            Ok(snapshot) => {
                watch = Some(Watch {
                    feed,
                    snapshot,
                    viewer,
                })
            }
            Err(ending) => return end(conn, ending).await,
        }
    }
    debug!("session started");
    let mut talk = TalkState::default();
    let ending = serve(
        &ctx,
        &mut conn,
        &peer,
        &device,
        watch,
        &mut registration,
        &mut talk,
    )
    .await;
    let talker = Talker {
        ctx: &ctx,
        peer: &peer,
        user: &device.user_id,
    };
    talker.end(&mut talk, ctx.clock.now_ms()).await;
    drop(registration);
    if tracked && role == Role::Mobile {
        report(&ctx, timed(&ctx, ctx.store.disconnect(&device)).await);
    }
    debug!("session ended");
    end(conn, ending).await;
}

/// The groups a connection talks in: those the store knows for its user, and a handset's
/// token's (a dashboard's token says what it may see, not what it hears).
async fn talk_groups<S: PresenceStore>(
    ctx: &Context<S>,
    device: &Device,
    role: Role,
) -> Vec<Arc<str>> {
    let mut groups = match role {
        Role::Mobile => device.audience.groups.clone(),
        Role::Web | Role::Dashboard => Vec::new(),
    };
    match ctx
        .store
        .lookup(std::slice::from_ref(&device.user_id))
        .await
    {
        Ok(views) => groups.extend(views.into_iter().flat_map(|v| v.audience.groups.clone())),
        Err(error) => report(ctx, Err(error)),
    }
    groups.sort_unstable();
    groups.dedup();
    groups
}

async fn end(conn: Connection, ending: Ending) {
    if let Ending::Close(code, reason) = ending {
        conn.close(code, reason).await;
    }
}

/// A dashboard's view of the feed: what its last snapshot reflects is not sent again, nor
/// what its viewer may not see.
struct Watch {
    feed: Feed,
    snapshot: Arc<Snapshot>,
    viewer: Viewer,
}

/// Sends a fresh snapshot of what `viewer` may see; returns it, to tell which feed updates
/// follow it.
async fn send_snapshot<S: PresenceStore>(
    ctx: &Context<S>,
    conn: &mut Connection,
    peer: &Peer,
    viewer: &Viewer,
) -> Result<Arc<Snapshot>, Ending> {
    let snapshot = timed(ctx, ctx.store.snapshot()).await.map_err(|e| {
        report(ctx, Err(e));
        Ending::Close(1011, "presence store unavailable")
    })?;
    let visible: Vec<_> = snapshot
        .users
        .iter()
        .filter(|user| viewer.sees(&user.audience))
        .collect();
    let floors = timed(ctx, ctx.store.on_air(snapshot.timestamp))
        .await
        .unwrap_or_else(|error| {
            report(ctx, Err(error));
            Vec::new()
        });
    let floors: Vec<_> = floors
        .iter()
        .filter(|f| watches(viewer, f))
        .map(|f| as_seen(viewer, f))
        .collect();
    let mut on_air = OnAir::new();
    for floor in &floors {
        // A group talk wins over a private one.
        if floor.channel == Channel::Group || !on_air.contains_key(floor.holder.as_ref()) {
            on_air.insert(floor.holder.as_ref(), floor);
        }
    }
    let frame = encode_snapshot(
        &peer.identity.user_id,
        snapshot.timestamp,
        &visible,
        &on_air,
    );
    conn.send(Bytes::from(frame))
        .await
        .map_err(|_| Ending::Drop)?;
    Ok(snapshot)
}

/// Whether a viewer may see a talk: a group talk when it watches the group, a private one
/// always (whether it sees the talker is the user's own rule).
fn watches(viewer: &Viewer, floor: &crate::ptt::Floor) -> bool {
    floor.channel == Channel::Private || viewer.watches(&floor.to)
}

/// Whether a viewer is told of an activity: it sees the user, and watches the group talked in.
fn shows(viewer: &Viewer, activity: &Activity) -> bool {
    viewer.sees(&activity.audience) && watches(viewer, &activity.floor)
}

/// A floor as a viewer is shown it: the peer of a private talk only to a viewer of the whole
/// tenant (who sees every user of it); a viewer of some groups may not see the peer.
fn as_seen<'f>(
    viewer: &Viewer,
    floor: &'f crate::ptt::Floor,
) -> std::borrow::Cow<'f, crate::ptt::Floor> {
    if floor.channel == Channel::Private && !viewer.whole_tenant() {
        std::borrow::Cow::Owned(crate::ptt::Floor {
            to: Arc::from(""),
            ..floor.clone()
        })
    } else {
        std::borrow::Cow::Borrowed(floor)
    }
}

/// Runs one store operation, counting how long the connection waited for it.
pub(super) async fn timed<S, T>(
    ctx: &Context<S>,
    operation: impl std::future::Future<Output = T>,
) -> T {
    let start = Instant::now();
    let result = operation.await;
    ctx.metrics.store_operation.observe(start.elapsed());
    result
}

/// Counts a failed store operation. Logged at debug only: while a store is down every
/// connection fails alike, and `/health` and the metrics already say so.
pub(super) fn report<S>(ctx: &Context<S>, result: Result<(), crate::store::StoreError>) {
    if let Err(error) = result {
        inc(&ctx.metrics.store_errors);
        debug!(%error, "store operation failed");
    }
}

/// Waits for the next feed event; never resolves without a feed.
async fn next_event(feed: Option<&mut Feed>) -> Result<Arc<FeedEvent>, RecvError> {
    match feed {
        Some(feed) => feed.recv().await,
        None => std::future::pending().await,
    }
}

/// The session loop: inbound messages, feed, keep-alive, held heartbeats and shutdown.
async fn serve<S: PresenceStore>(
    ctx: &Context<S>,
    conn: &mut Connection,
    peer: &Peer,
    device: &Device,
    mut watch: Option<Watch>,
    registration: &mut Registration<'_>,
    talk: &mut TalkState,
) -> Ending {
    let talker = Talker {
        ctx,
        peer,
        user: &device.user_id,
    };
    let clock = ctx.clock;
    let config = &ctx.config;
    let mobile = peer.identity.role == Role::Mobile && config.presence_enabled;
    let mut gate = HeartbeatGate::new(
        millis(config.heartbeat_min_interval),
        config.rules.ttl,
        clock.now_ms(),
    );
    let mut signs = LifeSigns::new(config.liveness);
    let mut keepalive = KeepAlive {
        interval: config.ping_interval,
        timeout: config.ping_timeout,
        last_inbound: Instant::now(),
        ping_sent: None,
    };
    let ping_timer = sleep_until(keepalive.last_inbound + keepalive.interval);
    // Made once: a fresh cancellation future per message would register and drop a waiter on
    // the shared token every time, which shows up at hundreds of thousands of heartbeats/s.
    let shutdown = ctx.shutdown.cancelled();
    tokio::pin!(ping_timer, shutdown);
    // Boxed and only while a heartbeat is held back: most of the time there is none, and every
    // byte of this future is paid once per connection.
    let mut flush_timer: Option<Pin<Box<Sleep>>> = None;
    let mut flush_armed: Option<Millis> = None;
    // The same for the floor held, to tell dashboards when it freed itself.
    let mut floor_timer: Option<Pin<Box<Sleep>>> = None;
    let mut floor_armed: Option<Millis> = None;
    let mut refusals = Refusals::new(Instant::now());
    let mut limits = InboundLimits::new(
        config.max_frames_per_second,
        config.max_bytes_per_second,
        config.max_frame_bytes,
        Instant::now(),
    );
    loop {
        if gate.flush_at() != flush_armed {
            flush_armed = gate.flush_at();
            flush_timer = flush_armed.map(|at| Box::pin(sleep_until(clock.instant_at(at))));
        }
        if talk.free_at() != floor_armed {
            floor_armed = talk.free_at();
            floor_timer = floor_armed.map(|at| Box::pin(sleep_until(clock.instant_at(at))));
        }
        // Biased, in this order: what a client already sent is read before a timer judges it
        // (after a stall a buffered pong must win over the ping timeout), and no random draw
        // per message.
        tokio::select! {
            biased;
            _ = &mut shutdown => return Ending::Close(1001, "server shutting down"),
            inbound = conn.read() => {
                keepalive.last_inbound = Instant::now();
                let len = match &inbound {
                    Inbound::Binary(bytes) => Some(bytes.len()),
                    Inbound::Text | Inbound::Control => Some(0),
                    Inbound::TooLarge | Inbound::Closed => None,
                };
                if let Some(len) = len {
                    match limits.message(len, keepalive.last_inbound) {
                        Verdict::Pass => {}
                        // Read nothing more meanwhile: the sender's own socket backs up.
                        Verdict::Throttle(wait) => tokio::time::sleep(wait).await,
                        Verdict::Close => {
                            inc(&ctx.metrics.floods_closed);
                            return Ending::Close(1008, "too many messages: slow down");
                        }
                    }
                }
                let refusal = match inbound {
                    Inbound::Binary(bytes) => match Frame::decode(&bytes) {
                        Err(e) => Some((ErrorCode::BadFrame, e.to_string())),
                        Ok(frame) if frame.message_type == MessageType::HEARTBEAT => {
                            inc(&ctx.metrics.heartbeats);
                            if peer.identity.role != Role::Mobile {
                                Some((ErrorCode::Forbidden, format!("HEARTBEAT is for mobile connections, not {}", peer.identity.role.as_str())))
                            } else {
                                if mobile && signs.heartbeat() {
                                    alive(ctx, device, &mut gate).await;
                                }
                                None
                            }
                        }
                        Ok(frame) if frame.message_type == MessageType::USER_ADD || frame.message_type == MessageType::USER_REMOVE => {
                            // Boxed, as the next one: rare frames, whose futures would
                            // otherwise grow every connection's session by their size.
                            match Box::pin(regroup(ctx, peer, device, &frame)).await {
                                Ok(Some(reply)) => {
                                    if conn.send(Bytes::from(reply)).await.is_err() {
                                        return Ending::Drop;
                                    }
                                    None
                                }
                                Ok(None) => None,
                                Err(refusal) => Some(refusal),
                            }
                        }
                        Ok(frame) if frame.message_type == MessageType::CONNECTION_TEST => {
                            let ack = encode_connection_ack(&peer.identity.user_id, frame.payload);
                            if conn.send(Bytes::from(ack)).await.is_err() {
                                return Ending::Drop;
                            }
                            None
                        }
                        Ok(frame) if is_talk(frame.message_type) => {
                            // Boxed: its future holds store calls, and would grow every session.
                            match Box::pin(talker.handle(talk, &frame)).await {
                                Ok(handled) => {
                                    // The sender's replies leave before anyone gets the frame.
                                    for reply in handled.replies {
                                        if conn.send(reply).await.is_err() {
                                            return Ending::Drop;
                                        }
                                    }
                                    if let Some(forward) = handled.forward {
                                        talker.forward(forward);
                                    }
                                    None
                                }
                                Err(refusal) => Some(refusal),
                            }
                        }
                        Ok(frame) if frame.message_type == MessageType::SET_AVAILABILITY => {
                            Box::pin(state(ctx, peer, device, &frame)).await.err()
                        }
                        Ok(frame) if (MessageType::PRESENCE_UPDATE.0..=MessageType::PRESENCE_ERROR.0).contains(&frame.message_type.0) => {
                            Some((ErrorCode::BadFrame, format!("message type {} is sent by the router only", frame.message_type.0)))
                        }
                        Ok(_) => {
                            inc(&ctx.metrics.frames_dropped);
                            None
                        }
                    },
                    Inbound::Text => Some((ErrorCode::BadFrame, "text frames are not accepted: send binary MessagePack frames".to_owned())),
                    Inbound::Control => {
                        if conn.flush().await.is_err() {
                            return Ending::Drop;
                        }
                        None
                    }
                    Inbound::TooLarge => return Ending::Close(1009, "frame too large"),
                    Inbound::Closed => return Ending::Drop,
                };
                // Anything else a handset that has never sent a HEARTBEAT sends keeps it alive.
                if mobile && signs.other() {
                    alive(ctx, device, &mut gate).await;
                }
                if let Some((code, message)) = refusal {
                    inc(&ctx.metrics.frames_refused);
                    debug!(%message, "frame refused");
                    if refusals.one_more(Instant::now()) {
                        return Ending::Close(1008, "too many bad frames");
                    }
                    let frame = encode_error(&peer.identity.user_id, code, &message);
                    if conn.send(Bytes::from(frame)).await.is_err() {
                        return Ending::Drop;
                    }
                }
            }
            frame = registration.inbox.recv() => match frame {
                Some(frame) => {
                    // What else waits goes out in the same writes: the last one flushes.
                    let mut frame = frame;
                    for _ in 1..MAILBOX_BATCH {
                        let Ok(next) = registration.inbox.try_recv() else {
                            break;
                        };
                        if conn.feed(std::mem::replace(&mut frame, next)).await.is_err() {
                            return Ending::Drop;
                        }
                    }
                    if conn.send(frame).await.is_err() {
                        return Ending::Drop;
                    }
                }
                // The hub holds the sender while the session lives.
                None => return Ending::Close(1001, "server shutting down"),
            },
            notice = registration.kick.kicked() => {
                if let Some(notice) = notice {
                    if conn.send(notice).await.is_err() {
                        return Ending::Drop;
                    }
                }
                return Ending::Close(1000, "logged in from another device");
            }
            event = next_event(watch.as_mut().map(|w| &mut w.feed)) => match (event, watch.as_mut()) {
                (Ok(event), Some(watch)) => match &*event {
                    FeedEvent::Update(published) if watch.snapshot.is_news(published) => {
                        let frame = match watch.viewer.show(&published.update) {
                            Show::Update => published.frame(encode_update),
                            Show::Hide => Bytes::from(encode_update(&hidden(&published.update))),
                            Show::Nothing => continue,
                        };
                        if conn.send(frame).await.is_err() {
                            return Ending::Drop;
                        }
                        inc(&ctx.metrics.updates_sent);
                        let waited = clock.now_ms().saturating_sub(published.update.timestamp);
                        ctx.metrics.update_delivery.observe(std::time::Duration::from_millis(waited));
                    }
                    FeedEvent::Update(_) => {}
                    FeedEvent::Activity(activity) if shows(&watch.viewer, activity) => {
                        let floor = as_seen(&watch.viewer, &activity.floor);
                        let frame = encode_activity(&activity.user_id, activity.on_air, &floor, activity.timestamp);
                        if conn.send(Bytes::from(frame)).await.is_err() {
                            return Ending::Drop;
                        }
                    }
                    FeedEvent::Activity(_) => {}
                    // Boxed: rare, and its future is large.
                    FeedEvent::Resync => match Box::pin(send_snapshot(ctx, conn, peer, &watch.viewer)).await {
                        Ok(snapshot) => watch.snapshot = snapshot,
                        Err(ending) => return ending,
                    },
                },
                (Ok(_), None) => {}
                (Err(RecvError::Lagged(missed)), _) => {
                    inc(&ctx.metrics.slow_consumers_closed);
                    warn!(missed, "dashboard fell behind; closing it");
                    return Ending::Close(1013, "too far behind: reconnect for a fresh snapshot");
                }
                (Err(RecvError::Closed), _) => return Ending::Close(1001, "server shutting down"),
            },
            _ = &mut ping_timer => match keepalive.check(Instant::now()) {
                Liveness::Ping => {
                    if conn.ping().await.is_err() {
                        return Ending::Drop;
                    }
                    ping_timer.as_mut().reset(Instant::now() + keepalive.timeout);
                }
                Liveness::Wait(until) => ping_timer.as_mut().reset(until),
                Liveness::Dead => {
                    inc(&ctx.metrics.ping_timeouts);
                    debug!("no answer to ping; closing");
                    return Ending::Drop;
                }
            },
            _ = async { if let Some(timer) = flush_timer.as_mut() { timer.await } }, if flush_armed.is_some() => {
                if let Some(at) = gate.flush(clock.now_ms()) {
                    write_heartbeat(ctx, device, at).await;
                }
            }
            _ = async { if let Some(timer) = floor_timer.as_mut() { timer.await } }, if floor_armed.is_some() => {
                talker.expire(talk, clock.now_ms());
            }
        }
    }
}

/// A user who left a viewer's sight, as the viewer is to show them: offline, as a fresh
/// snapshot (which would not list them) has them, and without what the change brought (their
/// device, their availability): the viewer may no longer know it.
fn hidden(update: &Update) -> Update {
    Update {
        status: Status::Offline,
        device_id: None,
        stated: Arc::default(),
        ..update.clone()
    }
}

/// USER_ADD / USER_REMOVE: the authenticated user (never `fromId`) joins or leaves the group
/// named by `toId`, within their tenant. Returns the reply to send, if any
/// (UNAUTHORIZED_GROUP for a group the token does not allow), or why the frame is refused.
async fn regroup<S: PresenceStore>(
    ctx: &Context<S>,
    peer: &Peer,
    device: &Device,
    frame: &Frame<'_>,
) -> Result<Option<Vec<u8>>, (ErrorCode, String)> {
    let join = frame.message_type == MessageType::USER_ADD;
    let name = if join { "USER_ADD" } else { "USER_REMOVE" };
    let Some(group) = frame.to else {
        return Err((
            ErrorCode::BadFrame,
            format!("{name} names its group in toId"),
        ));
    };
    let text = group.text();
    if !valid_group_id(&text) {
        return Err((
            ErrorCode::BadFrame,
            format!("{name}: a group id has 1 to 128 bytes and no control characters"),
        ));
    }
    let identity = &peer.identity;
    if join && !may_join(identity, &text) {
        return Ok(Some(encode_unauthorized_group(&identity.user_id, group)));
    }
    let scoped = scoped(identity.tenant.as_deref(), &text);
    let change = if join {
        GroupChange::Join(scoped.clone())
    } else {
        GroupChange::Leave(scoped.clone())
    };
    let stored = timed(ctx, ctx.store.regroup(&device.user_id, change)).await;
    // This router's talk follows once the store took the change.
    if stored.is_ok() {
        if join {
            ctx.hub.join(&device.user_id, &scoped);
        } else {
            ctx.hub.leave(&device.user_id, &scoped);
        }
    }
    report(ctx, stored);
    Ok(None)
}

/// SET_AVAILABILITY `[0, 34, self, 0, {availability, statusText?}]`: the authenticated user
/// states their availability. A `fromId` naming someone else is refused: nobody sets another
/// user's availability.
async fn state<S: PresenceStore>(
    ctx: &Context<S>,
    peer: &Peer,
    device: &Device,
    frame: &Frame<'_>,
) -> Result<(), (ErrorCode, String)> {
    let user = &peer.identity.user_id;
    if frame.from.is_some_and(|from| from.text() != user.as_ref()) {
        return Err((
            ErrorCode::Forbidden,
            "SET_AVAILABILITY states the sender's own availability: fromId must be your user id"
                .to_owned(),
        ));
    }
    let payload = frame.payload_value();
    let field = |name| payload.as_ref().and_then(|p| p.get(name));
    let Some(availability) = field("availability").and_then(|v| v.as_str()) else {
        return Err((
            ErrorCode::BadFrame,
            "SET_AVAILABILITY needs {availability: available|away|busy|dnd, statusText?}"
                .to_owned(),
        ));
    };
    let text = match field("statusText") {
        None | Some(Value::Nil | Value::Undefined) => None,
        Some(Value::Str(text)) => Some(*text),
        Some(_) => {
            return Err((
                ErrorCode::BadFrame,
                "statusText must be a string".to_owned(),
            ))
        }
    };
    let stated =
        Stated::parse(availability, text).map_err(|why| (ErrorCode::BadFrame, why.to_string()))?;
    if ctx.config.presence_enabled {
        report(
            ctx,
            timed(ctx, ctx.store.state(&device.user_id, stated)).await,
        );
    }
    Ok(())
}

/// A sign of life of a mobile connection (a HEARTBEAT, or what [`LifeSigns`] counts as one):
/// written when the gate lets it through.
async fn alive<S: PresenceStore>(ctx: &Context<S>, device: &Device, gate: &mut HeartbeatGate) {
    if let Some(at) = gate.heartbeat(ctx.clock.now_ms()) {
        write_heartbeat(ctx, device, at).await;
    }
}

async fn write_heartbeat<S: PresenceStore>(ctx: &Context<S>, device: &Device, at: Millis) {
    inc(&ctx.metrics.heartbeat_writes);
    report(ctx, timed(ctx, ctx.store.heartbeat(device, at)).await);
}

fn millis(d: std::time::Duration) -> Millis {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

//! Handsets and dashboards: WebSocket clients that speak the router's protocol.

use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use presence_router::auth::{self, Role};
use presence_router::wire::{Encoder, Frame, MessageType};
use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::net::TcpSocket;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::HeaderValue;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};
use tokio_util::sync::CancellationToken;

/// A client socket.
pub type Ws = WebSocketStream<MaybeTlsStream<tokio::net::TcpStream>>;

/// Where and as whom to connect.
#[derive(Clone)]
pub struct Target {
    /// `ws://host:port/path` of a router.
    pub url: String,
    /// Its socket address.
    pub addr: SocketAddr,
    /// The JWT secret the router checks.
    pub secret: Arc<Vec<u8>>,
}

/// Opens one WebSocket as `user` with `role` (and a `channelIds` claim of `groups` unless it is
/// empty), from `source` when given (binding a source address
/// makes the kernel search for a free port, which gets slow while many are in TIME_WAIT: only
/// done when the load is spread over several addresses).
pub async fn connect(
    target: &Target,
    source: Option<IpAddr>,
    user: &str,
    role: Role,
    device: Option<&str>,
    groups: &[String],
) -> anyhow::Result<Ws> {
    let claims = match groups {
        [] => Vec::new(),
        groups => vec![("channelIds", serde_json::json!(groups))],
    };
    let token = auth::mint_with(
        &target.secret,
        user,
        role,
        Duration::from_secs(24 * 3600),
        auth::now_secs(),
        &claims,
    )?;
    connect_with_token(target, source, &token, device).await
}

/// Opens one WebSocket sending `token` as it is in the `token` header (a JWT, or for the Node
/// VoicePing router the user id itself), from `source` when given.
pub async fn connect_with_token(
    target: &Target,
    source: Option<IpAddr>,
    token: &str,
    device: Option<&str>,
) -> anyhow::Result<Ws> {
    let mut request = target.url.as_str().into_client_request()?;
    request
        .headers_mut()
        .insert("token", HeaderValue::from_str(token)?);
    if let Some(device) = device {
        request
            .headers_mut()
            .insert("device_id", HeaderValue::from_str(device)?);
    }
    let socket = if target.addr.is_ipv4() {
        TcpSocket::new_v4()?
    } else {
        TcpSocket::new_v6()?
    };
    if let Some(source) = source {
        socket.bind(SocketAddr::new(source, 0))?;
    }
    let stream = socket.connect(target.addr).await?;
    stream.set_nodelay(true)?;
    // Small buffers: a load generator holds thousands of these.
    let config = WebSocketConfig::default()
        .read_buffer_size(4096)
        .write_buffer_size(0);
    let (ws, _) = tokio_tungstenite::client_async_with_config(
        request,
        MaybeTlsStream::Plain(stream),
        Some(config),
    )
    .await?;
    Ok(ws)
}

/// One notepack-encoded HEARTBEAT frame.
pub fn heartbeat_frame() -> Bytes {
    let mut e = Encoder::with_capacity(48);
    e.array(5).uint(0).uint(30).str("bench").uint(0);
    e.map(2)
        .str("type")
        .str("heartbeat")
        .str("timestamp")
        .uint(auth::now_secs() * 1000);
    Bytes::from(e.into_bytes())
}

/// Keeps a handset alive until `stop`: a heartbeat every `interval` (first one after `offset`),
/// reading (and so answering pings) meanwhile. Returns the heartbeats sent.
pub async fn run_handset(
    mut ws: Ws,
    interval: Option<Duration>,
    offset: Duration,
    sent: Arc<AtomicU64>,
    stop: CancellationToken,
) {
    let frame = heartbeat_frame();
    let start = tokio::time::Instant::now() + offset;
    let mut ticker = interval.map(|i| {
        let mut ticker = tokio::time::interval_at(start, i);
        // A handset that was held up sends one late heartbeat, not a burst.
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        ticker
    });
    loop {
        tokio::select! {
            _ = stop.cancelled() => break,
            _ = async { match ticker.as_mut() { Some(t) => { t.tick().await; } None => std::future::pending().await } } => {
                if ws.send(Message::Binary(frame.clone())).await.is_err() {
                    return;
                }
                sent.fetch_add(1, Ordering::Relaxed);
            }
            message = ws.next() => match message {
                Some(Ok(_)) => {}
                _ => return,
            },
        }
    }
    let _ = ws.close(None).await;
}

/// When each dashboard saw each watched user's updates: (user, status) → arrival times.
#[derive(Default)]
pub struct Arrivals {
    seen: Mutex<HashMap<(String, bool), Vec<Instant>>>,
    /// Every update received, by every dashboard.
    pub updates: AtomicU64,
}

impl Arrivals {
    /// Arrival times of `user` going online (`true`) or offline.
    pub fn take(&self, user: &str, online: bool) -> Vec<Instant> {
        self.seen
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&(user.to_owned(), online))
            .unwrap_or_default()
    }

    /// How many dashboards have seen `user` going online/offline so far.
    pub fn count(&self, user: &str, online: bool) -> usize {
        self.seen
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(&(user.to_owned(), online))
            .map_or(0, Vec::len)
    }
}

/// A dashboard: says `ready` once its snapshot has come, then records the arrival of every
/// update for users whose id starts with `watch`.
pub async fn run_dashboard(
    mut ws: Ws,
    watch: &'static str,
    arrivals: Arc<Arrivals>,
    ready: tokio::sync::oneshot::Sender<()>,
    stop: CancellationToken,
) {
    let mut ready = Some(ready);
    loop {
        let message = tokio::select! {
            _ = stop.cancelled() => break,
            message = ws.next() => message,
        };
        let bytes = match message {
            Some(Ok(Message::Binary(bytes))) => bytes,
            Some(Ok(_)) => continue,
            _ => return,
        };
        let now = Instant::now();
        let Ok(frame) = Frame::decode(&bytes) else {
            continue;
        };
        if frame.message_type == MessageType::PRESENCE_SNAPSHOT {
            if let Some(ready) = ready.take() {
                let _ = ready.send(());
            }
        }
        if frame.message_type != MessageType::PRESENCE_UPDATE {
            continue;
        }
        arrivals.updates.fetch_add(1, Ordering::Relaxed);
        let Some(payload) = frame.payload_value() else {
            continue;
        };
        let user = payload
            .get("userId")
            .and_then(|v| v.as_str())
            .unwrap_or_default();
        if !user.starts_with(watch) {
            continue;
        }
        let online = payload.get("status").and_then(|v| v.as_str()) == Some("online");
        arrivals
            .seen
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .entry((user.to_owned(), online))
            .or_default()
            .push(now);
    }
    let _ = ws.close(None).await;
}

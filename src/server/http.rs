//! HTTP routes: the WebSocket upgrade, the presence API, `/health`, `/ready`, `/metrics`,
//! `/api/openapi.json` (the description of them all, `protocol/openapi.json`) and the browser
//! dashboard (`/dashboard`, see [`super::dashboard`]).
//!
//! Every response carries `Access-Control-Allow-Origin` (`*`, or the request's origin when
//! `CORS_ALLOWED_ORIGINS` lists it); `OPTIONS` on any route is a 204 preflight answer. A
//! browser's WebSocket upgrade from an origin `CORS_ALLOWED_ORIGINS` does not list is refused
//! with 403. Errors are JSON bodies `{"error": ...}`.

use super::admission::Refusal;
use super::api;
use super::connection::Connection;
use super::dashboard;
use super::fragments::FragmentLimit;
use super::handshake;
use super::session::{self, Peer};
use super::Context;
use crate::auth::{self, Identity};
use crate::config::Origins;
use crate::metrics::inc;
use crate::store::{PresenceStore, StoreHealth};
use crate::visibility::user_key;
use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::header::{HeaderValue, ALLOW, CONTENT_TYPE, ORIGIN, VARY};
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use serde_json::{json, Value};
use std::convert::Infallible;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use tokio_tungstenite::tungstenite::protocol::{Role as WsRole, WebSocketConfig};
use tokio_tungstenite::WebSocketStream;
use tracing::{debug, warn, Instrument};

/// An HTTP answer.
pub(super) type Reply = Response<Full<Bytes>>;

/// The OpenAPI 3.1 description of every route, served as kept in the repository.
const OPENAPI: &str = include_str!("../../protocol/openapi.json");

/// Initial read buffer of a WebSocket: frames here are tens of bytes, and thousands of idle
/// handsets should cost little memory (a larger frame grows it as needed).
const READ_BUFFER_BYTES: usize = 128;

/// Frames fed to a WebSocket are written once they hold this much (or at the next flush):
/// frames waiting for one connection go out in one write, and the buffer stays small.
const WRITE_BATCH_BYTES: usize = 2048;

/// Which routes a port serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Surface {
    /// Every route (no `ADMIN_PORT`).
    All,
    /// All but the operator's routes, which the admin port serves.
    Public,
    /// The operator's routes only: `/health`, `/ready`, `/metrics`.
    Admin,
}

impl Surface {
    /// Whether this port serves `path`.
    fn serves(self, path: &str) -> bool {
        let operators = matches!(path, "/health" | "/ready" | "/metrics");
        match self {
            Surface::All => true,
            Surface::Public => !operators,
            Surface::Admin => operators,
        }
    }
}

/// Routes one request.
pub async fn handle<S: PresenceStore>(
    ctx: Arc<Context<S>>,
    req: Request<Incoming>,
    pending: PendingSlot,
    surface: Surface,
) -> Result<Reply, Infallible> {
    let origin = req.headers().get(ORIGIN).cloned();
    let path = req.uri().path();
    let reply = match (req.method(), path) {
        _ if !surface.serves(path) => error(StatusCode::NOT_FOUND, "Not found"),
        (&Method::OPTIONS, _) => preflight(),
        (_, "/" | "/ws") if handshake::wants_upgrade(&req) => upgrade(&ctx, req, &pending).await,
        (&Method::GET, "/" | "/ws") => {
            error(StatusCode::UPGRADE_REQUIRED, "WebSocket upgrade required")
        }
        (&Method::POST, "/api/presence/status") => answer(api::bulk_status(&ctx, req).await),
        (&Method::PUT, "/api/presence/me") => answer(api::state_mine(&ctx, req).await),
        (&Method::GET, "/api/presence") => answer(api::group_list(&ctx, req).await),
        (&Method::GET, p) if api::is_user_path(p) => answer(api::user_status(&ctx, req).await),
        (&Method::GET, p) if dashboard::is_dashboard_path(p) => {
            dashboard::serve(p).unwrap_or_else(|| error(StatusCode::NOT_FOUND, "Not found"))
        }
        (&Method::GET, "/api/openapi.json") => {
            json_bytes(StatusCode::OK, OPENAPI.as_bytes().to_vec())
        }
        (&Method::GET, "/health") => health(&ctx),
        (&Method::GET, "/ready") => ready(&ctx),
        (&Method::GET, "/metrics") => {
            let backlog = ctx.store.write_backlog() as u64;
            ctx.metrics
                .store_write_backlog
                .store(backlog, Ordering::Relaxed);
            ctx.metrics
                .pending_connections
                .store(ctx.admission.pending() as u64, Ordering::Relaxed);
            text(ctx.metrics.render())
        }
        _ => match allowed_methods(path) {
            Some(allow) => {
                let mut reply = error(StatusCode::METHOD_NOT_ALLOWED, "Method not allowed");
                reply
                    .headers_mut()
                    .insert(ALLOW, HeaderValue::from_static(allow));
                reply
            }
            None => error(StatusCode::NOT_FOUND, "Not found"),
        },
    };
    Ok(with_cors(reply, &ctx.config.cors_origins, origin.as_ref()))
}

/// A socket's slot among those not upgraded, shared by the requests on it and given back when
/// it upgrades (or closes).
#[derive(Clone)]
pub struct PendingSlot(Arc<std::sync::Mutex<Option<tokio::sync::OwnedSemaphorePermit>>>);

impl PendingSlot {
    /// Holds `permit` for the socket.
    pub fn new(permit: tokio::sync::OwnedSemaphorePermit) -> Self {
        PendingSlot(Arc::new(std::sync::Mutex::new(Some(permit))))
    }

    fn release(&self) {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).take();
    }
}

/// The reply of an API handler, whether it ended well or was refused.
fn answer(answer: api::Answer) -> Reply {
    answer.unwrap_or_else(|refusal| *refusal)
}

/// The methods a route answers (its `Allow` header on a 405); `None` for an unknown path.
fn allowed_methods(path: &str) -> Option<&'static str> {
    match path {
        "/api/presence/status" => Some("POST, OPTIONS"),
        "/api/presence/me" => Some("PUT, OPTIONS"),
        "/api/presence" => Some("GET, OPTIONS"),
        p if api::is_user_path(p) => Some("GET, OPTIONS"),
        p if dashboard::is_dashboard_path(p) => Some("GET, OPTIONS"),
        "/" | "/ws" | "/health" | "/ready" | "/metrics" | "/api/openapi.json" => {
            Some("GET, OPTIONS")
        }
        _ => None,
    }
}

/// `Access-Control-Allow-Origin`: `*` when any origin is allowed, else the request's origin when
/// it is one of `allowed` (and `Vary: Origin`, for caches), else none.
fn with_cors(mut reply: Reply, allowed: &Origins, origin: Option<&HeaderValue>) -> Reply {
    let headers = reply.headers_mut();
    match allowed {
        Origins::Any => {
            headers.insert("access-control-allow-origin", HeaderValue::from_static("*"));
        }
        Origins::Listed(_) => {
            headers.insert(VARY, HeaderValue::from_static("Origin"));
            if let Some(origin) = origin.filter(|o| allowed.allows(o.to_str().ok())) {
                headers.insert("access-control-allow-origin", origin.clone());
            }
        }
    }
    reply
}

fn preflight() -> Reply {
    let mut reply = Response::new(Full::default());
    *reply.status_mut() = StatusCode::NO_CONTENT;
    let headers = reply.headers_mut();
    headers.insert(
        "access-control-allow-methods",
        HeaderValue::from_static("GET, POST, PUT, OPTIONS"),
    );
    headers.insert(
        "access-control-allow-headers",
        HeaderValue::from_static("Authorization, Content-Type"),
    );
    headers.insert("access-control-max-age", HeaderValue::from_static("86400"));
    reply
}

pub(super) fn json_reply(status: StatusCode, body: &Value) -> Reply {
    json_bytes(status, body.to_string().into_bytes())
}

pub(super) fn json_bytes(status: StatusCode, body: Vec<u8>) -> Reply {
    let mut reply = Response::new(Full::new(Bytes::from(body)));
    *reply.status_mut() = status;
    reply
        .headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    reply
}

pub(super) fn error(status: StatusCode, message: &str) -> Reply {
    json_reply(status, &json!({ "error": message }))
}

pub(super) fn unauthorized(reason: &str) -> Reply {
    json_reply(
        StatusCode::UNAUTHORIZED,
        &json!({ "error": "Unauthorized", "reason": reason }),
    )
}

fn text(body: String) -> Reply {
    let mut reply = Response::new(Full::new(Bytes::from(body)));
    reply.headers_mut().insert(
        CONTENT_TYPE,
        HeaderValue::from_static("text/plain; version=0.0.4"),
    );
    reply
}

/// Why the router cannot do its work now: the store's reason, or a task that died.
fn not_ready<S: PresenceStore>(ctx: &Context<S>) -> Option<String> {
    if let Some(task) = ctx.tasks.ended() {
        return Some(format!("the {task} task ended unexpectedly"));
    }
    if !ctx.config.verifier.has_keys() {
        return Some("the token keys are not loaded from JWT_JWKS_URL yet".to_owned());
    }
    match ctx.store.health() {
        StoreHealth::Ok => None,
        StoreHealth::Degraded(reason) => Some(reason.to_owned()),
    }
}

/// Liveness: 200 while the process serves, whatever the store's state (which it reports).
fn health<S: PresenceStore>(ctx: &Context<S>) -> Reply {
    let status = match not_ready(ctx) {
        None => "ok",
        Some(_) => "degraded",
    };
    json_reply(
        StatusCode::OK,
        &json!({
            "status": status,
            "version": env!("CARGO_PKG_VERSION"),
            "store": ctx.store.kind(),
            "connections": ctx.metrics.connections(),
        }),
    )
}

/// Readiness: 200 while the store is usable, 503 with the reason while it is not.
fn ready<S: PresenceStore>(ctx: &Context<S>) -> Reply {
    match not_ready(ctx) {
        None => json_reply(
            StatusCode::OK,
            &json!({ "status": "ready", "store": ctx.store.kind() }),
        ),
        Some(reason) => json_reply(
            StatusCode::SERVICE_UNAVAILABLE,
            &json!({ "status": "not_ready", "store": ctx.store.kind(), "reason": reason }),
        ),
    }
}

/// Checks the upgrade and the token, answers 101 and hands the socket to a session.
async fn upgrade<S: PresenceStore>(
    ctx: &Arc<Context<S>>,
    mut req: Request<Incoming>,
    pending: &PendingSlot,
) -> Reply {
    let accept = match handshake::accept_key(&req) {
        Ok(accept) => accept,
        Err(why) => return error(StatusCode::BAD_REQUEST, why),
    };
    // A browser says where its page came from; other clients send no Origin.
    if let Some(origin) = req.headers().get(ORIGIN) {
        if !ctx.config.cors_origins.allows(origin.to_str().ok()) {
            return json_reply(
                StatusCode::FORBIDDEN,
                &json!({"error": "Forbidden", "reason": "origin not allowed (CORS_ALLOWED_ORIGINS)"}),
            );
        }
    }
    let credentials = handshake::credentials(&req);
    let identity = match verify(ctx, credentials.token.as_deref()).await {
        Ok(identity) => identity,
        Err(why) => {
            inc(&ctx.metrics.auth_failures);
            debug!(reason = %why, "upgrade refused");
            return unauthorized(&why.to_string());
        }
    };
    if let Some(Err(why)) = credentials
        .device_id
        .as_deref()
        .map(handshake::check_device_id)
    {
        return error(StatusCode::BAD_REQUEST, why.message());
    }
    let ticket = match ctx.admission.admit(&user_key(&identity)) {
        Ok(ticket) => ticket,
        Err(Refusal::Full) => {
            return error(StatusCode::SERVICE_UNAVAILABLE, "too many connections")
        }
        Err(Refusal::UserFull) => {
            let message = format!(
                "too many connections for this user: at most {}",
                ctx.config.max_connections_per_user
            );
            return error(StatusCode::TOO_MANY_REQUESTS, &message);
        }
    };
    let peer = Peer {
        identity,
        device_id: credentials.device_id.map(Arc::from),
        conn_id: ctx.next_conn.fetch_add(1, Ordering::Relaxed),
    };
    // A WebSocket from now on: counted by its own cap, no longer by the one of pending sockets.
    pending.release();
    let counted = session::Counted::new(ctx.clone(), peer.identity.role, ticket);
    let span = tracing::info_span!(
        "conn",
        conn_id = peer.conn_id,
        user_id = %peer.identity.user_id,
        device_id = peer.device_id.as_deref().unwrap_or(""),
        role = peer.identity.role.as_str(),
    );
    let task_ctx = ctx.clone();
    let on_upgrade = hyper::upgrade::on(&mut req);
    ctx.tracker.spawn(
        async move {
            let upgraded = match on_upgrade.await {
                Ok(upgraded) => upgraded,
                Err(error) => {
                    warn!(%error, "upgrade failed");
                    return;
                }
            };
            let config = WebSocketConfig::default()
                .read_buffer_size(READ_BUFFER_BYTES)
                .write_buffer_size(WRITE_BATCH_BYTES)
                .max_message_size(Some(task_ctx.config.max_frame_bytes))
                .max_frame_size(Some(task_ctx.config.max_frame_bytes));
            // A message fragmented over several frames must be finished within the ping timeout.
            let io = FragmentLimit::new(TokioIo::new(upgraded), task_ctx.config.ping_timeout);
            let ws = WebSocketStream::from_raw_socket(io, WsRole::Server, Some(config)).await;
            let connection = Connection::new(ws, task_ctx.config.ping_timeout);
            session::run(counted, connection, peer).await;
        }
        .instrument(span),
    );
    let mut reply = Response::new(Full::default());
    *reply.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
    let headers = reply.headers_mut();
    headers.insert("upgrade", HeaderValue::from_static("websocket"));
    headers.insert("connection", HeaderValue::from_static("Upgrade"));
    if let Ok(accept) = HeaderValue::from_str(&accept) {
        headers.insert("sec-websocket-accept", accept);
    }
    if let Some(protocol) = credentials.echo_protocol {
        headers.insert("sec-websocket-protocol", protocol);
    }
    reply
}

/// Checks a token (against the identity provider's current keys, when it serves them).
pub(super) async fn verify<S>(
    ctx: &Context<S>,
    token: Option<&str>,
) -> Result<Identity, auth::AuthError> {
    let token = token.ok_or(auth::AuthError::Missing)?;
    match &ctx.jwks {
        Some(jwks) => jwks.verify(token, auth::now_secs()).await,
        None => ctx.config.verifier.verify(token, auth::now_secs()),
    }
}

/// The token of an `Authorization: Bearer <token>` header (the scheme in any case).
pub(super) fn bearer(header: Option<&HeaderValue>) -> Result<&str, auth::AuthError> {
    let header = header.ok_or(auth::AuthError::Missing)?;
    let value = header.to_str().map_err(|_| auth::AuthError::NotBearer)?;
    let (scheme, token) = value.trim().split_once(' ').unwrap_or((value.trim(), ""));
    if !scheme.eq_ignore_ascii_case("bearer") {
        return Err(auth::AuthError::NotBearer);
    }
    match token.trim() {
        "" => Err(auth::AuthError::Missing),
        token => Ok(token),
    }
}

//! HTTP routes: the WebSocket upgrade, `POST /api/presence/status`, `/health`, `/ready` and
//! `/metrics`.
//!
//! Every response carries `Access-Control-Allow-Origin: *`; `OPTIONS` on any route is a 204
//! preflight answer. Errors are JSON bodies `{"error": ...}`.

use super::connection::Connection;
use super::handshake::{self, MAX_DEVICE_ID_BYTES};
use super::session::{self, Peer};
use super::Context;
use crate::auth::{self, Identity};
use crate::metrics::inc;
use crate::presence::{Stated, Status, UserView};
use crate::store::{PresenceStore, StoreHealth};
use crate::visibility::Viewer;
use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::header::{HeaderValue, ALLOW, AUTHORIZATION, CONTENT_LENGTH, CONTENT_TYPE};
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use serde::Serialize;
use serde_json::{json, Value};
use std::convert::Infallible;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use tokio_tungstenite::tungstenite::protocol::{Role as WsRole, WebSocketConfig};
use tokio_tungstenite::WebSocketStream;
use tracing::{debug, warn, Instrument};

type Reply = Response<Full<Bytes>>;

/// How long a client may take to send a request body.
const BODY_READ_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

/// Initial read buffer of a WebSocket: frames here are tens of bytes, and thousands of idle
/// handsets should cost little memory (a larger frame grows it as needed).
const READ_BUFFER_BYTES: usize = 128;

/// Routes one request.
pub async fn handle<S: PresenceStore>(
    ctx: Arc<Context<S>>,
    req: Request<Incoming>,
) -> Result<Reply, Infallible> {
    let path = req.uri().path();
    let reply = match (req.method(), path) {
        (&Method::OPTIONS, _) => preflight(),
        (_, "/" | "/ws") if handshake::wants_upgrade(&req) => upgrade(&ctx, req),
        (&Method::GET, "/" | "/ws") => {
            error(StatusCode::UPGRADE_REQUIRED, "WebSocket upgrade required")
        }
        (&Method::POST, "/api/presence/status") => bulk_status(&ctx, req).await,
        (&Method::PUT, "/api/presence/me") => state_mine(&ctx, req).await,
        (&Method::GET, "/health") => health(&ctx),
        (&Method::GET, "/ready") => ready(&ctx),
        (&Method::GET, "/metrics") => {
            let backlog = ctx.store.write_backlog() as u64;
            ctx.metrics
                .store_write_backlog
                .store(backlog, Ordering::Relaxed);
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
    Ok(with_cors(reply))
}

/// The methods a route answers (its `Allow` header on a 405); `None` for an unknown path.
fn allowed_methods(path: &str) -> Option<&'static str> {
    match path {
        "/api/presence/status" => Some("POST, OPTIONS"),
        "/api/presence/me" => Some("PUT, OPTIONS"),
        "/" | "/ws" | "/health" | "/ready" | "/metrics" => Some("GET, OPTIONS"),
        _ => None,
    }
}

fn with_cors(mut reply: Reply) -> Reply {
    reply
        .headers_mut()
        .insert("access-control-allow-origin", HeaderValue::from_static("*"));
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

fn json_reply(status: StatusCode, body: &Value) -> Reply {
    json_bytes(status, body.to_string().into_bytes())
}

fn json_bytes(status: StatusCode, body: Vec<u8>) -> Reply {
    let mut reply = Response::new(Full::new(Bytes::from(body)));
    *reply.status_mut() = status;
    reply
        .headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    reply
}

fn error(status: StatusCode, message: &str) -> Reply {
    json_reply(status, &json!({ "error": message }))
}

fn unauthorized(reason: &str) -> Reply {
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
fn upgrade<S: PresenceStore>(ctx: &Arc<Context<S>>, mut req: Request<Incoming>) -> Reply {
    let accept = match handshake::accept_key(&req) {
        Ok(accept) => accept,
        Err(why) => return error(StatusCode::BAD_REQUEST, why),
    };
    let credentials = handshake::credentials(&req);
    let identity = match verify(ctx, credentials.token.as_deref()) {
        Ok(identity) => identity,
        Err(why) => {
            inc(&ctx.metrics.auth_failures);
            debug!(reason = %why, "upgrade refused");
            return unauthorized(&why.to_string());
        }
    };
    if credentials
        .device_id
        .as_ref()
        .is_some_and(|d| d.len() > MAX_DEVICE_ID_BYTES)
    {
        return error(StatusCode::BAD_REQUEST, "device id longer than 128 bytes");
    }
    if ctx.metrics.connections() >= ctx.config.max_connections as u64 {
        return error(StatusCode::SERVICE_UNAVAILABLE, "too many connections");
    }
    let peer = Peer {
        identity,
        device_id: credentials.device_id.map(Arc::from),
        conn_id: ctx.next_conn.fetch_add(1, Ordering::Relaxed),
    };
    let counted = session::Counted::new(ctx.clone(), peer.identity.role);
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
                .write_buffer_size(0)
                .max_message_size(Some(task_ctx.config.max_frame_bytes))
                .max_frame_size(Some(task_ctx.config.max_frame_bytes));
            let ws = WebSocketStream::from_raw_socket(
                TokioIo::new(upgraded),
                WsRole::Server,
                Some(config),
            )
            .await;
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

fn verify<S>(ctx: &Context<S>, token: Option<&str>) -> Result<Identity, auth::AuthError> {
    let token = token.ok_or(auth::AuthError::Missing)?;
    ctx.config.verifier.verify(token, auth::now_secs())
}

/// The token of an `Authorization: Bearer <token>` header (the scheme in any case).
fn bearer(header: Option<&HeaderValue>) -> Result<&str, auth::AuthError> {
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

/// `POST /api/presence/status`: checks auth, size, JSON, shape and count, in that order.
async fn bulk_status<S: PresenceStore>(ctx: &Context<S>, req: Request<Incoming>) -> Reply {
    // Without API auth there is no token: the caller sees what a token with neither tenant
    // nor groups would (never another tenant's users).
    let viewer = if ctx.config.api_auth {
        let checked =
            bearer(req.headers().get(AUTHORIZATION)).and_then(|token| verify(ctx, Some(token)));
        match checked {
            Ok(identity) => Viewer::of(&identity),
            Err(why) => return unauthorized(&why.to_string()),
        }
    } else {
        Viewer::of(&Identity::user(Arc::from(""), auth::Role::Web))
    };
    if !ctx.config.presence_enabled {
        return error(StatusCode::SERVICE_UNAVAILABLE, "Presence is disabled");
    }
    let request = match read_json(ctx, req).await {
        Ok(request) => request,
        Err(reply) => return reply,
    };
    let Some(Value::Array(asked)) = request.get("userIds") else {
        return error(StatusCode::BAD_REQUEST, "userIds must be an array");
    };
    let mut ids = Vec::with_capacity(asked.len().min(ctx.config.bulk_max_ids));
    for id in asked {
        match id {
            Value::String(s) => ids.push(Arc::from(s.as_str())),
            Value::Number(n) => ids.push(Arc::from(n.to_string())),
            _ => {
                return error(
                    StatusCode::BAD_REQUEST,
                    "userIds must hold only strings or numbers",
                )
            }
        }
    }
    if ids.len() > ctx.config.bulk_max_ids {
        let message = format!(
            "Too many userIds: at most {} per request",
            ctx.config.bulk_max_ids
        );
        return error(StatusCode::BAD_REQUEST, &message);
    }
    let views = match ctx.store.lookup(&ids).await {
        // A user the caller may not see reads exactly as one never seen.
        Ok(views) => views
            .into_iter()
            .map(|view| match viewer.sees(&view.audience) {
                true => view,
                false => UserView::unknown(view.user_id),
            })
            .collect::<Vec<_>>(),
        Err(e) => {
            inc(&ctx.metrics.store_errors);
            warn!(error = %e, "bulk status lookup failed");
            return error(
                StatusCode::SERVICE_UNAVAILABLE,
                "Presence store unavailable",
            );
        }
    };
    inc(&ctx.metrics.bulk_requests);
    let users: Vec<BulkUser<'_>> = asked
        .iter()
        .zip(&views)
        .map(|(asked, view)| BulkUser {
            user_id: asked,
            status: match view.status {
                Status::Online => "online",
                Status::Offline => "offline",
            },
            last_seen: view.last_seen,
            device_id: view.device_id.as_deref(),
            availability: view.stated.availability.map(|a| a.as_str()),
            status_text: view.stated.status_text.as_deref(),
        })
        .collect();
    let reply = BulkReply {
        success: true,
        users,
        timestamp: ctx.clock.now_ms(),
    };
    match serde_json::to_vec(&reply) {
        Ok(body) => json_bytes(StatusCode::OK, body),
        Err(_) => error(
            StatusCode::INTERNAL_SERVER_ERROR,
            "Could not encode the reply",
        ),
    }
}

/// A request's JSON body, read within the body limit and [`BODY_READ_TIMEOUT`]; or the 4xx
/// that says why not.
async fn read_json<S>(ctx: &Context<S>, req: Request<Incoming>) -> Result<Value, Reply> {
    let limit = ctx.config.max_body_bytes;
    let declared = req
        .headers()
        .get(CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > limit as u64) {
        return Err(error(StatusCode::PAYLOAD_TOO_LARGE, "Payload too large"));
    }
    let reading = Limited::new(req.into_body(), limit).collect();
    let body = match tokio::time::timeout(BODY_READ_TIMEOUT, reading).await {
        Ok(Ok(body)) => body.to_bytes(),
        Ok(Err(e)) if e.is::<http_body_util::LengthLimitError>() => {
            return Err(error(StatusCode::PAYLOAD_TOO_LARGE, "Payload too large"))
        }
        Ok(Err(_)) => {
            return Err(error(
                StatusCode::BAD_REQUEST,
                "Could not read the request body",
            ))
        }
        Err(_) => return Err(error(StatusCode::REQUEST_TIMEOUT, "Request body too slow")),
    };
    serde_json::from_slice::<Value>(&body)
        .map_err(|_| error(StatusCode::BAD_REQUEST, "Invalid JSON"))
}

/// `PUT /api/presence/me` `{availability, statusText?}`: the token's user states their
/// availability. Kept while they are online: 409 while they are offline.
async fn state_mine<S: PresenceStore>(ctx: &Context<S>, req: Request<Incoming>) -> Reply {
    let identity =
        match bearer(req.headers().get(AUTHORIZATION)).and_then(|token| verify(ctx, Some(token))) {
            Ok(identity) => identity,
            Err(why) => return unauthorized(&why.to_string()),
        };
    if !ctx.config.presence_enabled {
        return error(StatusCode::SERVICE_UNAVAILABLE, "Presence is disabled");
    }
    let request = match read_json(ctx, req).await {
        Ok(request) => request,
        Err(reply) => return reply,
    };
    let Some(availability) = request.get("availability").and_then(Value::as_str) else {
        return error(
            StatusCode::BAD_REQUEST,
            "availability must be one of available, away, busy, dnd",
        );
    };
    let text = match request.get("statusText") {
        None | Some(Value::Null) => None,
        Some(Value::String(text)) => Some(text.as_str()),
        Some(_) => return error(StatusCode::BAD_REQUEST, "statusText must be a string"),
    };
    let stated = match Stated::parse(availability, text) {
        Ok(stated) => stated,
        Err(why) => return error(StatusCode::BAD_REQUEST, &why.to_string()),
    };
    let user = identity.user_id.clone();
    let unavailable = |e| {
        inc(&ctx.metrics.store_errors);
        warn!(error = %e, "availability could not be stored");
        error(
            StatusCode::SERVICE_UNAVAILABLE,
            "Presence store unavailable",
        )
    };
    match ctx.store.lookup(std::slice::from_ref(&user)).await {
        Ok(views) if views.first().is_some_and(|v| v.status == Status::Online) => {}
        Ok(_) => {
            return error(
                StatusCode::CONFLICT,
                "You are offline: availability is kept only while you are online",
            )
        }
        Err(e) => return unavailable(e),
    }
    if let Err(e) = ctx.store.state(&user, stated.clone()).await {
        return unavailable(e);
    }
    json_reply(
        StatusCode::OK,
        &json!({
            "success": true,
            "userId": &*user,
            "availability": stated.availability.map(|a| a.as_str()),
            "statusText": stated.status_text.as_deref(),
        }),
    )
}

/// One user in a bulk status reply; `userId` echoes the request element as it was sent.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct BulkUser<'a> {
    user_id: &'a Value,
    status: &'static str,
    last_seen: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    device_id: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    availability: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    status_text: Option<&'a str>,
}

/// The bulk status reply, serialised straight from borrowed data (no intermediate JSON tree:
/// at thousands of requests per second, the tree's allocations were most of the cost).
#[derive(Serialize)]
struct BulkReply<'a> {
    success: bool,
    users: Vec<BulkUser<'a>>,
    timestamp: u64,
}

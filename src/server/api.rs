//! The presence HTTP API: bulk status, one user's status, a group's online users, and a
//! user's own availability. Every answer about users goes through the caller's [`Viewer`]: a
//! user the caller may not see reads exactly as one never seen.

use super::http::{bearer, error, json_bytes, json_reply, unauthorized, verify, Reply};
use super::Context;
use crate::auth::{self, Identity};
use crate::metrics::inc;
use crate::presence::{Stated, Status, UserView};
use crate::store::{PresenceStore, StoreError};
use crate::visibility::{scoped, unscoped, user_key, Viewer};
use http_body_util::{BodyExt, Limited};
use hyper::body::Incoming;
use hyper::header::{HeaderValue, AUTHORIZATION, CONTENT_LENGTH, RETRY_AFTER};
use hyper::{Request, StatusCode};
use serde::Serialize;
use serde_json::{json, Value};
use std::sync::Arc;
use tracing::warn;

/// A handler's answer: the reply, or the refusal that ends it early (boxed: a reply is large,
/// and most handlers end well).
pub(super) type Answer = Result<Reply, Box<Reply>>;

/// A refusal with a JSON error body.
fn refuse(status: StatusCode, message: &str) -> Answer {
    Err(Box::new(error(status, message)))
}

/// How long a client may take to send a request body.
const BODY_READ_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

/// `GET /api/presence/{userId}`: the prefix of one user's route.
const USER_PATH: &str = "/api/presence/";

/// Whether `path` names one user's route (`status` and `me` are routes of their own: ask for
/// users with those ids through the bulk API).
pub(super) fn is_user_path(path: &str) -> bool {
    path.strip_prefix(USER_PATH)
        .is_some_and(|user| !user.is_empty() && user != "status" && user != "me")
}

/// The most users one page of a group list holds, and its default size.
const MAX_PAGE: usize = 1000;
const DEFAULT_PAGE: usize = 100;

/// Who is asking, from the Bearer token; without API auth, a caller with neither tenant nor
/// groups (who never sees another tenant's users). Refuses a caller over its rate
/// ([`within_rate`]), and everyone while presence is disabled.
async fn caller<S>(ctx: &Context<S>, req: &Request<Incoming>) -> Result<Viewer, Box<Reply>> {
    let identity = if ctx.config.api_auth {
        token_holder(ctx, req).await?
    } else {
        Identity::user(Arc::from(""), auth::Role::Web)
    };
    within_rate(ctx, &identity)?;
    if !ctx.config.presence_enabled {
        return Err(Box::new(error(
            StatusCode::SERVICE_UNAVAILABLE,
            "Presence is disabled",
        )));
    }
    Ok(Viewer::of(&identity))
}

/// Who the request's Bearer token is for, or the 401 that says why not.
async fn token_holder<S>(
    ctx: &Context<S>,
    req: &Request<Incoming>,
) -> Result<Identity, Box<Reply>> {
    let checked = match bearer(req.headers().get(AUTHORIZATION)) {
        Ok(token) => verify(ctx, Some(token)).await,
        Err(why) => Err(why),
    };
    checked.map_err(|why| Box::new(unauthorized(&why.to_string())))
}

/// Refuses a user over `PRESENCE_BULK_RATE` (429 with `Retry-After`). Counted per user, however
/// many tokens they hold; without API auth every caller is the same nobody.
fn within_rate<S>(ctx: &Context<S>, identity: &Identity) -> Result<(), Box<Reply>> {
    let allowed = ctx
        .bulk_limits
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .request(&user_key(identity), tokio::time::Instant::now());
    let Err(wait) = allowed else {
        return Ok(());
    };
    let seconds = wait.as_secs_f64().ceil().max(1.0) as u64;
    let mut reply = error(
        StatusCode::TOO_MANY_REQUESTS,
        &format!("Too many requests: retry after {seconds} s"),
    );
    if let Ok(value) = HeaderValue::from_str(&seconds.to_string()) {
        reply.headers_mut().insert(RETRY_AFTER, value);
    }
    Err(Box::new(reply))
}

/// The 503 of a store that failed, counted and logged.
fn unavailable<S>(ctx: &Context<S>, what: &str, e: StoreError) -> Box<Reply> {
    inc(&ctx.metrics.store_errors);
    warn!(error = %e, "{what} failed");
    Box::new(error(
        StatusCode::SERVICE_UNAVAILABLE,
        "Presence store unavailable",
    ))
}

/// What `viewer` may know of each user: a user it may not see is unknown.
async fn visible<S: PresenceStore>(
    ctx: &Context<S>,
    viewer: &Viewer,
    ids: &[Arc<str>],
) -> Result<Vec<UserView>, Box<Reply>> {
    let views = ctx
        .store
        .lookup(ids)
        .await
        .map_err(|e| unavailable(ctx, "presence lookup", e))?;
    Ok(views
        .into_iter()
        .map(|view| match viewer.sees(&view.audience) {
            true => view,
            false => UserView::unknown(view.user_id),
        })
        .collect())
}

/// One user as the API shows them; `userId` echoes the id as it was asked.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct ApiUser<'a> {
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

impl<'a> ApiUser<'a> {
    fn new(user_id: &'a Value, view: &'a UserView) -> Self {
        ApiUser {
            user_id,
            status: match view.status {
                Status::Online => "online",
                Status::Offline => "offline",
            },
            last_seen: view.last_seen,
            device_id: view.device_id.as_deref(),
            availability: view.stated.availability.map(|a| a.as_str()),
            status_text: view.stated.status_text.as_deref(),
        }
    }
}

/// Serialises a reply straight from borrowed data (no intermediate JSON tree: at thousands of
/// requests per second, the tree's allocations were most of the cost).
fn serialised(reply: &impl Serialize) -> Answer {
    match serde_json::to_vec(reply) {
        Ok(body) => Ok(json_bytes(StatusCode::OK, body)),
        Err(_) => refuse(
            StatusCode::INTERNAL_SERVER_ERROR,
            "Could not encode the reply",
        ),
    }
}

/// The bulk status reply.
#[derive(Serialize)]
struct BulkReply<'a> {
    success: bool,
    users: Vec<ApiUser<'a>>,
    timestamp: u64,
}

/// A bulk status request, checked: the ids as asked (echoed in the reply) and as text.
#[derive(Debug, Clone, PartialEq)]
pub struct BulkRequest {
    /// Each element of `userIds` as it was sent.
    pub asked: Vec<Value>,
    /// The same, as the user ids they name (a number by its decimal text).
    pub ids: Vec<String>,
}

/// Why a bulk status body is refused (400); the message is the reply's `error`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BulkError {
    /// Not JSON.
    #[error("Invalid JSON")]
    Json,
    /// No `userIds` array.
    #[error("userIds must be an array")]
    NotAnArray,
    /// An element that is neither a string nor a number.
    #[error("userIds must hold only strings or numbers")]
    BadId,
    /// More ids than allowed.
    #[error("Too many userIds: at most {0} per request")]
    TooMany(usize),
}

/// Parses a bulk status body: JSON, shape and count, in that order; at most `max_ids` ids.
pub fn bulk_request(body: &[u8], max_ids: usize) -> Result<BulkRequest, BulkError> {
    let request: Value = serde_json::from_slice(body).map_err(|_| BulkError::Json)?;
    let Some(Value::Array(asked)) = request.get("userIds") else {
        return Err(BulkError::NotAnArray);
    };
    let ids = asked
        .iter()
        .map(|id| match id {
            Value::String(s) => Ok(s.clone()),
            Value::Number(n) => Ok(n.to_string()),
            _ => Err(BulkError::BadId),
        })
        .collect::<Result<Vec<String>, BulkError>>()?;
    if ids.len() > max_ids {
        return Err(BulkError::TooMany(max_ids));
    }
    Ok(BulkRequest {
        asked: asked.clone(),
        ids,
    })
}

/// `POST /api/presence/status`: checks auth, size, JSON, shape and count, in that order.
pub(super) async fn bulk_status<S: PresenceStore>(
    ctx: &Context<S>,
    req: Request<Incoming>,
) -> Answer {
    let viewer = caller(ctx, &req).await?;
    let body = read_body(ctx, req).await?;
    let request = match bulk_request(&body, ctx.config.bulk_max_ids) {
        Ok(request) => request,
        Err(why) => return refuse(StatusCode::BAD_REQUEST, &why.to_string()),
    };
    let asked = &request.asked;
    let ids: Vec<Arc<str>> = request
        .ids
        .iter()
        .map(|id| scoped(viewer.tenant(), id))
        .collect();
    let views = visible(ctx, &viewer, &ids).await?;
    inc(&ctx.metrics.bulk_requests);
    serialised(&BulkReply {
        success: true,
        users: asked
            .iter()
            .zip(&views)
            .map(|(id, v)| ApiUser::new(id, v))
            .collect(),
        timestamp: ctx.clock.now_ms(),
    })
}

/// `GET /api/presence/{userId}` (the id percent-encoded): one user, as the bulk API shows them.
pub(super) async fn user_status<S: PresenceStore>(
    ctx: &Context<S>,
    req: Request<Incoming>,
) -> Answer {
    let viewer = caller(ctx, &req).await?;
    let raw = req.uri().path().trim_start_matches(USER_PATH);
    let Some(user) =
        percent_decoded(raw).filter(|u| !u.is_empty() && u.len() <= auth::MAX_USER_ID_BYTES)
    else {
        return refuse(
            StatusCode::BAD_REQUEST,
            "the user id must be 1 to 256 bytes of percent-encoded UTF-8",
        );
    };
    let views = visible(ctx, &viewer, &[scoped(viewer.tenant(), &user)]).await?;
    let id = Value::String(user);
    let Some(view) = views.first() else {
        return Err(unavailable(
            ctx,
            "user lookup",
            StoreError::Unavailable("no answer".into()),
        ));
    };
    #[derive(Serialize)]
    struct UserReply<'a> {
        success: bool,
        user: ApiUser<'a>,
        timestamp: u64,
    }
    serialised(&UserReply {
        success: true,
        user: ApiUser::new(&id, view),
        timestamp: ctx.clock.now_ms(),
    })
}

/// `GET /api/presence?group=G[&limit=N][&after=userId]`: the online members of group G that the
/// caller may see, by user id, a page at a time (`next` names the `after` of the next page).
/// A group the caller may not see reads as an empty one.
pub(super) async fn group_list<S: PresenceStore>(
    ctx: &Context<S>,
    req: Request<Incoming>,
) -> Answer {
    let viewer = caller(ctx, &req).await?;
    let mut group = None;
    let mut limit = DEFAULT_PAGE;
    let mut after = None;
    for pair in req
        .uri()
        .query()
        .unwrap_or_default()
        .split('&')
        .filter(|p| !p.is_empty())
    {
        let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
        let Some(value) = percent_decoded(value) else {
            return refuse(
                StatusCode::BAD_REQUEST,
                "query values must be percent-encoded UTF-8",
            );
        };
        match name {
            "group" if auth::valid_group_id(&value) => group = Some(value),
            "limit" => match value.parse::<usize>() {
                Ok(n) if (1..=MAX_PAGE).contains(&n) => limit = n,
                _ => return refuse(StatusCode::BAD_REQUEST, "limit must be 1 to 1000"),
            },
            "after" => after = Some(value),
            _ => {
                return refuse(
                    StatusCode::BAD_REQUEST,
                    "the query takes group (1 to 128 bytes), limit and after",
                )
            }
        }
    }
    let Some(group) = group else {
        return refuse(
            StatusCode::BAD_REQUEST,
            "group is required: ?group=<group id>",
        );
    };
    let wanted = scoped(viewer.tenant(), &group);
    let mut members = ctx
        .store
        .members(&wanted)
        .await
        .map_err(|e| unavailable(ctx, "group members", e))?;
    members.sort_unstable();
    members.dedup();
    if !viewer.watches(&wanted) {
        members.clear();
    }
    if let Some(after) = &after {
        let after = scoped(viewer.tenant(), after);
        members.retain(|m| *m > after);
    }
    let mut page = Vec::with_capacity(limit + 1);
    // Read in slices: most members may be offline or out of sight.
    for slice in members.chunks(MAX_PAGE) {
        let views = visible(ctx, &viewer, slice).await?;
        page.extend(views.into_iter().filter(|v| {
            v.status == Status::Online && v.audience.groups.binary_search(&wanted).is_ok()
        }));
        if page.len() > limit {
            break;
        }
    }
    let more = page.len() > limit;
    page.truncate(limit);
    let ids: Vec<Value> = page
        .iter()
        .map(|v| Value::String(unscoped(&v.user_id).to_owned()))
        .collect();
    #[derive(Serialize)]
    struct ListReply<'a> {
        success: bool,
        group: &'a str,
        users: Vec<ApiUser<'a>>,
        next: Option<&'a str>,
        timestamp: u64,
    }
    serialised(&ListReply {
        success: true,
        group: &group,
        users: ids
            .iter()
            .zip(&page)
            .map(|(id, v)| ApiUser::new(id, v))
            .collect(),
        next: more
            .then(|| page.last().map(|v| unscoped(&v.user_id)))
            .flatten(),
        timestamp: ctx.clock.now_ms(),
    })
}

/// `%XX`-decodes `text` (and `+` as a space, as forms send it); `None` when the result is not
/// UTF-8 or an escape is broken.
fn percent_decoded(text: &str) -> Option<String> {
    let mut bytes = Vec::with_capacity(text.len());
    let mut rest = text.as_bytes();
    while let Some((&first, tail)) = rest.split_first() {
        match first {
            b'%' => {
                let hex = tail.get(..2)?;
                let hex = std::str::from_utf8(hex).ok()?;
                bytes.push(u8::from_str_radix(hex, 16).ok()?);
                rest = &tail[2..];
            }
            b'+' => {
                bytes.push(b' ');
                rest = tail;
            }
            other => {
                bytes.push(other);
                rest = tail;
            }
        }
    }
    String::from_utf8(bytes).ok()
}

/// A request's body, read within the body limit and [`BODY_READ_TIMEOUT`]; or the 4xx that
/// says why not.
async fn read_body<S>(
    ctx: &Context<S>,
    req: Request<Incoming>,
) -> Result<bytes::Bytes, Box<Reply>> {
    let refused = |status, message| Err(Box::new(error(status, message)));
    let limit = ctx.config.max_body_bytes;
    let declared = req
        .headers()
        .get(CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > limit as u64) {
        return refused(StatusCode::PAYLOAD_TOO_LARGE, "Payload too large");
    }
    let reading = Limited::new(req.into_body(), limit).collect();
    let body = match tokio::time::timeout(BODY_READ_TIMEOUT, reading).await {
        Ok(Ok(body)) => body.to_bytes(),
        Ok(Err(e)) if e.is::<http_body_util::LengthLimitError>() => {
            return refused(StatusCode::PAYLOAD_TOO_LARGE, "Payload too large")
        }
        Ok(Err(_)) => return refused(StatusCode::BAD_REQUEST, "Could not read the request body"),
        Err(_) => return refused(StatusCode::REQUEST_TIMEOUT, "Request body too slow"),
    };
    Ok(body)
}

/// `PUT /api/presence/me` `{availability, statusText?}`: the token's user states their
/// availability. Kept while they are online: 409 while they are offline.
pub(super) async fn state_mine<S: PresenceStore>(
    ctx: &Context<S>,
    req: Request<Incoming>,
) -> Answer {
    let identity = token_holder(ctx, &req).await?;
    within_rate(ctx, &identity)?;
    if !ctx.config.presence_enabled {
        return refuse(StatusCode::SERVICE_UNAVAILABLE, "Presence is disabled");
    }
    let body = read_body(ctx, req).await?;
    let Ok(request) = serde_json::from_slice::<Value>(&body) else {
        return refuse(StatusCode::BAD_REQUEST, "Invalid JSON");
    };
    let Some(availability) = request.get("availability").and_then(Value::as_str) else {
        return refuse(
            StatusCode::BAD_REQUEST,
            "availability must be one of available, away, busy, dnd",
        );
    };
    let text = match request.get("statusText") {
        None | Some(Value::Null) => None,
        Some(Value::String(text)) => Some(text.as_str()),
        Some(_) => return refuse(StatusCode::BAD_REQUEST, "statusText must be a string"),
    };
    let stated = match Stated::parse(availability, text) {
        Ok(stated) => stated,
        Err(why) => return refuse(StatusCode::BAD_REQUEST, &why.to_string()),
    };
    let user = user_key(&identity);
    let views = ctx
        .store
        .lookup(std::slice::from_ref(&user))
        .await
        .map_err(|e| unavailable(ctx, "availability lookup", e))?;
    if !views.first().is_some_and(|v| v.status == Status::Online) {
        return refuse(
            StatusCode::CONFLICT,
            "You are offline: availability is kept only while you are online",
        );
    }
    ctx.store
        .state(&user, stated.clone())
        .await
        .map_err(|e| unavailable(ctx, "storing an availability", e))?;
    Ok(json_reply(
        StatusCode::OK,
        &json!({
            "success": true,
            "userId": &*identity.user_id,
            "availability": stated.availability.map(|a| a.as_str()),
            "statusText": stated.status_text.as_deref(),
        }),
    ))
}

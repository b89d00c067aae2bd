//! The frames the router sends: PRESENCE_UPDATE, PRESENCE_SNAPSHOT, PRESENCE_ERROR and
//! VoicePing's UNAUTHORIZED_GROUP and CONNECTION_ACK.
//!
//! Map keys are written in a fixed order, the one documented in `protocol/PROTOCOL.md`; optional
//! fields are left out rather than written as `undefined`.

use super::encode::Encoder;
use super::frame::{Id, MessageType};
use crate::presence::{Stated, Status, Update, UserView};
use crate::visibility::unscoped;

/// The `code` of a PRESENCE_ERROR, HTTP-style.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorCode {
    /// 400: the frame could not be understood.
    BadFrame = 400,
    /// 403: the frame is not allowed for this connection's role.
    Forbidden = 403,
}

fn header(e: &mut Encoder, message_type: MessageType) {
    e.array(5).uint(0).uint(message_type.0).uint(0);
}

fn status_str(status: Status) -> &'static str {
    match status {
        Status::Online => "online",
        Status::Offline => "offline",
    }
}

/// The number of optional stated fields (`availability`, `statusText`) present.
fn stated_len(stated: &Stated) -> usize {
    usize::from(stated.availability.is_some()) + usize::from(stated.status_text.is_some())
}

/// `availability` and `statusText`, each when present.
fn stated(e: &mut Encoder, stated: &Stated) {
    if let Some(availability) = stated.availability {
        e.str("availability").str(availability.as_str());
    }
    if let Some(text) = &stated.status_text {
        e.str("statusText").str(text);
    }
}

/// `[0, 31, 0, "broadcast", {userId, status, timestamp, type, deviceId?, lastSeen, version,
/// availability?, statusText?}]`.
pub fn encode_update(update: &Update) -> Vec<u8> {
    let mut e = Encoder::with_capacity(96 + update.user_id.len());
    header(&mut e, MessageType::PRESENCE_UPDATE);
    e.str("broadcast");
    e.map(6 + usize::from(update.device_id.is_some()) + stated_len(&update.stated));
    e.str("userId").str(unscoped(&update.user_id));
    e.str("status").str(status_str(update.status));
    e.str("timestamp").uint(update.timestamp);
    e.str("type").str("presence_update");
    if let Some(device) = &update.device_id {
        e.str("deviceId").str(device);
    }
    e.str("lastSeen").uint(update.last_seen);
    e.str("version").uint(update.version);
    stated(&mut e, &update.stated);
    e.into_bytes()
}

/// `[0, 32, 0, <dashboard user id>, {timestamp, totalOnline, users: [{userId, status,
/// lastSeen, deviceId?, version, availability?, statusText?}]}]`.
pub fn encode_snapshot(to: &str, timestamp: u64, users: &[&UserView]) -> Vec<u8> {
    let mut e = Encoder::with_capacity(64 + users.len() * 96);
    header(&mut e, MessageType::PRESENCE_SNAPSHOT);
    e.str(to);
    e.map(3);
    e.str("timestamp").uint(timestamp);
    e.str("totalOnline").uint(users.len() as u64);
    e.str("users").array(users.len());
    for user in users {
        e.map(4 + usize::from(user.device_id.is_some()) + stated_len(&user.stated));
        e.str("userId").str(unscoped(&user.user_id));
        e.str("status").str(status_str(user.status));
        e.str("lastSeen").uint(user.last_seen);
        if let Some(device) = &user.device_id {
            e.str("deviceId").str(device);
        }
        e.str("version").uint(user.version);
        stated(&mut e, &user.stated);
    }
    e.into_bytes()
}

/// `[0, 27, <user id>, <group id as sent>, "Unauthorized Group"]`, as VoicePing sends it.
pub fn encode_unauthorized_group(from: &str, group: Id<'_>) -> Vec<u8> {
    let mut e = Encoder::with_capacity(48 + from.len());
    e.array(5)
        .uint(0)
        .uint(MessageType::UNAUTHORIZED_GROUP.0)
        .str(from);
    match group {
        Id::Int(n) => e.int(n),
        Id::UInt(n) => e.uint(n),
        Id::Str(s) => e.str(s),
    };
    e.str("Unauthorized Group");
    e.into_bytes()
}

/// `[1, 26, 0, <user id>, payload]` (4 elements without a payload), as VoicePing answers a
/// CONNECTION_TEST: the payload comes back byte for byte.
pub fn encode_connection_ack(to: &str, payload: Option<&[u8]>) -> Vec<u8> {
    let mut e = Encoder::with_capacity(16 + to.len() + payload.map_or(0, <[u8]>::len));
    e.array(4 + usize::from(payload.is_some()))
        .uint(1)
        .uint(MessageType::CONNECTION_ACK.0)
        .uint(0)
        .str(to);
    if let Some(payload) = payload {
        e.raw(payload);
    }
    e.into_bytes()
}

/// `[0, 33, 0, <user id>, {code, message}]`.
pub fn encode_error(to: &str, code: ErrorCode, message: &str) -> Vec<u8> {
    let mut e = Encoder::with_capacity(32 + to.len() + message.len());
    header(&mut e, MessageType::PRESENCE_ERROR);
    e.str(to);
    e.map(2);
    e.str("code").uint(code as u64);
    e.str("message").str(message);
    e.into_bytes()
}

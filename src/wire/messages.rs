//! The frames the router sends of its own: PRESENCE_UPDATE, PRESENCE_SNAPSHOT, PRESENCE_ERROR,
//! PRESENCE_ACTIVITY and VoicePing's UNAUTHORIZED_GROUP, CONNECTION_ACK and LOGIN_DUPLICATED.
//!
//! Map keys are written in a fixed order, the one documented in `protocol/PROTOCOL.md`; optional
//! fields are left out rather than written as `undefined`.

use super::encode::Encoder;
use super::frame::{Id, MessageType};
use super::talk::{encode_talk, Field};
use crate::presence::{Stated, Status, Update, UserView};
use crate::ptt::Floor;
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

/// The floors of the users on the air, by the (scoped) user id of their holder.
pub type OnAir<'a> = std::collections::HashMap<&'a str, &'a Floor>;

/// `[0, 32, 0, <dashboard user id>, {timestamp, totalOnline, users: [{userId, status,
/// lastSeen, deviceId?, version, availability?, statusText?, onAir?: {channelType, to,
/// since}}]}]`.
pub fn encode_snapshot(
    to: &str,
    timestamp: u64,
    users: &[&UserView],
    on_air: &OnAir<'_>,
) -> Vec<u8> {
    let mut e = Encoder::with_capacity(64 + users.len() * 96);
    header(&mut e, MessageType::PRESENCE_SNAPSHOT);
    e.str(to);
    e.map(3);
    e.str("timestamp").uint(timestamp);
    e.str("totalOnline").uint(users.len() as u64);
    e.str("users").array(users.len());
    for user in users {
        let talking = on_air.get(user.user_id.as_ref());
        e.map(
            4 + usize::from(user.device_id.is_some())
                + stated_len(&user.stated)
                + usize::from(talking.is_some()),
        );
        e.str("userId").str(unscoped(&user.user_id));
        e.str("status").str(status_str(user.status));
        e.str("lastSeen").uint(user.last_seen);
        if let Some(device) = &user.device_id {
            e.str("deviceId").str(device);
        }
        e.str("version").uint(user.version);
        stated(&mut e, &user.stated);
        if let Some(floor) = talking {
            e.str("onAir").map(on_air_len(floor));
            on_air_fields(&mut e, floor);
        }
    }
    e.into_bytes()
}

/// `[0, 27, <user id>, <group id as sent>, "Unauthorized Group"]`, as VoicePing sends it.
pub fn encode_unauthorized_group(from: &str, group: Id<'_>) -> Vec<u8> {
    encode_talk(
        0,
        MessageType::UNAUTHORIZED_GROUP,
        &[
            Field::Str(from),
            Field::Id(group),
            Field::Str("Unauthorized Group"),
        ],
    )
}

/// `[1, 26, 0, <user id>, payload]` (4 elements without a payload), as VoicePing answers a
/// CONNECTION_TEST: the payload comes back byte for byte.
pub fn encode_connection_ack(to: &str, payload: Option<&[u8]>) -> Vec<u8> {
    let head = [Field::Uint(0), Field::Str(to)];
    match payload {
        Some(payload) => encode_talk(
            1,
            MessageType::CONNECTION_ACK,
            &[head[0], head[1], Field::Raw(payload)],
        ),
        None => encode_talk(1, MessageType::CONNECTION_ACK, &head),
    }
}

/// `[1, 9, 0, <user id>, "userId <user id> has logged in from another deviceId <device>"]`, to
/// the older connections of a user when `PTT_SINGLE_SESSION` is on.
pub fn encode_login_duplicated(user_id: &str, device: &str) -> Vec<u8> {
    let text = format!("userId {user_id} has logged in from another deviceId {device}");
    encode_talk(
        1,
        MessageType::LOGIN_DUPLICATED,
        &[Field::Uint(0), Field::Str(user_id), Field::Str(&text)],
    )
}

/// `[0, 35, 0, "broadcast", {userId, onAir, channelType, to?, since, timestamp}]`: a user went
/// on the air (`onAir: true`, since `since`) or off it, in group or with peer `to`.
pub fn encode_activity(user_id: &str, on_air: bool, floor: &Floor, timestamp: u64) -> Vec<u8> {
    let mut e = Encoder::with_capacity(96 + user_id.len() + floor.to.len());
    header(&mut e, MessageType::PRESENCE_ACTIVITY);
    e.str("broadcast");
    e.map(3 + on_air_len(floor));
    e.str("userId").str(unscoped(user_id));
    e.str("onAir").bool(on_air);
    on_air_fields(&mut e, floor);
    e.str("timestamp").uint(timestamp);
    e.into_bytes()
}

/// How many of `channelType`, `to` and `since` a floor shows (`to` is left out when empty: a
/// private peer the viewer may not see).
fn on_air_len(floor: &Floor) -> usize {
    2 + usize::from(!floor.to.is_empty())
}

/// `channelType`, `to` (when shown) and `since` of a floor.
fn on_air_fields(e: &mut Encoder, floor: &Floor) {
    e.str("channelType").uint(floor.channel.number());
    if !floor.to.is_empty() {
        e.str("to").str(unscoped(&floor.to));
    }
    e.str("since").uint(floor.started);
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

//! The codec against vectors produced by the real npm `notepack` 0.0.2 (`protocol/gen-vectors.js`):
//! what the router sends must be byte-identical, and what clients send must decode.

use presence_router::presence::{Status, Update, UserView};
use presence_router::wire::{
    encode_error, encode_snapshot, encode_update, ChannelType, ErrorCode, Frame, Id,
};
use serde_json::Value;
use std::sync::Arc;

fn vectors() -> Value {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/protocol/vectors.json");
    let text = std::fs::read_to_string(path).expect("protocol/vectors.json is committed");
    serde_json::from_str(&text).expect("vectors are JSON")
}

fn unhex(text: &str) -> Vec<u8> {
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&text[i..i + 2], 16).expect("hex"))
        .collect()
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn status(v: &Value) -> Status {
    match v.as_str() {
        Some("online") => Status::Online,
        _ => Status::Offline,
    }
}

fn text(v: &Value, key: &str) -> Arc<str> {
    Arc::from(v[key].as_str().expect("string field"))
}

fn opt_text(v: &Value, key: &str) -> Option<Arc<str>> {
    v.get(key).and_then(Value::as_str).map(Arc::from)
}

fn num(v: &Value, key: &str) -> u64 {
    v[key].as_u64().expect("integer field")
}

#[test]
fn server_frames_are_byte_identical_to_notepack() {
    let vectors = vectors();
    let server = vectors["server"].as_array().expect("server vectors");
    assert!(server.len() >= 5);
    for vector in server {
        let value = &vector["value"];
        let bytes = match vector["kind"].as_str() {
            Some("update") => encode_update(&Update {
                user_id: text(value, "userId"),
                status: status(&value["status"]),
                version: num(value, "version"),
                last_seen: num(value, "lastSeen"),
                device_id: opt_text(value, "deviceId"),
                timestamp: num(value, "timestamp"),
            }),
            Some("snapshot") => {
                let body = &value["body"];
                let users: Vec<UserView> = body["users"]
                    .as_array()
                    .expect("users")
                    .iter()
                    .map(|u| UserView {
                        user_id: text(u, "userId"),
                        status: status(&u["status"]),
                        last_seen: num(u, "lastSeen"),
                        device_id: opt_text(u, "deviceId"),
                        version: num(u, "version"),
                    })
                    .collect();
                encode_snapshot(
                    value["to"].as_str().expect("to"),
                    num(body, "timestamp"),
                    &users,
                )
            }
            Some("error") => {
                let body = &value["body"];
                let code = match num(body, "code") {
                    400 => ErrorCode::BadFrame,
                    403 => ErrorCode::Forbidden,
                    other => panic!("no error code {other} is sent"),
                };
                encode_error(
                    value["to"].as_str().expect("to"),
                    code,
                    body["message"].as_str().expect("message"),
                )
            }
            other => panic!("unknown vector kind {other:?}"),
        };
        assert_eq!(
            hex(&bytes),
            vector["hex"].as_str().expect("hex"),
            "{}",
            vector["name"]
        );
    }
}

fn id_matches(id: Option<Id<'_>>, expect: &Value) -> bool {
    match (id, expect) {
        (None, Value::Null) => true,
        (Some(Id::Str(s)), Value::String(e)) => s == e,
        (Some(Id::Int(i)), Value::Number(n)) => n.as_i64() == Some(i),
        (Some(Id::UInt(u)), Value::Number(n)) => n.as_u64() == Some(u),
        _ => false,
    }
}

#[test]
fn client_frames_from_notepack_decode() {
    let vectors = vectors();
    for vector in vectors["client"].as_array().expect("client vectors") {
        let name = &vector["name"];
        let bytes = unhex(vector["hex"].as_str().expect("hex"));
        let frame = Frame::decode(&bytes).unwrap_or_else(|e| panic!("{name}: {e}"));
        let expect = &vector["expect"];
        let channel = match frame.channel {
            ChannelType::Group => 0,
            ChannelType::Private => 1,
        };
        assert_eq!(channel, num(expect, "channel"), "{name}");
        assert_eq!(frame.message_type.0, num(expect, "messageType"), "{name}");
        assert!(
            id_matches(frame.from, &expect["from"]),
            "{name}: from {:?}",
            frame.from
        );
        assert!(
            id_matches(frame.to, &expect["to"]),
            "{name}: to {:?}",
            frame.to
        );
        assert_eq!(
            frame.payload.is_some(),
            expect["payload"] == Value::Bool(true),
            "{name}"
        );
        if let Some(payload) = frame.payload_value() {
            // A heartbeat payload's timestamp decodes whatever form it took (int, float, Date).
            if payload.get("type").and_then(|t| t.as_str()) == Some("heartbeat") {
                assert!(payload.get("timestamp").is_some(), "{name}");
            }
        }
    }
}

#[test]
fn invalid_frames_are_refused() {
    let vectors = vectors();
    for vector in vectors["invalid"].as_array().expect("invalid vectors") {
        let bytes = unhex(vector["hex"].as_str().expect("hex"));
        assert!(Frame::decode(&bytes).is_err(), "{} decoded", vector["name"]);
    }
}

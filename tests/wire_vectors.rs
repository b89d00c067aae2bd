//! The codec against bytes made by the real npm packages (`protocol/gen-vectors.js`:
//! notepack 0.0.2, notepack.io 2 and 3, Node and browser builds): what the router sends must be
//! byte-identical to notepack 0.0.2 and readable by a strict reader; what any of them sends must
//! decode to what that package itself reads back.

mod common;

use common::strict;
use presence_router::presence::{Audience, Status, Update, UserView};
use presence_router::wire::{
    decode_value, encode_error, encode_snapshot, encode_update, ChannelType, Encoder, ErrorCode,
    Frame, Id, OnAir, Value,
};
use serde_json::Value as Json;
use std::sync::Arc;

/// The packages every client-side section must have been made with.
const PACKAGES: [&str; 3] = ["notepack@0.0.2", "notepack.io@2.", "notepack.io@3."];

fn vectors() -> Json {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/protocol/vectors.json");
    let text = std::fs::read_to_string(path).expect("protocol/vectors.json is committed");
    serde_json::from_str(&text).expect("vectors are JSON")
}

fn section<'a>(vectors: &'a Json, name: &str) -> &'a [Json] {
    let items = vectors[name]
        .as_array()
        .unwrap_or_else(|| panic!("section {name}"));
    assert!(!items.is_empty(), "section {name} is empty");
    items
}

/// Each successful encoding of a vector: (package, bytes, the vector's encoding object).
fn encodings(vector: &Json) -> Vec<(String, Vec<u8>, &Json)> {
    let all = vector["encodings"].as_object().expect("encodings");
    for package in PACKAGES {
        assert!(
            all.keys().any(|k| k.starts_with(package)),
            "{}: no {package} encoding",
            vector["name"]
        );
    }
    all.iter()
        .filter_map(|(package, e)| {
            let hex = e.get("hex")?.as_str()?;
            Some((package.clone(), unhex(hex), e))
        })
        .collect()
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

fn status(v: &Json) -> Status {
    match v.as_str() {
        Some("online") => Status::Online,
        _ => Status::Offline,
    }
}

fn text(v: &Json, key: &str) -> Arc<str> {
    Arc::from(v[key].as_str().expect("string field"))
}

fn opt_text(v: &Json, key: &str) -> Option<Arc<str>> {
    v.get(key).and_then(Json::as_str).map(Arc::from)
}

fn num(v: &Json, key: &str) -> u64 {
    v[key].as_u64().expect("integer field")
}

/// Whether a decoded value is what the generator's tagged form (`tagged` in gen-vectors.js)
/// says the sending package reads back.
fn matches(value: &Value<'_>, tag: &Json) -> bool {
    let Some(kind) = tag[0].as_str() else {
        return false;
    };
    let arg = &tag[1];
    match (kind, value) {
        ("nil", Value::Nil) | ("undefined", Value::Undefined) => true,
        ("bool", Value::Bool(b)) => arg.as_bool() == Some(*b),
        ("int", Value::Int(i)) => arg.as_str() == Some(&i.to_string()),
        ("int", Value::UInt(u)) => arg.as_str() == Some(&u.to_string()),
        ("float", Value::Float(f)) => {
            let want: f64 = arg.as_str().and_then(|s| s.parse().ok()).expect("float");
            want == *f || (want.is_nan() && f.is_nan())
        }
        ("str", Value::Str(s)) => arg.as_str() == Some(s),
        ("bin", Value::Bin(b)) => arg.as_str() == Some(&hex(b)),
        ("date", Value::Timestamp(ms)) => arg.as_i64() == Some(*ms),
        ("array", Value::Array(items)) => {
            let want = arg.as_array().expect("array");
            want.len() == items.len() && items.iter().zip(want).all(|(v, t)| matches(v, t))
        }
        ("map", Value::Map(entries)) => {
            let want = arg.as_array().expect("map pairs");
            want.len() == entries.len()
                && want.iter().all(|pair| {
                    entries
                        .iter()
                        .find(|(k, _)| k.as_str() == pair[0].as_str())
                        .is_some_and(|(_, v)| matches(v, &pair[1]))
                })
        }
        _ => false,
    }
}

#[test]
fn server_frames_are_byte_identical_to_notepack_and_strictly_readable() {
    let vectors = vectors();
    for vector in section(&vectors, "server") {
        let value = &vector["value"];
        let bytes = match vector["kind"].as_str() {
            Some("update") => encode_update(&Update {
                user_id: text(value, "userId"),
                status: status(&value["status"]),
                version: num(value, "version"),
                last_seen: num(value, "lastSeen"),
                device_id: opt_text(value, "deviceId"),
                timestamp: num(value, "timestamp"),
                stated: Default::default(),
                audience: Audience::none(),
                before: None,
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
                        stated: Default::default(),
                        audience: Audience::none(),
                    })
                    .collect();
                encode_snapshot(
                    value["to"].as_str().expect("to"),
                    num(body, "timestamp"),
                    &users.iter().collect::<Vec<_>>(),
                    &OnAir::new(),
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
        let name = &vector["name"];
        assert_eq!(hex(&bytes), vector["hex"].as_str().expect("hex"), "{name}");
        if let Err(e) = strict::decode(&bytes) {
            panic!("{name}: the strict reader refuses it: {e}");
        }
    }
}

/// Every package's bytes for every edge value (64-bit and negative integers, floats, NaN,
/// str8/str16, binaries, `undefined`, Dates) decode to what that package reads back itself.
#[test]
fn values_from_every_package_decode_as_that_package_reads_them() {
    let vectors = vectors();
    for vector in section(&vectors, "values") {
        for (package, bytes, encoding) in encodings(vector) {
            let value = decode_value(&bytes)
                .unwrap_or_else(|e| panic!("{} from {package}: {e}", vector["name"]));
            assert!(
                matches(&value, &encoding["decoded"]),
                "{} from {package}: decoded {value:?}, the package reads {}",
                vector["name"],
                encoding["decoded"]
            );
        }
    }
}

/// Writes a tagged scalar with the router's encoder; `None` for what the router never writes.
fn encode_tagged(tag: &Json) -> Option<Vec<u8>> {
    let mut e = Encoder::default();
    let arg = &tag[1];
    match tag[0].as_str()? {
        "nil" => e.nil(),
        "bool" => e.bool(arg.as_bool()?),
        "int" => match arg.as_str()?.parse::<i64>() {
            Ok(i) => e.int(i),
            Err(_) => e.uint(arg.as_str()?.parse().ok()?),
        },
        "float" => e.number(arg.as_str()?.parse().ok()?),
        "str" => e.str(arg.as_str()?),
        "bin" => e.bin(&unhex(arg.as_str()?)),
        _ => return None,
    };
    Some(e.into_bytes())
}

/// The router's scalar encoder writes each edge value exactly as notepack 0.0.2 does.
#[test]
fn scalars_are_written_like_notepack() {
    let vectors = vectors();
    let mut checked = 0;
    for vector in section(&vectors, "values") {
        let encoding = &vector["encodings"]["notepack@0.0.2"];
        let (Some(want), Some(ours)) = (
            encoding["hex"].as_str(),
            encode_tagged(&encoding["decoded"]),
        ) else {
            continue;
        };
        assert_eq!(hex(&ours), want, "{}", vector["name"]);
        checked += 1;
    }
    assert!(checked >= 35, "only {checked} scalars checked");
}

fn id_matches(id: Option<Id<'_>>, tag: &Json) -> bool {
    match id {
        None => matches!(tag[0].as_str(), Some("nil" | "undefined")),
        Some(Id::Int(i)) => matches(&Value::Int(i), tag),
        Some(Id::UInt(u)) => matches(&Value::UInt(u), tag),
        Some(Id::Str(s)) => matches(&Value::Str(s), tag),
    }
}

#[test]
fn client_frames_from_every_package_decode() {
    let vectors = vectors();
    for vector in section(&vectors, "client") {
        let expect = &vector["expect"];
        for (package, bytes, encoding) in encodings(vector) {
            let name = format!("{} from {package}", vector["name"]);
            let frame = Frame::decode(&bytes).unwrap_or_else(|e| panic!("{name}: {e}"));
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
                expect["payload"] == Json::Bool(true),
                "{name}"
            );
            if let Some(payload) = frame.payload_value() {
                assert!(
                    matches(&payload, &encoding["payload"]),
                    "{name}: payload {payload:?}, the package reads {}",
                    encoding["payload"]
                );
            }
        }
    }
}

#[test]
fn invalid_frames_from_every_package_are_refused() {
    let vectors = vectors();
    for vector in section(&vectors, "invalid") {
        for (package, bytes, _) in encodings(vector) {
            assert!(
                Frame::decode(&bytes).is_err(),
                "{} from {package} decoded",
                vector["name"]
            );
        }
    }
}

/// The strict reader has teeth: it refuses every ext the packages write (notepack's
/// `undefined` and Date, notepack.io 3's timestamps, notepack.io 2's ArrayBuffer).
#[test]
fn the_strict_reader_refuses_every_ext_the_packages_write() {
    let vectors = vectors();
    let mut refused = 0;
    for vector in section(&vectors, "values") {
        for (package, bytes, _) in encodings(vector) {
            if matches!(bytes.first(), Some(0xc7..=0xc9 | 0xd4..=0xd8)) {
                let verdict = strict::decode(&bytes);
                assert!(
                    verdict.as_ref().is_err_and(|e| e.contains("ext type")),
                    "{} from {package}: {verdict:?}",
                    vector["name"]
                );
                refused += 1;
            }
        }
    }
    assert!(refused >= 20, "only {refused} ext encodings seen");
}

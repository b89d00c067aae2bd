//! The real router binary against real clients: Node scripts on `ws` with notepack 0.0.2 (as
//! handsets and the VoicePing tooling) and with the browser build of notepack.io 3 (as a
//! browser, token in the subprotocol). Each script (`protocol/interop/client.js`) walks through
//! a 401, the snapshot, an online update, heartbeats, error frames, the bulk API and an offline
//! update, printing a JSON line per step; this test checks every line and reads every frame
//! the router sent with the strict reader. It also checks that `protocol/vectors.json` is what
//! `protocol/gen-vectors.js` makes with the locked packages.
//!
//! Needs Node.js 18+ and npm. The npm packages come from `protocol/package-lock.json`: when
//! `protocol/node_modules` is missing or stale this test runs `npm ci` there first.

mod common;

use common::node::{npm_packages, output_within, protocol_dir, Steps};
use common::{strict, token, RouterProcess};
use presence_router::auth::Role;
use serde_json::{json, Value as Json};
use std::process::Command;
use std::time::Duration;

/// Longest a client script may take; it times itself out before this.
const SCRIPT_LIMIT: Duration = Duration::from_secs(60);

/// What one client script printed, step by step, and the tokens it was given.
struct Transcript {
    steps: Steps,
    mobile_token: String,
    dashboard_token: String,
}

impl Transcript {
    /// The line of `step`; fails with everything the script and the router said.
    fn step(&self, step: &str) -> &Json {
        self.steps.step(step)
    }

    /// The frame the client got at `step`, after checking that the strict reader reads its
    /// bytes exactly as the client's own MessagePack package did.
    fn frame(&self, step: &str) -> &Json {
        let line = self.step(step);
        let hex = line["hex"].as_str().expect("hex");
        let strict = strict::decode_hex(hex)
            .unwrap_or_else(|e| panic!("{step}: a strict reader refuses {hex}: {e}"));
        assert_eq!(strict, line["frame"], "{step}: strict reading of {hex}");
        &line["frame"]
    }
}

/// Runs `protocol/interop/client.js <flavour>` against a fresh router binary.
fn run_client(flavour: &str) -> Transcript {
    npm_packages();
    // Offline at once and every heartbeat written, so each step shows at once.
    let mut router = RouterProcess::start(&[
        ("PRESENCE_OFFLINE_DEBOUNCE", "0"),
        ("PRESENCE_HEARTBEAT_MIN_INTERVAL", "0"),
    ]);
    let script = protocol_dir().join("interop").join("client.js");
    let mobile_token = token("driver-1", Role::Mobile);
    let dashboard_token = token("dispatcher-1", Role::Dashboard);
    let out = output_within(
        Command::new("node")
            .arg(&script)
            .arg(flavour)
            .current_dir(protocol_dir())
            .env("ROUTER", &router.addr)
            .env("MOBILE_USER", "driver-1")
            .env("MOBILE_TOKEN", &mobile_token)
            .env("DEVICE_ID", "phone-1")
            .env("DASHBOARD_TOKEN", &dashboard_token)
            .env("LISTENER_USER", "driver-2")
            .env("LISTENER_TOKEN", token("driver-2", Role::Mobile))
            .env("TIMEOUT_MS", "15000"),
        SCRIPT_LIMIT,
    )
    .unwrap_or_else(|e| panic!("cannot run node ({e}): the interop test needs Node.js 18+"));
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let context = format!(
        "node exited with {}\n--- stdout\n{stdout}--- stderr\n{}--- router log\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr),
        router.log.text()
    );
    let steps: Vec<Json> = stdout
        .lines()
        .map(|line| {
            serde_json::from_str(line)
                .unwrap_or_else(|e| panic!("not a JSON line ({e}): {line}\n{context}"))
        })
        .collect();
    assert!(out.status.success(), "{context}");
    Transcript {
        steps: Steps {
            lines: steps,
            context,
        },
        mobile_token,
        dashboard_token,
    }
}

/// The envelope of a frame: `[channelType, messageType, fromId, toId]`.
fn envelope(frame: &Json) -> &[Json] {
    frame.as_array().map_or(&[], |f| &f[..f.len().min(4)])
}

/// The steps both kinds of client go through, checked the same way.
fn check_session(t: &Transcript) {
    let refused = t.step("refused");
    assert_eq!(refused["status"], 401, "{}", t.steps.context);
    assert_eq!(
        refused["body"],
        json!({"error": "Unauthorized", "reason": "malformed token"})
    );

    let snapshot = t.frame("snapshot");
    assert_eq!(
        snapshot,
        &json!([0, 32, 0, "dispatcher-1", {
            "timestamp": snapshot[4]["timestamp"],
            "totalOnline": 0,
            "users": [],
        }])
    );

    let online = t.frame("online");
    let update = &online[4];
    assert_eq!(
        envelope(online),
        [json!(0), json!(31), json!(0), json!("broadcast")]
    );
    assert_eq!(
        (&update["userId"], &update["status"], &update["type"]),
        (
            &json!("driver-1"),
            &json!("online"),
            &json!("presence_update")
        )
    );
    assert_eq!(update["deviceId"], "phone-1");
    let connected_at = update["lastSeen"].as_u64().expect("lastSeen");

    // The CONNECTION frame and the three heartbeats (integer, Date, 6-element with `undefined`)
    // got no error: the first reply is the one to the router-only frame sent after them.
    let error = t.frame("handset-error");
    assert_eq!(
        envelope(error),
        [json!(0), json!(33), json!(0), json!("driver-1")]
    );
    assert_eq!(error[4]["code"], 400);
    assert!(error[4]["message"]
        .as_str()
        .is_some_and(|m| m.contains("31")));

    // The heartbeats were written: lastSeen moved on from the connect.
    let status = t.step("status");
    assert_eq!(status["status"], 200);
    let users = &status["body"]["users"];
    assert_eq!(users[0]["status"], "online");
    assert_eq!(users[0]["deviceId"], "phone-1");
    assert!(
        users[0]["lastSeen"].as_u64() > Some(connected_at),
        "a heartbeat moves lastSeen past the connect ({connected_at}): {status}"
    );
    assert_eq!(
        users[1],
        json!({"userId": "nobody", "status": "offline", "lastSeen": 0})
    );

    let refusal = t.frame("dashboard-error");
    assert_eq!(refusal[3], "dispatcher-1");
    assert_eq!(refusal[4]["code"], 403);

    let offline = &t.frame("offline")[4];
    assert_eq!(
        (&offline["userId"], &offline["status"]),
        (&json!("driver-1"), &json!("offline"))
    );
    assert!(offline["version"].as_u64() > update["version"].as_u64());
    check_talk(t);
    t.step("done");
}

/// Group talk and a private text, as the client's own package read them.
fn check_talk(t: &Transcript) {
    let ts = 1_702_281_234_567u64;
    assert_eq!(
        t.frame("talk-start-ack"),
        &json!([0, 6, "driver-1", "group-1", ts.to_string()])
    );
    assert_eq!(
        t.frame("talk-start"),
        &json!([0, 1, "driver-1", "group-1", ts])
    );
    // The audio as it was sent: binary, the sender's id, the group.
    assert_eq!(
        t.step("talk-audio")["hex"],
        "950003a86472697665722d31a767726f75702d31c40401020304"
    );
    let ack = t.frame("talk-stop-ack");
    assert_eq!(
        envelope(ack),
        [json!(0), json!(7), json!("driver-1"), json!("group-1")]
    );
    let id = ack[4].as_str().expect("recording id");
    assert!(
        id.starts_with("0_3_group-1_driver-1_") && id.ends_with("ms.opus"),
        "{id}"
    );
    assert_eq!(ack[5], "Acknowledged");
    let stop = t.frame("talk-stop");
    let payload: Json = serde_json::from_str(stop[4].as_str().expect("JSON text")).expect("JSON");
    assert_eq!(payload["message_id"], id);
    let text_ack = t.frame("text-ack");
    assert_eq!(
        envelope(text_ack),
        [json!(1), json!(22), json!("driver-1"), json!("driver-2")]
    );
    let text = t.frame("text");
    let payload: Json = serde_json::from_str(text[4].as_str().expect("JSON text")).expect("JSON");
    assert_eq!(payload, json!({"message_id": text_ack[4], "text": "hello"}));
}

/// A Node handset (`token` and `device_id` headers) and the VoicePing tooling
/// (`VoicePingToken` header), both encoding with notepack 0.0.2 as the existing fleet does.
#[test]
fn node_clients_on_notepack_0_0_2() {
    let t = run_client("notepack");
    check_session(&t);
    assert_eq!(t.step("handset-open")["protocol"], "");
}

/// A browser: the browser build of notepack.io 3, ArrayBuffer messages, the token and device
/// id as subprotocols, and the first one echoed back (or the browser would drop the socket).
#[test]
fn browser_clients_on_notepack_io_3_with_the_token_in_the_subprotocol() {
    let t = run_client("browser");
    check_session(&t);
    assert_eq!(t.step("handset-open")["protocol"], t.mobile_token.as_str());
    assert_eq!(
        t.step("dashboard-open")["protocol"],
        t.dashboard_token.as_str()
    );
}

/// `protocol/vectors.json` is exactly what `gen-vectors.js` writes with the locked packages:
/// generated by them, never edited by hand, never stale.
#[test]
fn the_committed_vectors_are_what_the_packages_write() {
    npm_packages();
    let out = output_within(
        Command::new("node")
            .arg("gen-vectors.js")
            .current_dir(protocol_dir()),
        SCRIPT_LIMIT,
    )
    .unwrap_or_else(|e| panic!("cannot run node ({e}): the interop test needs Node.js 18+"));
    assert!(
        out.status.success(),
        "gen-vectors.js failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let committed = std::fs::read(protocol_dir().join("vectors.json")).expect("vectors.json");
    assert!(
        out.stdout == committed,
        "protocol/vectors.json is not what gen-vectors.js writes: run `cd protocol && npm ci && npm run vectors`"
    );
}

//! Push-to-talk over real sockets, as VoicePing handsets speak it: group talk with one floor per
//! group, private talk, texts and their acks, on one router and across two routers sharing a
//! Redis; what dashboards see of who is on the air; the bad frames a handset may send.

mod common;

use common::{token_with, Client, RouterProcess, Seen, PATIENCE};
use presence_router::auth::Role;
use presence_router::wire::Encoder;
use serde_json::{json, Value as Json};
use std::time::Duration;

/// A payload of a test frame.
enum P<'a> {
    Uint(u64),
    Str(&'a str),
    Bin(&'a [u8]),
    Map,
}

/// `[channel, type, from, to, payload]` (4 elements without a payload), as notepack writes it.
fn frame(channel: u64, message_type: u64, from: &str, to: &str, payload: Option<P<'_>>) -> Vec<u8> {
    let mut e = Encoder::default();
    e.array(4 + usize::from(payload.is_some()))
        .uint(channel)
        .uint(message_type)
        .str(from)
        .str(to);
    match payload {
        None => {}
        Some(P::Uint(n)) => {
            e.uint(n);
        }
        Some(P::Str(s)) => {
            e.str(s);
        }
        Some(P::Bin(b)) => {
            e.bin(b);
        }
        Some(P::Map) => {
            e.map(1).str("text").str("hi");
        }
    }
    e.into_bytes()
}

const TS: u64 = 1_702_281_234_567;

/// A handset of `user`, a member of `groups` by its token (free to join any with none), on the router at `url`; returned once
/// its session is serving (a CONNECTION_TEST answered), so nothing sent to it after is missed.
async fn handset_at(url: &str, user: &str, groups: &[&str]) -> Client {
    let claims = match groups {
        [] => json!({}),
        groups => json!({ "channelIds": groups }),
    };
    let token = token_with(user, Role::Mobile, claims);
    let mut client = Client::connect_to(url, &token, Some(&format!("{user}-phone"))).await;
    ready(&mut client, user).await;
    client
}

async fn handset(router: &common::Router, user: &str, groups: &[&str]) -> Client {
    handset_at(&router.ws_url(), user, groups).await
}

async fn ready(client: &mut Client, user: &str) {
    client
        .send(frame(0, 25, user, "0", Some(P::Str("ping"))))
        .await;
    assert_eq!(client.next_frame().await, json!([1, 26, 0, user, "ping"]));
}

/// A dashboard watching `groups` (all of its tenant with none); returns it with its snapshot.
async fn dashboard(router: &common::Router, user: &str, groups: Option<&[&str]>) -> (Client, Json) {
    let claims = groups.map_or(json!({}), |g| json!({ "channelIds": g }));
    let token = token_with(user, Role::Dashboard, claims);
    let mut client = Client::connect(router, &token, None).await;
    let snapshot = client.next_frame().await;
    assert_eq!(snapshot[1], 32, "a snapshot first: {snapshot}");
    (client, snapshot[4].clone())
}

/// The next PRESENCE_ACTIVITY a dashboard gets (presence updates before it are skipped).
async fn next_activity(client: &mut Client) -> Json {
    loop {
        let frame = client.next_frame().await;
        match frame[1].as_u64() {
            Some(31) => continue,
            Some(35) => return frame[4].clone(),
            _ => panic!("expected PRESENCE_ACTIVITY, got {frame}"),
        }
    }
}

/// Group talk: the floor, Busy, audio to every member once and in order, STOP with its ids, and
/// what a group dashboard sees. `a` and `b` may be one router or two sharing Redis.
async fn group_talk(a: &common::Router, b: &common::Router) {
    let (mut watcher, _) = dashboard(b, "dispatch", Some(&["18"])).await;
    let (mut outsider_dashboard, _) = dashboard(b, "other-dispatch", Some(&["99"])).await;
    let mut alice = handset(a, "alice", &["18"]).await;
    let mut carol = handset(a, "carol", &["18"]).await;
    let mut bob = handset(b, "bob", &["18"]).await;
    let mut dave = handset(b, "dave", &["99"]).await;

    alice
        .send(frame(0, 1, "alice", "18", Some(P::Uint(TS))))
        .await;
    assert_eq!(
        alice.next_frame().await,
        json!([0, 6, "alice", "18", TS.to_string()])
    );
    for listener in [&mut bob, &mut carol] {
        assert_eq!(
            listener.next_frame().await,
            json!([0, 1, "alice", "18", TS])
        );
    }
    let on = next_activity(&mut watcher).await;
    assert_eq!(
        (&on["userId"], &on["onAir"], &on["channelType"], &on["to"]),
        (&json!("alice"), &json!(true), &json!(0), &json!("18"))
    );

    bob.send(frame(0, 1, "bob", "18", Some(P::Uint(TS)))).await;
    assert_eq!(bob.next_frame().await, json!([0, 8, "bob", "18", "Busy"]));

    dave.send(frame(0, 1, "dave", "18", Some(P::Uint(TS))))
        .await;
    assert_eq!(
        dave.next_frame().await,
        json!([0, 27, "dave", "18", "Unauthorized Group"])
    );
    assert_eq!(
        dave.next_frame().await,
        json!([0, 8, "dave", "18", "Ack Failed"])
    );

    for n in 0..50u8 {
        alice
            .send(frame(0, 3, "alice", "18", Some(P::Bin(&[n; 60]))))
            .await;
    }
    alice.send(frame(0, 2, "alice", "18", None)).await;
    for listener in [&mut bob, &mut carol] {
        for n in 0..50u8 {
            assert_eq!(
                listener.next_frame().await,
                json!([0, 3, "alice", "18", vec![n; 60]]),
                "frame {n}, once, in order"
            );
        }
        let stop = listener.next_frame().await;
        assert_eq!(
            &stop.as_array().expect("array")[..4],
            &[json!(0), json!(2), json!("alice"), json!("18")]
        );
        let payload: Json =
            serde_json::from_str(stop[4].as_str().expect("a JSON string")).expect("JSON");
        assert!(payload["duration"].as_u64().is_some(), "{payload}");
        let id = payload["message_id"].as_str().expect("an id");
        assert!(
            id.starts_with("0_3_18_alice_") && id.ends_with("ms.opus"),
            "{id}"
        );
    }
    let ack = alice.next_frame().await;
    assert_eq!(
        ack.as_array().map(Vec::len),
        Some(6),
        "STOP_ACK has 6 elements: {ack}"
    );
    assert_eq!((&ack[1], &ack[5]), (&json!(7), &json!("Acknowledged")));
    assert!(ack[4]
        .as_str()
        .is_some_and(|id| id.starts_with("0_3_18_alice_")));
    let off = next_activity(&mut watcher).await;
    assert_eq!(
        (&off["userId"], &off["onAir"]),
        (&json!("alice"), &json!(false))
    );

    // The floor is free: bob takes it at once.
    bob.send(frame(0, 1, "bob", "18", Some(P::Uint(TS)))).await;
    assert_eq!(
        bob.next_frame().await,
        json!([0, 6, "bob", "18", TS.to_string()])
    );
    // Nothing reached the non-member, nor a dashboard of another group.
    dave.quiet_for(Duration::from_millis(200)).await;
    let frame = outsider_dashboard
        .next_within(Duration::from_millis(200))
        .await;
    assert!(
        !matches!(&frame, Some(Seen::Frame(f)) if f[1] == 35),
        "{frame:?}"
    );
}

on_both_stores!(
    group_talk,
    |_| {},
    group_talk_on_one_router,
    group_talk_across_two_routers
);

/// Private talk, texts and their acks, messages to oneself, DELIVERED / READ.
async fn private_and_text(a: &common::Router, b: &common::Router) {
    let mut alice = handset(a, "alice", &["18"]).await;
    let mut bob = handset(b, "bob", &["18"]).await;

    alice
        .send(frame(1, 1, "alice", "bob", Some(P::Uint(TS))))
        .await;
    assert_eq!(alice.next_frame().await, json!([1, 6, "alice", "bob", TS]));
    assert_eq!(bob.next_frame().await, json!([1, 1, "alice", "bob", TS]));
    alice
        .send(frame(1, 3, "alice", "bob", Some(P::Bin(&[7; 20]))))
        .await;
    assert_eq!(
        bob.next_frame().await,
        json!([1, 3, "alice", "bob", vec![7; 20]])
    );
    alice.send(frame(1, 2, "alice", "bob", None)).await;
    let ack = alice.next_frame().await;
    assert!(
        ack[4]
            .as_str()
            .is_some_and(|id| id.starts_with("1_3_bob_alice_")),
        "{ack}"
    );
    assert_eq!(bob.next_frame().await[1], 2);

    alice
        .send(frame(
            1,
            17,
            "alice",
            "bob",
            Some(P::Str(r#"{"text":"hello"}"#)),
        ))
        .await;
    let ack = alice.next_frame().await;
    let id = ack[4].as_str().expect("an id").to_owned();
    assert!(
        id.starts_with("1_17_bob_alice_") && id.ends_with(".txt"),
        "{id}"
    );
    assert_eq!(ack, json!([1, 22, "alice", "bob", id, "Acknowledged"]));
    let text = bob.next_frame().await;
    assert_eq!(
        &text.as_array().expect("array")[..4],
        &[json!(1), json!(17), json!("alice"), json!("bob")]
    );
    let payload: Json = serde_json::from_str(text[4].as_str().expect("JSON string")).expect("JSON");
    assert_eq!(payload, json!({"message_id": id, "text": "hello"}));

    // A group text reaches the group; a plain-text payload is the text.
    bob.send(frame(0, 23, "bob", "18", Some(P::Str("press 1"))))
        .await;
    assert_eq!(bob.next_frame().await[1], 24);
    let interactive = alice.next_frame().await;
    assert_eq!(interactive[1], 23);
    assert!(interactive[4]
        .as_str()
        .is_some_and(|p| p.contains(r#""text":"press 1""#)));

    bob.send(frame(1, 20, "bob", "alice", Some(P::Str("m1"))))
        .await;
    assert_eq!(
        alice.next_frame().await,
        json!([1, 20, "bob", "alice", "m1"])
    );
    bob.send(frame(1, 21, "bob", "alice", Some(P::Str("m1"))))
        .await;
    assert_eq!(
        alice.next_frame().await,
        json!([1, 21, "bob", "alice", "m1"])
    );

    // To oneself: the ack, then the message.
    alice
        .send(frame(1, 17, "alice", "alice", Some(P::Str("note"))))
        .await;
    assert_eq!(alice.next_frame().await[1], 22);
    assert_eq!(alice.next_frame().await[1], 17);

    // A spoofed fromId: the frame goes out under the sender's own id.
    alice
        .send(frame(1, 20, "mallory", "bob", Some(P::Str("m2"))))
        .await;
    assert_eq!(bob.next_frame().await, json!([1, 20, "alice", "bob", "m2"]));
}

on_both_stores!(
    private_and_text,
    |_| {},
    private_and_text_on_one_router,
    private_and_text_across_two_routers
);

/// A floor left idle frees itself: dashboards see the talker off the air, and another member
/// gets the floor.
async fn idle_floor_frees_itself(a: &common::Router, b: &common::Router) {
    let (mut watcher, _) = dashboard(b, "dispatch", None).await;
    let mut alice = handset(a, "alice", &["7"]).await;
    let mut bob = handset(b, "bob", &["7"]).await;
    alice
        .send(frame(0, 1, "alice", "7", Some(P::Uint(TS))))
        .await;
    assert_eq!(alice.next_frame().await[1], 6);
    assert_eq!(next_activity(&mut watcher).await["onAir"], true);
    assert_eq!(
        next_activity(&mut watcher).await["onAir"],
        false,
        "off the air once idle"
    );
    assert_eq!(bob.next_frame().await[1], 1, "bob heard the START");
    bob.send(frame(0, 1, "bob", "7", Some(P::Uint(TS)))).await;
    assert_eq!(bob.next_frame().await[1], 6, "the idle floor is free");
    assert_eq!(alice.next_frame().await[1], 1, "alice heard bob's START");
    // Alice's late audio has no floor: dropped, and she is told why.
    alice
        .send(frame(0, 3, "alice", "7", Some(P::Bin(&[1; 10]))))
        .await;
    let error = alice.next_frame().await;
    assert_eq!(
        (&error[1], &error[4]["code"]),
        (&json!(33), &json!(403)),
        "{error}"
    );
    bob.quiet_for(Duration::from_millis(200)).await;
}

fn short_idle(args: &mut presence_router::config::Args) {
    args.maximum_idle_duration = Some("300".into());
}

on_both_stores!(
    idle_floor_frees_itself,
    short_idle,
    idle_floor_on_one_router,
    idle_floor_across_two_routers
);

/// A talk past MAXIMUM_AUDIO_DURATION ends as by a STOP.
#[tokio::test]
async fn a_talk_too_long_is_stopped() {
    let router = common::Router::start(|a| a.maximum_audio_duration = Some("400".into())).await;
    let mut alice = handset(&router, "alice", &["5"]).await;
    let mut bob = handset(&router, "bob", &["5"]).await;
    alice
        .send(frame(0, 1, "alice", "5", Some(P::Uint(TS))))
        .await;
    assert_eq!(alice.next_frame().await[1], 6);
    assert_eq!(bob.next_frame().await[1], 1);
    let deadline = tokio::time::Instant::now() + PATIENCE;
    let stop_ack = loop {
        assert!(tokio::time::Instant::now() < deadline, "no STOP_ACK");
        alice
            .send(frame(0, 3, "alice", "5", Some(P::Bin(&[0; 60]))))
            .await;
        if let Some(Seen::Frame(f)) = alice.next_within(Duration::from_millis(20)).await {
            break f;
        }
    };
    assert_eq!(stop_ack[1], 7, "{stop_ack}");
    let duration = loop {
        let f = bob.next_frame().await;
        if f[1] == 2 {
            let payload: Json = serde_json::from_str(f[4].as_str().expect("JSON")).expect("JSON");
            break payload["duration"].as_u64().expect("duration");
        }
        assert_eq!(f[1], 3);
    };
    assert!(duration >= 400, "{duration}");
}

/// A router killed while its user holds a floor: the floor frees itself within the idle
/// duration, and a user on another router takes it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_routers_floor_frees_itself() {
    let redis = common::RedisServer::start(&[]);
    let url = redis.url();
    let env = [
        ("REDIS_URL", url.as_str()),
        ("MAXIMUM_IDLE_DURATION", "1000"),
    ];
    let mut doomed = RouterProcess::start(&env);
    let survivor = RouterProcess::start(&env);
    let mut alice = handset_at(&doomed.ws_url(), "alice", &["3"]).await;
    let mut bob = handset_at(&survivor.ws_url(), "bob", &["3"]).await;
    alice
        .send(frame(0, 1, "alice", "3", Some(P::Uint(TS))))
        .await;
    assert_eq!(alice.next_frame().await[1], 6);
    assert_eq!(bob.next_frame().await[1], 1);
    doomed.kill();
    let killed = tokio::time::Instant::now();
    bob.send(frame(0, 1, "bob", "3", Some(P::Uint(TS)))).await;
    assert_eq!(
        bob.next_frame().await[4],
        "Busy",
        "the floor outlives its router for a moment"
    );
    let granted = loop {
        assert!(killed.elapsed() < PATIENCE, "the floor never freed itself");
        tokio::time::sleep(Duration::from_millis(100)).await;
        bob.send(frame(0, 1, "bob", "3", Some(P::Uint(TS)))).await;
        let answer = bob.next_frame().await;
        if answer[1] == 6 {
            break killed.elapsed();
        }
    };
    assert!(
        granted <= Duration::from_millis(1_500),
        "freed after {granted:?}"
    );
}

/// A dashboard that connects while a user talks sees them on the air in its snapshot.
async fn snapshot_says_who_is_on_air(a: &common::Router, b: &common::Router) {
    let mut alice = handset(a, "alice", &["18"]).await;
    alice
        .send(frame(0, 1, "alice", "18", Some(P::Uint(TS))))
        .await;
    assert_eq!(alice.next_frame().await[1], 6);
    let (_watcher, snapshot) = dashboard(b, "dispatch", Some(&["18"])).await;
    let users = snapshot["users"].as_array().expect("users");
    let entry = users
        .iter()
        .find(|u| u["userId"] == "alice")
        .expect("alice listed");
    assert_eq!(entry["onAir"]["channelType"], 0);
    assert_eq!(entry["onAir"]["to"], "18");
    let (_other, snapshot) = dashboard(b, "elsewhere", Some(&["99"])).await;
    assert_eq!(
        snapshot["users"],
        json!([]),
        "another group's dashboard sees nothing"
    );
}

on_both_stores!(
    snapshot_says_who_is_on_air,
    |_| {},
    on_air_snapshot_on_one_router,
    on_air_snapshot_across_two_routers
);

/// USER_ADD makes a handset a member (its token lists no groups): it may talk, and hears the
/// group; USER_REMOVE ends that.
async fn joining_by_user_add(a: &common::Router, b: &common::Router) {
    let mut alice = handset(a, "alice", &[]).await;
    let mut bob = handset(b, "bob", &["44"]).await;
    alice.send(frame(0, 15, "alice", "44", None)).await;
    ready(&mut alice, "alice").await;
    // Across routers the other router learns of the join from the store's update.
    let deadline = tokio::time::Instant::now() + PATIENCE;
    loop {
        bob.send(frame(0, 17, "bob", "44", Some(P::Str("anyone?"))))
            .await;
        assert_eq!(bob.next_frame().await[1], 22);
        if let Some(Seen::Frame(f)) = alice.next_within(Duration::from_millis(100)).await {
            assert_eq!(f[1], 17);
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "alice never heard the group"
        );
    }
    alice
        .send(frame(0, 1, "alice", "44", Some(P::Uint(TS))))
        .await;
    assert_eq!(alice.next_frame().await[1], 6);
    assert_eq!(bob.next_frame().await[1], 1);
    alice.send(frame(0, 2, "alice", "44", None)).await;
    assert_eq!(alice.next_frame().await[1], 7);
    assert_eq!(bob.next_frame().await[1], 2);
    alice.send(frame(0, 16, "alice", "44", None)).await;
    alice
        .send(frame(0, 1, "alice", "44", Some(P::Uint(TS))))
        .await;
    assert_eq!(alice.next_frame().await[1], 27, "no longer a member");
}

on_both_stores!(
    joining_by_user_add,
    common::no_debounce,
    user_add_on_one_router,
    user_add_across_two_routers
);

/// PTT_SINGLE_SESSION: a login from another device closes the older connection, which is told.
async fn single_session(a: &common::Router, b: &common::Router) {
    let token = token_with("u1", Role::Mobile, json!({}));
    let mut first = Client::connect(a, &token, Some("d1")).await;
    ready(&mut first, "u1").await;
    let mut second = Client::connect(b, &token, Some("d2")).await;
    ready(&mut second, "u1").await;
    assert_eq!(
        first.next_frame().await,
        json!([
            1,
            9,
            0,
            "u1",
            "userId u1 has logged in from another deviceId d2"
        ])
    );
    assert_eq!(first.closed_with().await, Some(1000));
    ready(&mut second, "u1").await;
}

on_both_stores!(
    single_session,
    |a| a.ptt_single_session = Some("true".into()),
    single_session_on_one_router,
    single_session_across_two_routers
);

/// Bad talk frames get a PRESENCE_ERROR or VoicePing's answer, never a crash, and the connection
/// keeps working.
#[tokio::test]
async fn bad_talk_frames_are_answered() {
    let router = common::Router::start(|_| {}).await;
    let mut alice = handset(&router, "alice", &["18"]).await;
    let mut bob = handset(&router, "bob", &["18"]).await;
    let error = |f: Json| (f[1].as_u64(), f[4]["code"].as_u64());
    // A START whose payload is a map: no floor, and the answer a handset waits for.
    alice.send(frame(0, 1, "alice", "18", Some(P::Map))).await;
    assert_eq!(
        alice.next_frame().await,
        json!([0, 8, "alice", "18", "Ack Failed"])
    );
    // START to a group that does not exist: not a member of it.
    alice
        .send(frame(0, 1, "alice", "nowhere", Some(P::Uint(TS))))
        .await;
    assert_eq!(alice.next_frame().await[1], 27);
    assert_eq!(alice.next_frame().await[4], "Ack Failed");
    // Private frames to nobody.
    let mut e = Encoder::default();
    e.array(3).uint(1).uint(17).str("alice");
    alice.send(e.into_bytes()).await;
    assert_eq!(error(alice.next_frame().await), (Some(33), Some(400)));
    alice
        .send(frame(1, 17, "alice", "0", Some(P::Str("x"))))
        .await;
    assert_eq!(error(alice.next_frame().await), (Some(33), Some(400)));
    // An id of the wrong type.
    let mut e = Encoder::default();
    e.array(5).uint(0).uint(1).str("alice").bool(true).uint(TS);
    alice.send(e.into_bytes()).await;
    assert_eq!(error(alice.next_frame().await), (Some(33), Some(400)));
    // AUDIO without a floor.
    alice
        .send(frame(0, 3, "alice", "18", Some(P::Bin(&[0; 60]))))
        .await;
    assert_eq!(error(alice.next_frame().await), (Some(33), Some(403)));
    // A 4-element STOP without a START: acknowledged, 5 elements (no message id).
    alice.send(frame(0, 2, "alice", "18", None)).await;
    assert_eq!(
        alice.next_frame().await,
        json!([0, 7, "alice", "18", "Acknowledged"])
    );
    assert_eq!(
        bob.next_frame().await,
        json!([0, 2, "alice", "18", r#"{"duration":0,"message_id":null}"#])
    );
    // Still talking: the connection works.
    alice
        .send(frame(0, 1, "alice", "18", Some(P::Uint(TS))))
        .await;
    assert_eq!(alice.next_frame().await[1], 6);
    // A 1 MB AUDIO closes with 1009; bob is not disturbed.
    let _ = alice
        .ws_send_raw(frame(0, 3, "alice", "18", Some(P::Bin(&vec![0; 1 << 20]))))
        .await;
    assert_eq!(alice.closed_with().await, Some(1009));
    assert_eq!(bob.next_frame().await[1], 1, "bob heard the START");
    ready(&mut bob, "bob").await;
}

/// A handset flooding AUDIO at ten times the Opus frame rate is throttled and closed; another
/// talker's audio flows meanwhile.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_audio_flood_does_not_slow_other_talkers() {
    let router = common::Router::start(|_| {}).await;
    let mut flooder = handset(&router, "flooder", &["1"]).await;
    let mut talker = handset(&router, "talker", &["2"]).await;
    let mut listener = handset(&router, "listener", &["2"]).await;
    flooder
        .send(frame(0, 1, "flooder", "1", Some(P::Uint(TS))))
        .await;
    assert_eq!(flooder.next_frame().await[1], 6);
    talker
        .send(frame(0, 1, "talker", "2", Some(P::Uint(TS))))
        .await;
    assert_eq!(talker.next_frame().await[1], 6);
    assert_eq!(listener.next_frame().await[1], 1);
    let flood = tokio::spawn(async move {
        let audio = frame(0, 3, "flooder", "1", Some(P::Bin(&[0; 60])));
        // 500 frames/s for up to 10 s, until the router closes the socket.
        for _ in 0..5_000 {
            if flooder.ws_send_raw(audio.clone()).await.is_err() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        flooder.closed_with().await
    });
    for n in 0..50u8 {
        talker
            .send(frame(0, 3, "talker", "2", Some(P::Bin(&[n; 60]))))
            .await;
        let sent = tokio::time::Instant::now();
        assert_eq!(listener.next_frame().await[4], json!(vec![n; 60]));
        assert!(
            sent.elapsed() < Duration::from_secs(1),
            "audio {n} took {:?}",
            sent.elapsed()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let closed = tokio::time::timeout(PATIENCE + PATIENCE, flood)
        .await
        .expect("flood ends")
        .expect("flood task");
    assert_eq!(closed, Some(1008));
}

/// A private talk is on the air from its first audio; a dashboard of the whole tenant sees to
/// whom, a dashboard of some groups (which may not see the peer) only that it is private.
async fn private_talk_on_air(a: &common::Router, b: &common::Router) {
    let (mut everyone, _) = dashboard(b, "dispatch", None).await;
    let (mut group, _) = dashboard(b, "group-dispatch", Some(&["18"])).await;
    let mut alice = handset(a, "alice", &["18"]).await;
    let mut bob = handset(b, "bob", &["99"]).await;
    alice
        .send(frame(1, 1, "alice", "bob", Some(P::Uint(TS))))
        .await;
    assert_eq!(alice.next_frame().await[1], 6);
    assert_eq!(bob.next_frame().await[1], 1);
    alice
        .send(frame(1, 3, "alice", "bob", Some(P::Bin(&[1; 20]))))
        .await;
    assert_eq!(bob.next_frame().await[1], 3);
    let seen = next_activity(&mut everyone).await;
    assert_eq!(
        (
            &seen["userId"],
            &seen["onAir"],
            &seen["channelType"],
            &seen["to"]
        ),
        (&json!("alice"), &json!(true), &json!(1), &json!("bob"))
    );
    let seen = next_activity(&mut group).await;
    assert_eq!(
        (&seen["userId"], &seen["channelType"]),
        (&json!("alice"), &json!(1))
    );
    assert!(seen.get("to").is_none(), "the peer is not shown: {seen}");
    alice.send(frame(1, 2, "alice", "bob", None)).await;
    assert_eq!(alice.next_frame().await[1], 7);
    assert_eq!(next_activity(&mut everyone).await["onAir"], false);
    assert_eq!(next_activity(&mut group).await["onAir"], false);
}

on_both_stores!(
    private_talk_on_air,
    |_| {},
    private_on_air_on_one_router,
    private_on_air_across_two_routers
);

/// A talker who leaves the group mid-talk loses its floor at the next refresh: the group stops
/// hearing it.
#[tokio::test]
async fn leaving_the_group_ends_the_talk() {
    let router = common::Router::start(|a| a.maximum_idle_duration = Some("400".into())).await;
    let mut alice = handset(&router, "alice", &[]).await;
    let mut bob = handset(&router, "bob", &["21"]).await;
    alice.send(frame(0, 15, "alice", "21", None)).await;
    alice
        .send(frame(0, 1, "alice", "21", Some(P::Uint(TS))))
        .await;
    assert_eq!(alice.next_frame().await[1], 6);
    assert_eq!(bob.next_frame().await[1], 1);
    alice.send(frame(0, 16, "alice", "21", None)).await;
    // Audio until the router says there is no floor (at the first refresh, within 100 ms).
    let deadline = tokio::time::Instant::now() + PATIENCE;
    loop {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the talk never ended"
        );
        alice
            .send(frame(0, 3, "alice", "21", Some(P::Bin(&[2; 10]))))
            .await;
        if let Some(Seen::Frame(f)) = alice.next_within(Duration::from_millis(20)).await {
            assert_eq!((&f[1], &f[4]["code"]), (&json!(33), &json!(403)), "{f}");
            break;
        }
    }
    // Bob heard what came before, and then nothing more.
    while let Some(Seen::Frame(f)) = bob.next_within(Duration::from_millis(200)).await {
        assert_eq!(f[1], 3);
    }
    alice
        .send(frame(0, 3, "alice", "21", Some(P::Bin(&[3; 10]))))
        .await;
    bob.quiet_for(Duration::from_millis(200)).await;
}

/// A talker whose floor freed itself while nobody else took it (a pause, or a router that fell
/// behind its frames) goes on with its next AUDIO: back on the air, heard by the group.
async fn a_lapsed_talk_resumes(a: &common::Router, b: &common::Router) {
    let (mut watcher, _) = dashboard(b, "dispatch", None).await;
    let mut alice = handset(a, "alice", &["8"]).await;
    let mut bob = handset(b, "bob", &["8"]).await;
    alice
        .send(frame(0, 1, "alice", "8", Some(P::Uint(TS))))
        .await;
    assert_eq!(alice.next_frame().await[1], 6);
    assert_eq!(bob.next_frame().await[1], 1);
    assert_eq!(next_activity(&mut watcher).await["onAir"], true);
    assert_eq!(next_activity(&mut watcher).await["onAir"], false, "idle");
    alice
        .send(frame(0, 3, "alice", "8", Some(P::Bin(&[5; 10]))))
        .await;
    assert_eq!(
        bob.next_frame().await,
        json!([0, 3, "alice", "8", vec![5; 10]])
    );
    assert_eq!(
        next_activity(&mut watcher).await["onAir"],
        true,
        "back on the air"
    );
    alice.send(frame(0, 2, "alice", "8", None)).await;
    assert_eq!(alice.next_frame().await[1], 7);
    assert_eq!(bob.next_frame().await[1], 2);
}

on_both_stores!(
    a_lapsed_talk_resumes,
    short_idle,
    lapsed_talk_resumes_on_one_router,
    lapsed_talk_resumes_across_two_routers
);

//! Bad input over real sockets: each gets a PRESENCE_ERROR or a close code, the offender's
//! connection survives where it should, and nobody else notices.

mod common;

use common::{heartbeat_frame, Client, Router};
use presence_router::auth::Role;
use presence_router::wire::Encoder;
use std::time::Duration;

/// Sends `bytes` and returns the PRESENCE_ERROR payload that comes back.
async fn refused(client: &mut Client, bytes: Vec<u8>) -> serde_json::Value {
    client.send(bytes).await;
    let frame = client.next_frame().await;
    assert_eq!(frame[1], 33, "expected PRESENCE_ERROR, got {frame}");
    frame[4].clone()
}

fn frame(f: impl FnOnce(&mut Encoder)) -> Vec<u8> {
    let mut e = Encoder::default();
    f(&mut e);
    e.into_bytes()
}

/// Every kind of malformed binary frame gets a 400 error frame and the connection stays usable.
#[tokio::test]
async fn malformed_frames_get_an_error_frame_and_the_connection_stays_open() {
    let router = Router::start(|_| {}).await;
    let (mut dashboard, _) = Client::dashboard(&router, "dispatcher").await;
    let mut phone = Client::mobile(&router, "driver-1", "phone").await;
    dashboard.next_update().await;

    let cases = [
        ("undecodable", vec![0xc1, 0x00]),
        ("truncated", vec![0x95, 0x00, 0x1e]),
        (
            "not an array",
            frame(|e| {
                e.map(1).str("type").str("heartbeat");
            }),
        ),
        (
            "two elements",
            frame(|e| {
                e.array(2).uint(0).uint(30);
            }),
        ),
        (
            "unknown channelType",
            frame(|e| {
                e.array(5).uint(9).uint(30).str("driver-1").uint(0).nil();
            }),
        ),
        (
            "string messageType",
            frame(|e| {
                e.array(5).uint(0).str("30").str("driver-1").uint(0).nil();
            }),
        ),
        (
            "trailing bytes",
            [heartbeat_frame("driver-1"), vec![0]].concat(),
        ),
        (
            "router-only type",
            frame(|e| {
                e.array(5).uint(0).uint(31).str("driver-1").uint(0).nil();
            }),
        ),
    ];
    for (name, bytes) in cases {
        let error = refused(&mut phone, bytes).await;
        assert_eq!(error["code"], 400, "{name}: {error}");
        assert!(
            error["message"].as_str().is_some_and(|m| !m.is_empty()),
            "{name}"
        );
    }
    // Still open and still the same user: a heartbeat is accepted silently.
    phone.heartbeat("driver-1").await;
    phone.quiet_for(Duration::from_millis(200)).await;
    dashboard.quiet_for(Duration::from_millis(100)).await;
    router.stop().await;
}

/// A text frame is refused with 400, addressed to the sender's user id.
#[tokio::test]
async fn text_frames_are_refused() {
    let router = Router::start(|_| {}).await;
    let mut phone = Client::mobile(&router, "driver-1", "phone").await;
    phone.send_text("{\"type\":\"heartbeat\"}").await;
    let frame = phone.next_frame().await;
    assert_eq!(frame[1], 33);
    assert_eq!(frame[3], "driver-1");
    assert_eq!(frame[4]["code"], 400);
    router.stop().await;
}

/// A web or dashboard client may not heartbeat: 403, and it stays connected.
#[tokio::test]
async fn a_heartbeat_from_a_web_role_is_refused() {
    let router = Router::start(|_| {}).await;
    for role in [Role::Web, Role::Dashboard] {
        let mut web = Client::connect(&router, &common::token("ops", role), None).await;
        assert_eq!(web.next_frame().await[1], 32, "snapshot first");
        let error = refused(&mut web, heartbeat_frame("ops")).await;
        assert_eq!(error["code"], 403);
        assert!(error["message"]
            .as_str()
            .is_some_and(|m| m.contains("mobile")));
    }
    assert_eq!(
        common::status_of(&router, "ops").await,
        "offline",
        "nothing was stored"
    );
    router.stop().await;
}

/// A frame over the size limit closes the connection with 1009; others carry on.
#[tokio::test]
async fn an_oversized_frame_closes_with_1009() {
    let router = Router::start(|a| a.presence_max_frame_bytes = Some("1024".into())).await;
    let (mut dashboard, _) = Client::dashboard(&router, "dispatcher").await;
    let mut big = Client::mobile(&router, "driver-1", "phone").await;
    dashboard.next_update().await;

    let huge = frame(|e| {
        e.array(5)
            .uint(0)
            .uint(30)
            .str("driver-1")
            .uint(0)
            .bin(&[7; 4096]);
    });
    big.send(huge).await;
    assert_eq!(big.closed_with().await, Some(1009));

    let _other = Client::mobile(&router, "driver-2", "phone").await;
    let next = dashboard.next_update().await;
    assert!(
        next["userId"] == "driver-2" || next["userId"] == "driver-1",
        "dashboard carries on: {next}"
    );
    router.stop().await;
}

/// A client that only ever sends garbage is closed with 1008.
#[tokio::test]
async fn a_client_that_keeps_sending_bad_frames_is_closed_with_1008() {
    let router = Router::start(|_| {}).await;
    let mut noisy = Client::mobile(&router, "driver-1", "phone").await;
    for _ in 0..64 {
        if noisy.ws_send_raw(vec![0xc1]).await.is_err() {
            break;
        }
    }
    assert_eq!(noisy.closed_with().await, Some(1008));
    let mut calm = Client::mobile(&router, "driver-2", "phone").await;
    calm.heartbeat("driver-2").await;
    calm.quiet_for(Duration::from_millis(100)).await;
    router.stop().await;
}

/// A dashboard that stops reading stops answering pings and is closed instead of having
/// updates buffered for it without end; a dashboard that reads gets every update, in order.
#[tokio::test]
async fn a_dashboard_that_does_not_read_is_closed_and_nobody_else_notices() {
    let router = Router::start(|a| {
        a.presence_ping_interval = Some("200ms".into());
        a.presence_ping_timeout = Some("200ms".into());
        a.presence_offline_debounce = Some("0".into());
    })
    .await;
    let mut stalled = Client::stalled_dashboard(&router, "sleepy").await;
    let (mut reader, _) = Client::dashboard(&router, "reader").await;

    // Keep updates flowing (and the reader reading) until the router gives up on the stalled one.
    let mut version = 0;
    for round in 0.. {
        let metrics = common::http_raw(&router, "GET /metrics HTTP/1.1", b"").await;
        if metrics.body.contains("presence_ping_timeouts_total 1") {
            break;
        }
        assert!(round < 10_000, "the stalled dashboard was never closed");
        let phone = Client::mobile(&router, "driver-1", "phone").await;
        let online = reader.next_update().await;
        phone.close().await;
        let offline = reader.next_update().await;
        for (update, status) in [(online, "online"), (offline, "offline")] {
            let next = update["version"].as_u64().unwrap_or(0);
            assert_eq!(update["status"], status, "every update, in order");
            assert!(
                next > version,
                "{next} after {version}: every update, in order"
            );
            version = next;
        }
    }
    let code = stalled.closed_with().await;
    assert!(code.is_none() || code == Some(1013), "closed with {code:?}");
    let _phone = Client::mobile(&router, "driver-2", "phone").await;
    assert_eq!(
        reader.next_update().await["userId"],
        "driver-2",
        "the reading dashboard carries on"
    );
    router.stop().await;
}

/// A refused value is quoted in 32 characters at most: a 65,000-byte channelType does not come
/// back 65,000 bytes long.
#[tokio::test]
async fn error_frames_quote_little_of_what_they_refuse() {
    let router = Router::start(|_| {}).await;
    let mut phone = Client::mobile(&router, "driver-1", "phone").await;
    let mut e = Encoder::default();
    e.array(5)
        .str(&"x".repeat(65_000))
        .uint(30)
        .str("driver-1")
        .uint(0)
        .nil();
    phone.send(e.into_bytes()).await;
    let error = phone.next_frame().await;
    let message = error[4]["message"].as_str().expect("message");
    assert!(message.len() < 100, "{} bytes: {message}", message.len());
    assert!(
        message.starts_with("unknown channelType \"xxx"),
        "{message}"
    );
    router.stop().await;
}

/// Good frames between bad ones do not reset the count: sixteen refusals within the window
/// close the connection however they are interleaved.
#[tokio::test]
async fn interleaving_good_frames_does_not_keep_a_flood_of_bad_ones_going() {
    let router = Router::start(|_| {}).await;
    let mut noisy = Client::mobile(&router, "driver-1", "phone").await;
    for _ in 0..64 {
        if noisy.ws_send_raw(vec![0xc1]).await.is_err()
            || noisy
                .ws_send_raw(heartbeat_frame("driver-1"))
                .await
                .is_err()
        {
            break;
        }
    }
    assert_eq!(noisy.closed_with().await, Some(1008));
    router.stop().await;
}

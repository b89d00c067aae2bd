//! Clients that hold sockets without using them: sockets not upgraded have a cap of their own,
//! and every socket on which nothing moves is closed after the idle deadline: one that sends
//! nothing, half a request head, or pipelines requests without reading the answers. Real sockets,
//! small limits.

mod common;

use common::{http_raw, Client, Router};
use futures_util::SinkExt;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::Instant;

const IDLE: Duration = Duration::from_secs(2);

async fn router(pending: usize) -> Router {
    Router::start(move |a| {
        a.presence_max_pending_connections = Some(pending.to_string());
        a.presence_idle_timeout = Some(format!("{}ms", IDLE.as_millis()));
        a.presence_ping_interval = Some("500ms".into());
        a.presence_ping_timeout = Some("500ms".into());
    })
    .await
}

/// `presence_connections_pending` from `/metrics` (this scrape's own socket included).
async fn pending(router: &Router) -> u64 {
    let metrics = http_raw(router, "GET /metrics HTTP/1.1", b"").await.body;
    metrics
        .lines()
        .find_map(|l| l.strip_prefix("presence_connections_pending "))
        .and_then(|v| v.trim().parse().ok())
        .expect("gauge")
}

/// Waits until only the scrape itself is pending, within `limit`; returns how long it took.
async fn pending_drains(router: &Router, limit: Duration) -> Duration {
    let start = Instant::now();
    while pending(router).await > 1 {
        assert!(
            start.elapsed() < limit,
            "sockets still held after {limit:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    start.elapsed()
}

/// Whether the router closed `socket` at once (end of stream within a second).
async fn closed_at_once(socket: &mut TcpStream) -> bool {
    let mut byte = [0u8; 1];
    matches!(
        tokio::time::timeout(Duration::from_secs(1), socket.read(&mut byte)).await,
        Ok(Ok(0) | Err(_))
    )
}

#[tokio::test]
async fn silent_and_half_sent_sockets_are_capped_and_closed_by_the_idle_deadline() {
    let router = router(4).await;
    let mut held = Vec::new();
    for i in 0..3 {
        let mut socket = TcpStream::connect(router.addr).await.expect("connect");
        if i == 0 {
            // Half a request head, never finished.
            socket
                .write_all(b"GET /health HTTP/1.1\r\nX-Slow: ")
                .await
                .expect("write");
        }
        held.push(socket);
    }
    // Three held: the fourth socket takes the last slot, the fifth is closed at once.
    let deadline = Instant::now() + Duration::from_secs(5);
    while pending(&router).await < 3 {
        assert!(
            Instant::now() < deadline,
            "the held sockets were not accepted"
        );
    }
    let started = Instant::now();
    let mut extra = Vec::new();
    for _ in 0..2 {
        extra.push(TcpStream::connect(router.addr).await.expect("connect"));
    }
    assert!(
        closed_at_once(&mut extra[1]).await,
        "a socket over the cap is closed at once"
    );
    // Give the scrapes below a slot back.
    drop(extra);
    // The held ones go within the idle deadline (the half head within the header timeout).
    let waited = pending_drains(&router, IDLE * 3).await;
    assert!(
        started.elapsed() >= IDLE / 2,
        "closed too early: {waited:?}"
    );
    for socket in &mut held {
        assert!(closed_at_once(socket).await);
    }
    // And the router serves again.
    let (_dashboard, _) = Client::dashboard(&router, "dispatcher").await;
}

#[tokio::test]
async fn a_client_that_pipelines_and_never_reads_is_closed() {
    let router = router(64).await;
    let socket = tokio::net::TcpSocket::new_v4().expect("socket");
    socket
        .set_recv_buffer_size(4096)
        .expect("small receive buffer");
    let mut stream = socket.connect(router.addr).await.expect("connect");
    let requests = b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n".repeat(20_000);
    // The router stops reading once its answers back up; this write may never finish.
    let _ = tokio::time::timeout(IDLE, stream.write_all(&requests)).await;
    pending_drains(&router, IDLE * 4).await;
    // A dashboard is served meanwhile and after.
    let (_dashboard, _) = Client::dashboard(&router, "dispatcher").await;
}

#[tokio::test]
async fn an_idle_websocket_stays_open_through_its_pings() {
    let router = router(64).await;
    let (mut dashboard, _) = Client::dashboard(&router, "dispatcher").await;
    // Nothing but pings and pongs for three idle deadlines.
    dashboard.quiet_for(IDLE * 3).await;
    let mut phone = Client::mobile(&router, "driver-1", "phone").await;
    phone.heartbeat("driver-1").await;
    assert_eq!(dashboard.next_update().await["status"], "online");
}

/// A socket flooding frames is slowed to its rate and then closed with 1008, while a handset and
/// a dashboard on the same router are served as usual.
#[tokio::test]
async fn a_flood_of_frames_is_throttled_then_closed_and_nobody_else_notices() {
    let router = Router::start(|a| {
        a.presence_max_frames_per_second = Some("100".into());
        a.presence_offline_debounce = Some("0".into());
    })
    .await;
    let (mut dashboard, _) = Client::dashboard(&router, "dispatcher").await;
    let mut flooder = Client::mobile(&router, "flooder", "phone").await;
    assert_eq!(dashboard.next_update().await["userId"], "flooder");
    let started = Instant::now();
    let flood = tokio::spawn(async move {
        let beat = common::heartbeat_frame("flooder");
        while flooder.ws_send_raw(beat.clone()).await.is_ok() {
            if started.elapsed() > Duration::from_secs(30) {
                break;
            }
        }
        flooder.closed_with().await
    });
    // Meanwhile a handset comes and goes, seen at once.
    let phone = Client::mobile(&router, "driver-1", "phone").await;
    let online = Instant::now();
    assert_eq!(dashboard.next_update().await["userId"], "driver-1");
    assert!(online.elapsed() < Duration::from_secs(1));
    phone.close().await;
    assert_eq!(dashboard.next_update().await["status"], "offline");
    assert_eq!(flood.await.expect("flood task"), Some(1008));
    let took = started.elapsed();
    assert!(took < Duration::from_secs(10), "closed after {took:?}");
}

/// One token asking the presence API too often gets 429 with `Retry-After`; another token does
/// not.
#[tokio::test]
async fn one_token_asking_too_often_gets_429_with_retry_after() {
    let router = Router::start(|a| a.presence_bulk_rate = Some("5".into())).await;
    let greedy = common::token("greedy", presence_router::auth::Role::Web);
    let body = r#"{"userIds":["driver-1"]}"#;
    let mut statuses = Vec::new();
    for _ in 0..30 {
        statuses.push(common::bulk(&router, Some(&greedy), body).await);
    }
    let refused = statuses
        .iter()
        .find(|r| r.status == 429)
        .expect("some requests refused");
    assert_eq!(refused.header("retry-after").as_deref(), Some("1"));
    assert!(refused.json()["error"]
        .as_str()
        .is_some_and(|e| e.starts_with("Too many requests")));
    assert!(
        statuses.iter().take(10).all(|r| r.status == 200),
        "the burst passes"
    );
    let other = common::token("polite", presence_router::auth::Role::Web);
    assert_eq!(common::bulk(&router, Some(&other), body).await.status, 200);
}

/// A client that sends one large fragment of a message and never the rest, while answering
/// pings, is dropped once the message has been unfinished for `PRESENCE_PING_TIMEOUT`; a
/// handset and a dashboard on the same router are served as usual meanwhile.
#[tokio::test]
async fn a_message_left_unfinished_is_dropped_after_the_ping_timeout() {
    use tokio_tungstenite::tungstenite::protocol::frame::coding::{Data, OpCode};
    use tokio_tungstenite::tungstenite::protocol::frame::Frame;
    use tokio_tungstenite::tungstenite::Message;
    let router = Router::start(|a| {
        a.presence_ping_interval = Some("300ms".into());
        a.presence_ping_timeout = Some("1s".into());
        a.presence_offline_debounce = Some("0".into());
    })
    .await;
    let (mut dashboard, _) = Client::dashboard(&router, "dispatcher").await;
    let mut stuck = Client::mobile(&router, "stuck", "phone").await;
    assert_eq!(dashboard.next_update().await["userId"], "stuck");
    let fragment = Frame::message(vec![0u8; 64_000], OpCode::Data(Data::Binary), false);
    let sent = Instant::now();
    stuck
        .ws
        .send(Message::Frame(fragment))
        .await
        .expect("the first fragment goes");
    // Meanwhile a handset comes and is seen at once.
    let phone = Client::mobile(&router, "driver-1", "phone").await;
    let online = Instant::now();
    assert_eq!(dashboard.next_update().await["userId"], "driver-1");
    assert!(online.elapsed() < Duration::from_secs(1));
    // The stuck client reads (so it answers the router's pings) until its socket is dropped.
    assert!(matches!(stuck.next().await, common::Seen::Closed(_)));
    let took = sent.elapsed();
    assert!(
        took >= Duration::from_secs(1) && took < Duration::from_secs(5),
        "dropped after {took:?}"
    );
    let gone = dashboard.next_update().await;
    assert_eq!(
        (&gone["userId"], &gone["status"]),
        (&serde_json::json!("stuck"), &serde_json::json!("offline"))
    );
    phone.close().await;
}

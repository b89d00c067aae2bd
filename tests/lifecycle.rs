//! Connections over time: keep-alive pings and graceful shutdown.

mod common;

use common::{Client, Router};
use std::time::Duration;

/// A handset that stops answering pings (a dead network) is closed, and its user goes offline
/// without waiting for the TTL; a handset that answers stays.
#[tokio::test]
async fn connections_that_do_not_answer_pings_are_closed() {
    let router = Router::start(|a| {
        a.presence_ping_interval = Some("200ms".into());
        a.presence_ping_timeout = Some("200ms".into());
        a.presence_offline_debounce = Some("0".into());
    })
    .await;
    let (mut dashboard, _) = Client::dashboard(&router, "dispatcher").await;
    // Never polled, so it never answers a ping.
    let _dead = Client::mobile(&router, "driver-dead", "phone").await;
    let mut alive = Client::mobile(&router, "driver-alive", "phone").await;
    let mut online = [dashboard.next_update().await, dashboard.next_update().await];
    online.sort_by_key(|u| u["userId"].to_string());
    assert_eq!(online[0]["userId"], "driver-alive");

    // Reading is what answers pings, for the alive handset and for the dashboard.
    let (offline, alive_saw) = tokio::join!(
        dashboard.next_update(),
        alive.next_within(Duration::from_millis(1_500))
    );
    assert_eq!(
        (offline["userId"].as_str(), offline["status"].as_str()),
        (Some("driver-dead"), Some("offline"))
    );
    assert!(
        alive_saw.is_none(),
        "the answering handset stays open: {alive_saw:?}"
    );
    assert_eq!(common::status_of(&router, "driver-alive").await, "online");
    router.stop().await;
}

/// On shutdown every WebSocket is closed with 1001 (going away).
#[tokio::test]
async fn shutdown_closes_every_socket_with_1001() {
    let router = Router::start(|_| {}).await;
    let mut phone = Client::mobile(&router, "driver-1", "phone").await;
    let (mut dashboard, _) = Client::dashboard(&router, "dispatcher").await;
    router.shutdown.cancel();
    assert_eq!(phone.closed_with().await, Some(1001));
    assert_eq!(dashboard.closed_with().await, Some(1001));
    router.stop().await;
}

/// An upgrade the client abandons before it completes leaves no phantom connection behind.
#[tokio::test]
async fn an_abandoned_upgrade_is_not_counted() {
    use tokio::io::AsyncWriteExt;
    let router = Router::start(|_| {}).await;
    for _ in 0..20 {
        let mut stream = tokio::net::TcpStream::connect(router.addr)
            .await
            .expect("connect");
        let request = format!(
            "GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
             Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\ntoken: {}\r\n\r\n",
            common::token("driver-1", presence_router::auth::Role::Mobile)
        );
        stream.write_all(request.as_bytes()).await.expect("write");
        drop(stream);
    }
    let deadline = tokio::time::Instant::now() + common::PATIENCE;
    loop {
        let health = common::http_raw(&router, "GET /health HTTP/1.1", b"")
            .await
            .json();
        if health["connections"] == 0 {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "still counted: {health}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    router.stop().await;
}

//! The WebSocket upgrade: where tokens and device ids come from, the subprotocol echo, and the
//! 401 for every kind of bad token, over real sockets.

mod common;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use common::{token, Client, Router, SECRET};
use presence_router::auth::Role;
use serde_json::json;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::{HeaderName, HeaderValue, Request};
use tokio_tungstenite::tungstenite::Error as WsError;

fn request(router: &Router, url_suffix: &str, headers: &[(&str, &str)]) -> Request<()> {
    let mut request = format!("ws://{}{url_suffix}", router.addr)
        .into_client_request()
        .expect("request");
    for (name, value) in headers {
        let name = HeaderName::from_bytes(name.as_bytes()).expect("header name");
        request
            .headers_mut()
            .append(name, HeaderValue::from_str(value).expect("header"));
    }
    request
}

/// Upgrades and returns the first update a dashboard then sees, to learn who connected.
async fn connects_as(dashboard: &mut Client, request: Request<()>) -> serde_json::Value {
    let (ws, response) = tokio_tungstenite::connect_async(request)
        .await
        .expect("upgrade accepted");
    let update = dashboard.next_update().await;
    drop((ws, response));
    update
}

/// The refusal for `request`: status and JSON body.
async fn refused(request: Request<()>) -> (u16, serde_json::Value) {
    match tokio_tungstenite::connect_async(request).await {
        Err(WsError::Http(response)) => {
            let status = response.status().as_u16();
            let body = response.body().clone().unwrap_or_default();
            (status, serde_json::from_slice(&body).expect("JSON body"))
        }
        Err(other) => panic!("expected an HTTP refusal, got {other}"),
        Ok(_) => panic!("upgrade was accepted"),
    }
}

fn jwt(header: serde_json::Value, claims: serde_json::Value, signature: &str) -> String {
    let part = |v: serde_json::Value| URL_SAFE_NO_PAD.encode(v.to_string());
    format!("{}.{}.{signature}", part(header), part(claims))
}

#[tokio::test]
async fn the_token_and_device_id_come_from_headers_subprotocols_or_the_query() {
    let router = Router::start(|a| a.presence_offline_debounce = Some("0".into())).await;
    let (mut dashboard, _) = Client::dashboard(&router, "dispatcher").await;

    let by_header = request(
        &router,
        "/ws",
        &[
            ("VoicePingToken", &token("u1", Role::Mobile)),
            ("DeviceId", "d1"),
        ],
    );
    let update = connects_as(&mut dashboard, by_header).await;
    assert_eq!(
        (update["userId"].as_str(), update["deviceId"].as_str()),
        (Some("u1"), Some("d1"))
    );
    dashboard.next_update().await;

    let by_query = request(
        &router,
        &format!("/?token={}&device_id=d2", token("u2", Role::Mobile)),
        &[],
    );
    let update = connects_as(&mut dashboard, by_query).await;
    assert_eq!(
        (update["userId"].as_str(), update["deviceId"].as_str()),
        (Some("u2"), Some("d2"))
    );
    router.stop().await;
}

/// A browser puts the token in the first subprotocol (and the device id in the second); the
/// router must echo the first back or the browser drops the connection.
#[tokio::test]
async fn the_subprotocol_token_is_echoed() {
    let router = Router::start(|_| {}).await;
    let (mut dashboard, _) = Client::dashboard(&router, "dispatcher").await;
    let t = token("u3", Role::Mobile);
    let offered = format!("{t}, tablet-7");
    let (_ws, response) = tokio_tungstenite::connect_async(request(
        &router,
        "/ws",
        &[("Sec-WebSocket-Protocol", &offered)],
    ))
    .await
    .expect("upgrade accepted");
    assert_eq!(
        response
            .headers()
            .get("sec-websocket-protocol")
            .and_then(|v| v.to_str().ok()),
        Some(t.as_str())
    );
    let update = dashboard.next_update().await;
    assert_eq!(
        (update["userId"].as_str(), update["deviceId"].as_str()),
        (Some("u3"), Some("tablet-7"))
    );
    router.stop().await;
}

#[tokio::test]
async fn bad_tokens_are_refused_with_401_and_store_nothing() {
    let router = Router::start(|_| {}).await;
    let now = presence_router::auth::now_secs();
    let expired = jsonwebtoken::encode(
        &jsonwebtoken::Header::default(),
        &json!({"userId": "late", "exp": now - 3600}),
        &jsonwebtoken::EncodingKey::from_secret(SECRET.as_bytes()),
    )
    .expect("sign");
    let wrong_secret = jsonwebtoken::encode(
        &jsonwebtoken::Header::default(),
        &json!({"userId": "mallory", "exp": now + 3600}),
        &jsonwebtoken::EncodingKey::from_secret(b"another secret"),
    )
    .expect("sign");
    let alg_none = jwt(
        json!({"alg": "none", "typ": "JWT"}),
        json!({"userId": "mallory"}),
        "",
    );
    let bad_role = jsonwebtoken::encode(
        &jsonwebtoken::Header::default(),
        &json!({"userId": "x", "role": "admin"}),
        &jsonwebtoken::EncodingKey::from_secret(SECRET.as_bytes()),
    )
    .expect("sign");
    let cases = [
        (None, "missing token"),
        (Some("garbage"), "malformed token"),
        (Some(expired.as_str()), "token expired"),
        (Some(wrong_secret.as_str()), "invalid token signature"),
        (Some(alg_none.as_str()), "malformed token"),
        (
            Some(bad_role.as_str()),
            "unknown role \"admin\": expected mobile, web or dashboard",
        ),
    ];
    for (token, reason) in cases {
        let headers: Vec<(&str, &str)> = token.map(|t| ("token", t)).into_iter().collect();
        let (status, body) = refused(request(&router, "/ws", &headers)).await;
        assert_eq!(status, 401, "{reason}");
        assert_eq!(body, json!({"error": "Unauthorized", "reason": reason}));
    }
    for user in ["late", "mallory"] {
        assert_eq!(common::status_of(&router, user).await, "offline");
    }
    router.stop().await;
}

/// An HS256 token signed with the RSA public key as the secret (the classic algorithm
/// confusion) is refused when the router is configured with that public key.
#[tokio::test]
async fn the_algorithm_is_pinned_by_the_configured_key() {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures");
    let router = Router::start(|a| {
        a.jwt_secret = None;
        a.jwt_public_key_file = Some(format!("{dir}/rsa_public.pem"));
    })
    .await;
    let public = std::fs::read(format!("{dir}/rsa_public.pem")).expect("fixture");
    let confused = jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
        &json!({"userId": "mallory"}),
        &jsonwebtoken::EncodingKey::from_secret(&public),
    )
    .expect("sign");
    let (status, body) = refused(request(&router, "/ws", &[("token", &confused)])).await;
    assert_eq!(
        (status, body["reason"].as_str()),
        (401, Some("token algorithm HS256 is not accepted"))
    );

    let private = std::fs::read(format!("{dir}/rsa_private.pem")).expect("fixture");
    let good = jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::RS256),
        &json!({"sub": "driver-rs", "role": "mobile"}),
        &jsonwebtoken::EncodingKey::from_rsa_pem(&private).expect("key"),
    )
    .expect("sign");
    let (_ws, _) = tokio_tungstenite::connect_async(request(&router, "/ws", &[("token", &good)]))
        .await
        .expect("RS256 token accepted");
    router.stop().await;
}

/// Upgrade requests that are not proper WebSocket handshakes get a 400 JSON body.
#[tokio::test]
async fn a_broken_handshake_is_a_400() {
    let router = Router::start(|_| {}).await;
    let reply = common::http_raw(
        &router,
        &format!(
            "GET /ws HTTP/1.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\ntoken: {}",
            token("u", Role::Mobile)
        ),
        b"",
    )
    .await;
    assert_eq!(reply.status, 400);
    assert_eq!(reply.json()["error"], "Sec-WebSocket-Version must be 13");
    router.stop().await;
}

/// The VoicePing Android SDK's device id: `{MANUFACTURER}_{MODEL}_{FINGERPRINT}_{BOOTLOADER}_
/// {DISPLAY}_{HOST}`, 150–250 bytes with spaces, slashes and colons.
const ANDROID_DEVICE_ID: &str = "Google_Pixel 2_google/walleye/walleye:8.1.0/OPM1.171019.011/4448085:user/release-keys_mw8998-002.0069.00_OPM1.171019.011_wprd10.hot.corp.google.com_and a few more characters to make it long";

#[tokio::test]
async fn real_handsets_device_ids_are_taken_as_sent_and_unsafe_ones_refused() {
    assert!(ANDROID_DEVICE_ID.len() > 150);
    let router = Router::start(|a| a.presence_offline_debounce = Some("0".into())).await;
    let (mut dashboard, _) = Client::dashboard(&router, "dispatcher").await;
    let phone = token("driver-1", Role::Mobile);
    let update = connects_as(
        &mut dashboard,
        request(
            &router,
            "/ws",
            &[("VoicePingToken", &phone), ("DeviceId", ANDROID_DEVICE_ID)],
        ),
    )
    .await;
    assert_eq!(update["userId"], "driver-1");
    assert_eq!(update["deviceId"], ANDROID_DEVICE_ID);

    let too_long = "d".repeat(257);
    let bidi = "phone-%E2%80%AEevil";
    let newline = "phone-%0Aforged%20log%20line";
    for (suffix, reason) in [
        (
            format!("/ws?device_id={too_long}"),
            "device id longer than 256 bytes",
        ),
        (
            format!("/ws?device_id={bidi}"),
            "device id with a control character or a bidirectional override",
        ),
        (
            format!("/ws?device_id={newline}"),
            "device id with a control character or a bidirectional override",
        ),
    ] {
        let (status, body) = refused(request(&router, &suffix, &[("token", &phone)])).await;
        assert_eq!(
            (status, body),
            (400, json!({ "error": reason })),
            "{suffix}"
        );
    }
}

/// A leaked token opening socket after socket takes its user's share and no more: other users
/// still connect, and a closed socket gives its slot back.
#[tokio::test]
async fn one_user_cannot_take_every_connection() {
    let router = Router::start(|a| {
        a.presence_max_connections = Some("6".into());
        a.presence_max_connections_per_user = Some("3".into());
    })
    .await;
    let leaked = token("leaked", Role::Mobile);
    let mut held = Vec::new();
    for _ in 0..3 {
        held.push(Client::connect(&router, &leaked, None).await);
    }
    let (status, body) = refused(request(&router, "/ws", &[("token", &leaked)])).await;
    assert_eq!(
        (status, body),
        (
            429,
            json!({"error": "too many connections for this user: at most 3"})
        )
    );
    let (_dashboard, _) = Client::dashboard(&router, "dispatcher").await;
    if let Some(one) = held.pop() {
        one.close().await;
    }
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(5);
    while tokio_tungstenite::connect_async(request(&router, "/ws", &[("token", &leaked)]))
        .await
        .is_err()
    {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the slot never came back"
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}

/// Upgrades racing for the last slots never overshoot the cap.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_upgrades_never_exceed_the_cap() {
    let router = Router::start(|a| a.presence_max_connections = Some("10".into())).await;
    let attempts = (0..40).map(|i| {
        let request = request(
            &router,
            "/ws",
            &[("token", &token(&format!("u{i}"), Role::Mobile))],
        );
        tokio::spawn(async move { tokio_tungstenite::connect_async(request).await })
    });
    let mut accepted = Vec::new();
    let mut full = 0;
    for attempt in attempts.collect::<Vec<_>>() {
        match attempt.await.expect("task") {
            Ok(socket) => accepted.push(socket),
            Err(WsError::Http(response)) if response.status() == 503 => full += 1,
            Err(other) => panic!("{other}"),
        }
    }
    assert_eq!((accepted.len(), full), (10, 30));
}

/// With `CORS_ALLOWED_ORIGINS`, only the listed pages may use the router from a browser: their
/// WebSockets are accepted and their API answers carry their origin; another page's WebSocket
/// is refused with 403 and its answers carry no CORS header. Clients that send no `Origin`
/// (handsets, tools) are not concerned. Without the setting, any origin is allowed.
#[tokio::test]
async fn browser_origins_can_be_restricted() {
    let listed = "https://dispatch.example.com";
    let router = Router::start(|a| {
        a.cors_allowed_origins = Some(format!("{listed}, https://ops.example.com"));
    })
    .await;
    let mobile = token("driver-1", Role::Mobile);
    let (status, body) = refused(request(
        &router,
        "/ws",
        &[("token", &mobile), ("origin", "https://evil.example")],
    ))
    .await;
    assert_eq!(
        (status, &body["error"]),
        (403, &json!("Forbidden")),
        "{body}"
    );
    for origin in [Some(listed), None] {
        let mut headers = vec![("token", mobile.as_str())];
        headers.extend(origin.map(|o| ("origin", o)));
        let (ws, _) = tokio_tungstenite::connect_async(request(&router, "/ws", &headers))
            .await
            .expect("upgrade accepted");
        drop(ws);
    }
    let health = |origin: &str| {
        let head = format!("GET /health HTTP/1.1\r\nOrigin: {origin}");
        let router = &router;
        async move { common::http_raw(router, &head, b"").await }
    };
    let allowed = health(listed).await;
    assert_eq!(
        allowed.header("access-control-allow-origin").as_deref(),
        Some(listed)
    );
    assert_eq!(allowed.header("vary").as_deref(), Some("Origin"));
    let other = health("https://evil.example").await;
    assert_eq!(other.status, 200);
    assert_eq!(other.header("access-control-allow-origin"), None);

    let open = Router::start(|_| {}).await;
    let anywhere = common::http_raw(
        &open,
        "GET /health HTTP/1.1\r\nOrigin: https://evil.example",
        b"",
    )
    .await;
    assert_eq!(
        anywhere.header("access-control-allow-origin").as_deref(),
        Some("*")
    );
    let (ws, _) = tokio_tungstenite::connect_async(request(
        &open,
        "/ws",
        &[("token", &mobile), ("origin", "https://evil.example")],
    ))
    .await
    .expect("any origin by default");
    drop(ws);
}

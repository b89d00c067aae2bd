//! `POST /api/presence/status`, `/health`, `/metrics` and CORS over real HTTP.

mod common;

use common::{bulk, http_raw, token, Client, Router};
use presence_router::auth::Role;
use serde_json::json;

fn dashboard_token() -> String {
    token("ops", Role::Dashboard)
}

/// The documented shape: users in request order, ids echoed as given, unknown users offline.
#[tokio::test]
async fn bulk_status_has_the_documented_shape() {
    let router = Router::start(|_| {}).await;
    let _phone = Client::mobile(&router, "driver-1", "phone-1").await;
    let _numeric = Client::mobile(&router, "42", "radio").await;
    // Wait until both are known, through the API itself.
    while common::status_of(&router, "42").await != "online" {
        tokio::task::yield_now().await;
    }
    let reply = bulk(
        &router,
        Some(&dashboard_token()),
        r#"{"userIds":["driver-1",42,"ghost"]}"#,
    )
    .await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    assert_eq!(
        reply.header("content-type").as_deref(),
        Some("application/json")
    );
    assert_eq!(
        reply.header("access-control-allow-origin").as_deref(),
        Some("*")
    );
    let body = reply.json();
    assert_eq!(body["success"], true);
    assert!(body["timestamp"].as_u64().is_some());
    let users = body["users"].as_array().expect("users");
    assert_eq!(users.len(), 3);
    assert_eq!(users[0]["userId"], "driver-1");
    assert_eq!(users[0]["status"], "online");
    assert_eq!(users[0]["deviceId"], "phone-1");
    assert!(users[0]["lastSeen"].as_u64().is_some_and(|t| t > 0));
    assert_eq!(users[1]["userId"], 42, "a numeric id is echoed as a number");
    assert_eq!(users[1]["status"], "online");
    assert_eq!(
        users[2],
        json!({"userId": "ghost", "status": "offline", "lastSeen": 0})
    );
    router.stop().await;
}

/// An `Authorization` header of another scheme is told what is expected; the scheme's case
/// does not matter.
#[tokio::test]
async fn the_bulk_api_wants_a_bearer_token() {
    let router = Router::start(|_| {}).await;
    let body = r#"{"userIds":["a"]}"#;
    let head = |auth: &str| {
        format!(
            "POST /api/presence/status HTTP/1.1\r\nContent-Type: application/json\r\nContent-Length: {}\r\nAuthorization: {auth}",
            body.len()
        )
    };
    let basic = http_raw(
        &router,
        &head("Basic ZGlzcGF0Y2hlcjpwdw=="),
        body.as_bytes(),
    )
    .await;
    assert_eq!(basic.status, 401);
    assert_eq!(
        basic.json()["reason"],
        r#"the Authorization header must be "Bearer <token>""#
    );
    let bare = http_raw(&router, &head(&dashboard_token()), body.as_bytes()).await;
    assert_eq!(bare.status, 401);
    assert!(bare.json()["reason"]
        .as_str()
        .is_some_and(|r| r.contains("Bearer")));
    let shouting = http_raw(
        &router,
        &head(&format!("BEARER {}", dashboard_token())),
        body.as_bytes(),
    )
    .await;
    assert_eq!(shouting.status, 200, "{}", shouting.body);
    router.stop().await;
}

/// Each refusal, in the documented order of checks, with a JSON body.
#[tokio::test]
async fn bulk_status_refuses_bad_requests_with_json_errors() {
    let router = Router::start(|_| {}).await;
    let t = dashboard_token();
    let cases: Vec<(Option<&str>, String, u16, &str)> = vec![
        (None, r#"{"userIds":["a"]}"#.into(), 401, "Unauthorized"),
        (
            Some("not-a-jwt"),
            r#"{"userIds":["a"]}"#.into(),
            401,
            "Unauthorized",
        ),
        (Some(&t), "{not json".into(), 400, "Invalid JSON"),
        (
            Some(&t),
            r#"{"userIds":"a"}"#.into(),
            400,
            "userIds must be an array",
        ),
        (
            Some(&t),
            r#"{"ids":["a"]}"#.into(),
            400,
            "userIds must be an array",
        ),
        (Some(&t), r#"[1,2]"#.into(), 400, "userIds must be an array"),
        (
            Some(&t),
            r#"{"userIds":[{"id":1}]}"#.into(),
            400,
            "userIds must hold only strings or numbers",
        ),
        (
            Some(&t),
            json!({ "userIds": (0..101).collect::<Vec<_>>() }).to_string(),
            400,
            "Too many userIds: at most 100 per request",
        ),
        (
            Some(&t),
            format!(r#"{{"userIds":["{}"]}}"#, "x".repeat(70_000)),
            413,
            "Payload too large",
        ),
    ];
    for (bearer, body, status, error) in cases {
        let reply = bulk(&router, bearer, &body).await;
        assert_eq!(
            reply.status,
            status,
            "{}: {}",
            &body[..body.len().min(40)],
            reply.body
        );
        assert_eq!(reply.json()["error"], error);
        assert_eq!(
            reply.header("access-control-allow-origin").as_deref(),
            Some("*")
        );
    }
    // 100 ids is fine.
    let hundred = json!({ "userIds": (0..100).collect::<Vec<_>>() }).to_string();
    assert_eq!(bulk(&router, Some(&t), &hundred).await.status, 200);
    router.stop().await;
}

/// A chunked body with no Content-Length is cut off at the limit too.
#[tokio::test]
async fn a_huge_chunked_body_is_refused_with_413() {
    let router = Router::start(|_| {}).await;
    let head = format!(
        "POST /api/presence/status HTTP/1.1\r\nAuthorization: Bearer {}\r\nTransfer-Encoding: chunked",
        dashboard_token()
    );
    let chunk = "a".repeat(40_000);
    let body = format!(
        "{:x}\r\n{chunk}\r\n{:x}\r\n{chunk}\r\n0\r\n\r\n",
        chunk.len(),
        chunk.len()
    );
    let reply = http_raw(&router, &head, body.as_bytes()).await;
    assert_eq!(reply.status, 413);
    assert_eq!(reply.json()["error"], "Payload too large");
    router.stop().await;
}

/// With `PRESENCE_API_AUTH=none` the bulk API needs no token.
#[tokio::test]
async fn the_api_can_be_opened() {
    let router = Router::start(|a| a.presence_api_auth = Some("none".into())).await;
    let reply = bulk(&router, None, r#"{"userIds":["a"]}"#).await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    router.stop().await;
}

/// Preflight on any route answers with CORS headers, Origin or not.
#[tokio::test]
async fn options_is_a_cors_preflight_on_every_route() {
    let router = Router::start(|_| {}).await;
    for path in ["/api/presence/status", "/health", "/anything"] {
        for origin in ["", "\r\nOrigin: https://dispatch.example"] {
            let reply = http_raw(&router, &format!("OPTIONS {path} HTTP/1.1{origin}"), b"").await;
            assert!(
                matches!(reply.status, 200 | 204),
                "{path}: {}",
                reply.status
            );
            assert_eq!(
                reply.header("access-control-allow-origin").as_deref(),
                Some("*")
            );
            assert!(reply
                .header("access-control-allow-headers")
                .is_some_and(|h| h.contains("Authorization")));
        }
    }
    router.stop().await;
}

/// Health says ok, the store and the live connections; the embedded store is always ready;
/// metrics are Prometheus text.
#[tokio::test]
async fn health_and_metrics() {
    let router = Router::start(|_| {}).await;
    let mut phone = Client::mobile(&router, "driver-1", "phone").await;
    phone.heartbeat("driver-1").await;
    let (_dashboard, _) = Client::dashboard(&router, "ops").await;

    let health = http_raw(&router, "GET /health HTTP/1.1", b"").await;
    assert_eq!(health.status, 200);
    let body = health.json();
    assert_eq!(body["status"], "ok");
    assert_eq!(body["store"], "memory");
    assert_eq!(body["connections"], 2);
    assert_eq!(body["version"], env!("CARGO_PKG_VERSION"));

    let ready = http_raw(&router, "GET /ready HTTP/1.1", b"").await;
    assert_eq!(ready.status, 200);
    assert_eq!(ready.json()["status"], "ready");

    let metrics = http_raw(&router, "GET /metrics HTTP/1.1", b"").await;
    assert_eq!(metrics.status, 200);
    assert!(metrics
        .body
        .contains("# TYPE presence_connections_mobile gauge\npresence_connections_mobile 1"));
    assert!(metrics.body.contains("presence_connections_dashboard 1"));
    router.stop().await;
}

/// Unknown routes and methods get JSON errors; a plain GET on the socket path says to upgrade.
#[tokio::test]
async fn unknown_routes_and_methods() {
    let router = Router::start(|_| {}).await;
    let missing = http_raw(&router, "GET /nope HTTP/1.1", b"").await;
    assert_eq!(
        (missing.status, missing.json()["error"].as_str()),
        (404, Some("Not found"))
    );
    for (head, allow) in [
        ("GET /api/presence/status HTTP/1.1", "POST, OPTIONS"),
        ("POST /health HTTP/1.1\r\nContent-Length: 0", "GET, OPTIONS"),
        ("DELETE /ready HTTP/1.1", "GET, OPTIONS"),
        ("POST /ws HTTP/1.1\r\nContent-Length: 0", "GET, OPTIONS"),
    ] {
        let wrong = http_raw(&router, head, b"").await;
        assert_eq!(wrong.status, 405, "{head}");
        assert_eq!(wrong.header("allow").as_deref(), Some(allow), "{head}");
    }
    let plain = http_raw(&router, "GET /ws HTTP/1.1", b"").await;
    assert_eq!(plain.status, 426);
    router.stop().await;
}

/// With presence disabled, sockets are still accepted but nothing is tracked or streamed, and the
/// bulk API says so.
#[tokio::test]
async fn presence_can_be_disabled() {
    let router = Router::start(|a| a.presence_enabled = Some("false".into())).await;
    let mut phone = Client::mobile(&router, "driver-1", "phone").await;
    phone.heartbeat("driver-1").await;
    let mut dashboard = Client::connect(&router, &dashboard_token(), None).await;
    dashboard
        .quiet_for(std::time::Duration::from_millis(200))
        .await;
    let reply = bulk(
        &router,
        Some(&dashboard_token()),
        r#"{"userIds":["driver-1"]}"#,
    )
    .await;
    assert_eq!(
        (reply.status, reply.json()["error"].as_str()),
        (503, Some("Presence is disabled"))
    );
    router.stop().await;
}

/// With `ADMIN_PORT`, `/health`, `/ready` and `/metrics` move to the admin port: the public port
/// answers 404 for them and keeps serving the API and WebSockets; the admin port serves nothing
/// else.
#[tokio::test]
async fn admin_port_takes_the_operators_routes_off_the_public_port() {
    let router = Router::start(|a| a.admin_port = Some("0".into())).await;
    let admin = router.admin.expect("an admin port");
    for path in ["/health", "/ready", "/metrics"] {
        let head = format!("GET {path} HTTP/1.1");
        assert_eq!(
            common::http_raw(&router, &head, b"").await.status,
            404,
            "public {path}"
        );
        assert_eq!(
            common::http_at(admin, &head, b"").await.status,
            200,
            "admin {path}"
        );
    }
    let metrics = common::http_at(admin, "GET /metrics HTTP/1.1", b"")
        .await
        .body;
    assert!(metrics.contains("presence_connections_mobile"), "{metrics}");
    for head in [
        "GET /api/presence/driver-1 HTTP/1.1",
        "GET /ws HTTP/1.1",
        "GET /dashboard HTTP/1.1",
    ] {
        assert_eq!(
            common::http_at(admin, head, b"").await.status,
            404,
            "admin {head}"
        );
    }
    // The public port still serves dashboards and the API.
    let (_dashboard, snapshot) = Client::dashboard(&router, "dispatcher").await;
    assert_eq!(snapshot["totalOnline"], 0);
    let reply = common::bulk(
        &router,
        Some(&token("ops", Role::Web)),
        r#"{"userIds":["x"]}"#,
    )
    .await;
    assert_eq!(reply.status, 200);
}

/// `/metrics` measures what a user waits for: each update delivered to a dashboard, and each
/// store operation of a connection, in latency histograms.
#[tokio::test]
async fn metrics_carry_delivery_and_store_latency_histograms() {
    let router = Router::start(common::no_debounce).await;
    let (mut dashboard, _) = Client::dashboard(&router, "dispatcher").await;
    let phone = Client::mobile(&router, "driver-1", "phone-1").await;
    assert_eq!(dashboard.next_update().await["status"], "online");
    phone.close().await;
    assert_eq!(dashboard.next_update().await["status"], "offline");
    let metrics = http_raw(&router, "GET /metrics HTTP/1.1", b"").await.body;
    let count = |name: &str| -> u64 {
        metrics
            .lines()
            .find_map(|l| l.strip_prefix(&format!("{name}_count ")))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or_else(|| panic!("{name} in {metrics}"))
    };
    assert_eq!(
        count("presence_update_delivery_seconds"),
        2,
        "two updates delivered"
    );
    assert!(
        count("presence_store_operation_seconds") >= 3,
        "snapshot, connect, disconnect"
    );
    assert!(metrics.contains("presence_update_delivery_seconds_bucket{le=\"+Inf\"} 2"));
}

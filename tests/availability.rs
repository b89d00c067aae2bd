//! Availability and status text, through every surface: set from a connection (SET_AVAILABILITY)
//! and over HTTP (`PUT /api/presence/me`), seen in updates, snapshots and the bulk API, on one
//! router and across two routers sharing Redis; refused when malformed, with nothing stored.

#[macro_use]
mod common;

use common::{bulk_user, http_raw, no_debounce, token, Client, HttpReply, Router};
use presence_router::auth::Role;
use presence_router::wire::Encoder;
use serde_json::{json, Value as Json};

const SET_AVAILABILITY: u64 = 34;

/// `[0, 34, from, 0, {availability, statusText?}]`.
fn set_frame(from: &str, availability: &str, text: Option<&str>) -> Vec<u8> {
    let mut e = Encoder::default();
    e.array(5).uint(0).uint(SET_AVAILABILITY).str(from).uint(0);
    e.map(1 + usize::from(text.is_some()));
    e.str("availability").str(availability);
    if let Some(text) = text {
        e.str("statusText").str(text);
    }
    e.into_bytes()
}

async fn put_me(router: &Router, token: &str, body: &Json) -> HttpReply {
    let body = body.to_string();
    let head = format!(
        "PUT /api/presence/me HTTP/1.1\r\nAuthorization: Bearer {token}\r\nContent-Type: application/json\r\nContent-Length: {}",
        body.len()
    );
    http_raw(router, &head, body.as_bytes()).await
}

/// What the bulk API says of `user`'s availability and status text.
async fn bulk_stated(router: &Router, user: &str) -> (Json, Json) {
    let user = bulk_user(router, user).await;
    (user["availability"].clone(), user["statusText"].clone())
}

/// The next update for `user` on `dashboard`.
async fn update_of(dashboard: &mut Client, user: &str) -> Json {
    loop {
        let update = dashboard.next_update().await;
        if update["userId"] == user {
            return update;
        }
    }
}

async fn round_trip(a: &Router, b: &Router) {
    let (mut dashboard, _) = Client::dashboard(b, "dispatcher").await;
    let mut phone = Client::mobile(a, "driver-1", "phone").await;
    let online = update_of(&mut dashboard, "driver-1").await;
    assert_eq!(online["status"], "online");
    assert!(online.get("availability").is_none(), "{online}");

    // From the handset's own connection.
    phone
        .send(set_frame("driver-1", "busy", Some("on a delivery")))
        .await;
    let busy = update_of(&mut dashboard, "driver-1").await;
    assert_eq!(
        (&busy["status"], &busy["availability"], &busy["statusText"]),
        (&json!("online"), &json!("busy"), &json!("on a delivery"))
    );
    assert!(busy["version"].as_u64() > online["version"].as_u64());
    assert_eq!(
        bulk_stated(a, "driver-1").await,
        (json!("busy"), json!("on a delivery"))
    );

    // Over HTTP with the user's own token.
    let reply = put_me(
        b,
        &token("driver-1", Role::Mobile),
        &json!({"availability": "away"}),
    )
    .await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    assert_eq!(reply.json()["availability"], "away");
    let away = update_of(&mut dashboard, "driver-1").await;
    assert_eq!(away["availability"], "away");
    assert!(away.get("statusText").is_none(), "{away}");
    let (mut late, snapshot) = Client::dashboard(a, "late-dispatcher").await;
    let listed = &snapshot["users"][0];
    assert_eq!(
        (&listed["userId"], &listed["availability"]),
        (&json!("driver-1"), &json!("away"))
    );

    // Cleared when the user goes offline.
    phone.close().await;
    let offline = update_of(&mut late, "driver-1").await;
    assert_eq!(offline["status"], "offline");
    assert!(offline.get("availability").is_none(), "{offline}");
    assert_eq!(bulk_stated(b, "driver-1").await, (Json::Null, Json::Null));
    let reply = put_me(
        a,
        &token("driver-1", Role::Mobile),
        &json!({"availability": "busy"}),
    )
    .await;
    assert_eq!(reply.status, 409, "{}", reply.body);
}

on_both_stores!(
    round_trip,
    no_debounce,
    availability_round_trips_on_one_router,
    availability_round_trips_across_routers
);

#[tokio::test]
async fn malformed_statements_are_refused_and_nothing_is_stored() {
    let router = Router::start(no_debounce).await;
    let (mut dashboard, _) = Client::dashboard(&router, "dispatcher").await;
    let mut phone = Client::mobile(&router, "driver-1", "phone").await;
    update_of(&mut dashboard, "driver-1").await;
    let huge = "x".repeat(10 * 1024);
    for (frame, code) in [
        (set_frame("driver-1", "asleep", None), 400),
        (set_frame("driver-1", "busy", Some(&huge)), 400),
        (set_frame("driver-2", "busy", None), 403),
    ] {
        phone.send(frame).await;
        let error = phone.next_frame().await;
        assert_eq!(
            (error[1].as_u64(), error[4]["code"].as_u64()),
            (Some(33), Some(code)),
            "{error}"
        );
        assert!(
            error[4]["message"].as_str().is_some_and(|m| m.len() < 200),
            "{error}"
        );
    }
    let mine = token("driver-1", Role::Mobile);
    for body in [
        json!({"availability": "asleep"}),
        json!({"availability": "busy", "statusText": huge}),
        json!({"availability": "busy", "statusText": 7}),
        json!({"statusText": "no availability"}),
        json!([]),
    ] {
        let reply = put_me(&router, &mine, &body).await;
        assert_eq!(reply.status, 400, "{body}: {}", reply.body);
        assert!(reply.json()["error"].is_string(), "{}", reply.body);
    }
    let reply = put_me(&router, "not-a-token", &json!({"availability": "busy"})).await;
    assert_eq!(reply.status, 401, "{}", reply.body);
    assert_eq!(
        bulk_stated(&router, "driver-1").await,
        (Json::Null, Json::Null)
    );
    dashboard
        .quiet_for(std::time::Duration::from_millis(200))
        .await;
}

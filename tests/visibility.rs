//! Who may see whom, over real sockets: tenants apart, group-restricted dashboards, membership
//! changed by USER_ADD / USER_REMOVE (and by a VoicePing router in Redis), on one router with the
//! embedded store and on two routers sharing a redis-server. A dashboard's view is kept as
//! PROTOCOL.md says (a snapshot replaces it; an update applies when its version is higher) and
//! compared with a fresh snapshot.

#[macro_use]
mod common;

use common::view::ProtocolView;
use common::{
    bulk, http_raw, membership_frame, no_debounce, token_with, Client, RedisServer, Router, Seen,
};
use presence_router::auth::Role;
use serde_json::{json, Value as Json};
use std::collections::BTreeSet;
use std::time::Duration;

const USER_ADD: u64 = 15;
const USER_REMOVE: u64 = 16;

/// How long a view may take to show a change.
const SETTLE: Duration = Duration::from_secs(5);

/// A dashboard and its view, and every user id it was ever told about.
struct Dashboard {
    client: Client,
    token: String,
    view: ProtocolView,
    told: BTreeSet<String>,
}

impl Dashboard {
    async fn connect(router: &Router, token: String) -> Dashboard {
        let client = Client::connect(router, &token, None).await;
        let mut dashboard = Dashboard {
            client,
            token,
            view: ProtocolView::default(),
            told: BTreeSet::new(),
        };
        let snapshot = dashboard.client.next_frame().await;
        assert_eq!(snapshot[1], 32, "{snapshot}");
        dashboard.apply(&snapshot);
        dashboard
    }

    fn apply(&mut self, frame: &Json) {
        let named = self.view.apply(frame);
        assert!(
            matches!(frame[1].as_u64(), Some(31 | 32)),
            "unexpected frame {frame}"
        );
        self.told.extend(named);
    }

    fn online(&self) -> BTreeSet<String> {
        self.view.online()
    }

    /// Reads frames until the view shows exactly `want` online.
    async fn shows(&mut self, want: &[&str]) {
        let want: BTreeSet<String> = want.iter().map(|s| (*s).to_owned()).collect();
        let deadline = tokio::time::Instant::now() + SETTLE;
        while self.online() != want {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            match self.client.next_within(left).await {
                Some(Seen::Frame(frame)) => self.apply(&frame),
                other => panic!("view {:?}, want {want:?}; then {other:?}", self.online()),
            }
        }
    }

    /// A fresh snapshot with the same token lists exactly what this view shows.
    async fn equals_a_fresh_snapshot(&self, router: &Router) {
        let fresh = Dashboard::connect(router, self.token.clone()).await;
        assert_eq!(fresh.online(), self.online(), "fresh snapshot vs view");
        fresh.client.close().await;
    }

    /// Reads what arrives within `window`; fails on a frame about a user in `never`.
    async fn never_told_of(&mut self, never: &[&str], window: Duration) {
        while let Some(Seen::Frame(frame)) = self.client.next_within(window).await {
            self.apply(&frame);
        }
        for user in never {
            assert!(
                !self.told.contains(*user),
                "told of {user}: {:?}",
                self.told
            );
        }
    }
}

fn dashboard_token(user: &str, claims: Json) -> String {
    token_with(user, Role::Dashboard, claims)
}

async fn handset(router: &Router, user: &str, claims: Json) -> Client {
    Client::connect(
        router,
        &token_with(user, Role::Mobile, claims),
        Some("phone"),
    )
    .await
}

/// What the bulk API tells `token` of `users`: (userId, status, lastSeen, deviceId).
async fn bulk_view(router: &Router, token: &str, users: &[&str]) -> Vec<Json> {
    let reply = bulk(
        router,
        Some(token),
        &json!({ "userIds": users }).to_string(),
    )
    .await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    reply.json()["users"]
        .as_array()
        .expect("users")
        .iter()
        .map(|u| json!([u["userId"], u["status"], u["lastSeen"], u.get("deviceId")]))
        .collect()
}

fn unknown(user: &str) -> Json {
    json!([user, "offline", 0, null])
}

/// Two tenants, each with a dashboard and a handset; `a` and `b` may be one router or two.
async fn tenants_stay_apart(a: &Router, b: &Router) {
    let acme = json!({"tenant": "acme"});
    let globex = json!({"tenant": "globex"});
    let mut acme_view = Dashboard::connect(a, dashboard_token("acme-ops", acme.clone())).await;
    let mut globex_view =
        Dashboard::connect(b, dashboard_token("globex-ops", globex.clone())).await;
    let mut acme_phone =
        handset(b, "acme-1", json!({"tenant": "acme", "channelIds": ["18"]})).await;
    let mut globex_phone = handset(
        a,
        "globex-1",
        json!({"tenant": "globex", "channelIds": ["18"]}),
    )
    .await;
    acme_view.shows(&["acme-1"]).await;
    globex_view.shows(&["globex-1"]).await;

    // Membership changes in the other tenant's group of the same name change nothing.
    globex_phone
        .send(membership_frame(USER_REMOVE, "globex-1", "18"))
        .await;
    globex_phone
        .send(membership_frame(USER_ADD, "globex-1", "19"))
        .await;
    acme_phone
        .send(membership_frame(USER_ADD, "acme-1", "19"))
        .await;
    let restricted = dashboard_token("acme-18", json!({"tenant": "acme", "channelIds": ["18"]}));
    let mut acme_18 = Dashboard::connect(b, restricted).await;
    acme_18.shows(&["acme-1"]).await;

    for (router, token, mine, theirs) in [
        (a, &acme_view.token, "acme-1", "globex-1"),
        (b, &globex_view.token, "globex-1", "acme-1"),
    ] {
        let seen = bulk_view(router, token, &[theirs, mine]).await;
        assert_eq!(seen[0], unknown(theirs), "{token}");
        assert_eq!(seen[1][1], "online");
    }
    acme_phone.close().await;
    globex_phone.close().await;
    acme_view.shows(&[]).await;
    globex_view.shows(&[]).await;
    acme_view
        .never_told_of(&["globex-1"], Duration::from_millis(300))
        .await;
    globex_view
        .never_told_of(&["acme-1"], Duration::from_millis(300))
        .await;
    acme_18
        .never_told_of(&["globex-1"], Duration::from_millis(100))
        .await;
    acme_view.equals_a_fresh_snapshot(a).await;
    globex_view.equals_a_fresh_snapshot(b).await;
}

/// A dashboard restricted to group 18 on `b`, handsets on `a`: members appear, others do not,
/// a joiner appears, a leaver disappears, and the view stays equal to a fresh snapshot.
async fn a_group_dashboard_sees_its_members(a: &Router, b: &Router) {
    let mut view = Dashboard::connect(
        b,
        dashboard_token("night-desk", json!({"channelIds": [18]})),
    )
    .await;
    let _member = handset(a, "driver-7", json!({"channelIds": [18, 40]})).await;
    let mut outsider = handset(a, "driver-8", json!({})).await;
    view.shows(&["driver-7"]).await;
    view.equals_a_fresh_snapshot(b).await;

    outsider
        .send(membership_frame(USER_ADD, "driver-8", "18"))
        .await;
    view.shows(&["driver-7", "driver-8"]).await;
    view.equals_a_fresh_snapshot(b).await;

    let mut member = _member;
    member
        .send(membership_frame(USER_REMOVE, "driver-7", "18"))
        .await;
    view.shows(&["driver-8"]).await;
    view.equals_a_fresh_snapshot(b).await;

    // Still a member of 40: a dashboard of 40 sees them, with the same version rule.
    let mut forty =
        Dashboard::connect(a, dashboard_token("desk-40", json!({"channelIds": ["40"]}))).await;
    forty.shows(&["driver-7"]).await;

    // Membership outlives the connection: back without the token's groups, still in 18.
    outsider.close().await;
    view.shows(&[]).await;
    let _back = handset(a, "driver-8", json!({})).await;
    view.shows(&["driver-8"]).await;
    view.equals_a_fresh_snapshot(b).await;
    forty
        .never_told_of(&["driver-8"], Duration::from_millis(200))
        .await;
}

on_both_stores!(
    tenants_stay_apart,
    no_debounce,
    tenants_stay_apart_on_one_router,
    tenants_stay_apart_across_routers
);

on_both_stores!(
    a_group_dashboard_sees_its_members,
    no_debounce,
    a_group_dashboard_sees_its_members_on_one_router,
    a_group_dashboard_sees_its_members_across_routers
);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn membership_a_voiceping_router_wrote_is_honoured() {
    let redis = RedisServer::start(&[]);
    let answers_1 =
        |args: &[&str]| assert_eq!(redis.command(args).as_deref(), Some("1"), "{args:?}");
    // As a VoicePing router records a USER_ADD of user 7 to group 18.
    answers_1(&["SADD", "g.18.u", "7"]);
    answers_1(&["SADD", "u.7.g", "18"]);
    let router = Router::on_redis(&redis, no_debounce).await;
    let mut view = Dashboard::connect(
        &router,
        dashboard_token("desk", json!({"channelIds": [18]})),
    )
    .await;
    let _seven = handset(&router, "7", json!({})).await;
    let mut eight = handset(&router, "8", json!({})).await;
    view.shows(&["7"]).await;
    // And what this router records, a VoicePing router reads.
    eight.send(membership_frame(USER_ADD, "8", "18")).await;
    view.shows(&["7", "8"]).await;
    answers_1(&["SISMEMBER", "g.18.u", "8"]);
    answers_1(&["SISMEMBER", "u.8.g", "18"]);
}

#[tokio::test]
async fn joins_the_token_forbids_and_malformed_ones_are_refused() {
    let router = Router::start(no_debounce).await;
    let mut view = Dashboard::connect(
        &router,
        dashboard_token("desk", json!({"channelIds": ["19"]})),
    )
    .await;
    let mut phone = handset(&router, "driver-1", json!({"channelIds": ["18"]})).await;
    phone
        .send(membership_frame(USER_ADD, "spoofed", "19"))
        .await;
    let refused = phone.next_frame().await;
    assert_eq!(
        refused,
        json!([0, 27, "driver-1", "19", "Unauthorized Group"])
    );
    // Without a group id, or with one that is not a scalar.
    let mut no_group = presence_router::wire::Encoder::default();
    no_group.array(3).uint(0).uint(USER_ADD).str("driver-1");
    let mut map_group = presence_router::wire::Encoder::default();
    map_group
        .array(4)
        .uint(0)
        .uint(USER_ADD)
        .str("driver-1")
        .map(0);
    for frame in [no_group.into_bytes(), map_group.into_bytes()] {
        phone.send(frame).await;
        let error = phone.next_frame().await;
        assert_eq!(
            (error[1].as_u64(), error[4]["code"].as_u64()),
            (Some(33), Some(400)),
            "{error}"
        );
    }
    // Nothing was joined: the dashboard of 19 never heard of driver-1.
    view.never_told_of(&["driver-1"], Duration::from_millis(300))
        .await;
    view.equals_a_fresh_snapshot(&router).await;
}

/// `GET path` with `token`: status and JSON body.
async fn get(router: &Router, path: &str, token: &str) -> (u16, Json) {
    let head = format!("GET {path} HTTP/1.1\r\nAuthorization: Bearer {token}");
    let reply = http_raw(router, &head, b"").await;
    (reply.status, reply.json())
}

/// The user ids of every page of `?group=` for `token`, `limit` at a time.
async fn listed(router: &Router, group: &str, token: &str, limit: usize) -> Vec<String> {
    let mut ids = Vec::new();
    let mut after = String::new();
    for _ in 0..100 {
        let path = format!("/api/presence?group={group}&limit={limit}{after}");
        let (status, body) = get(router, &path, token).await;
        assert_eq!(status, 200, "{body}");
        let users = body["users"].as_array().expect("users");
        assert!(users.len() <= limit, "{body}");
        ids.extend(
            users
                .iter()
                .map(|u| u["userId"].as_str().expect("id").to_owned()),
        );
        match body["next"].as_str() {
            Some(next) => after = format!("&after={next}"),
            None => return ids,
        }
    }
    panic!("paging did not end");
}

async fn queries_answer_only_what_the_caller_may_see(a: &Router, b: &Router) {
    let acme_18 = json!({"tenant": "acme", "channelIds": ["18"]});
    let mut phones = Vec::new();
    for i in 0..5 {
        phones.push(handset(a, &format!("acme-{i}"), acme_18.clone()).await);
    }
    phones.push(
        handset(
            a,
            "acme-other",
            json!({"tenant": "acme", "channelIds": ["40"]}),
        )
        .await,
    );
    phones.push(
        handset(
            a,
            "globex-1",
            json!({"tenant": "globex", "channelIds": ["18"]}),
        )
        .await,
    );
    let mut watch =
        Dashboard::connect(b, dashboard_token("acme-ops", json!({"tenant": "acme"}))).await;
    watch
        .shows(&[
            "acme-0",
            "acme-1",
            "acme-2",
            "acme-3",
            "acme-4",
            "acme-other",
        ])
        .await;

    // acme-5 is in 18 and 40: a dashboard of 40 sees them, and still learns nothing of 18.
    phones.push(
        handset(
            a,
            "acme-5",
            json!({"tenant": "acme", "channelIds": ["18", "40"]}),
        )
        .await,
    );
    let mut forty = Dashboard::connect(
        b,
        dashboard_token("acme-40", json!({"tenant": "acme", "channelIds": ["40"]})),
    )
    .await;
    forty.shows(&["acme-5", "acme-other"]).await;

    let acme = dashboard_token("acme-ops", json!({"tenant": "acme"}));
    let only_40 = dashboard_token("acme-40", json!({"tenant": "acme", "channelIds": ["40"]}));
    let globex = dashboard_token("globex-ops", json!({"tenant": "globex"}));
    let every = ["acme-0", "acme-1", "acme-2", "acme-3", "acme-4", "acme-5"];
    assert_eq!(listed(b, "18", &acme, 2).await, every);
    assert_eq!(listed(b, "18", &acme, 100).await, every);
    assert!(
        listed(b, "18", &only_40, 10).await.is_empty(),
        "a group out of sight reads empty"
    );
    assert_eq!(
        listed(b, "40", &only_40, 10).await,
        ["acme-5", "acme-other"]
    );
    assert_eq!(listed(b, "18", &globex, 10).await, ["globex-1"]);

    let (status, body) = get(b, "/api/presence/acme-3", &acme).await;
    assert_eq!(
        (status, &body["user"]["status"]),
        (200, &json!("online")),
        "{body}"
    );
    for (token, user) in [
        (&globex, "acme-3"),
        (&only_40, "acme-3"),
        (&acme, "globex-1"),
    ] {
        let (status, body) = get(b, &format!("/api/presence/{user}"), token).await;
        assert_eq!(status, 200, "{body}");
        assert_eq!(
            body["user"],
            json!({"userId": user, "status": "offline", "lastSeen": 0})
        );
    }
    let (status, body) = get(b, "/api/presence?limit=5", &acme).await;
    assert_eq!(status, 400, "{body}");
    let (status, body) = get(b, "/api/presence?group=18&limit=0", &acme).await;
    assert_eq!(status, 400, "{body}");
    let (status, body) = get(b, "/api/presence/%ZZ", &acme).await;
    assert_eq!(status, 400, "{body}");
    let (status, _) = get(b, "/api/presence/acme-3", "not-a-token").await;
    assert_eq!(status, 401);
    drop(phones);
}

on_both_stores!(
    queries_answer_only_what_the_caller_may_see,
    no_debounce,
    queries_answer_only_what_the_caller_may_see_on_one_router,
    queries_answer_only_what_the_caller_may_see_across_routers
);

/// The same user id in two tenants is two users: neither's state, availability or leaving
/// reaches the other's dashboards.
async fn one_id_in_two_tenants_is_two_users(a: &Router, b: &Router) {
    let acme = json!({"tenant": "acme"});
    let globex = json!({"tenant": "globex"});
    let mut acme_view = Dashboard::connect(a, dashboard_token("acme-ops", acme.clone())).await;
    let _acme_42 = handset(a, "42", acme.clone()).await;
    acme_view.shows(&["42"]).await;
    let mut globex_view =
        Dashboard::connect(b, dashboard_token("globex-ops", globex.clone())).await;
    let globex_42 = handset(b, "42", globex.clone()).await;
    globex_view.shows(&["42"]).await;
    let busy = json!({"availability": "busy", "statusText": "globex's own"});
    let reply = put_me(b, &token_with("42", Role::Mobile, globex.clone()), &busy).await;
    assert_eq!(reply.0, 200, "{}", reply.1);
    globex_42.close().await;
    acme_view
        .never_told_of(&[], Duration::from_millis(300))
        .await;
    assert_eq!(acme_view.online(), BTreeSet::from(["42".to_owned()]));
    let seen = bulk_view(a, &acme_view.token, &["42"]).await;
    assert_eq!(
        seen[0],
        json!(["42", "online", seen[0][2], "phone"]),
        "{seen:?}"
    );
    let reply = bulk(
        a,
        Some(&acme_view.token),
        &json!({ "userIds": ["42"] }).to_string(),
    )
    .await;
    assert!(
        reply.json()["users"][0].get("availability").is_none(),
        "{}",
        reply.body
    );
}

/// `PUT /api/presence/me` with `token` and `body`: status and JSON body.
async fn put_me(router: &Router, token: &str, body: &Json) -> (u16, Json) {
    let body = body.to_string();
    let head = format!(
        "PUT /api/presence/me HTTP/1.1\r\nAuthorization: Bearer {token}\r\nContent-Type: application/json\r\nContent-Length: {}",
        body.len()
    );
    let reply = http_raw(router, &head, body.as_bytes()).await;
    (reply.status, reply.json())
}

on_both_stores!(
    one_id_in_two_tenants_is_two_users,
    no_debounce,
    one_id_in_two_tenants_is_two_users_on_one_router,
    one_id_in_two_tenants_is_two_users_across_routers
);

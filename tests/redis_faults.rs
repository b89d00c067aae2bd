//! Redis losing its data while handsets come and go (killed and restarted empty, shut down for
//! 20 s, FLUSHALL) or holding every client (CLIENT PAUSE).
//! Two routers, a dashboard on each, handsets heartbeating on both. Every frame a dashboard gets
//! is applied as PROTOCOL.md says (a snapshot replaces the view; an update applies when its
//! version is higher), and the view is checked after each one: no connected handset is ever shown
//! offline, and once the fault is over every view equals the truth.

mod common;

use common::view::ProtocolView;
use common::{token, Client, RedisServer, Router, Seen};
use presence_router::auth::Role;
use serde_json::Value as Json;
use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// How often each handset heartbeats (also the min interval: every heartbeat is written).
const BEAT: Duration = Duration::from_millis(300);

/// What a dashboard shows (kept as PROTOCOL.md says), and whether a steady handset was ever
/// shown offline once shown online.
#[derive(Default)]
struct View {
    shown_now: ProtocolView,
    /// Handsets that must never be shown offline once shown online, and any time they were.
    steady: HashSet<String>,
    shown: HashSet<String>,
    violations: Vec<String>,
}

impl View {
    fn apply(&mut self, frame: &Json) {
        self.shown_now.apply(frame);
        for user in &self.steady {
            if self.shown_now.shows(user) {
                self.shown.insert(user.clone());
            } else if self.shown.contains(user) {
                self.violations
                    .push(format!("{user} shown offline after {frame}"));
            }
        }
    }

    fn online(&self) -> HashSet<String> {
        self.shown_now.online().into_iter().collect()
    }
}

/// A dashboard on `router` whose frames go into a shared view, until the test ends.
async fn watch(router: &Router, steady: &[&str]) -> (Arc<Mutex<View>>, JoinHandle<()>) {
    let view = Arc::new(Mutex::new(View {
        steady: steady.iter().map(|s| (*s).to_owned()).collect(),
        ..View::default()
    }));
    let mut dashboard = Client::connect(router, &token("dispatcher", Role::Dashboard), None).await;
    let task = tokio::spawn({
        let view = view.clone();
        async move {
            while let Some(Seen::Frame(frame)) =
                dashboard.next_within(Duration::from_secs(60)).await
            {
                view.lock().expect("view").apply(&frame);
            }
        }
    });
    (view, task)
}

/// A handset heartbeating every [`BEAT`] until `stop`, then closing its socket.
async fn handset(router: &Router, user: &str, stop: CancellationToken) -> JoinHandle<()> {
    let mut phone = Client::connect(router, &token(user, Role::Mobile), Some("phone")).await;
    let user = user.to_owned();
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(BEAT);
        loop {
            tokio::select! {
                _ = stop.cancelled() => break,
                _ = tick.tick() => phone.heartbeat(&user).await,
            }
        }
        phone.close().await;
    })
}

/// Waits until every view shows exactly `online`, for at most `limit`.
async fn converge(views: &[&Arc<Mutex<View>>], online: &[&str], limit: Duration) {
    let want: HashSet<String> = online.iter().map(|s| (*s).to_owned()).collect();
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        let seen: Vec<HashSet<String>> = views
            .iter()
            .map(|v| v.lock().expect("view").online())
            .collect();
        if seen.iter().all(|s| *s == want) {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "views {seen:?}, truth {want:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

enum Fault {
    /// Killed, down for a few heartbeats, restarted empty.
    Restart,
    /// `SHUTDOWN NOSAVE`, down for 20 s (queued heartbeats far older than the TTL), back empty.
    Shutdown,
    /// Every key deleted under the routers' feet.
    Flush,
    /// Every client held for 1.5 s (`CLIENT PAUSE`): writes wait, nothing is lost.
    Pause,
}

async fn survive(fault: Fault) {
    let mut redis = RedisServer::start(&[]);
    let tweak = |a: &mut presence_router::config::Args| {
        a.presence_ttl = Some("3s".into());
        a.presence_heartbeat_min_interval = Some(format!("{}ms", BEAT.as_millis()));
        a.presence_offline_debounce = Some("0".into());
    };
    let a = Router::on_redis(&redis, tweak).await;
    let b = Router::on_redis(&redis, tweak).await;
    let steady = ["stays-on-a", "stays-on-b", "joins-in-fault"];
    let (view_a, _watch_a) = watch(&a, &steady).await;
    let (view_b, _watch_b) = watch(&b, &steady).await;
    let stop = CancellationToken::new();
    let leaves = CancellationToken::new();
    let _on_a = handset(&a, "stays-on-a", stop.clone()).await;
    let _on_b = handset(&b, "stays-on-b", stop.clone()).await;
    let leaver = handset(&a, "leaves-in-fault", leaves.clone()).await;
    let all = ["stays-on-a", "stays-on-b", "leaves-in-fault"];
    converge(&[&view_a, &view_b], &all, Duration::from_secs(10)).await;

    match fault {
        Fault::Restart => redis.stop(),
        Fault::Shutdown => {
            redis.command(&["SHUTDOWN", "NOSAVE"]);
            redis.stop();
        }
        Fault::Flush => assert_eq!(redis.command(&["FLUSHALL"]).as_deref(), Some("OK")),
        Fault::Pause => assert_eq!(
            redis
                .command(&["CLIENT", "PAUSE", "1500", "ALL"])
                .as_deref(),
            Some("OK")
        ),
    }
    leaves.cancel();
    leaver.await.expect("the leaver closes");
    let _joiner = handset(&b, "joins-in-fault", stop.clone()).await;
    // Down for a while, the routers queueing their writes meanwhile.
    let down = match fault {
        Fault::Restart => Some(4 * BEAT),
        Fault::Shutdown => Some(Duration::from_secs(20)),
        Fault::Flush | Fault::Pause => None,
    };
    if let Some(down) = down {
        tokio::time::sleep(down).await;
        redis.restart();
    }
    // TTL + debounce + 1 s, plus the restore grace.
    let truth = ["stays-on-a", "stays-on-b", "joins-in-fault"];
    converge(&[&view_a, &view_b], &truth, Duration::from_secs(6)).await;
    // And it stays so: nothing flickers once the routers settled.
    tokio::time::sleep(Duration::from_secs(2)).await;
    converge(&[&view_a, &view_b], &truth, Duration::ZERO).await;
    for view in [&view_a, &view_b] {
        let violations = &view.lock().expect("view").violations;
        assert!(violations.is_empty(), "{violations:#?}");
    }
    stop.cancel();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_restarted_empty_loses_no_one() {
    survive(Fault::Restart).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_shut_down_for_20s_loses_no_one() {
    survive(Fault::Shutdown).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn flushall_loses_no_one_and_keeps_no_ghost() {
    survive(Fault::Flush).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_paused_redis_loses_no_one() {
    survive(Fault::Pause).await;
}

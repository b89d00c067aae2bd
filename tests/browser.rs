//! The browser dashboard (`GET /dashboard`) of the real router binary, in headless Chromium
//! driven by `protocol/browser/dashboard.js` (playwright-core), and the page's own MessagePack
//! reader under Node (`protocol/browser/msgpack-test.js`).
//!
//! Needs Node.js 18+ and npm (the packages of `protocol/package-lock.json` are installed with
//! `npm ci` when missing) and Debian's `chromium` (installed with apt-get when missing and
//! possible). Screenshots of every step are written under
//! `<target>/tmp/browser-screenshots/`.

mod common;

use common::chromium::chromium;
use common::node::{npm_packages, output_within, protocol_dir, Steps};
use common::{free_port, token_with, RouterProcess};
use presence_router::auth::Role;
use serde_json::{json, Value as Json};
use std::io::{BufRead, BufReader, Write};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// Longest the browser script may take; it times itself out before this.
const SCRIPT_LIMIT: Duration = Duration::from_secs(90);

/// Offline at once, so each step shows at once.
const ROUTER_ENV: &[(&str, &str)] = &[("PRESENCE_OFFLINE_DEBOUNCE", "0")];

/// Every MessagePack value the router sends, as `protocol/vectors.json` holds them, and the
/// hand-made edge cases: read exactly, ext types, truncation and trailing bytes refused.
#[test]
fn the_page_reads_messagepack_as_the_vectors_say() {
    npm_packages();
    let out = output_within(
        Command::new("node")
            .arg("browser/msgpack-test.js")
            .current_dir(protocol_dir()),
        Duration::from_secs(30),
    )
    .unwrap_or_else(|e| panic!("cannot run node ({e}): this test needs Node.js 18+"));
    let stdout = String::from_utf8_lossy(&out.stdout);
    let failures: Vec<&str> = stdout
        .lines()
        .filter(|l| l.contains("\"ok\":false"))
        .collect();
    assert!(
        out.status.success() && failures.is_empty(),
        "{failures:#?}\n--- stderr\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let summary: Json =
        serde_json::from_str(stdout.lines().last().unwrap_or_default()).expect("a summary line");
    assert!(summary["passed"].as_u64() > Some(500), "{summary}");
}

/// Where the screenshots of the browser test go.
fn screenshots() -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("browser-screenshots");
    std::fs::create_dir_all(&dir).expect("screenshot directory");
    dir
}

/// What the script printed, step by step.
struct Transcript(Steps);

impl Transcript {
    fn step(&self, step: &str) -> &Json {
        self.0.step(step)
    }

    /// The users of the rows of `step`, in the order the page listed them.
    fn users(&self, step: &str, key: &str) -> Vec<String> {
        self.step(step)[key]
            .as_array()
            .unwrap_or_else(|| panic!("{step}: no {key}\n{}", self.0.context))
            .iter()
            .map(|row| row["user"].as_str().unwrap_or_default().to_owned())
            .collect()
    }

    /// The cells of `user`'s row at `step`.
    fn row(&self, step: &str, user: &str) -> Vec<String> {
        self.step(step)["rows"]
            .as_array()
            .and_then(|rows| rows.iter().find(|r| r["user"] == user))
            .and_then(|r| r["cells"].as_array())
            .unwrap_or_else(|| panic!("{step}: no row of {user}\n{}", self.0.context))
            .iter()
            .map(|c| c.as_str().unwrap_or_default().to_owned())
            .collect()
    }
}

/// Runs the browser script against a router on `port`; at its "restart" line, kills that router
/// and starts another on the same port.
fn run_dashboard_script(port: u16) -> Transcript {
    let mut router = RouterProcess::start_on(port, ROUTER_ENV);
    let groups = |groups: &[&str]| json!({ "channelIds": groups });
    let profile = std::env::temp_dir().join(format!("presence-dashboard-profile-{port}"));
    let _ = std::fs::remove_dir_all(&profile);
    let mut child = Command::new("node")
        .arg("browser/dashboard.js")
        .current_dir(protocol_dir())
        .env("BASE_URL", format!("http://127.0.0.1:{port}"))
        .env(
            "DASHBOARD_TOKEN",
            token_with("dispatcher-1", Role::Dashboard, groups(&["north", "south"])),
        )
        .env(
            "TOKEN_A",
            token_with("driver-a", Role::Mobile, groups(&["north"])),
        )
        .env(
            "TOKEN_B",
            token_with("driver-b", Role::Mobile, groups(&["south"])),
        )
        .env(
            "TOKEN_D",
            token_with("driver-d", Role::Mobile, groups(&["north"])),
        )
        .env("SHOTS", screenshots())
        .env("USER_DATA_DIR", &profile)
        .env("TIMEOUT_MS", "60000")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run node ({e}): this test needs Node.js 18+"));
    let mut stdin = child.stdin.take().expect("piped stdin");
    let stdout = child.stdout.take().expect("piped stdout");
    let stderr = common::binary::Log::read(child.stderr.take().expect("piped stderr"));
    let (send, lines) = mpsc::channel::<String>();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if send.send(line).is_err() {
                return;
            }
        }
    });
    let deadline = Instant::now() + SCRIPT_LIMIT;
    let mut steps = Vec::new();
    let mut raw = String::new();
    let mut restarts = Vec::new();
    while let Ok(line) = lines.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
        raw.push_str(&line);
        raw.push('\n');
        let Ok(step) = serde_json::from_str::<Json>(&line) else {
            continue;
        };
        if step["step"] == "restart" {
            router.kill();
            restarts.push(router.log.text());
            router = RouterProcess::start_on(port, ROUTER_ENV);
            writeln!(stdin, "restarted").expect("tell the script");
        }
        steps.push(step);
    }
    // The script has ended (its stdout closed) or ran out of time.
    let _ = child.kill();
    let status = child.wait().expect("node ends");
    let mut stderr = stderr;
    let context = format!(
        "node exited with {status}\n--- stdout\n{raw}--- stderr\n{}\n--- router logs\n{}\n{}",
        stderr.text(),
        restarts.join("\n--- restarted\n"),
        router.log.text()
    );
    assert!(
        steps.iter().any(|s| s["step"] == "done"),
        "the script did not finish\n{context}"
    );
    let _ = std::fs::remove_dir_all(&profile);
    Transcript(Steps {
        lines: steps,
        context,
    })
}

/// The page loads with the token taken out of the address, shows the snapshot, a handset
/// coming online (its markup-like device id as text), on the air in a group, the group
/// filter, search and sort, a handset going offline, and a router restart on the same port
/// (it reconnects by itself and the fresh snapshot replaces the view).
#[test]
fn the_dashboard_shows_presence_live_in_a_browser() {
    chromium();
    npm_packages();
    let t = run_dashboard_script(free_port());
    let ctx = &t.0.context;

    let loaded = t.step("loaded");
    assert_eq!(loaded["status"], 200, "{ctx}");
    let headers = &loaded["headers"];
    assert_eq!(headers["content-type"], "text/html; charset=utf-8");
    assert_eq!(headers["cache-control"], "no-store");
    let csp = headers["content-security-policy"]
        .as_str()
        .unwrap_or_default();
    assert!(
        csp.contains("default-src 'none'") && csp.contains("script-src 'self';"),
        "{csp}"
    );
    for script in ["/dashboard/dashboard.js", "/dashboard/msgpack.js"] {
        let headers = &loaded["scripts"][script];
        assert_eq!(
            headers["content-type"], "application/javascript; charset=utf-8",
            "{script}: {ctx}"
        );
        assert_eq!(headers["cache-control"], "no-store", "{script}");
    }
    let url = loaded["url"].as_str().unwrap_or_default();
    assert!(
        url.ends_with("/dashboard") && !url.contains("token"),
        "the token leaves the address bar: {url}"
    );
    assert!(loaded["stored"].as_str().is_some_and(|t| t.len() > 20));
    assert_eq!(
        loaded["groups"],
        json!([["", "all"], ["north", "north"], ["south", "south"]])
    );

    // The handset connected before the page came in its snapshot.
    assert_eq!(t.users("snapshot", "rows"), ["driver-a"], "{ctx}");
    let a = t.row("snapshot", "driver-a");
    assert_eq!((a[1].as_str(), a[4].as_str()), ("online", "phone-a"));
    assert!(a[5].starts_with("seen "), "{a:?}");
    assert_eq!(t.step("snapshot")["counts"]["online"], "1");

    // Online, with availability and status text, markup shown as text.
    let b = t.row("online", "driver-b");
    assert_eq!(b[1], "online");
    assert_eq!(b[2], "busy");
    assert_eq!(b[3], "<b>on a call</b>");
    assert_eq!(b[4], "<img src=x onerror=\"window.pwned=1\">phone-b");
    assert_eq!(
        t.step("online")["markup"],
        json!({"pwned": false, "elements": 0})
    );
    assert_eq!(t.step("online")["counts"]["online"], "2");

    // On the air in its group, then off.
    assert!(
        t.row("on-air", "driver-a")[6].starts_with("group north · since "),
        "{ctx}"
    );
    assert_eq!(t.step("on-air")["counts"]["onAir"], "1");
    assert_eq!(t.step("off-air")["counts"]["onAir"], "0");

    // The group filter shows each group's members only.
    assert_eq!(t.users("group-filter", "north"), ["driver-a"]);
    assert_eq!(t.users("group-filter", "south"), ["driver-b"]);
    assert_eq!(t.users("search", "byDevice"), ["driver-a"]);
    assert_eq!(t.users("search", "byUser"), ["driver-b"]);
    assert_eq!(t.step("sort")["order"], json!(["driver-b", "driver-a"]));

    // Offline: still listed, as offline, until the next snapshot.
    let b = t.row("offline", "driver-b");
    assert_eq!(b[1], "offline");
    assert!(b[5].starts_with("last seen "), "{b:?}");
    assert_eq!(t.step("offline")["counts"]["online"], "1");

    // A new router on the same port: reconnected by itself, the view is its snapshot.
    let resynced = t.step("resynced");
    assert_eq!(t.users("resynced", "rows"), ["driver-d"], "{ctx}");
    assert_eq!(resynced["counts"]["state"], "live");
    assert!(resynced["counts"]["snapshots"].as_u64() >= Some(2));
    assert_eq!(resynced["counts"]["online"], "1");
    assert!(
        resynced["states"]
            .as_array()
            .is_some_and(|s| s.iter().any(|s| s == "reconnecting")),
        "{resynced}"
    );
    assert!(
        resynced["counts"]["closeReason"]
            .as_str()
            .is_some_and(|r| r.starts_with("last close: 1006")),
        "{resynced}"
    );
    assert_eq!(t.step("done")["problems"], json!([]), "{ctx}");
}

/// Users online in the many-users test: the 10,000.
const MANY: usize = 10_000;

/// With 10,000 users online the page lists them all and draws only the rows in view: scrolling
/// to the end brings the last user's row, a search finds one user among them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_dashboard_lists_ten_thousand_users_drawing_only_the_rows_in_view() {
    chromium();
    npm_packages();
    let router = RouterProcess::start(&[]);
    let url = router.ws_url();
    let ids: Vec<String> = (0..MANY).map(|n| format!("many-{n:05}")).collect();
    // Small buffers: ten thousand sockets in this process.
    let config = tokio_tungstenite::tungstenite::protocol::WebSocketConfig::default()
        .read_buffer_size(4096)
        .write_buffer_size(0);
    let connect = |id: String| {
        let request = format!(
            "{url}?token={}&device_id=phone",
            common::token(&id, Role::Mobile)
        );
        async move {
            tokio_tungstenite::connect_async_with_config(request, Some(config), false)
                .await
                .map(|(ws, _)| ws)
        }
    };
    let mut handsets = Vec::with_capacity(MANY);
    for batch in ids.chunks(250) {
        let opened = futures_util::future::join_all(batch.iter().cloned().map(connect)).await;
        handsets.extend(opened.into_iter().map(|ws| ws.expect("a handset connects")));
    }
    let profile = std::env::temp_dir().join(format!("presence-many-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&profile);
    let out = tokio::task::block_in_place(|| {
        output_within(
            Command::new("node")
                .arg("browser/many.js")
                .current_dir(protocol_dir())
                .env("BASE_URL", format!("http://{}", router.addr))
                .env(
                    "DASHBOARD_TOKEN",
                    common::token("dispatcher-1", Role::Dashboard),
                )
                .env("ONLINE", MANY.to_string())
                .env("FIRST", &ids[0])
                .env("LAST", &ids[MANY - 1])
                .env("SHOTS", screenshots())
                .env("USER_DATA_DIR", &profile)
                .env("TIMEOUT_MS", "80000"),
            SCRIPT_LIMIT,
        )
    })
    .unwrap_or_else(|e| panic!("cannot run node ({e}): this test needs Node.js 18+"));
    let _ = std::fs::remove_dir_all(&profile);
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let steps = Steps {
        lines: stdout
            .lines()
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect(),
        context: format!(
            "{stdout}--- stderr\n{}",
            String::from_utf8_lossy(&out.stderr)
        ),
    };
    let drawn = |step: &str| steps.step(step)["drawn"].as_array().map_or(0, Vec::len);
    assert_eq!(steps.step("listed")["online"], MANY.to_string());
    for step in ["listed", "scrolled"] {
        let n = drawn(step);
        assert!(
            (1..=100).contains(&n),
            "{step}: {n} rows drawn for {MANY} users"
        );
    }
    assert_eq!(steps.step("searched")["drawn"], json!([ids[0]]));
    assert_eq!(
        steps.step("done")["problems"],
        json!([]),
        "{}",
        steps.context
    );
    drop(handsets);
}

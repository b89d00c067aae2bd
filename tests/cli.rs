//! The real binary: configuration errors, token minting, `--dev`, and SIGTERM.

mod common;

use common::binary::{router, serve};
use presence_router::auth::{self, Role, Verifier};
use std::process::{Child, Command, Output};

fn output(command: &mut Command) -> Output {
    command.output().expect("the binary runs")
}

fn terminate(child: &Child) {
    let status = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .expect("kill");
    assert!(status.success());
}

#[test]
fn token_mints_a_verifiable_token() {
    let out = output(
        router()
            .env("JWT_SECRET", "cli-secret-of-at-least-thirty-two-bytes")
            .args([
                "token", "--user", "driver-7", "--role", "web", "--ttl", "10m",
            ]),
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let token = String::from_utf8(out.stdout).expect("utf8");
    let who = Verifier::hmac(b"cli-secret-of-at-least-thirty-two-bytes")
        .verify(token.trim(), auth::now_secs())
        .expect("valid");
    assert_eq!((who.user_id.as_ref(), who.role), ("driver-7", Role::Web));
}

/// `--ttl` takes compound durations and days.
#[test]
fn token_ttls_take_days_and_compound_durations() {
    for (ttl, secs) in [("7d", 7 * 86_400), ("1h30m", 5_400)] {
        let out = output(
            router()
                .env("JWT_SECRET", "cli-secret-of-at-least-thirty-two-bytes")
                .args(["token", "--user", "u", "--ttl", ttl]),
        );
        assert!(
            out.status.success(),
            "{ttl}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let token = String::from_utf8(out.stdout).expect("utf8");
        let now = auth::now_secs();
        let expires = Verifier::hmac(b"cli-secret-of-at-least-thirty-two-bytes")
            .verify(token.trim(), now)
            .expect("valid")
            .expires_at
            .expect("exp");
        assert!(expires.abs_diff(now + secs) <= 2, "{ttl}: {expires}");
    }
}

/// `checktoken` prints the identity a token yields with the configured key, or why it is
/// refused; without a key it is a configuration error.
#[test]
fn checktoken_prints_the_identity_or_the_reason() {
    let claims = serde_json::json!({
        "uid": "driver-9", "role": "dashboard", "tenant": "acme", "channelIds": [18, "night"],
        "exp": auth::now_secs() + 3_600,
    });
    let token = jsonwebtoken::encode(
        &jsonwebtoken::Header::default(),
        &claims,
        &jsonwebtoken::EncodingKey::from_secret(b"cli-secret-of-at-least-thirty-two-bytes"),
    )
    .expect("sign");
    let out = output(
        router()
            .env("JWT_SECRET", "cli-secret-of-at-least-thirty-two-bytes")
            .args(["checktoken", &token]),
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    for field in [
        "user     driver-9",
        "role     dashboard",
        "tenant   acme",
        "groups   18, night",
        "Z (in ",
    ] {
        assert!(stdout.contains(field), "{field} missing from:\n{stdout}");
    }

    let out = output(
        router()
            .env("JWT_SECRET", "another-secret-of-at-least-thirty-two-bytes")
            .args(["checktoken", &token]),
    );
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        String::from_utf8_lossy(&out.stderr).trim(),
        "refused: invalid token signature"
    );

    let out = output(router().args(["checktoken", &token]));
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("JWT_SECRET"));
}

/// A configuration error is a short message and exit code 2, even with `RUST_BACKTRACE` set.
#[test]
fn config_errors_are_clean_messages_with_exit_code_2() {
    let out = output(
        router()
            .env("RUST_BACKTRACE", "1")
            .env("JWT_SECRET", common::SECRET)
            .env("PRESENCE_TTL", "soon"),
    );
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(
        stderr.trim(),
        "presence-router: invalid configuration:\n  PRESENCE_TTL: \"soon\" is not a duration (use 500ms, 5s, 2m, 1h30m, 7d or seconds)"
    );
}

/// A Redis URL that cannot work stops the start, named by its variable, without its password.
#[test]
fn an_unusable_redis_url_stops_the_start() {
    for url in [
        "http://:hunter2@127.0.0.1:6379",
        "redis://:hunter2@127.0.0.1:port",
    ] {
        let out = output(
            router()
                .env("JWT_SECRET", common::SECRET)
                .env("REDIS_URL", url),
        );
        assert_eq!(out.status.code(), Some(2), "{url}");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains("REDIS_URL"), "{stderr}");
        assert!(!stderr.contains("hunter2"), "{stderr}");
    }
}

/// `--help` shows each setting's variable and default.
#[test]
fn help_shows_the_defaults() {
    let out = output(router().arg("--help"));
    let help = String::from_utf8_lossy(&out.stdout);
    for shown in [
        "[env: PRESENCE_TTL=] [default: 60s]",
        "[env: PORT=] [default: 3000]",
    ] {
        assert!(help.contains(shown), "{shown} missing from:\n{help}");
    }
}

#[test]
fn bad_values_stop_the_start_naming_each_variable() {
    let out = output(
        router()
            .env("JWT_SECRET", common::SECRET)
            .env("PRESENCE_TTL", "soon")
            .env("PORT", "http"),
    );
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("PRESENCE_TTL") && stderr.contains("PORT"),
        "{stderr}"
    );
}

#[test]
fn without_a_key_the_router_refuses_to_start_unless_dev() {
    let out = output(&mut router());
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("--dev"));
}

#[test]
fn dev_mode_prints_ready_tokens_and_a_curl_line() {
    let (child, _, _) = serve(router().arg("--dev"));
    terminate(&child);
    let out = child.wait_with_output().expect("exit");
    assert!(out.status.success());
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("mobile token") && stdout.contains("dashboard token"),
        "{stdout}"
    );
    assert!(
        stdout.contains("curl -s -X POST http://127.0.0.1:"),
        "{stdout}"
    );
    let secret = stdout
        .lines()
        .find_map(|l| l.strip_prefix("JWT_SECRET="))
        .expect("secret printed");
    let mobile = stdout
        .lines()
        .skip_while(|l| !l.starts_with("mobile token"))
        .nth(1)
        .expect("token line");
    let who = Verifier::hmac(secret.as_bytes())
        .verify(mobile, auth::now_secs())
        .expect("valid");
    assert_eq!(who.role, Role::Mobile);
}

/// SIGTERM closes every socket with 1001 and the process exits cleanly.
#[tokio::test]
async fn sigterm_closes_sockets_with_1001_and_exits_cleanly() {
    let (mut child, addr, _log) = serve(router().env("JWT_SECRET", common::SECRET));
    let url = format!(
        "ws://{addr}/ws?token={}",
        common::token("driver-1", Role::Mobile)
    );
    let (ws, _) = tokio_tungstenite::connect_async(url)
        .await
        .expect("upgrade");
    let mut client = common::Client { ws };
    terminate(&child);
    assert_eq!(client.closed_with().await, Some(1001));
    let status = tokio::task::spawn_blocking(move || child.wait())
        .await
        .expect("join")
        .expect("wait");
    assert!(status.success(), "{status}");
}

/// `LOG_FORMAT=json`: every log line is one JSON object, and a connection's lines carry its
/// user and connection ids.
#[test]
fn logs_can_be_json_lines_with_the_connections_fields() {
    let mut command = common::binary::router();
    command
        .env("JWT_SECRET", common::SECRET)
        .env("LOG_FORMAT", "json")
        .env("RUST_LOG", "presence_router=debug")
        .env("HOST", "127.0.0.1")
        .env("PORT", "0")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped());
    let mut child = command.spawn().expect("spawn");
    let mut log = common::binary::Log::read(child.stderr.take().expect("piped"));
    let limit = std::time::Duration::from_secs(30);
    let listening = log
        .wait_for(limit, |l| l.contains("listening"))
        .expect("a listening line");
    let line: serde_json::Value = serde_json::from_str(&listening).expect("a JSON line");
    assert_eq!(line["level"], "INFO");
    let address = line["fields"]["address"].as_str().expect("address field");
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    runtime.block_on(async {
        let url = format!("ws://{address}/ws");
        let token = common::token("driver-9", presence_router::auth::Role::Mobile);
        let client = common::Client::connect_to(&url, &token, Some("phone-9")).await;
        client.close().await;
    });
    let session = log
        .wait_for(limit, |l| l.contains("session started"))
        .expect("a session line");
    let session: serde_json::Value = serde_json::from_str(&session).expect("a JSON line");
    assert_eq!(session["span"]["user_id"], "driver-9", "{session}");
    assert_eq!(session["span"]["device_id"], "phone-9", "{session}");
    assert!(session["span"]["conn_id"].is_number(), "{session}");
    for line in log.text().lines() {
        assert!(
            serde_json::from_str::<serde_json::Value>(line).is_ok(),
            "not JSON: {line}"
        );
    }
    terminate(&child);
    let _ = child.wait();
}

/// The binary with `ADMIN_PORT`: the operator's routes on that port, not on `PORT`; the same
/// port twice is a clean configuration error.
#[test]
fn the_admin_port_serves_health_and_metrics_apart() {
    let port = common::free_port();
    let process = common::RouterProcess::start(&[("ADMIN_PORT", &port.to_string())]);
    let admin = format!("127.0.0.1:{port}");
    assert_eq!(common::binary::get(&admin, "/health").0, 200);
    assert_eq!(common::binary::get(&admin, "/metrics").0, 200);
    assert_eq!(common::binary::get(&process.addr, "/health").0, 404);
    let out = output(
        router()
            .env("JWT_SECRET", common::SECRET)
            .env("PORT", "3999")
            .env("ADMIN_PORT", "3999"),
    );
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("ADMIN_PORT: 3999 is PORT too"), "{stderr}");
}

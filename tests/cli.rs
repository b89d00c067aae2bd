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
    let out = output(router().env("JWT_SECRET", "cli-secret").args([
        "token", "--user", "driver-7", "--role", "web", "--ttl", "10m",
    ]));
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let token = String::from_utf8(out.stdout).expect("utf8");
    let who = Verifier::hmac(b"cli-secret")
        .verify(token.trim(), auth::now_secs())
        .expect("valid");
    assert_eq!((who.user_id.as_ref(), who.role), ("driver-7", Role::Web));
}

#[test]
fn bad_values_stop_the_start_naming_each_variable() {
    let out = output(
        router()
            .env("JWT_SECRET", "s")
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
    let (mut child, addr, _stderr) = serve(router().env("JWT_SECRET", common::SECRET));
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
